// Stateful property test: random sequences of operations across several users and connections
// run against the core (in-memory store) and against a simple model kept here; every reply and
// every push must match the model.
#include <fnmatch.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "fakes.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/rules.h"
#include "messenger/server/messenger.h"

namespace messenger {
namespace {

constexpr int kConnections = 3;
constexpr char kPassword[] = "password1";
const std::vector<std::string> kNames = {"ann", "Ann", "bob", "cy"};  // "Ann" collides with "ann".
// The first two users, most commands' choice, so sequences reach shared state often.
std::string GenName() {
  return *rc::gen::weightedElement<std::string>(
      {{4, kNames[0]}, {1, kNames[1]}, {4, kNames[2]}, {1, kNames[3]}});
}
const std::vector<std::string> kPatterns = {"*", "a*", "?o?", "[bc]*", "[!a]*", "nobody"};

// Created before each sequence, so most sequences soon have users online to message each other.
constexpr const char* kInitialUsers[] = {"ann", "bob"};

// ---- The model ----
struct ModelMessage {
  int seq = 0;  // The message text is "m<seq>".
  std::string sender;
};
struct ModelUser {
  std::string name;
  bool live = true;
  std::vector<ModelMessage> queue;  // Stored, oldest first.
};
struct ModelConnection {
  std::optional<std::string> user_key;
  std::set<int> handed;  // Pushed or fetched, not ACKed.
};
struct Model {
  std::map<std::string, ModelUser> users;  // By canonical key; retired users stay, !live.
  std::array<ModelConnection, kConnections> connections;
  int next_seq = 1;

  bool Live(const std::string& key) const {
    const auto it = users.find(key);
    return it != users.end() && it->second.live;
  }
  std::optional<int> ConnectionOf(const std::string& key) const {
    for (int c = 0; c < kConnections; ++c) {
      if (connections[c].user_key == key) return c;
    }
    return std::nullopt;
  }
};

// ---- The system under test ----
class RecordingSink final : public SessionSink {
 public:
  void Deliver(const StoredMessage& message) override { delivered.push_back(message.text); }
  void End(EndReason reason, const std::string&) override { ended.push_back(reason); }
  std::vector<std::string> delivered;
  std::vector<EndReason> ended;
};

struct Sut {
  Sut() : store(MakeMemoryStore()) {
    MessengerOptions options;
    options.send_rate_per_second = 0;
    options.login_failures_before_throttle = 1u << 30;
    messenger = std::make_unique<Messenger>(*store, hasher, clock, options);
    for (int c = 0; c < kConnections; ++c) sessions[c] = messenger->Attach(sinks[c]);
    for (const char* name : kInitialUsers) {
      if (!messenger->CreateAccount(name, kPassword).ok()) throw std::runtime_error("setup");
    }
  }
  std::size_t TotalDelivered() const {
    std::size_t n = 0;
    for (const RecordingSink& sink : sinks) n += sink.delivered.size();
    return n;
  }

  testing::FakeClock clock;
  testing::FakeHasher hasher;
  std::unique_ptr<Store> store;
  std::unique_ptr<Messenger> messenger;
  std::array<RecordingSink, kConnections> sinks;
  std::array<SessionId, kConnections> sessions{};
  std::map<int, std::uint64_t> ids;  // seq -> server message id.
  std::uint64_t last_id = 0;
};

using Command = rc::state::Command<Model, Sut>;

std::string Text(int seq) { return "m" + std::to_string(seq); }

ErrorCode CodeOf(const Status& status) { return status.code(); }

struct Create : Command {
  std::string name = GenName();
  void apply(Model& m) const override {
    const std::string key = CanonicalUsername(name);
    if (!m.users.count(key)) m.users[key] = ModelUser{name, true, {}};
  }
  void run(const Model& m, Sut& sut) const override {
    const bool taken = m.users.count(CanonicalUsername(name)) > 0;
    RC_ASSERT(CodeOf(sut.messenger->CreateAccount(name, kPassword)) ==
              (taken ? ErrorCode::kUsernameTaken : ErrorCode::kOk));
  }
  void show(std::ostream& os) const override { os << "Create(" << name << ")"; }
};

struct LoginCommand : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  std::string name = GenName();
  bool right_password = *rc::gen::weightedElement<bool>({{9, true}, {1, false}});
  bool Succeeds(const Model& m) const {
    return !m.connections[conn].user_key && m.Live(CanonicalUsername(name)) && right_password;
  }
  void apply(Model& m) const override {
    if (!Succeeds(m)) return;
    const std::string key = CanonicalUsername(name);
    if (auto other = m.ConnectionOf(key)) m.connections[*other] = {};
    m.connections[conn] = {key, {}};
  }
  void run(const Model& m, Sut& sut) const override {
    const std::string key = CanonicalUsername(name);
    const std::optional<int> previous = m.ConnectionOf(key);
    const std::size_t previous_ends = previous ? sut.sinks[*previous].ended.size() : 0;
    Result<LoginOk> result =
        sut.messenger->Login(sut.sessions[conn], name, right_password ? kPassword : "password2");
    if (m.connections[conn].user_key) {
      RC_ASSERT(result.status().code() == ErrorCode::kAlreadyLoggedIn);
    } else if (!Succeeds(m)) {
      RC_ASSERT(result.status().code() == ErrorCode::kAuthFailed);
    } else {
      RC_ASSERT(result.ok());
      RC_ASSERT(result->unread_count == m.users.at(key).queue.size());
      if (previous) {
        RC_ASSERT(sut.sinks[*previous].ended.size() == previous_ends + 1);
        RC_ASSERT(sut.sinks[*previous].ended.back() == EndReason::kTakeover);
      }
    }
  }
  void show(std::ostream& os) const override {
    os << "Login(c" << conn << ", " << name << (right_password ? "" : ", wrong password") << ")";
  }
};

struct LogoutCommand : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  void apply(Model& m) const override { m.connections[conn] = {}; }
  void run(const Model& m, Sut& sut) const override {
    RC_ASSERT(CodeOf(sut.messenger->Logout(sut.sessions[conn])) ==
              (m.connections[conn].user_key ? ErrorCode::kOk : ErrorCode::kNotLoggedIn));
  }
  void show(std::ostream& os) const override { os << "Logout(c" << conn << ")"; }
};

struct SendCommand : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  std::string to = GenName();
  ErrorCode Expected(const Model& m) const {
    const auto& sender = m.connections[conn].user_key;
    if (!sender) return ErrorCode::kNotLoggedIn;
    if (CanonicalUsername(to) == *sender) return ErrorCode::kSelfSend;
    if (!m.Live(CanonicalUsername(to))) return ErrorCode::kUnknownRecipient;
    return ErrorCode::kOk;
  }
  void apply(Model& m) const override {
    const int seq = m.next_seq++;
    if (Expected(m) != ErrorCode::kOk) return;
    const std::string key = CanonicalUsername(to);
    m.users.at(key).queue.push_back({seq, m.users.at(*m.connections[conn].user_key).name});
    if (auto online = m.ConnectionOf(key)) m.connections[*online].handed.insert(seq);
  }
  void run(const Model& m, Sut& sut) const override {
    const int seq = m.next_seq;
    const std::size_t delivered_before = sut.TotalDelivered();
    Result<SendOk> result =
        sut.messenger->Send(sut.sessions[conn], {to, static_cast<std::uint64_t>(seq), Text(seq)});
    const ErrorCode expected = Expected(m);
    RC_ASSERT(result.status().code() == expected);
    if (expected != ErrorCode::kOk) {
      RC_ASSERT(sut.TotalDelivered() == delivered_before);
      return;
    }
    RC_ASSERT(result->message_id > sut.last_id);
    sut.last_id = result->message_id;
    sut.ids[seq] = result->message_id;
    const std::optional<int> online = m.ConnectionOf(CanonicalUsername(to));
    RC_ASSERT((result->delivery == Delivery::kDelivered) == online.has_value());
    if (online) {
      RC_ASSERT(sut.TotalDelivered() == delivered_before + 1);
      RC_ASSERT(sut.sinks[*online].delivered.back() == Text(seq));
    } else {
      RC_ASSERT(sut.TotalDelivered() == delivered_before);
    }
  }
  void show(std::ostream& os) const override { os << "Send(c" << conn << " -> " << to << ")"; }
};

struct Fetch : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  std::uint16_t limit = *rc::gen::inRange<std::uint16_t>(1, 5);
  std::vector<int> Batch(const Model& m) const {
    std::vector<int> batch;
    const auto& c = m.connections[conn];
    if (!c.user_key) return batch;
    for (const ModelMessage& message : m.users.at(*c.user_key).queue) {
      if (batch.size() == limit) break;
      if (!c.handed.count(message.seq)) batch.push_back(message.seq);
    }
    return batch;
  }
  void apply(Model& m) const override {
    for (int seq : Batch(m)) m.connections[conn].handed.insert(seq);
  }
  void run(const Model& m, Sut& sut) const override {
    Result<MessageBatch> result =
        sut.messenger->FetchUndelivered(sut.sessions[conn], limit, kDefaultMaxFrameSize);
    const auto& c = m.connections[conn];
    if (!c.user_key) {
      RC_ASSERT(result.status().code() == ErrorCode::kNotLoggedIn);
      return;
    }
    RC_ASSERT(result.ok());
    std::vector<std::string> expected, actual;
    for (int seq : Batch(m)) expected.push_back(Text(seq));
    for (const StoredMessage& message : result->messages) actual.push_back(message.text);
    RC_ASSERT(actual == expected);
    const std::size_t stored = m.users.at(*c.user_key).queue.size();
    RC_ASSERT(result->remaining == stored - c.handed.size() - expected.size());
  }
  void show(std::ostream& os) const override { os << "Fetch(c" << conn << ", " << limit << ")"; }
};

struct AckCommand : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  int pick = *rc::gen::inRange(0, 1000);  // Which stored message (of anyone) to ACK.
  std::optional<int> Picked(const Model& m) const {
    std::vector<int> all;
    for (const auto& [key, user] : m.users) {
      for (const ModelMessage& message : user.queue) all.push_back(message.seq);
    }
    if (all.empty()) return std::nullopt;
    return all[pick % all.size()];
  }
  void apply(Model& m) const override {
    auto& c = m.connections[conn];
    const std::optional<int> seq = Picked(m);
    if (!c.user_key || !seq) return;
    std::erase_if(m.users.at(*c.user_key).queue,
                  [&](const ModelMessage& message) { return message.seq == *seq; });
    c.handed.erase(*seq);
  }
  void run(const Model& m, Sut& sut) const override {
    std::vector<std::uint64_t> ids;
    if (const std::optional<int> seq = Picked(m)) ids.push_back(sut.ids.at(*seq));
    RC_ASSERT(CodeOf(sut.messenger->Ack(sut.sessions[conn], ids)) ==
              (m.connections[conn].user_key ? ErrorCode::kOk : ErrorCode::kNotLoggedIn));
  }
  void show(std::ostream& os) const override { os << "Ack(c" << conn << ", #" << pick << ")"; }
};

struct Delete : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  bool confirm = *rc::gen::arbitrary<bool>();
  void apply(Model& m) const override {
    auto& c = m.connections[conn];
    if (!c.user_key || !confirm) return;
    ModelUser& user = m.users.at(*c.user_key);
    user.live = false;
    user.queue.clear();
    c = {};
  }
  void run(const Model& m, Sut& sut) const override {
    Result<std::uint32_t> result = sut.messenger->DeleteAccount(sut.sessions[conn], confirm);
    const auto& c = m.connections[conn];
    if (!c.user_key) {
      RC_ASSERT(result.status().code() == ErrorCode::kNotLoggedIn);
      return;
    }
    RC_ASSERT(result.ok());
    RC_ASSERT(*result == m.users.at(*c.user_key).queue.size());
  }
  void show(std::ostream& os) const override {
    os << "Delete(c" << conn << (confirm ? ", confirmed" : "") << ")";
  }
};

struct List : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  std::string pattern = *rc::gen::elementOf(kPatterns);
  std::uint16_t limit = *rc::gen::inRange<std::uint16_t>(1, 4);
  void run(const Model& m, Sut& sut) const override {
    if (!m.connections[conn].user_key) {
      RC_ASSERT(
          sut.messenger->ListAccounts(sut.sessions[conn], {pattern, "", limit}).status().code() ==
          ErrorCode::kNotLoggedIn);
      return;
    }
    std::vector<std::string> expected;  // Model map order is key order.
    for (const auto& [key, user] : m.users) {
      if (user.live && fnmatch(pattern.c_str(), key.c_str(), FNM_NOESCAPE | FNM_CASEFOLD) == 0) {
        expected.push_back(user.name);
      }
    }
    std::vector<std::string> actual;
    std::string cursor;
    for (int page = 0; page < 10; ++page) {
      Result<AccountList> result =
          sut.messenger->ListAccounts(sut.sessions[conn], {pattern, cursor, limit});
      RC_ASSERT(result.ok());
      RC_ASSERT(result->usernames.size() <= limit);
      actual.insert(actual.end(), result->usernames.begin(), result->usernames.end());
      cursor = result->next_cursor;
      if (cursor.empty()) break;
    }
    RC_ASSERT(actual == expected);
  }
  void show(std::ostream& os) const override {
    os << "List(c" << conn << ", " << pattern << ", " << limit << ")";
  }
};

struct Disconnect : Command {
  int conn = *rc::gen::inRange(0, kConnections);
  void apply(Model& m) const override { m.connections[conn] = {}; }
  void run(const Model&, Sut& sut) const override {
    sut.messenger->Detach(sut.sessions[conn]);
    sut.sessions[conn] = sut.messenger->Attach(sut.sinks[conn]);
    RC_ASSERT(!sut.messenger->IsLoggedIn(sut.sessions[conn]));
  }
  void show(std::ostream& os) const override { os << "Disconnect(c" << conn << ")"; }
};

RC_GTEST_PROP(MessengerModelTest, RandomOperationSequencesMatchTheModel, ()) {
  Model model;
  for (const char* name : kInitialUsers) model.users[name] = ModelUser{name, true, {}};
  Sut sut;
  // Repeats weight the choice: mostly the commands that build up shared state.
  rc::state::check(
      model, sut,
      rc::state::gen::execOneOfWithArgs<Create, Create, LoginCommand, LoginCommand, LoginCommand,
                                        SendCommand, SendCommand, SendCommand, SendCommand, Fetch,
                                        Fetch, AckCommand, AckCommand, LogoutCommand, Delete, List,
                                        Disconnect>());
}

}  // namespace
}  // namespace messenger

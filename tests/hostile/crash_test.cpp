// The server killed at random moments while clients send, restarted on the same database each
// time; and stopped with SIGTERM in the middle of a load. Nothing answered may be lost or stored
// twice, and the database must stay sound.
//
// MESSENGER_CRASH_ROUNDS=N runs N kill-and-restart rounds instead of 5 (e.g. 30 by hand);
// MESSENGER_CRASH_SEED=S replays the kill moments of an earlier run (each run prints its seed).
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "hostile_support.h"

namespace messenger::test {
namespace {

constexpr int kDefaultCrashRounds = 5;
// SENDs a client keeps in flight (pipelined) so that several are unanswered at the kill.
constexpr std::size_t kPipelineDepth = 8;

int EnvNumber(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::atoi(value) : fallback;
}

// PRAGMA integrity_check of the database at `path`: "ok", or what SQLite reports.
std::string IntegrityCheck(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    const std::string error = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return "cannot open: " + error;
  }
  std::string result;
  char* error = nullptr;
  const int rc = sqlite3_exec(
      db, "PRAGMA integrity_check",
      [](void* out, int columns, char** values, char**) {
        auto* text = static_cast<std::string*>(out);
        for (int i = 0; i < columns; ++i) {
          if (!text->empty()) *text += "; ";
          *text += values[i] != nullptr ? values[i] : "NULL";
        }
        return 0;
      },
      &result, &error);
  if (rc != SQLITE_OK) result = "integrity_check failed: " + std::string(error ? error : "?");
  sqlite3_free(error);
  sqlite3_close(db);
  return result;
}

// One SEND a client made: to whom, what, and the message id of every SEND_OK it got (a retry
// of the same client_message_id must get the same one).
struct Attempt {
  std::string recipient;
  std::string text;
  std::set<std::uint64_t> answered_ids;
};

// Everything the senders did across all rounds, keyed by (sender, client_message_id).
class Ledger {
 public:
  void Record(const std::string& sender, std::uint64_t id, const std::string& recipient,
              const std::string& text) {
    std::lock_guard lock(mu_);
    Attempt& attempt = attempts_[{sender, id}];
    attempt.recipient = recipient;
    attempt.text = text;
  }
  void Answered(const std::string& sender, std::uint64_t id, std::uint64_t message_id) {
    std::lock_guard lock(mu_);
    attempts_[{sender, id}].answered_ids.insert(message_id);
  }
  std::map<std::pair<std::string, std::uint64_t>, Attempt> attempts() const {
    std::lock_guard lock(mu_);
    return attempts_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::uint64_t>, Attempt> attempts_;
};

// A sender's SENDs not yet answered, in order; they are retried, unchanged, in the next round.
struct SenderState {
  std::string name;
  std::uint64_t next_id = 1;
  std::deque<std::uint64_t> unanswered;
  std::optional<EndReason> ended;  // The SESSION_ENDED of its last connection, if one came.
};

// Runs one sender until its connection dies, or until `stop` once its retries are answered:
// first it retries what was left unanswered, then sends new messages, keeping kPipelineDepth in
// flight.
void RunSender(std::uint16_t port, SenderState& state, const std::vector<std::string>& recipients,
               Ledger& ledger, const std::atomic<bool>& stop, std::vector<std::string>& errors) {
  TestClient client;
  if (!client.Connect(port) || !client.Hello() || !client.Login(state.name)) {
    // Unless the server was killed before the login was answered (then `stop` follows soon),
    // that is a failure.
    for (const SteadyTime deadline = Now() + seconds(5); !stop.load() && Now() < deadline;) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (!stop.load()) errors.push_back(state.name + " could not log in");
    return;
  }
  const auto attempts = ledger.attempts();
  std::deque<std::uint64_t> to_retry = std::move(state.unanswered);
  state.unanswered.clear();
  std::deque<std::pair<std::uint32_t, std::uint64_t>> in_flight;  // request id, client id
  for (;;) {
    while (in_flight.size() < kPipelineDepth && (!to_retry.empty() || !stop.load())) {
      std::uint64_t id;
      std::string recipient, text;
      if (!to_retry.empty()) {
        id = to_retry.front();
        to_retry.pop_front();
        const Attempt& attempt = attempts.at({state.name, id});
        recipient = attempt.recipient;
        text = attempt.text;
      } else {
        id = state.next_id++;
        recipient = recipients[id % recipients.size()];
        text = state.name + " message " + std::to_string(id);
        ledger.Record(state.name, id, recipient, text);
      }
      in_flight.emplace_back(client.Send(Send{recipient, id, text}), id);
    }
    if (in_flight.empty()) break;
    const auto [request_id, id] = in_flight.front();
    const std::optional<Frame> reply = client.WaitResponse(request_id, seconds(5));
    if (!reply) break;  // The server is gone (or stopping): the rest stays unanswered.
    in_flight.pop_front();
    if (Is<SendOk>(reply)) {
      ledger.Answered(state.name, id, Get<SendOk>(reply).message_id);
    } else {
      errors.push_back(state.name + " SEND " + std::to_string(id) + ": " + Show(reply));
    }
  }
  for (const auto& [request_id, id] : in_flight) state.unanswered.push_back(id);
  for (std::uint64_t id : to_retry) state.unanswered.push_back(id);
  state.ended.reset();
  for (const Frame& push : client.pushes()) {
    if (const auto* ended = std::get_if<SessionEnded>(&push.message)) state.ended = ended->reason;
  }
}

// A recipient that is online during the rounds: it takes what is pushed or fetched and ACKs it.
// Messages whose ACK was answered OK must never be handed out again.
struct OnlineRecipient {
  std::string name;
  std::map<std::uint64_t, StoredMessage> received;  // Deduplicated by message id.
  std::set<std::uint64_t> acked;                    // ACK answered OK.
};

void RunRecipient(std::uint16_t port, OnlineRecipient& state, const std::atomic<bool>& stop) {
  TestClient client;
  if (!client.Connect(port) || !client.Hello() || !client.Login(state.name)) return;
  while (!stop.load() && !client.closed()) {
    std::vector<std::uint64_t> ids;
    const std::optional<Frame> batch = client.Call(FetchUndelivered{kMaxFetchLimit}, seconds(2));
    if (!Is<MessageBatch>(batch)) break;
    for (const StoredMessage& message : Get<MessageBatch>(batch).messages) {
      state.received.emplace(message.message_id, message);
      ids.push_back(message.message_id);
    }
    while (!client.pushes().empty()) {
      const Frame push = std::move(client.pushes().front());
      client.pushes().pop_front();
      if (const auto* deliver = std::get_if<Deliver>(&push.message)) {
        state.received.emplace(deliver->message.message_id, deliver->message);
        ids.push_back(deliver->message.message_id);
      }
    }
    if (ids.empty()) {
      // Nothing waiting: wait a little for a push (it stays queued for the next turn).
      if (std::optional<Frame> push = client.WaitPush(milliseconds(20))) {
        client.pushes().push_front(std::move(*push));
      }
      continue;
    }
    if (!Is<Ok>(client.Call(Ack{ids}, seconds(2)))) break;
    state.acked.insert(ids.begin(), ids.end());
  }
}

// Logs in as `name` and fetches (and ACKs) until nothing is left; returns the messages.
std::vector<StoredMessage> DrainMailbox(std::uint16_t port, const std::string& name) {
  std::vector<StoredMessage> all;
  TestClient client;
  EXPECT_TRUE(client.Connect(port));
  EXPECT_TRUE(client.Hello());
  EXPECT_TRUE(client.Login(name));
  for (int pages = 0; pages < 100000; ++pages) {
    const std::optional<Frame> batch = client.Call(FetchUndelivered{kMaxFetchLimit});
    if (!Is<MessageBatch>(batch)) {
      ADD_FAILURE() << name << " FETCH: " << Show(batch);
      break;
    }
    std::vector<std::uint64_t> ids;
    for (const StoredMessage& message : Get<MessageBatch>(batch).messages) {
      all.push_back(message);
      ids.push_back(message.message_id);
    }
    if (ids.empty()) break;
    EXPECT_TRUE(Is<Ok>(client.Call(Ack{ids})));
  }
  return all;
}

TEST_F(HostileTest, KilledAtRandomMomentsTheServerLosesNothingAnsweredAndStoresNothingTwice) {
  const int rounds = EnvNumber("MESSENGER_CRASH_ROUNDS", kDefaultCrashRounds);
  const auto seed = static_cast<std::uint32_t>(
      EnvNumber("MESSENGER_CRASH_SEED", static_cast<int>(std::random_device()() & 0x7FFFFFFF)));
  std::cerr << "crash loop: " << rounds << " rounds, MESSENGER_CRASH_SEED=" << seed << "\n";
  std::mt19937 random(seed);
  const std::vector<std::string> senders = {"sender0", "sender1", "sender2"};
  // online0 is logged in during the rounds; offline1 and offline2 only at the end.
  const std::vector<std::string> recipients = {"online0", "offline1", "offline2"};
  const std::filesystem::path db = dir_ / "messenger.db";
  // No rate limit and no queue cap in reach: the senders go as fast as the store lets them.
  const std::map<std::string, std::string> options = {{"send-rate", "0"},
                                                      {"max-queued", "10000000"}};

  {
    ServerProcess& setup = NewServer();
    ASSERT_TRUE(setup.Start(options));
    TestClient client;
    ASSERT_TRUE(client.Connect(setup.port()));
    ASSERT_TRUE(client.Hello());
    for (const std::string& name : senders) ASSERT_TRUE(client.Create(name));
    for (const std::string& name : recipients) ASSERT_TRUE(client.Create(name));
    EXPECT_EQ(setup.Terminate(), 0);
  }

  Ledger ledger;
  std::vector<SenderState> states(senders.size());
  for (std::size_t i = 0; i < senders.size(); ++i) states[i].name = senders[i];
  OnlineRecipient online{recipients[0], {}, {}};
  std::vector<std::string> errors[3];
  for (int round = 0; round < rounds; ++round) {
    ServerProcess& server = NewServer();
    ASSERT_TRUE(server.Start(options)) << "round " << round;
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < states.size(); ++i) {
      threads.emplace_back(
          [&, i] { RunSender(server.port(), states[i], recipients, ledger, stop, errors[i]); });
    }
    threads.emplace_back([&] { RunRecipient(server.port(), online, stop); });
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(150, 1200)(random)));
    server.Kill();
    stop = true;
    for (std::thread& thread : threads) thread.join();
    const std::string integrity = IntegrityCheck(db);
    ASSERT_EQ(integrity, "ok") << "after the kill of round " << round;
  }

  // A last, clean run: the senders retry whatever was left unanswered (so every SEND ends up
  // answered), then each recipient empties its mailbox.
  ServerProcess& last = NewServer();
  ASSERT_TRUE(last.Start(options));
  for (std::size_t i = 0; i < states.size(); ++i) {
    const std::atomic<bool> stop{true};  // Retries only, nothing new.
    RunSender(last.port(), states[i], recipients, ledger, stop, errors[i]);
    EXPECT_TRUE(states[i].unanswered.empty()) << states[i].name << " still has unanswered SENDs";
  }
  for (const auto& list : errors) {
    for (std::size_t i = 0; i < list.size() && i < 10; ++i) ADD_FAILURE() << list[i];
  }
  std::map<std::uint64_t, std::pair<std::string, StoredMessage>> delivered;  // id -> recipient
  std::set<std::uint64_t> redelivered_after_ack;
  for (const auto& [id, message] : online.received)
    delivered.emplace(id, std::pair<std::string, StoredMessage>{online.name, message});
  for (const std::string& name : recipients) {
    for (const StoredMessage& message : DrainMailbox(last.port(), name)) {
      if (name == online.name && online.acked.count(message.message_id) != 0) {
        redelivered_after_ack.insert(message.message_id);
      }
      delivered.emplace(message.message_id, std::pair<std::string, StoredMessage>{name, message});
    }
  }
  EXPECT_TRUE(redelivered_after_ack.empty())
      << redelivered_after_ack.size() << " acknowledged messages were handed out again";

  // Every SEND was answered with one message id (a retry got the original one back), that
  // message reached its recipient with its text, and nothing else was delivered.
  const auto attempts = ledger.attempts();
  std::set<std::uint64_t> expected_ids;
  int sends = 0;
  for (const auto& [key, attempt] : attempts) {
    ++sends;
    const std::string who = key.first + " #" + std::to_string(key.second);
    ASSERT_EQ(attempt.answered_ids.size(), 1u)
        << who << " was answered with " << attempt.answered_ids.size() << " message ids";
    const std::uint64_t id = *attempt.answered_ids.begin();
    expected_ids.insert(id);
    const auto it = delivered.find(id);
    ASSERT_NE(it, delivered.end()) << who << " (message " << id << ") was never delivered";
    EXPECT_EQ(it->second.first, attempt.recipient) << who;
    EXPECT_EQ(it->second.second.sender, key.first) << who;
    EXPECT_EQ(it->second.second.text, attempt.text) << who;
  }
  for (const auto& [id, entry] : delivered) {
    EXPECT_EQ(expected_ids.count(id), 1u)
        << "message " << id << " ('" << entry.second.text << "') was delivered but never answered";
  }
  std::cerr << "crash loop: " << sends << " SENDs, " << delivered.size() << " messages delivered, "
            << online.acked.size() << " acknowledged during the rounds\n";
  EXPECT_GT(sends, rounds * 10) << "too little traffic to mean anything";

  EXPECT_EQ(last.Terminate(), 0);
  EXPECT_EQ(IntegrityCheck(db), "ok");
}

// SIGTERM while clients send as fast as they can: the server ends every session, commits what
// it answered, and exits 0 within 10 s. Every answered SEND is there after a restart.
TEST_F(HostileTest, SigtermUnderLoadDrainsCommitsAndExitsCleanly) {
  const std::vector<std::string> senders = {"sender0", "sender1", "sender2", "sender3"};
  const std::vector<std::string> recipients = {"offline0", "offline1"};
  // No rate limit and no queue cap in reach: the senders go as fast as the store lets them.
  const std::map<std::string, std::string> options = {{"send-rate", "0"},
                                                      {"max-queued", "10000000"}};
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start(options));
  {
    TestClient client;
    ASSERT_TRUE(client.Connect(server.port()));
    ASSERT_TRUE(client.Hello());
    for (const std::string& name : senders) ASSERT_TRUE(client.Create(name));
    for (const std::string& name : recipients) ASSERT_TRUE(client.Create(name));
  }

  Ledger ledger;
  std::vector<SenderState> states(senders.size());
  std::vector<std::string> errors[4];
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < senders.size(); ++i) {
    states[i].name = senders[i];
    threads.emplace_back(
        [&, i] { RunSender(server.port(), states[i], recipients, ledger, stop, errors[i]); });
  }
  std::this_thread::sleep_for(milliseconds(1500));
  const SteadyTime signalled = Now();
  const int code = server.Terminate();
  const auto took = std::chrono::duration_cast<milliseconds>(Now() - signalled);
  stop = true;
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(code, 0);
  EXPECT_LT(took, seconds(10));
  for (const SenderState& state : states) {
    EXPECT_EQ(state.ended, EndReason::kServerShutdown) << state.name << " was not told";
  }
  std::cerr << "SIGTERM under load: exited " << code << " after " << took.count() << " ms\n";
  for (const auto& list : errors) {
    for (std::size_t i = 0; i < list.size() && i < 10; ++i) ADD_FAILURE() << list[i];
  }
  EXPECT_NE(server.log().find("stopped"), std::string::npos);
  EXPECT_EQ(IntegrityCheck(dir_ / "messenger.db"), "ok");

  // Everything answered is stored; what was in flight may or may not be (the protocol lets a
  // client retry it safely), but nothing else.
  ServerProcess& again = NewServer();
  ASSERT_TRUE(again.Start(options));
  std::set<std::uint64_t> stored;
  for (const std::string& name : recipients) {
    for (const StoredMessage& message : DrainMailbox(again.port(), name)) {
      stored.insert(message.message_id);
    }
  }
  std::size_t answered = 0;
  std::size_t unanswered = 0;
  for (const auto& [key, attempt] : ledger.attempts()) {
    if (attempt.answered_ids.empty()) {
      ++unanswered;
      continue;
    }
    ++answered;
    EXPECT_EQ(stored.count(*attempt.answered_ids.begin()), 1u)
        << key.first << " #" << key.second << " was answered but is not stored";
  }
  EXPECT_GT(answered, 0u);
  EXPECT_LE(stored.size(), answered + unanswered);
  EXPECT_EQ(again.Terminate(), 0);
}

// SIGTERM right after a storm of short connections: the threads that served them must all
// notice the stop at once, not after idling out (the server would then take a minute to exit).
TEST_F(HostileTest, SigtermRightAfterAConnectionStormExitsPromptly) {
  constexpr int kRounds = 3;
  constexpr int kThreads = 8;
  for (int round = 0; round < kRounds; ++round) {
    ServerProcess& server = NewServer();
    ASSERT_TRUE(server.Start());
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        while (!stop.load()) {
          RawConnection connection;
          if (connection.Connect(server.port())) {
            (void)connection.SendFrame(Frame{1, Ping{1}});  // Before HELLO: fatal, closed.
            (void)connection.ReadUntilClosed(seconds(1));
          }
        }
      });
    }
    std::this_thread::sleep_for(milliseconds(700));
    stop = true;
    for (std::thread& thread : threads) thread.join();
    const SteadyTime signalled = Now();
    EXPECT_EQ(server.Terminate(), 0) << "round " << round;
    const auto took = std::chrono::duration_cast<milliseconds>(Now() - signalled);
    EXPECT_LT(took, seconds(3)) << "round " << round << ": the server took " << took.count()
                                << " ms to exit";
  }
}

}  // namespace
}  // namespace messenger::test

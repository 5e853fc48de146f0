// Writes the seed corpus of fuzz_session: realistic scripted sessions in its input format
// (session_input.h), each exercising one area of the protocol, so the fuzzer mutates from deep
// states (logged in, messages queued, a takeover pending) instead of discovering them.
//
//   make_session_corpus OUTPUT_DIR      writes OUTPUT_DIR/seed-<name> for every scenario
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "session_input.h"

namespace messenger::fuzz_session {
namespace {

// Configuration bytes (see MakeConfig in fuzz_session.cpp).
constexpr std::uint8_t kDefaults = 0;
constexpr std::uint8_t kSmallFrames = 1 << kConfigFrameSizeShift;  // 8 KiB frame limit.
constexpr std::uint8_t kQueueCapTwo = 2 << kConfigQueueShift;
constexpr std::uint8_t kRateOnePerSecond = 2 << kConfigRateShift;
constexpr std::uint8_t kShortTimeouts = 1 << kConfigTimeoutShift;  // Idle 5 s, login 2 s.

// Builds one script: frames each client sends (cut into data steps) and control steps.
class Script {
 public:
  explicit Script(std::uint8_t config) { bytes_.push_back(config); }

  // Client `c` sends `message` as a request with its next request id.
  Script& Send(int c, Message message) { return SendFrame(c, {++next_id_[c], std::move(message)}); }

  Script& SendFrame(int c, const Frame& frame) {
    Bytes encoded;
    if (!EncodeFrame(frame, encoded).ok()) {
      std::cerr << "make_session_corpus: cannot encode " << Describe(frame) << "\n";
      std::exit(1);
    }
    return Raw(c, encoded);
  }

  // Client `c` sends `bytes`, in data steps of at most 255 bytes.
  Script& Raw(int c, const Bytes& bytes) {
    for (std::size_t pos = 0; pos < bytes.size(); pos += 255) {
      const std::size_t n = std::min<std::size_t>(255, bytes.size() - pos);
      bytes_.push_back(static_cast<std::uint8_t>(c));
      bytes_.push_back(static_cast<std::uint8_t>(n));
      bytes_.insert(bytes_.end(), bytes.begin() + static_cast<std::ptrdiff_t>(pos),
                    bytes.begin() + static_cast<std::ptrdiff_t>(pos + n));
    }
    return *this;
  }

  Script& Control(fuzz_session::Control control, std::uint8_t arg) {
    bytes_.push_back(ControlByte(control));
    bytes_.push_back(arg);
    return *this;
  }

  // HELLO, CREATE_ACCOUNT and LOGIN on client `c`.
  Script& SignUp(int c, const std::string& name, const std::string& password) {
    Send(c, Hello{kProtocolVersion});
    Send(c, CreateAccount{name, password});
    return Send(c, Login{name, password});
  }

  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
  std::uint32_t next_id_[kClients] = {};
};

const std::string kAlicePassword = "correct horse";
const std::string kBobPassword = "hunter2hunter2";
const std::string kCarolPassword = "carol's password";

std::vector<std::pair<std::string, Script>> Scenarios() {
  std::vector<std::pair<std::string, Script>> all;
  const auto add = [&all](std::string name, Script script) {
    all.emplace_back(std::move(name), std::move(script));
  };

  {  // Two users chat while both are online: push, ACK, reply, fetch, list, ping, logout.
    Script s(kDefaults);
    s.SignUp(0, "Alice", kAlicePassword).SignUp(1, "bob", kBobPassword);
    s.Send(0, messenger::Send{"Bob", 1, "hi bob"});
    s.Send(1, Ack{{1}});
    s.Send(1, messenger::Send{"alice", 1, "Grüße aus Köln 👋"});
    s.Send(0, FetchUndelivered{50});
    s.Send(0, Ack{{2}});
    s.Send(1, ListAccounts{"", "", 50});
    s.Send(0, Ping{42});
    s.Send(0, Logout{}).Send(1, Logout{});
    add("chat", s);
  }
  {  // Offline delivery: queued while bob is away, counted at login, fetched in pages, ACKed.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword);
    s.Send(1, Hello{kProtocolVersion}).Send(1, CreateAccount{"bob", kBobPassword});
    for (std::uint64_t i = 1; i <= 4; ++i) {
      s.Send(0, messenger::Send{"bob", i, "message " + std::to_string(i)});
    }
    s.Send(1, Login{"BOB", kBobPassword});
    s.Send(1, FetchUndelivered{2}).Send(1, FetchUndelivered{2}).Send(1, FetchUndelivered{2});
    s.Send(1, Ack{{1, 2, 3, 4}});
    s.Send(1, FetchUndelivered{50});
    add("offline-delivery", s);
  }
  {  // Unacknowledged messages come back in the next session.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword).SignUp(1, "bob", kBobPassword);
    s.Send(0, messenger::Send{"bob", 7, "pushed, never acked"});
    s.Control(Control::kDisconnect, 1);
    s.Send(1, Hello{kProtocolVersion}).Send(1, Login{"bob", kBobPassword});
    s.Send(1, FetchUndelivered{10}).Send(1, Ack{{1}});
    add("redelivery", s);
  }
  {  // A second LOGIN of alice takes over; the old connection's in-flight SEND is refused.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword).SignUp(1, "bob", kBobPassword);
    s.Send(1, messenger::Send{"alice", 1, "to the first alice"});
    s.Send(2, Hello{kProtocolVersion}).Send(2, Login{"ALICE", kAlicePassword});
    s.Send(0, messenger::Send{"bob", 2, "sent after the takeover"});
    s.Send(2, FetchUndelivered{50});
    s.Send(1, messenger::Send{"alice", 3, "to the second alice"});
    add("takeover", s);
  }
  {  // Another user's password, another user's message ids, another user's name as sender.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword).SignUp(1, "bob", kBobPassword);
    s.Send(0, Logout{});
    s.Send(2, Hello{kProtocolVersion}).Send(2, CreateAccount{"mallory", "mallory's pass"});
    s.Send(2, Login{"bob", kAlicePassword}).Send(2, Login{"mallory", "mallory's pass"});
    s.Send(1, messenger::Send{"alice", 1, "for alice only"});
    s.Send(2, Ack{{1}}).Send(2, FetchUndelivered{50});
    s.Send(2, messenger::Send{"alice", 1, "for alice only"});
    s.Send(0, Login{"alice", kAlicePassword}).Send(0, FetchUndelivered{50});
    add("impersonation", s);
  }
  {  // Idempotent SEND: a retry is answered again; another text under the same id is refused;
     // after the 24 h window the id is free again.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword);
    s.Send(1, Hello{kProtocolVersion}).Send(1, CreateAccount{"bob", kBobPassword});
    s.Send(0, messenger::Send{"bob", 99, "once"});
    s.Send(0, messenger::Send{"bob", 99, "once"});
    s.Send(0, messenger::Send{"bob", 99, "another text"});
    s.Send(0, messenger::Send{"alice", 99, "to myself"});
    s.Control(Control::kAdvanceTenMinutes, 145);  // 24 h 10 min: both connections timed out.
    s.Send(0, Hello{kProtocolVersion}).Send(0, Login{"alice", kAlicePassword});
    s.Send(0, messenger::Send{"bob", 99, "another text"});
    s.Send(0, messenger::Send{"bob", 99, "another text"});
    add("dedupe", s);
  }
  {  // Deletion: confirm first, then delete; the name is retired; messages already sent stay.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword);
    s.Send(1, Hello{kProtocolVersion}).Send(1, CreateAccount{"bob", kBobPassword});
    s.Send(0, messenger::Send{"bob", 1, "one"}).Send(0, messenger::Send{"bob", 2, "two"});
    s.Send(1, Login{"bob", kBobPassword});
    s.Send(1, messenger::Send{"alice", 1, "bye"});
    s.Send(1, DeleteAccount{false}).Send(1, DeleteAccount{true});
    s.Send(1, CreateAccount{"Bob", kBobPassword}).Send(1, Login{"bob", kBobPassword});
    s.Send(0, messenger::Send{"bob", 3, "three"});
    s.Send(0, FetchUndelivered{50});
    s.Send(0, ListAccounts{"*", "", 10});
    add("delete-account", s);
  }
  {  // Password guessing: five failures throttle the name, the owner too, then it expires.
    Script s(kDefaults);
    s.Send(0, Hello{kProtocolVersion}).Send(0, CreateAccount{"alice", kAlicePassword});
    s.Send(1, Hello{kProtocolVersion}).Send(1, CreateAccount{"bob", kBobPassword});
    s.Send(2, Hello{kProtocolVersion});
    for (int i = 0; i < 5; ++i) s.Send(2, Login{"alice", "guess " + std::to_string(i)});
    s.Send(0, Login{"alice", kAlicePassword});
    s.Send(1, Login{"bob", kBobPassword});
    s.Control(Control::kAdvanceSeconds, 61);  // The throttle and the login timeout expire.
    s.Send(0, Hello{kProtocolVersion}).Send(0, Login{"alice", kAlicePassword});
    add("login-throttle", s);
  }
  {  // Timeouts: a connection that never logs in, one that goes idle, one kept alive by PING.
    Script s(kShortTimeouts);
    s.Send(0, Hello{kProtocolVersion});
    s.SignUp(1, "alice", kAlicePassword);
    s.Control(Control::kAdvanceSeconds, 3);
    s.Send(1, Ping{1});
    s.Control(Control::kAdvanceSeconds, 4);
    s.Send(1, Ping{2});
    s.Control(Control::kAdvanceSeconds, 6);
    s.Send(1, Hello{kProtocolVersion}).Send(1, Login{"alice", kAlicePassword});
    add("timeouts", s);
  }
  {  // Small frames, a queue cap of 2, one SEND per second: batches cut by size, QUEUE_FULL,
     // RATE_LIMITED, the largest text.
    Script s(kSmallFrames | kQueueCapTwo | kRateOnePerSecond);
    s.SignUp(0, "alice", kAlicePassword);
    s.Send(1, Hello{kProtocolVersion}).Send(1, CreateAccount{"bob", kBobPassword});
    const std::string longest(kMaxTextBytes, 'x');
    s.Send(0, messenger::Send{"bob", 1, longest});
    s.Send(0, messenger::Send{"bob", 2, longest});
    s.Control(Control::kAdvanceSeconds, 2);
    s.Send(0, messenger::Send{"bob", 2, longest});
    s.Control(Control::kAdvanceSeconds, 2);
    s.Send(0, messenger::Send{"bob", 3, longest});
    s.Send(1, Login{"bob", kBobPassword});
    s.Send(1, FetchUndelivered{50}).Send(1, FetchUndelivered{50});
    s.Send(1, Ack{{1, 2}});
    s.Send(0, messenger::Send{"bob", 3, std::string(kMaxTextBytes + 1, 'y')});
    add("limits", s);
  }
  {  // Frame limits: over 1024 bytes before login is fatal; allowed after; ACK of 1001 ids.
    Script s(kDefaults);
    s.Send(0, Hello{kProtocolVersion});
    s.Send(0, CreateAccount{"alice", std::string(kMaxPasswordBytes, 'p')});
    s.Send(0, CreateAccount{"alice", kAlicePassword});
    s.Send(0, messenger::Send{"nobody", 1, std::string(2000, 'z')});
    s.SignUp(1, "bob", kBobPassword);
    s.Send(1, messenger::Send{"alice", 1, std::string(2000, 'z')});
    std::vector<std::uint64_t> ids(kMaxAckIds + 1);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i + 1;
    s.Send(1, Ack{ids});
    ids.pop_back();
    s.Send(1, Ack{ids});
    s.Send(1, Logout{});
    s.Send(1, Ping{3});
    s.Send(1, messenger::Send{"alice", 2, std::string(2000, 'z')});
    add("frame-limits", s);
  }
  {  // Protocol errors: request before HELLO, wrong version, bad bodies, a second HELLO,
     // responses and pushes from a client, request id 0, a malformed length.
    Script s(kDefaults);
    s.Send(0, Ping{1});
    s.Send(1, Hello{2});
    s.Send(2, Hello{kProtocolVersion});
    s.Send(2, Hello{kProtocolVersion});
    s.Raw(2, {0, 0, 0, 5, 0x3E, 0, 0, 0, 9});                           // Unknown request type.
    s.Raw(2, {0, 0, 0, 6, 0x0A, 0, 0, 0, 10, 1});                       // PING with a short body.
    s.Raw(2, {0, 0, 0, 10, 0x02, 0, 0, 0, 11, 0, 1, 0xFF, 0, 0});       // Invalid UTF-8 name.
    s.Raw(2, {0, 0, 0, 13, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});  // Request id 0.
    s.SendFrame(2, {12, Ok{}});
    s.SendFrame(2, {0, SessionEnded{EndReason::kTakeover, "no"}});
    s.Send(2, Logout{}).Send(2, FetchUndelivered{0}).Send(2, FetchUndelivered{1});
    s.Send(2, ListAccounts{"[a-", "", 1});
    s.Raw(2, {0, 0, 0, 3});  // Length below the header size: fatal.
    s.Send(2, Hello{kProtocolVersion});
    add("protocol-errors", s);
  }
  {  // Listing: patterns, case-insensitivity, paging by cursor, a cursor the server never issued.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword);
    for (const char* name : {"Anna", "bob", "carol", "Dave", "jim.bobson", "a-1", "zed_9"}) {
      s.Send(0, CreateAccount{name, "a long enough password"});
    }
    s.Send(0, ListAccounts{"a*", "", 2});
    s.Send(0, ListAccounts{"a*", "anna", 2});
    s.Send(0, ListAccounts{"*BOB*", "", 10});
    s.Send(0, ListAccounts{"[!a-m]*", "", 500});
    s.Send(0, ListAccounts{"???", "", 1000});
    s.Send(0, ListAccounts{"[]x]", "", 1});
    s.Send(0, ListAccounts{"*", "Not A Cursor", 5});
    s.Send(0, ListAccounts{"*", "", 0});
    add("list-accounts", s);
  }
  {  // Failures inside the server: a store write, a store read, a password hash.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword);
    s.Send(1, Hello{kProtocolVersion});
    s.Control(Control::kFailNextHash, 0).Send(1, CreateAccount{"bob", kBobPassword});
    s.Send(1, CreateAccount{"bob", kBobPassword}).Send(1, Login{"bob", kBobPassword});
    s.Control(Control::kFailStoreCall, 0).Send(0, messenger::Send{"bob", 1, "maybe"});
    s.Send(0, messenger::Send{"bob", 1, "maybe"});
    s.Control(Control::kFailStoreCall, 0).Send(1, Ack{{1}});
    s.Control(Control::kFailStoreCall, 0).Send(1, ListAccounts{"", "", 5});
    s.Send(1, Ack{{1}});
    add("injected-failures", s);
  }
  {  // A store failure inside LOGIN (counting the unread messages): the LOGIN must have had no
     // effect, so the older session of the user goes on and the connection stays logged out.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword).SignUp(2, "bob", kBobPassword);
    s.Send(0, messenger::Send{"bob", 1, "queued for bob"});
    s.Send(1, Hello{kProtocolVersion});
    s.Control(Control::kFailStoreCall, 1).Send(1, Login{"bob", kBobPassword});
    s.Send(1, messenger::Send{"alice", 1, "sent as bob?"});
    s.Send(2, FetchUndelivered{50});
    add("login-store-failure", s);
  }
  {  // A store failure inside FETCH_UNDELIVERED (counting what remains): the FETCH must have had
     // no effect, so the next one returns the message.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword);
    s.Send(1, Hello{kProtocolVersion}).Send(1, CreateAccount{"bob", kBobPassword});
    s.Send(0, messenger::Send{"bob", 1, "hello bob"});
    s.Send(1, Login{"bob", kBobPassword});
    s.Control(Control::kFailStoreCall, 1).Send(1, FetchUndelivered{50});
    s.Send(1, FetchUndelivered{50});
    add("fetch-store-failure", s);
  }
  {  // Pipelining: several requests in one step, a frame split across steps.
    Script s(kDefaults);
    Bytes pipelined;
    std::uint32_t id = 0;
    for (const Message& m :
         std::vector<Message>{Hello{kProtocolVersion}, CreateAccount{"alice", kAlicePassword},
                              Login{"alice", kAlicePassword}, Ping{5}, ListAccounts{"", "", 3}}) {
      EncodeFrame({++id, m}, pipelined);
    }
    s.Raw(0, pipelined);
    Bytes split;
    EncodeFrame({++id, Ping{6}}, split);
    s.Raw(0, Bytes(split.begin(), split.begin() + 3));
    s.Raw(0, Bytes(split.begin() + 3, split.end()));
    add("pipelining", s);
  }
  {  // Shutdown with sessions in every state.
    Script s(kDefaults);
    s.SignUp(0, "alice", kAlicePassword);
    s.Send(1, Hello{kProtocolVersion});
    s.Raw(2, {0, 0});
    s.Control(Control::kShutdown, 0);
    add("shutdown", s);
  }
  return all;
}

}  // namespace
}  // namespace messenger::fuzz_session

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_session_corpus OUTPUT_DIR\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  for (const auto& [name, script] : messenger::fuzz_session::Scenarios()) {
    const std::filesystem::path path = dir / ("seed-" + name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(script.bytes().data()),
              static_cast<std::streamsize>(script.bytes().size()));
    if (!out) {
      std::cerr << "make_session_corpus: cannot write " << path << "\n";
      return 1;
    }
    std::cout << path.string() << " (" << script.bytes().size() << " bytes)\n";
  }
  return 0;
}

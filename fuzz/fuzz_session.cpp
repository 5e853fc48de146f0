// Fuzzes the server's session logic: several clients, interleaved, over one Messenger.
//
// The input (session_input.h) is a configuration byte and a script of steps: bytes one of the
// clients sends, clock moves, dropped connections, injected store and hashing failures, shutdown.
// Everything runs in-process on this thread: WireSession objects over one Messenger with the
// in-memory store, a plaintext password hasher and a fake clock. Bytes reach a session the way
// the TCP front door hands them over, one frame at a time; pushes are captured from the sinks and
// encoded the way the front door encodes them.
//
// A model of the protocol follows every step (accounts, passwords, who is logged in where, every
// accepted message and whether it is still stored, what each session was handed). Invariants,
// each aborting on violation so libFuzzer keeps the input:
//   - every byte the server writes to a client is a whole frame that decodes within the frame
//     limit in force (1024 bytes up to HELLO_OK), with the request id rules of the spec;
//   - each complete request frame gets exactly one reply, echoing its request id, of the response
//     type or an ERROR code that docs/PROTOCOL.md allows for it in the session's state; framing
//     and handshake errors close the connection, nothing else does;
//   - no client acts as another user: LOGIN_OK only for the right password of a live account;
//     SEND_OK only on a logged-in client, and the message carries that user's name; ACK and
//     DELETE_ACCOUNT touch only the caller's messages and account;
//   - no message reaches anyone but its recipient, and none is handed twice to one session;
//     LOGIN_OK, CONFIRM_REQUIRED and MESSAGE_BATCH counts match what is stored;
//   - a SEND retried within the dedupe window is answered with the original SEND_OK;
//   - a takeover ends exactly the older session of that user; timeouts end a session exactly
//     when they are due; an ERROR INTERNAL appears only when a failure was injected, and the
//     request then had no effect.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/rules.h"
#include "messenger/codec/status.h"
#include "messenger/server/clock.h"
#include "messenger/server/glob.h"
#include "messenger/server/messenger.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/store.h"
#include "messenger/server/wire_session.h"
#include "session_input.h"

namespace messenger {
namespace {

using namespace fuzz_session;
using ByteSpan = std::span<const std::uint8_t>;

constexpr std::uint64_t kStartSteadyMs = 1000;
constexpr std::uint64_t kWallClockOffsetMs = 1'700'000'000'000;
// Bytes of a MESSAGE_BATCH frame besides its messages (header, list count, `remaining`), and of
// one message besides its strings (id, timestamp, two length prefixes).
constexpr std::size_t kBatchOverhead = kFrameHeaderSize + 2 + 4;
constexpr std::size_t kBatchMessageOverhead = 8 + 8 + 2 + 2;

// The step being run, for violation reports (strings are only built when one is reported).
struct Context {
  int step = 0;
  std::size_t byte = 0;  // Offset of the step in the input.
  std::uint8_t head = 0;
  std::uint8_t arg = 0;
  const DecodeResult* request = nullptr;  // The request whose reply is being checked.
  const Frame* reply = nullptr;
};
Context g_context;
// FUZZ_SESSION_TRACE=1 prints every request and reply: to see what a reproducer does.
const bool g_trace = std::getenv("FUZZ_SESSION_TRACE") != nullptr;

std::string ShowResult(const DecodeResult& result) {
  if (result.status.ok()) return Describe(Frame{result.request_id, result.message});
  return "undecodable frame #" + std::to_string(result.request_id) + " (" +
         result.status.ToString() + ")";
}

[[noreturn]] void Violation(const char* invariant, const std::string& detail) {
  std::fprintf(stderr,
               "fuzz_session: invariant violated: %s\n  %s\n  during step %d (input byte %zu: "
               "%u %u)\n",
               invariant, detail.c_str(), g_context.step, g_context.byte, g_context.head,
               g_context.arg);
  if (g_context.request != nullptr) {
    std::fprintf(stderr, "  request: %s\n", ShowResult(*g_context.request).c_str());
  }
  if (g_context.reply != nullptr) {
    std::fprintf(stderr, "  reply: %s\n", Describe(*g_context.reply).c_str());
  }
  std::abort();
}

// Aborts with `invariant` unless `condition`. A macro so that `detail` is only built for a
// report: building it on every check would slow the fuzzer down several times.
#define FUZZ_REQUIRE(condition, invariant, detail)      \
  do {                                                  \
    if (!(condition)) Violation((invariant), (detail)); \
  } while (false)

// REQUIRES: g_trace (callers test it first, so that no line is built otherwise).
void Trace(int c, const std::string& line) {
  std::fprintf(stderr, "  [client %d] %s\n", c, line.c_str());
}

std::uint32_t ReadU32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

std::string Show(const Frame& frame) { return Describe(frame); }

std::string Name(ErrorCode code) { return std::string(ErrorCodeName(code)); }

// ---- The fakes around the core ----

class FuzzClock final : public Clock {
 public:
  std::uint64_t NowMs() override { return kWallClockOffsetMs + now_; }
  std::uint64_t SteadyMs() override { return now_; }
  std::uint64_t now() const { return now_; }
  void Advance(std::uint64_t ms) { now_ += ms; }

 private:
  std::uint64_t now_ = kStartSteadyMs;
};

// Counts the failures it was told to inject, so an ERROR INTERNAL can be traced to one.
struct Faults {
  int store_countdown = 0;  // The store call that brings this to 0 fails.
  bool fail_next_hash = false;
  int fired = 0;
};

// A "hash" that is the password in clear: the fuzzer needs speed and determinism, not secrecy.
class PlainHasher final : public PasswordHasher {
 public:
  explicit PlainHasher(Faults& faults) : faults_(faults) {}
  Result<std::string> Hash(std::string_view password) override {
    if (faults_.fail_next_hash) {
      faults_.fail_next_hash = false;
      ++faults_.fired;
      return Status(ErrorCode::kInternal, "injected hashing failure");
    }
    return "plain$" + std::string(password);
  }
  bool Verify(std::string_view hash, std::string_view password) override {
    return hash == "plain$" + std::string(password);
  }

 private:
  Faults& faults_;
};

// The in-memory store, with one chosen call failing as a real database might.
class FaultyStore final : public Store {
 public:
  explicit FaultyStore(Faults& faults) : faults_(faults), store_(MakeMemoryStore()) {}

  Status CreateAccount(const AccountRecord& account) override {
    if (Fail()) return Injected();
    return store_->CreateAccount(account);
  }
  Result<std::optional<AccountRecord>> FindAccount(std::string_view key) override {
    if (Fail()) return Injected();
    return store_->FindAccount(key);
  }
  Result<std::vector<AccountRecord>> ScanAccounts(std::string_view after_key,
                                                  std::size_t max) override {
    if (Fail()) return Injected();
    return store_->ScanAccounts(after_key, max);
  }
  Result<std::uint32_t> DeleteAccount(std::string_view key) override {
    if (Fail()) return Injected();
    return store_->DeleteAccount(key);
  }
  Result<AppendOutcome> Append(const NewMessage& message, const AppendPolicy& policy) override {
    if (Fail()) return Injected();
    return store_->Append(message, policy);
  }
  Result<std::vector<StoredMessage>> ListMessages(std::string_view recipient_key,
                                                  std::uint64_t after_id,
                                                  std::size_t max) override {
    if (Fail()) return Injected();
    return store_->ListMessages(recipient_key, after_id, max);
  }
  Result<std::uint32_t> CountMessages(std::string_view recipient_key) override {
    if (Fail()) return Injected();
    return store_->CountMessages(recipient_key);
  }
  Status Ack(std::string_view recipient_key, std::span<const std::uint64_t> ids) override {
    if (Fail()) return Injected();
    return store_->Ack(recipient_key, ids);
  }

 private:
  bool Fail() {
    if (faults_.store_countdown == 0 || --faults_.store_countdown != 0) return false;
    ++faults_.fired;
    return true;
  }
  static Status Injected() { return Status(ErrorCode::kInternal, "injected store failure"); }

  Faults& faults_;
  std::unique_ptr<Store> store_;
};

// What the core pushed to one client, in order.
struct PushEvent {
  int client = 0;
  bool end = false;  // SESSION_ENDED, else DELIVER.
  EndReason reason = EndReason::kTakeover;
  std::string end_message;
  StoredMessage message;
};

class CapturingSink final : public SessionSink {
 public:
  CapturingSink(std::vector<PushEvent>& events, int client) : events_(events), client_(client) {}
  void Deliver(const StoredMessage& message) override {
    events_.push_back({client_, false, EndReason::kTakeover, "", message});
  }
  void End(EndReason reason, const std::string& message) override {
    events_.push_back({client_, true, reason, message, {}});
  }

 private:
  std::vector<PushEvent>& events_;
  int client_;
};

// ---- The model ----

struct Account {
  std::string name;  // As registered.
  std::string password;
  bool live = true;
};

struct SentMessage {
  std::string sender_key;
  std::string sender_name;
  std::string recipient_key;
  std::uint64_t client_message_id = 0;
  std::string text;
  SendOk ok;
  bool stored = true;  // False once ACKed by its recipient or destroyed with the account.
};

// One client's connection, as the front door and the model see it.
struct Connection {
  std::unique_ptr<WireSession> session;  // Null: no connection.
  // SESSION_ENDED was queued by the core: the front door hands the session at most the frame it
  // is in the middle of, then closes.
  bool ending = false;

  // Where the client's byte stream is, frame-wise (as the front door's FrameTap follows it).
  std::uint8_t prefix[kLengthPrefixSize] = {};
  std::size_t prefix_filled = 0;
  std::uint32_t frame_size = 0;
  Bytes frame;  // Header and body bytes of the frame being received.

  // The server's output to this client, decoded as a client would.
  FrameDecoder output{kMaxPreloginFrameSize};

  bool hello_done = false;
  bool wire_logged_in = false;      // The session's own view: decides the frame limit.
  std::optional<std::string> user;  // The core's view: whose messages this connection gets.
  std::set<std::uint64_t> handed;   // Messages pushed or fetched in this login, not ACKed.
  std::uint64_t last_frame_ms = 0;
  std::uint64_t logged_out_since_ms = 0;
};

struct Config {
  WireOptions wire;
  MessengerOptions messenger;
};

Config MakeConfig(std::uint8_t byte) {
  Config config;
  const auto field = [byte](int shift, int bits) { return (byte >> shift) & ((1 << bits) - 1); };
  config.wire.max_frame_size =
      field(kConfigFrameSizeShift, 1) == 0 ? kDefaultMaxFrameSize : kMinMaxFrameSize;
  static constexpr std::uint32_t kQueueCaps[] = {10000, 1, 2, 5};
  config.messenger.max_queued_per_user = kQueueCaps[field(kConfigQueueShift, 2)];
  static constexpr std::uint32_t kRates[][2] = {{50, 100}, {0, 100}, {1, 1}, {2, 5}};
  config.messenger.send_rate_per_second = kRates[field(kConfigRateShift, 2)][0];
  config.messenger.send_burst = kRates[field(kConfigRateShift, 2)][1];
  static constexpr std::uint64_t kTimeoutsMs[][2] = {
      {300'000, 30'000}, {5'000, 2'000}, {60'000, 120'000}, {1'000, 1'000}};
  config.wire.idle_timeout_ms = kTimeoutsMs[field(kConfigTimeoutShift, 2)][0];
  config.wire.login_timeout_ms = kTimeoutsMs[field(kConfigTimeoutShift, 2)][1];
  config.wire.server_name = "fuzz";
  return config;
}

// Most names an ACCOUNT_LIST page holds with this frame limit: the core's own clamp, stated
// independently (each name and the cursor at their longest must fit).
std::size_t NamesPerFrame(std::uint32_t max_frame_size) {
  return (max_frame_size - kFrameHeaderSize - 2) / (2 + kMaxUsernameBytes) - 1;
}

template <class T>
const T* As(const Frame& frame) {
  return std::get_if<T>(&frame.message);
}

class Harness {
 public:
  explicit Harness(std::uint8_t config_byte)
      : config_(MakeConfig(config_byte)),
        hasher_(faults_),
        store_(faults_),
        messenger_(store_, hasher_, clock_, config_.messenger),
        sinks_{CapturingSink(events_, 0), CapturingSink(events_, 1), CapturingSink(events_, 2)} {
    static_assert(kClients == 3, "one sink per client above");
  }

  ~Harness() {
    for (Connection& conn : conns_) conn.session.reset();  // Detach before the core goes.
  }

  void Data(int c, ByteSpan bytes);
  void Advance(std::uint64_t ms);
  void Disconnect(int c) { Close(c); }
  void FailStoreCall(int n) { faults_.store_countdown = n; }
  void FailNextHash() { faults_.fail_next_hash = true; }
  void Shutdown();

 private:
  enum class TapEvent { kNone, kBadPrefix, kFrame };

  void Open(int c);
  void Close(int c);
  std::uint32_t InputLimit(const Connection& conn) const {
    return conn.wire_logged_in ? config_.wire.max_frame_size : kMaxPreloginFrameSize;
  }
  std::size_t BytesToFrameEnd(const Connection& conn, ByteSpan available) const;
  TapEvent Consume(Connection& conn, ByteSpan bytes, std::uint32_t& bad_length);

  std::vector<Frame> ReadOutput(int c, const Bytes& bytes);
  void CheckReply(int c, const DecodeResult& request, const std::vector<Frame>& replies,
                  bool keep_open);
  void CheckRequest(int c, std::uint32_t id, const Message& request, const Frame& reply);
  void CheckEvents();

  // Per request; `reply` answers it with the right id.
  void OnCreateAccount(const CreateAccount& m, const Frame& reply);
  void OnLogin(int c, const Login& m, const Frame& reply);
  void OnLogout(int c, const Frame& reply);
  void OnListAccounts(const ListAccounts& m, const Frame& reply);
  void OnSend(int c, const Send& m, const Frame& reply);
  void OnFetch(int c, const FetchUndelivered& m, const Frame& reply);
  void OnAck(int c, const Ack& m, const Frame& reply);
  void OnDeleteAccount(int c, const DeleteAccount& m, const Frame& reply);

  // An ERROR reply whose code must be `want`, or INTERNAL if a failure was injected.
  void ExpectError(const Frame& reply, ErrorCode want, const char* invariant);
  // True iff `reply` is an ERROR INTERNAL explained by an injected failure; aborts on an
  // unexplained one.
  bool InjectedFailure(const Frame& reply);
  // Aborts unless `reply` is `T` or an explained ERROR INTERNAL; returns the `T` or null.
  template <class T>
  const T* ExpectSuccess(const Frame& reply, const char* invariant);

  std::uint32_t StoredFor(const std::string& key) const;
  std::optional<int> OnlineClient(const std::string& key) const;
  bool ThrottleJustified(const std::string& key) const;
  // Removes the one DELIVER of `id` from the events; null if there is none.
  std::optional<PushEvent> TakeDeliver(std::uint64_t id);

  Config config_;
  FuzzClock clock_;
  Faults faults_;
  PlainHasher hasher_;
  FaultyStore store_;
  Messenger messenger_;
  std::vector<PushEvent> events_;
  CapturingSink sinks_[kClients];
  Connection conns_[kClients];
  int faults_before_ = 0;  // faults_.fired when the current call started.

  std::map<std::string, Account> accounts_;  // By canonical name; retired ones stay.
  std::map<std::uint64_t, SentMessage> sent_;
  std::uint64_t max_message_id_ = 0;
  std::map<std::string, std::vector<std::uint64_t>> login_failures_;  // Steady ms, by key.
};

void Harness::Open(int c) {
  Connection& conn = conns_[c];
  conn = Connection{};
  conn.last_frame_ms = conn.logged_out_since_ms = clock_.now();
  conn.session = std::make_unique<WireSession>(messenger_, sinks_[c], config_.wire, clock_.now());
}

void Harness::Close(int c) {
  Connection& conn = conns_[c];
  // Detaching logs the user out; what was handed and not ACKed becomes undelivered again.
  conn.session.reset();
  FUZZ_REQUIRE(events_.empty(), "closing a connection pushes nothing",
               std::to_string(events_.size()));
  conn.user.reset();
  conn.handed.clear();
  conn.ending = false;
}

std::size_t Harness::BytesToFrameEnd(const Connection& conn, ByteSpan available) const {
  if (conn.prefix_filled < kLengthPrefixSize) {
    const std::size_t missing = kLengthPrefixSize - conn.prefix_filled;
    if (available.size() < missing) return available.size();
    std::uint8_t prefix[kLengthPrefixSize];
    std::copy_n(conn.prefix, conn.prefix_filled, prefix);
    std::copy_n(available.data(), missing, prefix + conn.prefix_filled);
    const std::uint32_t length = ReadU32(prefix);
    // A rejected prefix is the last thing the session reads.
    if (length < kFrameHeaderSize || length > InputLimit(conn)) return missing;
    return static_cast<std::size_t>(
        std::min<std::uint64_t>(available.size(), std::uint64_t{missing} + length));
  }
  return std::min<std::size_t>(available.size(), conn.frame_size - conn.frame.size());
}

Harness::TapEvent Harness::Consume(Connection& conn, ByteSpan bytes, std::uint32_t& bad_length) {
  if (conn.prefix_filled < kLengthPrefixSize) {
    const std::size_t n = std::min(bytes.size(), kLengthPrefixSize - conn.prefix_filled);
    std::copy_n(bytes.data(), n, conn.prefix + conn.prefix_filled);
    conn.prefix_filled += n;
    bytes = bytes.subspan(n);
    if (conn.prefix_filled < kLengthPrefixSize) return TapEvent::kNone;
    conn.frame_size = ReadU32(conn.prefix);
    conn.frame.clear();
    if (conn.frame_size < kFrameHeaderSize || conn.frame_size > InputLimit(conn)) {
      bad_length = conn.frame_size;
      return TapEvent::kBadPrefix;
    }
  }
  conn.frame.insert(conn.frame.end(), bytes.begin(), bytes.end());
  if (conn.frame.size() < conn.frame_size) return TapEvent::kNone;
  conn.prefix_filled = 0;
  return TapEvent::kFrame;
}

void Harness::Data(int c, ByteSpan bytes) {
  if (!conns_[c].session) Open(c);
  Connection& conn = conns_[c];
  while (!bytes.empty() && conn.session) {
    const ByteSpan chunk = bytes.first(BytesToFrameEnd(conn, bytes));
    bytes = bytes.subspan(chunk.size());
    std::uint32_t bad_length = 0;
    const TapEvent tap = Consume(conn, chunk, bad_length);
    const bool was_ending = conn.ending;

    Bytes out;
    faults_before_ = faults_.fired;
    const bool keep_open = conn.session->OnBytes(chunk, clock_.now(), out);
    // Only a complete frame restarts the idle timer (docs/PROTOCOL.md, 12.3).
    if (tap == TapEvent::kFrame) conn.last_frame_ms = clock_.now();
    const std::vector<Frame> replies = ReadOutput(c, out);
    std::optional<DecodeResult> request;  // Outlives the checks, which point to it.

    if (tap == TapEvent::kNone) {
      FUZZ_REQUIRE(replies.empty() && keep_open, "an incomplete frame gets no reply",
                   std::to_string(replies.size()) + " replies" +
                       (replies.empty() ? "" : ", first " + Show(replies[0])));
    } else if (tap == TapEvent::kBadPrefix) {
      if (g_trace) {
        Trace(c, "length prefix " + std::to_string(bad_length) + " -> " +
                     (replies.empty() ? "nothing" : Show(replies[0])));
      }
      const ErrorCode want =
          bad_length < kFrameHeaderSize ? ErrorCode::kMalformedFrame : ErrorCode::kFrameTooLarge;
      const Error* error = replies.size() == 1 ? As<Error>(replies[0]) : nullptr;
      FUZZ_REQUIRE(
          error != nullptr && error->code == want && replies[0].request_id == 0 && !keep_open,
          "a length outside [5, limit] is answered by a framing error with id 0, then closed",
          "length " + std::to_string(bad_length) + " limit " + std::to_string(InputLimit(conn)) +
              ": " + std::to_string(replies.size()) + " replies" +
              (replies.empty() ? "" : ", first " + Show(replies[0])) +
              (keep_open ? ", kept open" : ""));
    } else {
      request = DecodeFrame(conn.frame);
      CheckReply(c, *request, replies, keep_open);
    }
    CheckEvents();
    g_context.request = nullptr;
    g_context.reply = nullptr;
    // The front door stops reading after a fatal reply, and after the frame that was in progress
    // when SESSION_ENDED was queued.
    if (!keep_open || (was_ending && tap != TapEvent::kNone)) Close(c);
  }
}

void Harness::Advance(std::uint64_t ms) {
  clock_.Advance(ms);
  const std::uint64_t now = clock_.now();
  for (int c = 0; c < kClients; ++c) {
    Connection& conn = conns_[c];
    // By now the front door has written SESSION_ENDED and closed the connection.
    if (conn.ending) Close(c);
    if (!conn.session) continue;
    const bool login_due =
        !conn.wire_logged_in && now >= conn.logged_out_since_ms + config_.wire.login_timeout_ms;
    const bool idle_due = now >= conn.last_frame_ms + config_.wire.idle_timeout_ms;
    Bytes out;
    const bool keep_open = conn.session->OnTick(now, out);
    const std::vector<Frame> pushed = ReadOutput(c, out);
    FUZZ_REQUIRE(events_.empty(), "a tick pushes nothing to other sessions", "");
    if (!login_due && !idle_due) {
      FUZZ_REQUIRE(keep_open && pushed.empty(), "no timeout ends a session before it is due",
                   pushed.empty() ? "closed without a frame" : Show(pushed[0]));
      continue;
    }
    const EndReason want = login_due ? EndReason::kLoginTimeout : EndReason::kIdleTimeout;
    const SessionEnded* ended = pushed.size() == 1 ? As<SessionEnded>(pushed[0]) : nullptr;
    FUZZ_REQUIRE(!keep_open && ended != nullptr && ended->reason == want,
                 "a due timeout ends the session with SESSION_ENDED naming it (login before idle)",
                 std::string(login_due ? "login" : "idle") + " timeout due at " +
                     std::to_string(now) + "; " + std::to_string(pushed.size()) + " frames" +
                     (pushed.empty() ? "" : ", first " + Show(pushed[0])));
    Close(c);
  }
}

void Harness::Shutdown() {
  messenger_.Shutdown();
  for (int c = 0; c < kClients; ++c) {
    if (!conns_[c].session) continue;
    const auto it = std::find_if(events_.begin(), events_.end(), [c](const PushEvent& e) {
      return e.client == c && e.end && e.reason == EndReason::kServerShutdown;
    });
    FUZZ_REQUIRE(it != events_.end(), "shutdown ends every connected session",
                 "client " + std::to_string(c));
  }
  for (const PushEvent& event : events_) {
    FUZZ_REQUIRE(event.end && event.reason == EndReason::kServerShutdown,
                 "shutdown pushes only SESSION_ENDED SERVER_SHUTDOWN", "");
  }
  events_.clear();
}

// Decodes what the server wrote to client `c`, frame by frame, as the client would.
std::vector<Frame> Harness::ReadOutput(int c, const Bytes& bytes) {
  Connection& conn = conns_[c];
  std::vector<Frame> frames;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    FUZZ_REQUIRE(bytes.size() - pos >= kLengthPrefixSize, "the server writes whole frames",
                 std::to_string(bytes.size() - pos) + " stray bytes");
    const std::uint64_t end = pos + kLengthPrefixSize + std::uint64_t{ReadU32(&bytes[pos])};
    FUZZ_REQUIRE(end <= bytes.size(), "the server writes whole frames",
                 "a frame ends at " + std::to_string(end) + " of " + std::to_string(bytes.size()));
    conn.output.Feed(ByteSpan(bytes).subspan(pos, static_cast<std::size_t>(end - pos)));
    pos = static_cast<std::size_t>(end);
    std::optional<DecodeResult> decoded = conn.output.Next();
    FUZZ_REQUIRE(decoded && decoded->status.ok(),
                 "every frame the server sends decodes within the limit in force",
                 decoded ? decoded->status.ToString() : "no frame");
    Frame frame{decoded->request_id, std::move(decoded->message)};
    const MessageType type = TypeOf(frame.message);
    FUZZ_REQUIRE(!IsRequest(type), "the server sends only responses and pushes", Show(frame));
    FUZZ_REQUIRE(IsPush(type) ? frame.request_id == 0
                              : (type == MessageType::kError || frame.request_id != 0),
                 "pushes carry request id 0, responses other than ERROR a non-zero id",
                 Show(frame));
    if (type == MessageType::kHelloOk) conn.output.SetMaxFrameSize(config_.wire.max_frame_size);
    if (g_trace && IsPush(type)) Trace(c, "pushed: " + Show(frame));
    frames.push_back(std::move(frame));
  }
  return frames;
}

// The checks of a request remove the pushes it explains (and write them to their clients'
// streams); any push left over is unexplained.
void Harness::CheckEvents() {
  if (events_.empty()) return;
  const PushEvent& event = events_.front();
  Violation(
      "every push is explained by the request that caused it",
      "client " + std::to_string(event.client) +
          (event.end ? " got SESSION_ENDED " + std::to_string(static_cast<int>(event.reason))
                     : " got DELIVER of message " + std::to_string(event.message.message_id)));
}

bool Harness::InjectedFailure(const Frame& reply) {
  const Error* error = As<Error>(reply);
  if (error == nullptr || error->code != ErrorCode::kInternal) return false;
  FUZZ_REQUIRE(faults_.fired > faults_before_, "ERROR INTERNAL only when a failure was injected",
               Show(reply));
  return true;
}

void Harness::ExpectError(const Frame& reply, ErrorCode want, const char* invariant) {
  if (InjectedFailure(reply)) return;
  const Error* error = As<Error>(reply);
  FUZZ_REQUIRE(error != nullptr && error->code == want, invariant,
               "expected ERROR " + Name(want) + ", got " + Show(reply));
}

template <class T>
const T* Harness::ExpectSuccess(const Frame& reply, const char* invariant) {
  if (InjectedFailure(reply)) return nullptr;
  const T* success = As<T>(reply);
  FUZZ_REQUIRE(success != nullptr, invariant,
               "expected " + std::string(MessageTypeName(T::kType)) + ", got " + Show(reply));
  return success;
}

void Harness::CheckReply(int c, const DecodeResult& request, const std::vector<Frame>& replies,
                         bool keep_open) {
  Connection& conn = conns_[c];
  g_context.request = &request;
  FUZZ_REQUIRE(replies.size() == 1, "each complete frame gets exactly one reply",
               std::to_string(replies.size()) + " replies");
  const Frame& reply = replies[0];
  g_context.reply = &reply;
  FUZZ_REQUIRE(reply.request_id == request.request_id, "a reply echoes its request's id", "");
  if (g_trace) Trace(c, ShowResult(request) + " -> " + Show(reply));

  if (!request.status.ok()) {
    const Error* error = As<Error>(reply);
    FUZZ_REQUIRE(error != nullptr && error->code == request.status.code(),
                 "an undecodable frame is answered by its decoding error", Show(reply));
    // Before the handshake the peer has not shown it speaks the protocol: every error is fatal.
    FUZZ_REQUIRE(keep_open == conn.hello_done, "a decoding error is fatal only before HELLO_OK",
                 keep_open ? "kept open" : "closed");
    return;
  }
  const MessageType type = TypeOf(request.message);
  if (!conn.hello_done) {
    const Hello* hello = std::get_if<Hello>(&request.message);
    if (hello != nullptr && hello->protocol_version == kProtocolVersion) {
      const HelloOk* ok = As<HelloOk>(reply);
      FUZZ_REQUIRE(ok != nullptr && keep_open, "HELLO version 1 is answered by HELLO_OK",
                   Show(reply));
      const HelloOk want{kProtocolVersion,
                         config_.wire.max_frame_size,
                         kMaxPreloginFrameSize,
                         static_cast<std::uint32_t>(kMaxTextBytes),
                         config_.messenger.max_queued_per_user,
                         config_.wire.server_name};
      FUZZ_REQUIRE(*ok == want, "HELLO_OK announces the configured limits", Show(reply));
      conn.hello_done = true;
      return;
    }
    const ErrorCode want =
        hello != nullptr ? ErrorCode::kUnsupportedVersion : ErrorCode::kHandshakeRequired;
    const Error* error = As<Error>(reply);
    FUZZ_REQUIRE(error != nullptr && error->code == want && !keep_open,
                 "before HELLO_OK anything but HELLO version 1 is a fatal error",
                 "expected " + Name(want) + ", got " + Show(reply));
    return;
  }
  FUZZ_REQUIRE(keep_open, "after HELLO_OK a decodable frame never closes the connection",
               Show(reply));
  if (!IsRequest(type) || type == MessageType::kHello) {
    const Error* error = As<Error>(reply);
    FUZZ_REQUIRE(error != nullptr && error->code == ErrorCode::kUnexpectedMessage,
                 "a second HELLO, a response or a push from a client is UNEXPECTED_MESSAGE",
                 Show(reply));
    return;
  }
  CheckRequest(c, request.request_id, request.message, reply);
}

void Harness::CheckRequest(int c, std::uint32_t id, const Message& request, const Frame& reply) {
  Connection& conn = conns_[c];
  // Requests of a logged-in user are refused first thing on a connection without one.
  const bool needs_login = !std::holds_alternative<CreateAccount>(request) &&
                           !std::holds_alternative<Login>(request) &&
                           !std::holds_alternative<Ping>(request);
  if (needs_login && !conn.user) {
    return ExpectError(reply, ErrorCode::kNotLoggedIn,
                       "a request that needs a login is NOT_LOGGED_IN without one (checked first)");
  }
  if (const Error* error = As<Error>(reply); error && error->code == ErrorCode::kNotLoggedIn) {
    Violation("NOT_LOGGED_IN only for a request that needs a login, on a connection without one",
              Show(Frame{id, request}) + " as " + conn.user.value_or("nobody"));
  }
  if (const auto* m = std::get_if<CreateAccount>(&request)) return OnCreateAccount(*m, reply);
  if (const auto* m = std::get_if<Login>(&request)) return OnLogin(c, *m, reply);
  if (std::holds_alternative<Logout>(request)) return OnLogout(c, reply);
  if (const auto* m = std::get_if<ListAccounts>(&request)) return OnListAccounts(*m, reply);
  if (const auto* m = std::get_if<Send>(&request)) return OnSend(c, *m, reply);
  if (const auto* m = std::get_if<FetchUndelivered>(&request)) return OnFetch(c, *m, reply);
  if (const auto* m = std::get_if<Ack>(&request)) return OnAck(c, *m, reply);
  if (const auto* m = std::get_if<DeleteAccount>(&request)) return OnDeleteAccount(c, *m, reply);
  if (const auto* m = std::get_if<Ping>(&request)) {
    const Pong* pong = As<Pong>(reply);
    FUZZ_REQUIRE(pong != nullptr && pong->nonce == m->nonce,
                 "PING is answered by PONG with its nonce", Show(reply));
    return;
  }
  Violation("every request type is checked", Show(Frame{id, request}));
}

void Harness::OnCreateAccount(const CreateAccount& m, const Frame& reply) {
  const bool valid_name = CheckUsername(m.username).ok();
  const std::string key = valid_name ? CanonicalUsername(m.username) : "";
  ErrorCode want = ErrorCode::kOk;
  if (!valid_name) {
    want = ErrorCode::kInvalidUsername;
  } else if (!CheckPassword(m.password).ok()) {
    want = ErrorCode::kInvalidPassword;
  } else if (accounts_.count(key) != 0) {
    want = ErrorCode::kUsernameTaken;  // Live, or retired for ever.
  }
  if (want != ErrorCode::kOk) {
    return ExpectError(reply, want, "CREATE_ACCOUNT checks name, password, then uniqueness");
  }
  if (ExpectSuccess<Ok>(reply, "a new valid name and password create the account")) {
    accounts_[key] = Account{m.username, m.password, true};
  }
}

void Harness::OnLogin(int c, const Login& m, const Frame& reply) {
  Connection& conn = conns_[c];
  if (conn.user) {
    return ExpectError(reply, ErrorCode::kAlreadyLoggedIn,
                       "LOGIN on a logged-in connection is ALREADY_LOGGED_IN");
  }
  const std::string key = CheckUsername(m.username).ok() ? CanonicalUsername(m.username) : "";
  const auto account = accounts_.find(key);
  const bool credentials_right = !key.empty() && account != accounts_.end() &&
                                 account->second.live && account->second.password == m.password;

  if (const Error* error = As<Error>(reply)) {
    if (error->code == ErrorCode::kLoginThrottled) {
      FUZZ_REQUIRE(!key.empty() && ThrottleJustified(key),
                   "LOGIN_THROTTLED only after 5 failed LOGINs for the name within 60 s, for 60 s",
                   "name " + m.username);
    } else if (error->code == ErrorCode::kAuthFailed) {
      FUZZ_REQUIRE(!credentials_right, "LOGIN with the right password of a live account succeeds",
                   "name " + m.username);
      if (!key.empty()) login_failures_[key].push_back(clock_.now());
    } else {
      FUZZ_REQUIRE(InjectedFailure(reply), "LOGIN fails only with its own errors", Show(reply));
    }
    return;  // Anything pushed (a takeover) is left for CheckEvents to reject.
  }
  const LoginOk* ok = As<LoginOk>(reply);
  FUZZ_REQUIRE(ok != nullptr, "LOGIN is answered by LOGIN_OK or ERROR", Show(reply));
  FUZZ_REQUIRE(credentials_right,
               "LOGIN_OK only with the right password of a live account (no one acts as another)",
               "name " + m.username + ", password " + m.password);
  FUZZ_REQUIRE(ok->unread_count == StoredFor(key), "LOGIN_OK counts the user's stored messages",
               "model says " + std::to_string(StoredFor(key)));
  // Takeover: the user's other connection, if any, ends; no other does.
  if (const std::optional<int> previous = OnlineClient(key)) {
    const auto it = std::find_if(events_.begin(), events_.end(), [&](const PushEvent& e) {
      return e.client == *previous && e.end && e.reason == EndReason::kTakeover;
    });
    FUZZ_REQUIRE(it != events_.end(),
                 "a second LOGIN of a user ends the older session with TAKEOVER",
                 "client " + std::to_string(*previous) + " was logged in as " + key);
    Bytes frame;
    EncodeFrame({0, SessionEnded{it->reason, it->end_message}}, frame);
    events_.erase(it);
    Connection& old = conns_[*previous];
    if (!old.ending) ReadOutput(*previous, frame);
    old.ending = true;
    old.user.reset();
    old.handed.clear();
  }
  conn.user = key;
  conn.handed.clear();
  conn.wire_logged_in = true;
  login_failures_.erase(key);
}

void Harness::OnLogout(int c, const Frame& reply) {
  Connection& conn = conns_[c];
  FUZZ_REQUIRE(As<Ok>(reply) != nullptr, "LOGOUT of a logged-in user is OK", Show(reply));
  conn.user.reset();
  conn.handed.clear();
  conn.wire_logged_in = false;
  conn.logged_out_since_ms = clock_.now();
}

void Harness::OnListAccounts(const ListAccounts& m, const Frame& reply) {
  const std::string pattern = m.pattern.empty() ? "*" : m.pattern;
  if (!CheckPattern(pattern).ok()) {
    return ExpectError(reply, ErrorCode::kInvalidPattern, "a bad pattern is INVALID_PATTERN");
  }
  const bool cursor_ok =
      m.cursor.empty() || (CheckUsername(m.cursor).ok() && CanonicalUsername(m.cursor) == m.cursor);
  if (m.limit == 0 || !cursor_ok) {
    return ExpectError(reply, ErrorCode::kInvalidArgument,
                       "limit 0 or a cursor the server cannot have issued is INVALID_ARGUMENT");
  }
  const AccountList* list = ExpectSuccess<AccountList>(reply, "LIST_ACCOUNTS gives a page");
  if (list == nullptr) return;
  const std::size_t page_size =
      std::min<std::size_t>({m.limit, kMaxListLimit, NamesPerFrame(config_.wire.max_frame_size)});
  std::vector<std::pair<std::string, std::string>> matching;  // Key, name.
  for (const auto& [key, account] : accounts_) {
    if (account.live && key > m.cursor && GlobMatch(pattern, key)) {
      matching.emplace_back(key, account.name);
    }
  }
  const std::size_t shown = std::min(page_size, matching.size());
  std::vector<std::string> want;
  for (std::size_t i = 0; i < shown; ++i) want.push_back(matching[i].second);
  const std::string want_cursor = matching.size() > shown ? matching[shown - 1].first : "";
  FUZZ_REQUIRE(
      list->usernames == want && list->next_cursor == want_cursor,
      "a page lists the live matching accounts after the cursor, in canonical order",
      std::to_string(want.size()) + " names expected, next_cursor \"" + want_cursor + "\"");
}

void Harness::OnSend(int c, const Send& m, const Frame& reply) {
  const Connection& conn = conns_[c];
  const std::string& sender = *conn.user;
  const std::uint64_t now_wall = clock_.NowMs();
  const std::string recipient =
      CheckUsername(m.recipient).ok() ? CanonicalUsername(m.recipient) : "";
  const auto account = accounts_.find(recipient);
  if (!CheckText(m.text).ok()) {
    return ExpectError(reply, ErrorCode::kInvalidText, "SEND checks the text first");
  }
  if (recipient.empty() || account == accounts_.end() || !account->second.live) {
    return ExpectError(reply, ErrorCode::kUnknownRecipient,
                       "SEND to a name without a live account is UNKNOWN_RECIPIENT");
  }
  if (recipient == sender) {
    return ExpectError(reply, ErrorCode::kSelfSend, "SEND to oneself is SELF_SEND");
  }
  // The sender's latest message with this client id, if it is inside the dedupe window.
  const SentMessage* earlier = nullptr;
  for (auto it = sent_.rbegin(); it != sent_.rend(); ++it) {
    if (it->second.sender_key == sender && it->second.client_message_id == m.client_message_id) {
      if (it->second.ok.timestamp_ms + config_.messenger.dedupe_window_ms >= now_wall) {
        earlier = &it->second;
      }
      break;
    }
  }
  if (earlier != nullptr) {
    if (earlier->recipient_key != recipient || earlier->text != m.text) {
      return ExpectError(reply, ErrorCode::kClientIdReused,
                         "a client id reused for another message is CLIENT_ID_REUSED");
    }
    const SendOk* ok = ExpectSuccess<SendOk>(reply, "a retried SEND is answered again");
    FUZZ_REQUIRE(
        ok == nullptr || *ok == earlier->ok,
        "a SEND retried within the dedupe window gets the original SEND_OK, nothing stored",
        "original message " + std::to_string(earlier->ok.message_id));
    return;
  }
  if (const Error* error = As<Error>(reply); error && error->code == ErrorCode::kRateLimited) {
    FUZZ_REQUIRE(config_.messenger.send_rate_per_second != 0, "RATE_LIMITED only with a rate limit",
                 "");
    return;
  }
  if (StoredFor(recipient) >= config_.messenger.max_queued_per_user) {
    return ExpectError(reply, ErrorCode::kQueueFull,
                       "SEND to a recipient holding the queue cap is QUEUE_FULL");
  }
  const SendOk* ok = ExpectSuccess<SendOk>(reply, "a valid SEND is accepted");
  if (ok == nullptr) return;
  FUZZ_REQUIRE(ok->message_id > max_message_id_, "message ids increase",
               std::to_string(ok->message_id) + " after " + std::to_string(max_message_id_));
  FUZZ_REQUIRE(ok->timestamp_ms == now_wall, "SEND_OK carries the server's time of acceptance",
               std::to_string(ok->timestamp_ms));
  max_message_id_ = ok->message_id;
  const std::string sender_name = accounts_.at(sender).name;
  sent_[ok->message_id] =
      SentMessage{sender, sender_name, recipient, m.client_message_id, m.text, *ok, true};

  const std::optional<int> online = OnlineClient(recipient);
  const Delivery want = online ? Delivery::kDelivered : Delivery::kQueued;
  FUZZ_REQUIRE(ok->delivery == want, "SEND_OK says DELIVERED iff the recipient is online",
               online ? "recipient on client " + std::to_string(*online) : "recipient offline");
  const std::optional<PushEvent> push = TakeDeliver(ok->message_id);
  FUZZ_REQUIRE(push.has_value() == online.has_value(),
               "a message is pushed iff its recipient is online", Show(reply));
  if (!push) return;
  FUZZ_REQUIRE(push->client == *online,
               "a message is pushed only to its recipient (no one else reads it)",
               "pushed to client " + std::to_string(push->client) + ", recipient on client " +
                   std::to_string(*online));
  const StoredMessage want_message{ok->message_id, sender_name, ok->timestamp_ms, m.text};
  FUZZ_REQUIRE(push->message == want_message,
               "DELIVER carries the id, time and text accepted, under the sender's registered name",
               Show(Frame{0, Deliver{push->message}}));
  Connection& target = conns_[push->client];
  FUZZ_REQUIRE(target.handed.insert(ok->message_id).second, "a message is handed once per session",
               std::to_string(ok->message_id));
  if (!target.ending) {
    Bytes frame;
    FUZZ_REQUIRE(EncodeFrame({0, Deliver{push->message}}, frame).ok(), "every DELIVER encodes",
                 Show(Frame{0, Deliver{push->message}}));
    ReadOutput(push->client, frame);
  }
}

void Harness::OnFetch(int c, const FetchUndelivered& m, const Frame& reply) {
  Connection& conn = conns_[c];
  if (m.limit == 0) {
    return ExpectError(reply, ErrorCode::kInvalidArgument, "FETCH limit 0 is INVALID_ARGUMENT");
  }
  const MessageBatch* batch = ExpectSuccess<MessageBatch>(reply, "FETCH gives a batch");
  if (batch == nullptr) return;
  // Oldest first: the user's stored messages not yet handed to this session.
  std::vector<const SentMessage*> pending;
  for (const auto& [id, message] : sent_) {
    if (message.stored && message.recipient_key == *conn.user && conn.handed.count(id) == 0) {
      pending.push_back(&message);
    }
  }
  const std::size_t wanted = std::min<std::size_t>({m.limit, kMaxFetchLimit, pending.size()});
  FUZZ_REQUIRE(batch->messages.size() <= wanted && (wanted == 0 || !batch->messages.empty()),
               "a batch holds 1 to min(limit, 50) messages when any are pending",
               std::to_string(batch->messages.size()) + " of " + std::to_string(pending.size()) +
                   " pending, limit " + std::to_string(m.limit));
  std::size_t bytes = kBatchOverhead;
  for (std::size_t i = 0; i < batch->messages.size(); ++i) {
    const SentMessage& want = *pending[i];
    const StoredMessage want_message{want.ok.message_id, want.sender_name, want.ok.timestamp_ms,
                                     want.text};
    FUZZ_REQUIRE(batch->messages[i] == want_message,
                 "FETCH returns the caller's own pending messages, oldest first, unaltered",
                 "position " + std::to_string(i) + ": got " +
                     std::to_string(batch->messages[i].message_id) + ", expected " +
                     std::to_string(want.ok.message_id));
    bytes += kBatchMessageOverhead + want.sender_name.size() + want.text.size();
    conn.handed.insert(want.ok.message_id);
  }
  if (batch->messages.size() < wanted) {
    const SentMessage& next = *pending[batch->messages.size()];
    FUZZ_REQUIRE(bytes + kBatchMessageOverhead + next.sender_name.size() + next.text.size() >
                     config_.wire.max_frame_size,
                 "a batch is cut short only when the next message would not fit the frame limit",
                 std::to_string(batch->messages.size()) + " of " + std::to_string(wanted));
  }
  FUZZ_REQUIRE(batch->remaining == pending.size() - batch->messages.size(),
               "MESSAGE_BATCH.remaining counts the pending messages left",
               "model says " + std::to_string(pending.size() - batch->messages.size()));
}

void Harness::OnAck(int c, const Ack& m, const Frame& reply) {
  Connection& conn = conns_[c];
  if (m.message_ids.size() > kMaxAckIds) {
    return ExpectError(reply, ErrorCode::kInvalidArgument, "ACK of over 1000 ids is refused");
  }
  if (!ExpectSuccess<Ok>(reply, "ACK is OK")) return;
  for (const std::uint64_t id : m.message_ids) {
    const auto it = sent_.find(id);
    // Someone else's message is ignored: it stays stored for its recipient.
    if (it != sent_.end() && it->second.recipient_key == *conn.user) it->second.stored = false;
    conn.handed.erase(id);
  }
}

void Harness::OnDeleteAccount(int c, const DeleteAccount& m, const Frame& reply) {
  Connection& conn = conns_[c];
  const std::string user = *conn.user;
  if (!m.confirm) {
    const ConfirmRequired* confirm =
        ExpectSuccess<ConfirmRequired>(reply, "DELETE_ACCOUNT without confirm asks first");
    FUZZ_REQUIRE(confirm == nullptr || confirm->unread_count == StoredFor(user),
                 "CONFIRM_REQUIRED counts exactly the messages deletion would destroy",
                 "model says " + std::to_string(StoredFor(user)));
    return;
  }
  if (!ExpectSuccess<Ok>(reply, "a confirmed DELETE_ACCOUNT is OK")) return;
  accounts_.at(user).live = false;  // Retired: the name can never be registered again.
  for (auto& [id, message] : sent_) {
    if (message.recipient_key == user) message.stored = false;
  }
  conn.user.reset();
  conn.handed.clear();
  conn.wire_logged_in = false;
  conn.logged_out_since_ms = clock_.now();
}

std::uint32_t Harness::StoredFor(const std::string& key) const {
  std::uint32_t count = 0;
  for (const auto& [id, message] : sent_) {
    if (message.stored && message.recipient_key == key) ++count;
  }
  return count;
}

std::optional<int> Harness::OnlineClient(const std::string& key) const {
  std::optional<int> found;
  for (int c = 0; c < kClients; ++c) {
    if (conns_[c].user == key) {
      FUZZ_REQUIRE(!found, "a user is logged in on at most one connection", key);
      found = c;
    }
  }
  return found;
}

// True iff five failed LOGINs for `key` fell within the failure window and the fifth is recent
// enough that the throttle it starts still runs.
bool Harness::ThrottleJustified(const std::string& key) const {
  const auto it = login_failures_.find(key);
  if (it == login_failures_.end()) return false;
  const std::vector<std::uint64_t>& times = it->second;
  const std::size_t n = config_.messenger.login_failures_before_throttle;
  for (std::size_t last = n - 1; last < times.size(); ++last) {
    if (times[last] - times[last + 1 - n] <= config_.messenger.login_failure_window_ms &&
        clock_.now() < times[last] + config_.messenger.login_throttle_ms) {
      return true;
    }
  }
  return false;
}

std::optional<PushEvent> Harness::TakeDeliver(std::uint64_t id) {
  std::optional<PushEvent> found;
  for (auto it = events_.begin(); it != events_.end();) {
    if (!it->end && it->message.message_id == id) {
      FUZZ_REQUIRE(!found, "a message is pushed at most once per SEND", std::to_string(id));
      found = *it;
      it = events_.erase(it);
    } else {
      ++it;
    }
  }
  return found;
}

}  // namespace
}  // namespace messenger

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace messenger;
  using namespace messenger::fuzz_session;
  if (size == 0) return 0;
  Harness harness(data[0]);
  std::size_t pos = 1;
  int step = 0;
  while (pos < size) {
    g_context = Context{++step, pos, data[pos], 0, nullptr, nullptr};
    const std::uint8_t head = data[pos++];
    const std::uint8_t arg = pos < size ? data[pos++] : 0;
    g_context.arg = arg;
    if (head < kFirstControl) {
      const std::size_t n = std::min<std::size_t>(arg, size - pos);
      harness.Data(head % kClients, ByteSpan(data + pos, n));
      pos += n;
      continue;
    }
    const auto control = static_cast<Control>((head - kFirstControl) % kControlCount);
    if (g_trace) {
      std::fprintf(stderr, "step %d: control %d arg %u\n", step, static_cast<int>(control), arg);
    }
    switch (control) {
      case Control::kAdvanceCentiseconds:
        harness.Advance(std::uint64_t{arg} * 10);
        break;
      case Control::kAdvanceSeconds:
        harness.Advance(std::uint64_t{arg} * 1000);
        break;
      case Control::kAdvanceTenMinutes:
        harness.Advance(std::uint64_t{arg} * 600'000);
        break;
      case Control::kDisconnect:
        harness.Disconnect(arg % kClients);
        break;
      case Control::kFailStoreCall:
        harness.FailStoreCall(arg % 8 + 1);
        break;
      case Control::kFailNextHash:
        harness.FailNextHash();
        break;
      case Control::kShutdown:
        harness.Shutdown();
        return 0;
    }
  }
  return 0;
}

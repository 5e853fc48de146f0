// Messenger: the transport-agnostic core. Its methods are the protocol's operations; both front
// doors (the wire protocol and gRPC) call it, so the rules live in one place.
//
// A connection Attach()es with a SessionSink for pushes and gets a SessionId; LOGIN binds a user to
// it. The sender of a message is always the session's user. Thread-safe: connections call it
// concurrently. The core's lock guards only in-memory state; it is never held across store calls
// or password hashing. Sink calls happen under it, which is why sinks must only queue (never block
// or call back into the core), and why Detach() returning means no push is still in progress.
#ifndef MESSENGER_SERVER_MESSENGER_H_
#define MESSENGER_SERVER_MESSENGER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "messenger/server/clock.h"
#include "messenger/server/metrics.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/store.h"

namespace messenger {

using SessionId = std::uint64_t;

// Where the core sends a session's pushes. Implemented by each front door.
class SessionSink {
 public:
  virtual ~SessionSink() = default;
  // Queues a DELIVER push. Must not block on I/O (called on other sessions' threads).
  virtual void Deliver(const StoredMessage& message) = 0;
  // Queues SESSION_ENDED, then the connection is closed once it is written. Must not block.
  virtual void End(EndReason reason, const std::string& message) = 0;
};

struct MessengerOptions {
  // Most messages stored for one recipient; SEND beyond it gets QUEUE_FULL.
  std::uint32_t max_queued_per_user = 10000;
  // Sustained SENDs per second per user, and the burst allowed above it; 0 disables the limit.
  std::uint32_t send_rate_per_second = 50;
  std::uint32_t send_burst = 100;
  // How long a client message id is remembered for idempotent SEND retries.
  std::uint64_t dedupe_window_ms = 24ull * 60 * 60 * 1000;
  // Failed LOGINs for one name within the window before that name is throttled, and for how long.
  std::uint32_t login_failures_before_throttle = 5;
  std::uint64_t login_failure_window_ms = 60 * 1000;
  std::uint64_t login_throttle_ms = 60 * 1000;
};

class Messenger {
 public:
  // Counts into `metrics` (which must outlive this object), or into a Metrics of its own when
  // null; either way metrics() is the instance the front doors record to.
  Messenger(Store& store, PasswordHasher& hasher, Clock& clock, MessengerOptions options = {},
            Metrics* metrics = nullptr);
  ~Messenger();
  Messenger(const Messenger&) = delete;
  Messenger& operator=(const Messenger&) = delete;

  // Registers a connection whose pushes go to `sink`; `transport` labels its logged-in session
  // in the metrics. REQUIRES: `sink` outlives Detach().
  SessionId Attach(SessionSink& sink, Transport transport = Transport::kWire);
  // The connection is gone: logs it out. Messages pushed or fetched on it but not ACKed become
  // undelivered again. Idempotent.
  void Detach(SessionId session);

  // Errors: kInvalidUsername, kInvalidPassword, kUsernameTaken, kInternal.
  Status CreateAccount(std::string_view username, std::string_view password);

  // Binds the user to `session`; a session of the same user elsewhere is ended with TAKEOVER.
  // Errors: kAlreadyLoggedIn, kAuthFailed (unknown name or wrong password, indistinguishable),
  // kLoginThrottled, kInternal.
  Result<LoginOk> Login(SessionId session, std::string_view username, std::string_view password);

  // Errors: kNotLoggedIn.
  Status Logout(SessionId session);

  // Errors: kNotLoggedIn, kInvalidPattern, kInvalidArgument (limit 0, malformed cursor),
  // kInternal.
  Result<AccountList> ListAccounts(SessionId session, const ListAccounts& request);

  // Stores the message durably, then pushes it if the recipient is online.
  // Errors: kNotLoggedIn, kInvalidText, kUnknownRecipient, kSelfSend, kClientIdReused,
  // kRateLimited, kQueueFull, kInternal.
  Result<SendOk> Send(SessionId session, const Send& request);

  // Send for each request in turn, with every message stored in one store transaction: a
  // connection's pipelined SENDs then share one commit. results[i] answers requests[i] as Send
  // would have after the requests before it, with one difference: rate tokens are taken for the
  // whole group first, so a retry in the group (which costs no token) holds one until the store
  // has answered it, and a new SEND behind it may be refused with kRateLimited.
  std::vector<Result<SendOk>> SendMany(SessionId session,
                                       std::span<const messenger::Send> requests);

  // Oldest-first stored messages not yet handed to this session, at most `limit` (clamped to
  // kMaxFetchLimit) and at most about `max_bytes` once encoded (at least one message if any).
  // Errors: kNotLoggedIn, kInvalidArgument (limit 0), kInternal.
  Result<MessageBatch> FetchUndelivered(SessionId session, std::uint16_t limit,
                                        std::size_t max_bytes);

  // Errors: kNotLoggedIn, kInvalidArgument (more than kMaxAckIds ids), kInternal.
  Status Ack(SessionId session, std::span<const std::uint64_t> ids);

  // Ack for each list of ids, with the valid lists removed in one store write: a connection's
  // pipelined ACKs then share one commit. results[i] answers id_lists[i] as Ack would have.
  std::vector<Status> AckMany(SessionId session,
                              std::span<const std::span<const std::uint64_t>> id_lists);

  // Without `confirm`: the exact number of stored messages deletion would destroy; nothing
  // changes. With `confirm`: deletes the account and its messages, logs the session out and
  // returns how many messages were destroyed. Errors: kNotLoggedIn, kInternal.
  Result<std::uint32_t> DeleteAccount(SessionId session, bool confirm);

  // True iff a user is logged in on `session`.
  bool IsLoggedIn(SessionId session) const;

  // Ends every logged-in session with SERVER_SHUTDOWN; later LOGINs fail with kInternal.
  void Shutdown();

  // OK iff the core serves requests: not shut down, and the store answers a read.
  // Errors: kInternal with a one-line reason (shutting down, or the store's error).
  Status CheckReady();

  const MessengerOptions& options() const;
  // The metrics of this server; thread-safe to update from any thread.
  Metrics& metrics() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_MESSENGER_H_

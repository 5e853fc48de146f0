// Client: the protocol's operations as blocking calls, shared by the terminal client, the
// conformance suite and the benchmark. The wire implementation is MakeWireClient(); a gRPC one
// can implement the same interface.
//
// Thread-safe: requests may be issued from several threads at once (they are pipelined on one
// connection and matched to responses by request id). Pushes arrive on the client's own reader
// thread through the PushHandler; a handler must not block for long and must not call the
// client's blocking methods (it may queue work for another thread).
#ifndef MESSENGER_CLIENT_CLIENT_H_
#define MESSENGER_CLIENT_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger {

// Why the connection ended, from the client's point of view.
struct Disconnected {
  Status reason;  // kDisconnected with the cause (peer closed, I/O error, server ERROR ...).
};

// Something the server sent without being asked, or the connection ending.
// A Deliver is handed to the application once per message id per client object, even when the
// server redelivers it (at-least-once): duplicates are recognised and only ACKed again.
using Push = std::variant<Deliver, SessionEnded, Disconnected>;

// Returns true iff the application has accepted a Deliver (it is then ACKed automatically); the
// return value is ignored for other pushes. A handler that throws has not accepted the push.
// Disconnected is pushed once per connection that Connect() (or a reconnection) had established,
// when it ends other than by Close().
using PushHandler = std::function<bool(const Push&)>;

struct ClientOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5050;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{10000};
  // After an unexpected disconnect, reconnect with exponential backoff (up to the maximum) and
  // log in again with the last credentials that succeeded. Pending requests still fail. Not
  // after Close(), nor after SESSION_ENDED TAKEOVER or LOGIN_TIMEOUT.
  bool auto_reconnect = false;
  std::chrono::milliseconds reconnect_max_backoff{10000};
};

class Client {
 public:
  virtual ~Client() = default;

  // Connects and performs the HELLO handshake. Errors: kConnectionFailed, kTimeout, and the
  // server's handshake errors (kUnsupportedVersion, kServerBusy). OK at once if connected.
  virtual Status Connect() = 0;
  // Closes the connection; pending requests fail with kDisconnected; no Disconnected push.
  // Idempotent.
  virtual void Close() = 0;
  // The limits the server announced in HELLO_OK. REQUIRES: Connect() succeeded.
  virtual HelloOk server_info() const = 0;

  // Every request below fails with kDisconnected when not connected, kTimeout when no response
  // arrives within the request timeout, or the server's ERROR code.
  virtual Status CreateAccount(std::string_view username, std::string_view password) = 0;
  virtual Result<LoginOk> Login(std::string_view username, std::string_view password) = 0;
  virtual Status Logout() = 0;
  virtual Result<AccountList> ListAccounts(std::string_view pattern, std::string_view cursor,
                                           std::uint16_t limit) = 0;
  // Sends `text`; the client chooses a fresh client message id. A retry after kDisconnected or
  // kTimeout should use SendWithId with the id the first attempt used, to stay idempotent.
  virtual Result<SendOk> Send(std::string_view recipient, std::string_view text) = 0;
  virtual Result<SendOk> SendWithId(std::string_view recipient, std::string_view text,
                                    std::uint64_t client_message_id) = 0;
  // Messages this client object already handed to the PushHandler and ACKed (whose ACK was lost
  // with a connection) are left out of the batch and ACKed again; `remaining` is the server's.
  virtual Result<MessageBatch> FetchUndelivered(std::uint16_t limit) = 0;
  virtual Status Ack(std::span<const std::uint64_t> message_ids) = 0;
  // Without `confirm`: returns how many unread messages deletion would destroy (the server's
  // CONFIRM_REQUIRED); nothing changes. With `confirm`: deletes the account, returns 0.
  virtual Result<std::uint32_t> DeleteAccount(bool confirm) = 0;
  virtual Status Ping() = 0;
};

// A client of the wire protocol over TCP. Does not connect until Connect().
std::unique_ptr<Client> MakeWireClient(ClientOptions options, PushHandler on_push);

// A sentence for a person, e.g. "There is no user with that name." for kUnknownRecipient: used by
// the terminal client so no raw code or message reaches the screen.
std::string HumanMessage(const Status& status);

}  // namespace messenger

#endif  // MESSENGER_CLIENT_CLIENT_H_

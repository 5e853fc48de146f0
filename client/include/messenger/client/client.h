// Client: the protocol's operations as blocking calls, shared by the terminal client, the
// conformance suite and the benchmark. Two implementations: MakeWireClient() speaks the wire
// protocol over TCP, MakeGrpcClient() the gRPC binding (docs/PROTOCOL.md, section 15). Both give
// the same results and pushes for the same server behaviour; MakeGrpcClient() lists where gRPC
// differs.
//
// Thread-safe: requests may be issued from several threads at once (on the wire they are
// pipelined on one connection and matched to responses by request id). Pushes arrive on the
// client's own reader thread through the PushHandler; a handler must not block for long and must
// not call the client's blocking methods (it may queue work for another thread).
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

// The servers' default ports: the wire protocol's and gRPC's (`--grpc-port`).
inline constexpr std::uint16_t kDefaultWirePort = 5050;
inline constexpr std::uint16_t kDefaultGrpcPort = 5051;

// TLS towards the server (docs/OPERATIONS.md). Off: plain TCP, for loopback and tests.
struct TlsClientOptions {
  bool enabled = false;
  // PEM file of the CA(s) to trust; empty: the system trust store.
  std::string ca_file;
  // The name the server's certificate must carry (and SNI); empty: ClientOptions::host.
  std::string server_name;
  // Encrypts but verifies nothing (neither chain nor name): for self-signed development set-ups
  // only; anyone on the path can impersonate the server.
  bool insecure = false;
};

struct ClientOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = kDefaultWirePort;  // kDefaultGrpcPort for MakeGrpcClient().
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{10000};
  // After an unexpected disconnect, reconnect with exponential backoff (up to the maximum) and
  // log in again with the last credentials that succeeded. Pending requests still fail. Not
  // after Close(), nor after SESSION_ENDED TAKEOVER or LOGIN_TIMEOUT.
  bool auto_reconnect = false;
  std::chrono::milliseconds reconnect_max_backoff{10000};
  TlsClientOptions tls;
};

class Client {
 public:
  virtual ~Client() = default;

  // Connects (with TLS when options.tls.enabled) and performs the HELLO handshake. Errors:
  // kConnectionFailed, kTlsFailed (handshake failed, certificate not trusted or not for the
  // server's name; the message says which), kTimeout, and the server's handshake errors
  // (kUnsupportedVersion, kServerBusy). OK at once if connected.
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

// A client of the gRPC binding (messenger.v1.Messenger, docs/PROTOCOL.md section 15) over one
// plaintext HTTP/2 channel of its own. Does not connect until Connect(). The contract above
// holds, with these differences:
// - Connect() opens the channel and calls GetServerInfo. server_info().max_prelogin_frame_size
//   is 0: gRPC has no pre-login limit. kUnsupportedVersion when the server's protocol_version is
//   not kProtocolVersion.
// - Login() starts a session and opens its Subscribe stream, read on the client's thread, which
//   turns its pushes into Deliver and SessionEnded. The stream plays the part of the wire
//   connection: when it ends other than by Close(), Logout() or DeleteAccount(true), exactly one
//   Disconnected is pushed (after the SessionEnded, if the server sent one) and the client is
//   disconnected: requests fail with kDisconnected until Connect(). Before Login() there is no
//   stream, so a server that goes away then is noticed by the next request, not by a push.
// - The gRPC-only end reasons are not SessionEnded pushes (EndReason keeps the wire's values):
//   LOGGED_OUT follows this client's own Logout() or DeleteAccount(true) and is not pushed at
//   all; SLOW_CONSUMER (the stream fell too far behind) is a Disconnected whose kDisconnected
//   message names it.
// - Login() while this client has a session fails with kAlreadyLoggedIn, as on the wire, without
//   asking the server (whose gRPC Login would start a second session).
// - Ping() without a session calls GetServerInfo instead (gRPC's Ping needs a session).
// - Errors: the protocol's code comes from the `messenger-error-bin` trailer, the message from
//   the gRPC status. Without that trailer: DEADLINE_EXCEEDED (the request timeout) -> kTimeout;
//   UNAVAILABLE and CANCELLED -> kDisconnected (kConnectionFailed from Connect(), or kTlsFailed
//   when TLS is on and gRPC names the handshake or the certificate as the cause);
//   RESOURCE_EXHAUSTED (a message over the size limit) -> kFrameTooLarge; UNIMPLEMENTED ->
//   kUnknownType; anything else -> kInternal. Strings that are not UTF-8 fail with kInvalidUtf8
//   before anything is sent, as the wire encoder does.
// - Accepted deliveries are ACKed in batches by a thread of the session; Close() first hands
//   over ACKs still queued (waiting at most a second), Logout() and DeleteAccount(true) too.
// - auto_reconnect: after the stream is lost (not after TAKEOVER or LOGIN_TIMEOUT, nor when the
//   server refused the stream), a new channel is opened and the last credentials log in again.
// - The channel pings the server after 30 s without traffic (section 15.2 allows every 10 s).
std::unique_ptr<Client> MakeGrpcClient(ClientOptions options, PushHandler on_push);

// A sentence for a person, e.g. "There is no user with that name." for kUnknownRecipient: used by
// the terminal client so no raw code or message reaches the screen.
std::string HumanMessage(const Status& status);

}  // namespace messenger

#endif  // MESSENGER_CLIENT_CLIENT_H_

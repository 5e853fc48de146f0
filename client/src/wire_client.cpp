// MakeWireClient: the Client interface over one TCP connection at a time.
//
// A WireClient owns its current Connection and replaces it on Connect() and on automatic
// reconnection. A Connection is used once. It has two threads: a reader that decodes frames,
// completes the waiting request with the same request id and hands pushes to the client, and a
// writer that sends queued frames whole and in queue order. So no caller, and never the reader
// (which sends the ACKs of deliveries), blocks on the socket; and a frame is never interleaved
// with another. When a connection ends, every request still waiting on it fails at once.
//
// With ClientOptions::tls the connection's bytes go through a TlsClientStream (messenger::tls)
// set up right after the TCP connect, within the connect timeout; the threads stay the same.

#include <Poco/Exception.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/client/client.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "messenger/tls/tls_client_stream.h"
#include "messenger/tls/tls_context.h"
#include "recent_ids.h"

namespace messenger {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Bytes asked of the socket per read.
constexpr std::size_t kReadChunk = 64 * 1024;
// First pause before reconnecting; it doubles per failed attempt up to reconnect_max_backoff.
constexpr milliseconds kInitialBackoff{100};

Poco::Timespan ToTimespan(milliseconds ms) {
  const milliseconds::rep positive = std::max<milliseconds::rep>(ms.count(), 1);
  return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(positive) * 1000);
}

std::string Millis(milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

using client_internal::kRecentIdCapacity;
using client_internal::RandomU64;
using client_internal::RecentIds;

// The response type that answers `request` when it succeeds (ERROR may answer any request).
MessageType ExpectedResponse(const Message& request) {
  switch (TypeOf(request)) {
    case MessageType::kHello:
      return MessageType::kHelloOk;
    case MessageType::kLogin:
      return MessageType::kLoginOk;
    case MessageType::kListAccounts:
      return MessageType::kAccountList;
    case MessageType::kSend:
      return MessageType::kSendOk;
    case MessageType::kFetchUndelivered:
      return MessageType::kMessageBatch;
    case MessageType::kDeleteAccount:
      return std::get<DeleteAccount>(request).confirm ? MessageType::kOk
                                                      : MessageType::kConfirmRequired;
    case MessageType::kPing:
      return MessageType::kPong;
    default:
      return MessageType::kOk;  // CREATE_ACCOUNT, LOGOUT, ACK.
  }
}

// True iff the server serves `type` only on a logged-in session.
bool NeedsLogin(MessageType type) {
  switch (type) {
    case MessageType::kLogout:
    case MessageType::kListAccounts:
    case MessageType::kSend:
    case MessageType::kFetchUndelivered:
    case MessageType::kAck:
    case MessageType::kDeleteAccount:
      return true;
    default:
      return false;
  }
}

// True iff `request` ends the login when it succeeds; the pre-login frame limit applies from the
// moment it is sent (docs/PROTOCOL.md, section 3.2).
bool EndsLogin(const Message& request) {
  if (std::holds_alternative<Logout>(request)) return true;
  const auto* deletion = std::get_if<DeleteAccount>(&request);
  return deletion != nullptr && deletion->confirm;
}

// The byte stream under a Connection: the TCP socket itself, or TLS over it. Send may be called
// by one thread while Receive runs on another; Shutdown from any thread wakes both.
class Channel {
 public:
  virtual ~Channel() = default;
  // Sends all of `bytes`; with `wait` false only what the socket takes at once. Errors:
  // kTimeout (the server stopped reading), kDisconnected (with the cause).
  virtual Status Send(std::span<const std::uint8_t> bytes, bool wait) = 0;
  // Bytes received (> 0), 0 when the server closed the connection, or kDisconnected.
  virtual Result<std::size_t> Receive(std::span<std::uint8_t> buffer) = 0;
  // Ends the connection in both directions; a blocked Receive returns.
  virtual void Shutdown() = 0;
};

class PlainChannel final : public Channel {
 public:
  explicit PlainChannel(const Poco::Net::StreamSocket& socket) : socket_(socket) {}

  Status Send(std::span<const std::uint8_t> bytes, bool wait) override {
    std::size_t sent = 0;
    try {
      while (sent < bytes.size()) {
        const int chunk = static_cast<int>(std::min<std::size_t>(bytes.size() - sent, INT_MAX));
        // MSG_NOSIGNAL: a peer that has gone must be an error here, not a SIGPIPE.
        const int n =
            socket_.sendBytes(bytes.data() + sent, chunk, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
        if (n <= 0) throw Poco::IOException("the socket accepted no bytes");
        sent += static_cast<std::size_t>(n);
      }
    } catch (const Poco::TimeoutException& e) {
      return Status(ErrorCode::kTimeout, e.displayText());
    } catch (const Poco::Exception& e) {
      return Status(ErrorCode::kDisconnected, e.displayText());
    }
    return Status::Ok();
  }

  Result<std::size_t> Receive(std::span<std::uint8_t> buffer) override {
    try {
      const int n = socket_.receiveBytes(
          buffer.data(), static_cast<int>(std::min<std::size_t>(buffer.size(), INT_MAX)));
      return static_cast<std::size_t>(std::max(n, 0));
    } catch (const Poco::Exception& e) {
      return Status(ErrorCode::kDisconnected, e.displayText());
    }
  }

  void Shutdown() override {
    try {
      socket_.shutdown();  // Wakes the reader: its recv() returns 0.
    } catch (const Poco::Exception&) {
      // Already reset by the peer: the reader has noticed or will.
    }
  }

 private:
  Poco::Net::StreamSocket socket_;
};

class TlsChannel final : public Channel {
 public:
  // `send_timeout`: how long a Send may wait for a server that does not read.
  TlsChannel(const Poco::Net::StreamSocket& socket, std::unique_ptr<TlsClientStream> stream,
             milliseconds send_timeout)
      : socket_(socket), stream_(std::move(stream)), send_timeout_(send_timeout) {}

  Status Send(std::span<const std::uint8_t> bytes, bool wait) override {
    return stream_->Send(bytes, wait ? send_timeout_ : milliseconds(0));
  }
  Result<std::size_t> Receive(std::span<std::uint8_t> buffer) override {
    return stream_->Receive(buffer);
  }
  void Shutdown() override { stream_->Shutdown(); }

 private:
  Poco::Net::StreamSocket socket_;  // Owns the descriptor; outlives stream_.
  std::unique_ptr<TlsClientStream> stream_;
  const milliseconds send_timeout_;
};

class Connection;

// What a connection reports to its owner, on the connection's reader thread.
class ConnectionEvents {
 public:
  virtual ~ConnectionEvents() = default;
  virtual void OnDeliver(Connection& connection, const Deliver& deliver) = 0;
  virtual void OnSessionEnded(const SessionEnded& ended) = 0;
  // An established connection ended without the client closing it. `may_reconnect` is false
  // when the server said a new connection would be pointless (TAKEOVER, LOGIN_TIMEOUT).
  virtual void OnLost(Connection& connection, const Status& reason, bool may_reconnect) = 0;
};

// One TCP connection: request/response matching, the two I/O threads and the frame limits.
// Thread-safe; Start() and Join() are called by the owner.
class Connection {
 public:
  Connection(std::string peer, std::unique_ptr<Channel> channel, ConnectionEvents& events)
      : peer_(std::move(peer)), channel_(std::move(channel)), events_(events) {}

  ~Connection() {
    Fail(Status(ErrorCode::kDisconnected, "the client closed the connection to " + peer_),
         /*by_client=*/true);
    Join();
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts the reader and the writer. Errors: kConnectionFailed (no thread could be started;
  // the connection is then failed). REQUIRES: called once.
  Status Start() {
    std::lock_guard lock(mu_);  // The threads may already run; Join() reads their ids.
    try {
      reader_ = std::thread([this] { ReadLoop(); });
      reader_id_ = reader_.get_id();
      writer_ = std::thread([this] { WriteLoop(); });
      writer_id_ = writer_.get_id();
    } catch (const std::system_error& e) {
      failure_ = Status(ErrorCode::kConnectionFailed,
                        std::string("cannot start a thread for the connection: ") + e.what());
      wake_writer_.notify_all();
      ShutdownSocket();
      return *failure_;
    }
    return Status::Ok();
  }

  // Sends `request` and waits up to `timeout` for its response. An ERROR becomes its Status.
  Result<Message> Call(const Message& request, milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    const MessageType type = TypeOf(request);
    auto slot = std::make_shared<Slot>();
    slot->expected = ExpectedResponse(request);
    slot->ends_login = EndsLogin(request);

    std::unique_lock lock(mu_);
    std::uint32_t id = 0;
    if (Status status = QueueLocked(request, id); !status.ok()) return status;
    if (slot->ends_login) logged_in_ = false;
    pending_.emplace(id, slot);
    if (!slot->done.wait_until(lock, deadline, [&] { return slot->result.has_value(); })) {
      pending_.erase(id);
      return Status(ErrorCode::kTimeout, "no answer to " + std::string(MessageTypeName(type)) +
                                             " from " + peer_ + " within " + Millis(timeout));
    }
    return std::move(*slot->result);
  }

  // Sends `request` without waiting; its response is read and dropped. Does nothing once the
  // connection has failed.
  void Post(const Message& request) {
    std::lock_guard lock(mu_);
    std::uint32_t id = 0;
    (void)QueueLocked(request, id);  // Only a failed connection or a misuse can refuse it.
  }

  // Ends the connection: pending requests fail with `cause` (see Finish) unless another cause
  // came first. `by_client`: the owner closed it, so no Disconnected push follows.
  void Fail(const Status& cause, bool by_client = false) {
    {
      std::lock_guard lock(mu_);
      if (by_client) by_client_ = true;
      if (failure_) return;
      failure_ = cause;
      wake_writer_.notify_all();
      // Closing on purpose: the writer first hands over what is queued (the ACKs of accepted
      // deliveries above all), then shuts the socket down itself.
      if (by_client) return;
    }
    ShutdownSocket();
  }

  // Marks the handshake (and any re-login) complete: from now on its end is reported through
  // OnLost. Returns false if the connection has already failed.
  bool MarkEstablished() {
    std::lock_guard lock(mu_);
    if (failure_) return false;
    established_ = true;
    return true;
  }

  bool usable() const {
    std::lock_guard lock(mu_);
    return !failure_.has_value();
  }

  // Waits for both threads. REQUIRES: Fail() was called. From one of the connection's own
  // threads (a push handler closing the client) it returns at once; the owner joins later.
  void Join() {
    const std::thread::id self = std::this_thread::get_id();
    {
      std::lock_guard lock(mu_);
      if (self == reader_id_ || self == writer_id_) return;
    }
    std::lock_guard lock(join_mu_);
    if (reader_.joinable()) reader_.join();
    if (writer_.joinable()) writer_.join();
  }

  const std::string& peer() const { return peer_; }

 private:
  struct Slot {
    MessageType expected = MessageType::kOk;
    bool ends_login = false;
    std::optional<Result<Message>> result;
    std::condition_variable done;
  };

  // Encodes `request` with a fresh request id and queues it for the writer.
  // Errors: kDisconnected (the connection has failed), the encoder's kInvalidUtf8 and
  // kMalformedBody, kNotLoggedIn or kFrameTooLarge when the server would refuse its size.
  Status QueueLocked(const Message& request, std::uint32_t& id) {
    if (failure_) return NotConnectedLocked();
    const MessageType type = TypeOf(request);
    do {
      id = next_id_++;
    } while (id == 0 || pending_.count(id) != 0);
    Bytes frame;
    if (Status status = EncodeFrame(Frame{id, request}, frame); !status.ok()) return status;
    const std::size_t length = frame.size() - kLengthPrefixSize;
    const std::uint32_t limit = logged_in_ ? max_frame_size_ : max_prelogin_frame_size_;
    if (length > limit) {
      // Sent anyway it would cost the whole connection (FRAME_TOO_LARGE is fatal).
      if (!logged_in_ && NeedsLogin(type)) {
        return Status(ErrorCode::kNotLoggedIn,
                      std::string(MessageTypeName(type)) + " needs a logged-in session");
      }
      return Status(ErrorCode::kFrameTooLarge,
                    std::string(MessageTypeName(type)) + " of " + std::to_string(length) +
                        " bytes exceeds the server's limit of " + std::to_string(limit) +
                        (logged_in_ ? " bytes" : " bytes before login"));
    }
    outbound_.insert(outbound_.end(), frame.begin(), frame.end());
    wake_writer_.notify_one();
    return Status::Ok();
  }

  // What a request gets on a failed connection. During the handshake the cause itself (so that
  // Connect() reports SERVER_BUSY as such); afterwards kDisconnected.
  Status NotConnectedLocked() const {
    if (!established_) return *failure_;
    return Disconnected(*failure_);
  }

  Status Disconnected(const Status& cause) const {
    if (cause.code() == ErrorCode::kDisconnected) return cause;
    return Status(ErrorCode::kDisconnected,
                  "the server at " + peer_ + " ended the connection with " + cause.ToString());
  }

  void ShutdownSocket() { channel_->Shutdown(); }  // Wakes the reader.

  void WriteLoop() {
    Bytes batch;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        wake_writer_.wait(lock, [this] { return failure_.has_value() || !outbound_.empty(); });
        batch.clear();
        batch.swap(outbound_);
        if (failure_) {
          if (!by_client_) return;  // Fail() has shut the socket down.
          lock.unlock();
          // Whatever the kernel takes at once; a close must not wait on a server that stalls.
          if (!batch.empty()) (void)channel_->Send(batch, /*wait=*/false);
          ShutdownSocket();
          return;
        }
      }
      if (!SendAll(batch)) return;
    }
  }

  // Sends all of `bytes`; on failure fails the connection and returns false.
  bool SendAll(const Bytes& bytes) {
    const Status sent = channel_->Send(bytes, /*wait=*/true);
    if (sent.ok()) return true;
    if (sent.code() == ErrorCode::kTimeout) {
      Fail(Status(ErrorCode::kDisconnected,
                  "the server at " + peer_ + " stopped reading; giving up on the connection"));
    } else {
      Fail(Status(ErrorCode::kDisconnected, "cannot send to " + peer_ + ": " + sent.message()));
    }
    return false;
  }

  void ReadLoop() {
    FrameDecoder decoder(kMaxPreloginFrameSize);
    std::vector<std::uint8_t> buffer(kReadChunk);
    bool open = true;
    while (open) {
      const Result<std::size_t> n = channel_->Receive(buffer);
      if (!n.ok()) {
        Fail(Status(ErrorCode::kDisconnected,
                    "lost the connection to " + peer_ + ": " + n.status().message()));
        break;
      }
      if (*n == 0) {
        Fail(Status(ErrorCode::kDisconnected, "the server at " + peer_ + " closed the connection"));
        break;
      }
      decoder.Feed(std::span<const std::uint8_t>(buffer.data(), *n));
      while (open) {
        std::optional<DecodeResult> decoded = decoder.Next();
        if (!decoded) break;
        open = Handle(*decoded, decoder);
      }
    }
    Finish();
  }

  // Acts on one frame from the server. Returns false when the connection is over.
  bool Handle(DecodeResult& decoded, FrameDecoder& decoder) {
    if (!decoded.status.ok()) {
      // docs/PROTOCOL.md 4.3: a client that cannot decode a server frame closes the connection.
      Fail(Status(ErrorCode::kDisconnected, "the server at " + peer_ +
                                                " sent a frame this client cannot read (" +
                                                decoded.status.ToString() + ")"));
      return false;
    }
    Message& message = decoded.message;
    const MessageType type = TypeOf(message);
    if (const auto* deliver = std::get_if<Deliver>(&message)) {
      events_.OnDeliver(*this, *deliver);
      return true;
    }
    if (const auto* ended = std::get_if<SessionEnded>(&message)) {
      {
        std::lock_guard lock(mu_);
        end_reason_ = ended->reason;
      }
      events_.OnSessionEnded(*ended);
      // SESSION_ENDED is the last frame: nothing pending will be answered.
      Fail(Status(ErrorCode::kDisconnected,
                  "the server ended the session (" + std::string(EndReasonName(ended->reason)) +
                      (ended->message.empty() ? ")" : "): " + ended->message)));
      return false;
    }
    if (IsRequest(type)) {
      Fail(Status(ErrorCode::kDisconnected, "the server at " + peer_ + " sent a request (" +
                                                std::string(MessageTypeName(type)) + ")"));
      return false;
    }
    if (decoded.request_id == 0) {
      // Only ERROR may carry request id 0 (the codec checks): it concerns the whole connection.
      const Error& error = std::get<Error>(message);
      Fail(Status(error.code, error.message));
      return false;
    }

    std::unique_lock lock(mu_);
    const auto it = pending_.find(decoded.request_id);
    if (it == pending_.end()) return true;  // Timed out, or a posted ACK: nobody waits.
    Slot& slot = *it->second;
    if (const auto* error = std::get_if<Error>(&message)) {
      // A refused LOGOUT or DELETE_ACCOUNT leaves the session logged in (NOT_LOGGED_IN: it was
      // not logged in anyway).
      if (slot.ends_login && error->code != ErrorCode::kNotLoggedIn) logged_in_ = true;
      slot.result = Status(error->code, error->message);
    } else if (type != slot.expected) {
      lock.unlock();
      Fail(Status(ErrorCode::kDisconnected, "the server at " + peer_ + " answered with " +
                                                std::string(MessageTypeName(type)) + " where " +
                                                std::string(MessageTypeName(slot.expected)) +
                                                " was due"));
      return false;
    } else {
      if (const auto* hello = std::get_if<HelloOk>(&message)) {
        max_frame_size_ = hello->max_frame_size;
        if (hello->max_prelogin_frame_size != 0) {
          max_prelogin_frame_size_ = hello->max_prelogin_frame_size;
        }
        // Within the protocol's bounds, so a confused server cannot make this client buffer more.
        decoder.SetMaxFrameSize(
            std::clamp(hello->max_frame_size, kMinMaxFrameSize, kMaxMaxFrameSize));
      }
      if (type == MessageType::kLoginOk) logged_in_ = true;
      slot.result = std::move(message);
    }
    slot.done.notify_all();
    pending_.erase(it);
    return true;
  }

  // The reader's last act: fails what is pending and reports the loss.
  void Finish() {
    Status reason;
    bool report = false;
    bool may_reconnect = true;
    {
      std::lock_guard lock(mu_);
      const Status pending_status = NotConnectedLocked();
      for (auto& entry : pending_) {
        entry.second->result = pending_status;
        entry.second->done.notify_all();
      }
      pending_.clear();
      reason = Disconnected(*failure_);
      report = established_ && !by_client_;
      may_reconnect =
          end_reason_ != EndReason::kTakeover && end_reason_ != EndReason::kLoginTimeout;
    }
    if (report) events_.OnLost(*this, reason, may_reconnect);
  }

  const std::string peer_;
  const std::unique_ptr<Channel> channel_;
  ConnectionEvents& events_;

  std::mutex join_mu_;
  std::thread reader_;
  std::thread writer_;
  std::thread::id reader_id_;  // Guarded by mu_.
  std::thread::id writer_id_;  // Guarded by mu_.

  mutable std::mutex mu_;
  std::condition_variable wake_writer_;
  Bytes outbound_;  // Whole frames waiting for the writer.
  std::unordered_map<std::uint32_t, std::shared_ptr<Slot>> pending_;
  std::uint32_t next_id_ = 1;
  std::optional<Status> failure_;  // Set once: why the connection ended.
  bool by_client_ = false;
  bool established_ = false;
  std::optional<EndReason> end_reason_;  // From SESSION_ENDED.
  // Frame limits for what this client sends (docs/PROTOCOL.md 3.2), from HELLO_OK.
  bool logged_in_ = false;
  std::uint32_t max_prelogin_frame_size_ = kMaxPreloginFrameSize;
  std::uint32_t max_frame_size_ = kMaxPreloginFrameSize;
};

class WireClient final : public Client, private ConnectionEvents {
 public:
  WireClient(ClientOptions options, PushHandler on_push)
      : options_(std::move(options)),
        on_push_(std::move(on_push)),
        peer_(options_.host + ":" + std::to_string(options_.port)),
        next_client_message_id_(RandomU64()),
        next_nonce_(RandomU64()),
        seen_(kRecentIdCapacity) {
    if (options_.auto_reconnect) reconnect_thread_ = std::thread([this] { ReconnectLoop(); });
  }

  ~WireClient() override {
    Close();
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    reconnect_cv_.notify_all();
    if (reconnect_thread_.joinable()) reconnect_thread_.join();
    std::shared_ptr<Connection> connection;
    {
      std::lock_guard lock(mu_);
      connection = std::move(connection_);
    }
    connection.reset();  // Its destructor fails and joins it.
  }

  Status Connect() override {
    std::lock_guard connect_lock(connect_mu_);
    std::shared_ptr<Connection> old;
    {
      std::lock_guard lock(mu_);
      closed_ = false;
      if (connection_ && connection_->usable()) return Status::Ok();
      old = std::move(connection_);
      reconnect_wanted_ = false;
      credentials_.reset();
    }
    reconnect_cv_.notify_all();
    old.reset();  // Joins the ended connection's threads.
    HelloOk hello;
    Result<std::shared_ptr<Connection>> established = Establish(hello);
    if (!established.ok()) return established.status();
    std::shared_ptr<Connection> connection = std::move(established).value();
    {
      std::lock_guard lock(mu_);
      if (closed_) {
        return Status(ErrorCode::kDisconnected,
                      "the connection to " + peer_ + " was closed while it was being set up");
      }
      connection_ = connection;
      hello_ = hello;
    }
    if (!connection->MarkEstablished()) {
      return Status(ErrorCode::kConnectionFailed,
                    "the server at " + peer_ + " closed the connection right after the handshake");
    }
    return Status::Ok();
  }

  void Close() override {
    std::shared_ptr<Connection> connection;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      reconnect_wanted_ = false;
      credentials_.reset();
      connection = connection_;
    }
    reconnect_cv_.notify_all();
    if (connection) {
      connection->Fail(
          Status(ErrorCode::kDisconnected, "the client closed the connection to " + peer_),
          /*by_client=*/true);
      connection->Join();
    }
  }

  HelloOk server_info() const override {
    std::lock_guard lock(mu_);
    return hello_;
  }

  Status CreateAccount(std::string_view username, std::string_view password) override {
    return Call(messenger::CreateAccount{std::string(username), std::string(password)}).status();
  }

  Result<LoginOk> Login(std::string_view username, std::string_view password) override {
    Result<Message> response = Call(messenger::Login{std::string(username), std::string(password)});
    if (!response.ok()) return response.status();
    if (options_.auto_reconnect) {
      // Kept only when needed, for logging in again after a reconnection.
      std::lock_guard lock(mu_);
      credentials_ = Credentials{std::string(username), std::string(password)};
    }
    return std::get<LoginOk>(response.value());
  }

  Status Logout() override {
    Status status = Call(messenger::Logout{}).status();
    if (status.ok()) ForgetCredentials();
    return status;
  }

  Result<AccountList> ListAccounts(std::string_view pattern, std::string_view cursor,
                                   std::uint16_t limit) override {
    Result<Message> response =
        Call(messenger::ListAccounts{std::string(pattern), std::string(cursor), limit});
    if (!response.ok()) return response.status();
    return std::get<AccountList>(std::move(response).value());
  }

  Result<SendOk> Send(std::string_view recipient, std::string_view text) override {
    std::uint64_t id = 0;
    while (id == 0) id = next_client_message_id_.fetch_add(1);
    return SendWithId(recipient, text, id);
  }

  Result<SendOk> SendWithId(std::string_view recipient, std::string_view text,
                            std::uint64_t client_message_id) override {
    Result<Message> response =
        Call(messenger::Send{std::string(recipient), client_message_id, std::string(text)});
    if (!response.ok()) return response.status();
    return std::get<SendOk>(response.value());
  }

  Result<MessageBatch> FetchUndelivered(std::uint16_t limit) override {
    const std::shared_ptr<Connection> connection = Current();
    if (!connection) return NotConnected();
    Result<Message> response =
        connection->Call(messenger::FetchUndelivered{limit}, options_.request_timeout);
    if (!response.ok()) return response.status();
    MessageBatch batch = std::get<MessageBatch>(std::move(response).value());
    // Messages the application already accepted from a DELIVER whose ACK was lost with the
    // connection: not handed over again, only acknowledged again.
    std::vector<std::uint64_t> duplicates;
    {
      std::lock_guard lock(seen_mu_);
      std::erase_if(batch.messages, [&](const StoredMessage& message) {
        if (!seen_.Contains(message.message_id)) return false;
        duplicates.push_back(message.message_id);
        return true;
      });
    }
    if (!duplicates.empty()) connection->Post(messenger::Ack{std::move(duplicates)});
    return batch;
  }

  Status Ack(std::span<const std::uint64_t> message_ids) override {
    return Call(messenger::Ack{std::vector<std::uint64_t>(message_ids.begin(), message_ids.end())})
        .status();
  }

  Result<std::uint32_t> DeleteAccount(bool confirm) override {
    Result<Message> response = Call(messenger::DeleteAccount{confirm});
    if (!response.ok()) return response.status();
    if (const auto* required = std::get_if<ConfirmRequired>(&response.value())) {
      return required->unread_count;
    }
    ForgetCredentials();
    return std::uint32_t{0};
  }

  Status Ping() override {
    const std::uint64_t nonce = next_nonce_.fetch_add(1);
    Result<Message> response = Call(messenger::Ping{nonce});
    if (!response.ok()) return response.status();
    const std::uint64_t echoed = std::get<Pong>(response.value()).nonce;
    if (echoed != nonce) {
      return Status(ErrorCode::kInternal, "PONG from " + peer_ + " carried nonce " +
                                              std::to_string(echoed) + ", not " +
                                              std::to_string(nonce));
    }
    return Status::Ok();
  }

 private:
  struct Credentials {
    std::string username;
    std::string password;
  };

  std::shared_ptr<Connection> Current() const {
    std::lock_guard lock(mu_);
    return connection_;
  }

  Status NotConnected() const {
    return Status(ErrorCode::kDisconnected, "not connected to " + peer_);
  }

  Result<Message> Call(const Message& request) {
    const std::shared_ptr<Connection> connection = Current();
    if (!connection) return NotConnected();
    return connection->Call(request, options_.request_timeout);
  }

  void ForgetCredentials() {
    std::lock_guard lock(mu_);
    credentials_.reset();
  }

  // The name the server's certificate must carry: tls.server_name, else the host.
  std::string TlsServerName() const {
    return options_.tls.server_name.empty() ? options_.host : options_.tls.server_name;
  }

  // "TLS handshake with HOST:PORT" (and the name checked when it is not the host), for errors.
  std::string TlsWhat() const {
    std::string what = "TLS handshake with " + peer_;
    if (!options_.tls.server_name.empty() && options_.tls.server_name != options_.host) {
      what += " (as '" + options_.tls.server_name + "')";
    }
    return what;
  }

  // Sets up TLS over `socket` within `timeout`. Errors: kTlsFailed (saying what failed and
  // why), kTimeout. REQUIRES: connect_mu_ is held (the context is made once and kept).
  Result<std::unique_ptr<Channel>> StartTls(const Poco::Net::StreamSocket& socket,
                                            milliseconds timeout) {
    if (!tls_context_) {
      Result<std::shared_ptr<const TlsClientContext>> context =
          TlsClientContext::Create(options_.tls.ca_file, options_.tls.insecure);
      if (!context.ok()) {
        return Status(ErrorCode::kTlsFailed,
                      "cannot set up TLS towards " + peer_ + ": " + context.status().message());
      }
      tls_context_ = std::move(context).value();
    }
    Result<std::unique_ptr<TlsClientStream>> stream =
        TlsClientStream::Connect(socket.impl()->sockfd(), tls_context_, TlsServerName(), timeout);
    if (!stream.ok()) {
      const Status& status = stream.status();
      if (status.code() == ErrorCode::kTimeout) {
        return Status(ErrorCode::kTimeout, TlsWhat() + " timed out after " + Millis(timeout) +
                                               " (is the server speaking TLS on that port?)");
      }
      return Status(ErrorCode::kTlsFailed, TlsWhat() + " failed: " + status.message());
    }
    const milliseconds send_timeout = std::max(options_.request_timeout, milliseconds(1000));
    return std::unique_ptr<Channel>(
        std::make_unique<TlsChannel>(socket, std::move(stream).value(), send_timeout));
  }

  // Opens a TCP connection, sets up TLS if asked to and performs the handshake, all within
  // connect_timeout. Errors: kConnectionFailed, kTimeout, kTlsFailed, the server's ERROR code
  // (kServerBusy, kUnsupportedVersion, ...).
  Result<std::shared_ptr<Connection>> Establish(HelloOk& hello) {
    const auto start = SteadyClock::now();
    const milliseconds timeout = options_.connect_timeout;
    Poco::Net::StreamSocket socket;
    try {
      const Poco::Net::SocketAddress address(options_.host, options_.port);
      socket.connect(address, ToTimespan(timeout));
      socket.setNoDelay(true);
      // A server that stops reading must not hold the writer forever: the send then fails and
      // the connection with it.
      socket.setSendTimeout(ToTimespan(std::max(options_.request_timeout, milliseconds(1000))));
    } catch (const Poco::TimeoutException&) {
      return Status(ErrorCode::kTimeout,
                    "connecting to " + peer_ + " timed out after " + Millis(timeout));
    } catch (const Poco::Exception& e) {
      return Status(ErrorCode::kConnectionFailed,
                    "cannot connect to " + peer_ + ": " + e.displayText());
    }
    const auto left_of_timeout = [&] {
      return std::max(milliseconds(1), timeout - std::chrono::duration_cast<milliseconds>(
                                                     SteadyClock::now() - start));
    };
    std::unique_ptr<Channel> channel;
    if (options_.tls.enabled) {
      Result<std::unique_ptr<Channel>> tls = StartTls(socket, left_of_timeout());
      if (!tls.ok()) return tls.status();
      channel = std::move(tls).value();
    } else {
      channel = std::make_unique<PlainChannel>(socket);
    }
    auto connection = std::make_shared<Connection>(peer_, std::move(channel),
                                                   static_cast<ConnectionEvents&>(*this));
    if (Status started = connection->Start(); !started.ok()) return started;
    const milliseconds left = left_of_timeout();
    Result<Message> response = connection->Call(Hello{kProtocolVersion}, left);
    if (!response.ok()) {
      const Status& status = response.status();
      if (status.code() == ErrorCode::kDisconnected) {
        return Status(ErrorCode::kConnectionFailed,
                      "no handshake with " + peer_ + ": " + status.message());
      }
      return status;
    }
    hello = std::get<HelloOk>(response.value());
    return connection;
  }

  // ---- Automatic reconnection ----

  void ReconnectLoop() {
    std::mt19937_64 random(RandomU64());
    const milliseconds max_backoff = std::max(options_.reconnect_max_backoff, kInitialBackoff);
    std::unique_lock lock(mu_);
    milliseconds backoff = kInitialBackoff;
    while (!stopping_) {
      reconnect_cv_.wait(lock, [this] { return stopping_ || (reconnect_wanted_ && !closed_); });
      if (stopping_) break;
      // Half to all of the backoff: clients dropped together do not return together.
      std::uniform_int_distribution<milliseconds::rep> jitter(backoff.count() / 2, backoff.count());
      reconnect_cv_.wait_for(lock, milliseconds(jitter(random)),
                             [this] { return stopping_ || !reconnect_wanted_ || closed_; });
      if (stopping_ || !reconnect_wanted_ || closed_) continue;
      lock.unlock();
      const bool installed = ReconnectOnce();
      lock.lock();
      // A new connection starts the next loss from the shortest pause again.
      backoff = installed ? kInitialBackoff : std::min(backoff * 2, max_backoff);
    }
  }

  // One attempt: connect, handshake, log in with the last credentials that worked. Clears
  // reconnect_wanted_ when nothing more is to be done; returns true iff a new connection is
  // established.
  bool ReconnectOnce() {
    std::lock_guard connect_lock(connect_mu_);
    std::shared_ptr<Connection> old;
    std::optional<Credentials> credentials;
    {
      std::lock_guard lock(mu_);
      if (closed_ || stopping_ || !reconnect_wanted_) return false;
      if (connection_ && connection_->usable()) {  // Connect() was faster.
        reconnect_wanted_ = false;
        return false;
      }
      old = connection_;
      credentials = credentials_;
    }
    if (old) old->Join();  // The lost connection's reader has reported; wait for it to exit.
    old.reset();
    HelloOk hello;
    Result<std::shared_ptr<Connection>> established = Establish(hello);
    if (!established.ok()) return false;
    std::shared_ptr<Connection> connection = std::move(established).value();
    if (credentials) {
      Result<Message> login = connection->Call(
          messenger::Login{credentials->username, credentials->password}, options_.request_timeout);
      if (!login.ok()) {
        if (login.status().code() != ErrorCode::kAuthFailed) return false;  // Try again later.
        // The password changed or the account is gone: stay connected, logged out; the
        // application's next request says NOT_LOGGED_IN.
        ForgetCredentials();
      }
    }
    {
      std::lock_guard lock(mu_);
      if (closed_ || stopping_) return false;  // `connection` fails and joins as it goes.
      connection_ = connection;
      hello_ = hello;
      // Cleared before the connection can report a loss, so that a loss right away is not
      // forgotten.
      reconnect_wanted_ = false;
    }
    if (connection->MarkEstablished()) return true;
    // It failed before it was established, so it reports nothing: try again.
    std::lock_guard lock(mu_);
    if (connection_ == connection && !closed_) reconnect_wanted_ = true;
    return false;
  }

  // ---- ConnectionEvents (on a reader thread) ----

  void OnDeliver(Connection& connection, const Deliver& deliver) override {
    const std::uint64_t id = deliver.message.message_id;
    bool duplicate = false;
    {
      std::lock_guard lock(seen_mu_);
      duplicate = seen_.Contains(id);
    }
    bool accepted = duplicate;
    if (!duplicate && HandOver(Push{deliver})) {
      accepted = true;
      std::lock_guard lock(seen_mu_);
      seen_.Insert(id);
    }
    // Posted, not awaited: the reader must go on reading (the OK is dropped when it arrives).
    if (accepted) connection.Post(messenger::Ack{{id}});
  }

  void OnSessionEnded(const SessionEnded& ended) override { (void)HandOver(Push{ended}); }

  void OnLost(Connection& connection, const Status& reason, bool may_reconnect) override {
    (void)HandOver(Push{Disconnected{reason}});
    {
      std::lock_guard lock(mu_);
      if (!options_.auto_reconnect || !may_reconnect || closed_ || stopping_) return;
      if (connection_.get() != &connection) return;
      reconnect_wanted_ = true;
    }
    reconnect_cv_.notify_all();
  }

  // Calls the application's handler; a handler that throws has not accepted the push.
  bool HandOver(const Push& push) {
    if (!on_push_) return false;
    try {
      return on_push_(push);
    } catch (...) {
      return false;
    }
  }

  const ClientOptions options_;
  const PushHandler on_push_;
  const std::string peer_;  // "host:port", for messages.
  // Fresh SEND ids start at a random point, so that they differ between client objects and
  // between runs of a program without any stored state.
  std::atomic<std::uint64_t> next_client_message_id_;
  std::atomic<std::uint64_t> next_nonce_;

  std::mutex connect_mu_;  // One connection set up at a time (Connect and reconnection).
  std::shared_ptr<const TlsClientContext> tls_context_;  // Guarded by connect_mu_; made once.
  mutable std::mutex mu_;
  std::condition_variable reconnect_cv_;
  std::shared_ptr<Connection> connection_;
  HelloOk hello_;
  std::optional<Credentials> credentials_;  // The last successful LOGIN, with auto_reconnect.
  bool closed_ = false;                     // Close() called and no Connect() since.
  bool reconnect_wanted_ = false;
  bool stopping_ = false;
  std::thread reconnect_thread_;

  std::mutex seen_mu_;
  RecentIds seen_;  // Ids of deliveries the application accepted.
};

}  // namespace

std::unique_ptr<Client> MakeWireClient(ClientOptions options, PushHandler on_push) {
  return std::make_unique<WireClient>(std::move(options), std::move(on_push));
}

}  // namespace messenger

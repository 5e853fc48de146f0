// MakeGrpcClient: the Client interface over the gRPC binding (docs/PROTOCOL.md, section 15).
//
// A GrpcClient holds one channel from Connect() until Close() or the loss of its session, and at
// most one Session: the token Login returned, the Subscribe stream that carries the session's
// pushes, read on the session's reader thread, and an acker thread that sends the ACKs of
// accepted deliveries in batches, so that the reader never waits on a round trip. Requests are
// synchronous unary calls, each with its own ClientContext whose deadline is the request timeout;
// Close() cancels the calls in flight so that they fail at once, as on the wire.
//
// A Session's threads report to the client through SessionEvents. A session that has ended is
// "retired": its threads are joined later from another thread (never from its own, which may be
// the one running the application's push handler).

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/client/client.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/rules.h"
#include "messenger/codec/status.h"
#include "messenger/v1/messenger.grpc.pb.h"
#include "recent_ids.h"

namespace messenger {
namespace {

namespace pb = ::messenger::v1;

using client_internal::kRecentIdCapacity;
using client_internal::RandomU64;
using client_internal::RecentIds;
using std::chrono::milliseconds;
using Stub = pb::Messenger::Stub;

// The trailer that carries a failed call's protocol error (section 15.3).
constexpr std::string_view kErrorTrailer = "messenger-error-bin";
// Channels tried by Connect() when an attempt fails at once (UNAVAILABLE), and the pause between.
constexpr int kConnectAttempts = 3;
constexpr milliseconds kConnectRetryPause{50};
// HTTP/2 keepalive: a ping after this long without traffic, and how long its answer may take.
// Section 15.2 lets clients ping every 10 s; the server itself pings after 60 s.
constexpr milliseconds kKeepaliveTime{30000};
constexpr milliseconds kKeepaliveTimeout{20000};
// How long Close() waits for the ACKs still queued to be sent: a close must not hang on a server
// that stalls, and an ACK that is lost only means a redelivery.
constexpr milliseconds kCloseAckFlush{1000};
// First pause before reconnecting; it doubles per failed attempt up to reconnect_max_backoff.
constexpr milliseconds kInitialBackoff{100};

// The system trust store (Debian's ca-certificates bundle). When it is absent gRPC falls back
// to the roots it ships.
constexpr const char* kSystemCaBundle = "/etc/ssl/certs/ca-certificates.crt";

std::string Millis(milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// The whole of a file; false when it cannot be read.
bool ReadFile(const std::string& path, std::string& contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  contents = buffer.str();
  return static_cast<bool>(in) || in.eof();
}

// True iff a failed connection's gRPC message says the TLS handshake or the certificate check
// failed (gRPC reports both as UNAVAILABLE, as it does a refused connection).
bool IsTlsFailure(std::string_view message) {
  for (const std::string_view sign : {"andshake", "Peer name", "certificate", "SSL", "Ssl"}) {
    if (message.find(sign) != std::string_view::npos) return true;
  }
  return false;
}

// What a gRPC TLS failure message says, in the words of the wire client's errors where gRPC's
// are known (gRPC prefixes every cause with its connection attempts).
std::string TlsReason(const std::string& message) {
  if (message.find("certificate verify failed") != std::string::npos) {
    return "the server's certificate could not be verified (untrusted, expired or not yet valid)";
  }
  const std::size_t peer_name = message.find("Peer name ");
  if (peer_name != std::string::npos) {
    return "the server's certificate is not valid for " +
           message.substr(peer_name + 10, message.find(' ', peer_name + 10) - peer_name - 10);
  }
  const std::size_t last = message.rfind("last error: ");
  return last == std::string::npos ? message : message.substr(last + 12);
}

// The channel's credentials for `tls`: plaintext when off; otherwise TLS verifying the server's
// chain against tls.ca_file (or the system trust store) and its name (gRPC checks the target's
// host, or tls.server_name through `args`); with tls.insecure, TLS that verifies nothing.
Result<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(const TlsClientOptions& tls,
                                                                  grpc::ChannelArguments& args) {
  if (!tls.enabled) return grpc::InsecureChannelCredentials();
  if (!tls.server_name.empty()) {
    args.SetSslTargetNameOverride(tls.server_name);
  }
  if (tls.insecure) {
    grpc::experimental::TlsChannelCredentialsOptions options;
    options.set_verify_server_certs(false);
    options.set_check_call_host(false);
    options.set_certificate_verifier(
        std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
    return grpc::experimental::TlsCredentials(options);
  }
  grpc::SslCredentialsOptions options;
  if (!tls.ca_file.empty()) {
    if (!ReadFile(tls.ca_file, options.pem_root_certs) || options.pem_root_certs.empty()) {
      return Status(ErrorCode::kTlsFailed, "cannot read the CA file " + tls.ca_file);
    }
  } else {
    ReadFile(kSystemCaBundle, options.pem_root_certs);  // Empty: gRPC's own roots.
  }
  return grpc::SslCredentials(options);
}

std::string Target(const std::string& host, std::uint16_t port) {
  // An IPv6 literal needs brackets in a gRPC target, as in a URL.
  const bool ipv6 = host.find(':') != std::string::npos && host.front() != '[';
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// Sets `wire` to the wire's reason for a gRPC end reason; false for the gRPC-only ones (and
// unknown values).
bool ToWireEndReason(pb::EndReason reason, EndReason& wire) {
  switch (reason) {
    case pb::END_REASON_TAKEOVER:
      wire = EndReason::kTakeover;
      return true;
    case pb::END_REASON_SERVER_SHUTDOWN:
      wire = EndReason::kServerShutdown;
      return true;
    case pb::END_REASON_IDLE_TIMEOUT:
      wire = EndReason::kIdleTimeout;
      return true;
    case pb::END_REASON_LOGIN_TIMEOUT:
      wire = EndReason::kLoginTimeout;
      return true;
    default:
      return false;
  }
}

StoredMessage FromProto(const pb::StoredMessage& message) {
  return StoredMessage{message.message_id(), message.sender(), message.timestamp_ms(),
                       message.text()};
}

// kInvalidUtf8 unless every string is UTF-8: protobuf would send it anyway and the server could
// only fail the whole call (section 15.3), so it is refused here as the wire encoder does.
Status CheckStrings(std::initializer_list<std::string_view> strings) {
  for (const std::string_view text : strings) {
    if (!IsValidUtf8(text)) {
      return Status(ErrorCode::kInvalidUtf8, "a string in the request is not valid UTF-8");
    }
  }
  return Status::Ok();
}

// The protocol error of a failed call (see MakeGrpcClient in client.h for the mapping).
Status FromGrpc(const grpc::Status& status, const grpc::ClientContext& context,
                std::string_view what, const std::string& peer, milliseconds timeout) {
  const auto& trailers = context.GetServerTrailingMetadata();
  if (const auto it = trailers.find(grpc::string_ref(kErrorTrailer.data(), kErrorTrailer.size()));
      it != trailers.end()) {
    pb::ErrorDetail detail;
    if (detail.ParseFromArray(it->second.data(), static_cast<int>(it->second.size())) &&
        detail.code() <= 0xFFFF && IsKnownErrorCode(static_cast<std::uint16_t>(detail.code()))) {
      return Status(static_cast<ErrorCode>(detail.code()), status.error_message());
    }
  }
  const std::string call(what);
  const std::string cause = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Status(ErrorCode::kTimeout,
                    "no answer to " + call + " from " + peer + " within " + Millis(timeout));
    case grpc::StatusCode::CANCELLED:
      // Close() cancels the calls in flight; a server that stops may cancel them too.
      return Status(ErrorCode::kDisconnected, call + " to " + peer + " was cancelled: " + cause);
    case grpc::StatusCode::UNAVAILABLE:
      return Status(ErrorCode::kDisconnected, "lost the connection to " + peer + ": " + cause);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Status(ErrorCode::kFrameTooLarge, call + " exceeds a size limit: " + cause);
    case grpc::StatusCode::UNIMPLEMENTED:
      return Status(ErrorCode::kUnknownType, "the server at " + peer + " does not serve " + call);
    default:
      return Status(ErrorCode::kInternal,
                    "the server at " + peer + " failed " + call + " (gRPC status " +
                        std::to_string(static_cast<int>(status.error_code())) + "): " + cause);
  }
}

// Starts `body` on a new thread that takes no asynchronous signals: they stay with the
// application's threads (the terminal client relies on interrupting the thread that reads).
std::thread StartThread(std::function<void()> body) {
  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  for (const int synchronous : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) {
    sigdelset(&all, synchronous);
  }
  ::pthread_sigmask(SIG_BLOCK, &all, &saved);
  try {
    std::thread thread(std::move(body));
    ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    return thread;
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    throw;
  }
}

// Unary calls that Close() can cancel: each registers its context for the duration of the call.
// Thread-safe.
class CallRegistry {
 public:
  void Add(grpc::ClientContext* context) {
    std::lock_guard lock(mu_);
    calls_.insert(context);
  }
  void Remove(grpc::ClientContext* context) {
    std::lock_guard lock(mu_);
    calls_.erase(context);
  }
  // Cancels every call in flight; they end with CANCELLED.
  void CancelAll() {
    std::lock_guard lock(mu_);
    for (grpc::ClientContext* context : calls_) context->TryCancel();
  }

 private:
  std::mutex mu_;
  std::unordered_set<grpc::ClientContext*> calls_;
};

// Makes one unary call on `stub`. `token` (if not empty) goes in the authorization metadata.
// `raw`, if given, receives the call's gRPC status.
template <typename Response, typename Rpc>
Result<Response> Invoke(CallRegistry& registry, Stub& stub, const std::string& token,
                        milliseconds timeout, std::string_view what, const std::string& peer,
                        Rpc rpc, grpc::Status* raw = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  Response response;
  registry.Add(&context);
  const grpc::Status status = rpc(stub, &context, &response);
  registry.Remove(&context);
  if (raw != nullptr) *raw = status;
  if (!status.ok()) return FromGrpc(status, context, what, peer, timeout);
  return response;
}

class Session;

// What a session reports to its client, on the session's reader thread.
class SessionEvents {
 public:
  virtual ~SessionEvents() = default;
  virtual void OnDeliver(Session& session, const StoredMessage& message) = 0;
  // The stream ended other than by Session::Stop(). `ended` is its last push, if it had one;
  // `status` the stream's final status (OK after `ended`).
  virtual void OnStreamEnded(Session& session, const std::optional<pb::SessionEnded>& ended,
                             const Status& status) = 0;
};

// One logged-in session: its token, its Subscribe stream with the reader thread, and the acker
// thread. Thread-safe; Start(), Stop() and Join() are called by the client.
class Session {
 public:
  Session(std::shared_ptr<Stub> stub, std::string token, std::string peer,
          milliseconds request_timeout, SessionEvents& events)
      : stub_(std::move(stub)),
        token_(std::move(token)),
        peer_(std::move(peer)),
        request_timeout_(request_timeout),
        events_(events) {
    stream_context_.AddMetadata("authorization", "Bearer " + token_);
  }

  ~Session() {
    Stop(/*flush=*/false);
    Join();
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Opens the stream and starts both threads. Errors: kDisconnected (Stop() came first),
  // kConnectionFailed (no thread could be started; the stream is then cancelled). REQUIRES:
  // called once.
  Status Start() {
    std::lock_guard lock(mu_);  // The threads may run at once; Join() reads their ids.
    if (stopped_) {             // Close() came between the login and this.
      return Status(ErrorCode::kDisconnected, "the client was closed during the login");
    }
    try {
      reader_ = StartThread([this] { ReadLoop(); });
      reader_id_ = reader_.get_id();
      acker_ = StartThread([this] { AckLoop(); });
      acker_id_ = acker_.get_id();
    } catch (const std::system_error& e) {
      stopped_ = true;
      ack_stop_ = true;
      ack_wake_.notify_all();
      stream_context_.TryCancel();
      return Status(ErrorCode::kConnectionFailed,
                    std::string("cannot start a thread for the session: ") + e.what());
    }
    return Status::Ok();
  }

  const std::string& token() const { return token_; }
  const std::shared_ptr<Stub>& stub() const { return stub_; }

  // Queues ACKs for the acker thread; dropped once the session has ended.
  void QueueAck(std::span<const std::uint64_t> ids) {
    std::lock_guard lock(mu_);
    if (ack_stop_) return;
    acks_.insert(acks_.end(), ids.begin(), ids.end());
    ack_wake_.notify_one();
  }

  // Bracket the hand-over of a delivery to the application, so that FlushAcks() also waits for
  // the ACK of a delivery the application has seen but whose ACK is not queued yet.
  void HandOverStarted() {
    std::lock_guard lock(mu_);
    ++handing_over_;
  }
  void HandOverDone(std::optional<std::uint64_t> ack) {
    std::lock_guard lock(mu_);
    --handing_over_;
    if (ack && !ack_stop_) acks_.push_back(*ack);
    ack_wake_.notify_one();
    ack_idle_.notify_all();
  }

  // Waits until the ACKs of the deliveries handed over so far have been sent, at most
  // `timeout`. Not from the reader thread (its own hand-over would never finish).
  void FlushAcks(milliseconds timeout) {
    std::unique_lock lock(mu_);
    ack_idle_.wait_for(lock, timeout, [this] { return ack_stop_ || IdleLocked(); });
  }

  // Ends the session from this side: no OnStreamEnded follows. With `flush`, the ACKs still
  // queued are sent first (for at most kCloseAckFlush). Idempotent.
  void Stop(bool flush) {
    {
      std::unique_lock lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      // From the reader thread (a push handler closing the client) its own hand-over is
      // still in progress: only what is queued is sent.
      const bool own_hand_over = std::this_thread::get_id() == reader_id_;
      if (flush && acker_.joinable()) {
        ack_wake_.notify_all();
        ack_idle_.wait_for(lock, kCloseAckFlush, [&] {
          return (own_hand_over || handing_over_ == 0) && acks_.empty() && !acking_;
        });
      }
      ack_stop_ = true;
      acks_.clear();
      if (ack_call_ != nullptr) ack_call_->TryCancel();
      ack_wake_.notify_all();
    }
    stream_context_.TryCancel();  // The reader's Read() returns false; the server ends it.
  }

  // Waits for both threads. From one of them (a push handler closing the client) it returns at
  // once; the client joins later.
  void Join() {
    if (OnOwnThread()) return;
    std::lock_guard lock(join_mu_);
    if (reader_.joinable()) reader_.join();
    if (acker_.joinable()) acker_.join();
  }

  // Waits until the server has attached the stream (its response headers arrived) or the
  // stream failed, at most `timeout`: from then on no push of the session can miss it.
  void AwaitAttached(milliseconds timeout) {
    std::unique_lock lock(mu_);
    attached_cv_.wait_for(lock, timeout, [&] { return attached_ || stopped_; });
  }

  bool OnOwnThread() const {
    const std::thread::id self = std::this_thread::get_id();
    std::lock_guard lock(mu_);
    return self == reader_id_ || self == acker_id_;
  }

 private:
  bool IdleLocked() const { return handing_over_ == 0 && acks_.empty() && !acking_; }

  void ReadLoop() {
    std::unique_ptr<grpc::ClientReader<pb::ServerPush>> reader =
        stub_->Subscribe(&stream_context_, pb::SubscribeRequest());
    reader->WaitForInitialMetadata();  // Returns early too if the call fails.
    {
      std::lock_guard lock(mu_);
      attached_ = true;
    }
    attached_cv_.notify_all();
    pb::ServerPush push;
    std::optional<pb::SessionEnded> ended;
    while (reader->Read(&push)) {
      if (ended) continue;  // Nothing may follow session_ended; the stream is ending.
      if (push.has_deliver()) {
        events_.OnDeliver(*this, FromProto(push.deliver()));
      } else if (push.has_session_ended()) {
        ended = push.session_ended();
      }
    }
    const grpc::Status finished = reader->Finish();
    bool report = false;
    {
      std::lock_guard lock(mu_);
      report = !stopped_;
      stopped_ = true;
      ack_stop_ = true;  // The token is dead: queued ACKs could only fail.
      acks_.clear();
      ack_wake_.notify_all();
      ack_idle_.notify_all();
    }
    if (!report) return;
    const Status status =
        finished.ok() ? Status::Ok()
                      : FromGrpc(finished, stream_context_, "Subscribe", peer_, request_timeout_);
    events_.OnStreamEnded(*this, ended, status);
  }

  void AckLoop() {
    std::unique_lock lock(mu_);
    for (;;) {
      ack_wake_.wait(lock, [this] { return ack_stop_ || !acks_.empty(); });
      if (acks_.empty()) break;  // Stopping with nothing (left) to send.
      const std::size_t count = std::min(acks_.size(), kMaxAckIds);
      pb::AckRequest request;
      for (std::size_t i = 0; i < count; ++i) request.add_message_ids(acks_[i]);
      acks_.erase(acks_.begin(), acks_.begin() + static_cast<std::ptrdiff_t>(count));
      acking_ = true;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + request_timeout_);
      context.AddMetadata("authorization", "Bearer " + token_);
      ack_call_ = &context;
      lock.unlock();
      pb::AckResponse response;
      // A failure needs no handling: an unacknowledged message is delivered again, and this
      // client recognises it then.
      (void)stub_->Ack(&context, request, &response);
      lock.lock();
      ack_call_ = nullptr;
      acking_ = false;
      ack_idle_.notify_all();
    }
    ack_idle_.notify_all();
  }

  const std::shared_ptr<Stub> stub_;
  const std::string token_;
  const std::string peer_;
  const milliseconds request_timeout_;
  SessionEvents& events_;
  grpc::ClientContext stream_context_;  // Thread-safe for TryCancel().

  std::mutex join_mu_;
  std::thread reader_;
  std::thread acker_;

  mutable std::mutex mu_;
  std::thread::id reader_id_;
  std::thread::id acker_id_;
  bool stopped_ = false;   // Stop() was called or the stream has ended.
  bool attached_ = false;  // The server has attached the stream, or the stream failed.
  std::condition_variable attached_cv_;
  std::condition_variable ack_wake_;
  std::condition_variable ack_idle_;
  std::deque<std::uint64_t> acks_;
  bool ack_stop_ = false;
  bool acking_ = false;
  int handing_over_ = 0;  // Deliveries with the application whose ACK is not queued yet.
  grpc::ClientContext* ack_call_ = nullptr;  // The ACK in flight, for Stop() to cancel.
};

class GrpcClient final : public Client, private SessionEvents {
 public:
  GrpcClient(ClientOptions options, PushHandler on_push)
      : options_(std::move(options)),
        on_push_(std::move(on_push)),
        peer_(Target(options_.host, options_.port)),
        next_client_message_id_(RandomU64()),
        next_nonce_(RandomU64()),
        seen_(kRecentIdCapacity) {
    if (options_.auto_reconnect) reconnect_thread_ = StartThread([this] { ReconnectLoop(); });
  }

  ~GrpcClient() override {
    Close();
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    reconnect_cv_.notify_all();
    if (reconnect_thread_.joinable()) reconnect_thread_.join();
    JoinRetired();
  }

  Status Connect() override {
    std::lock_guard connect_lock(connect_mu_);
    {
      std::lock_guard lock(mu_);
      closed_ = false;
      if (stub_) return Status::Ok();
      reconnect_wanted_ = false;
      credentials_.reset();
    }
    reconnect_cv_.notify_all();
    JoinRetired();
    HelloOk hello;
    Result<std::shared_ptr<Stub>> stub = Establish(hello);
    if (!stub.ok()) return stub.status();
    std::lock_guard lock(mu_);
    if (closed_) {
      return Status(ErrorCode::kDisconnected,
                    "the connection to " + peer_ + " was closed while it was being set up");
    }
    stub_ = std::move(stub).value();
    hello_ = hello;
    return Status::Ok();
  }

  void Close() override {
    std::shared_ptr<Session> session;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      reconnect_wanted_ = false;
      credentials_.reset();
      stub_.reset();
      session = std::move(session_);
      if (session) retired_.push_back(session);
    }
    reconnect_cv_.notify_all();
    calls_.CancelAll();
    if (session) {
      session->Stop(/*flush=*/true);
      session->Join();
    }
  }

  HelloOk server_info() const override {
    std::lock_guard lock(mu_);
    return hello_;
  }

  Status CreateAccount(std::string_view username, std::string_view password) override {
    if (Status valid = CheckStrings({username, password}); !valid.ok()) return valid;
    pb::CreateAccountRequest request;
    request.set_username(std::string(username));
    request.set_password(std::string(password));
    return Call<pb::CreateAccountResponse>(
               "CreateAccount", /*with_token=*/false,
               [&](Stub& stub, grpc::ClientContext* context, pb::CreateAccountResponse* response) {
                 return stub.CreateAccount(context, request, response);
               })
        .status();
  }

  Result<LoginOk> Login(std::string_view username, std::string_view password) override {
    if (Status valid = CheckStrings({username, password}); !valid.ok()) return valid;
    std::shared_ptr<Stub> stub;
    {
      std::lock_guard lock(mu_);
      if (!stub_) return NotConnected();
      if (session_) {
        return Status(ErrorCode::kAlreadyLoggedIn,
                      "this client is logged in already; log out first");
      }
      stub = stub_;
    }
    JoinRetired();
    Result<NewSession> created = CreateSession(stub, std::string(username), std::string(password));
    if (!created.ok()) return created.status();
    const std::shared_ptr<Session> session = created->session;
    bool installed = false;
    {
      std::lock_guard lock(mu_);
      if (stub_ == stub && !session_) {
        // Installed before its stream starts, so that an end of the stream right away is
        // reported.
        session_ = session;
        installed = true;
        if (options_.auto_reconnect) {
          // Kept only when needed, for logging in again after a reconnection.
          credentials_ = Credentials{std::string(username), std::string(password)};
        }
      }
    }
    if (!installed) {
      // Closed meanwhile, or another thread logged in first: the session must not linger, and
      // without a stream the server would keep it until its login timeout.
      EndSession(session);
      return Status(ErrorCode::kDisconnected,
                    "the connection to " + peer_ + " was closed or reused during the login");
    }
    if (Status started = StartInstalled(session); !started.ok()) return started;
    // Returning before the stream is attached could lose what ends the session right away.
    session->AwaitAttached(options_.request_timeout);
    return LoginOk{created->unread_count};
  }

  Status Logout() override {
    const std::shared_ptr<Session> session = CurrentSession();
    if (session) session->FlushAcks(options_.request_timeout);
    Status status =
        Call<pb::LogoutResponse>(
            "Logout", /*with_token=*/true,
            [&](Stub& stub, grpc::ClientContext* context, pb::LogoutResponse* response) {
              return stub.Logout(context, pb::LogoutRequest(), response);
            })
            .status();
    if (status.ok()) SessionOver(session);
    return status;
  }

  Result<AccountList> ListAccounts(std::string_view pattern, std::string_view cursor,
                                   std::uint16_t limit) override {
    if (Status valid = CheckStrings({pattern, cursor}); !valid.ok()) return valid;
    pb::ListAccountsRequest request;
    request.set_pattern(std::string(pattern));
    request.set_cursor(std::string(cursor));
    request.set_limit(limit);
    Result<pb::ListAccountsResponse> response = Call<pb::ListAccountsResponse>(
        "ListAccounts", /*with_token=*/true,
        [&](Stub& stub, grpc::ClientContext* context, pb::ListAccountsResponse* out) {
          return stub.ListAccounts(context, request, out);
        });
    if (!response.ok()) return response.status();
    AccountList list;
    list.usernames.assign(response->usernames().begin(), response->usernames().end());
    list.next_cursor = response->next_cursor();
    return list;
  }

  Result<SendOk> Send(std::string_view recipient, std::string_view text) override {
    std::uint64_t id = 0;
    while (id == 0) id = next_client_message_id_.fetch_add(1);
    return SendWithId(recipient, text, id);
  }

  Result<SendOk> SendWithId(std::string_view recipient, std::string_view text,
                            std::uint64_t client_message_id) override {
    if (Status valid = CheckStrings({recipient, text}); !valid.ok()) return valid;
    pb::SendRequest request;
    request.set_recipient(std::string(recipient));
    request.set_client_message_id(client_message_id);
    request.set_text(std::string(text));
    Result<pb::SendResponse> response = Call<pb::SendResponse>(
        "Send", /*with_token=*/true,
        [&](Stub& stub, grpc::ClientContext* context, pb::SendResponse* out) {
          return stub.Send(context, request, out);
        });
    if (!response.ok()) return response.status();
    return SendOk{
        response->message_id(), response->timestamp_ms(),
        response->delivery() == pb::DELIVERY_DELIVERED ? Delivery::kDelivered : Delivery::kQueued};
  }

  Result<MessageBatch> FetchUndelivered(std::uint16_t limit) override {
    const std::shared_ptr<Session> session = CurrentSession();
    pb::FetchUndeliveredRequest request;
    request.set_limit(limit);
    Result<pb::FetchUndeliveredResponse> response = Call<pb::FetchUndeliveredResponse>(
        "FetchUndelivered", /*with_token=*/true,
        [&](Stub& stub, grpc::ClientContext* context, pb::FetchUndeliveredResponse* out) {
          return stub.FetchUndelivered(context, request, out);
        });
    if (!response.ok()) return response.status();
    MessageBatch batch;
    batch.remaining = response->remaining();
    // Messages the application already accepted from a delivery whose ACK was lost: not handed
    // over again, only acknowledged again.
    std::vector<std::uint64_t> duplicates;
    {
      std::lock_guard lock(seen_mu_);
      for (const pb::StoredMessage& message : response->messages()) {
        if (seen_.Contains(message.message_id())) {
          duplicates.push_back(message.message_id());
        } else {
          batch.messages.push_back(FromProto(message));
        }
      }
    }
    if (!duplicates.empty() && session) session->QueueAck(duplicates);
    return batch;
  }

  Status Ack(std::span<const std::uint64_t> message_ids) override {
    pb::AckRequest request;
    for (const std::uint64_t id : message_ids) request.add_message_ids(id);
    return Call<pb::AckResponse>(
               "Ack", /*with_token=*/true,
               [&](Stub& stub, grpc::ClientContext* context, pb::AckResponse* response) {
                 return stub.Ack(context, request, response);
               })
        .status();
  }

  Result<std::uint32_t> DeleteAccount(bool confirm) override {
    const std::shared_ptr<Session> session = CurrentSession();
    if (confirm && session) session->FlushAcks(options_.request_timeout);
    pb::DeleteAccountRequest request;
    request.set_confirm(confirm);
    Result<pb::DeleteAccountResponse> response = Call<pb::DeleteAccountResponse>(
        "DeleteAccount", /*with_token=*/true,
        [&](Stub& stub, grpc::ClientContext* context, pb::DeleteAccountResponse* out) {
          return stub.DeleteAccount(context, request, out);
        });
    if (!response.ok()) return response.status();
    if (response->confirm_required()) return response->unread_count();
    SessionOver(session);
    return std::uint32_t{0};
  }

  Status Ping() override {
    if (!CurrentSession()) {
      // gRPC's Ping needs a session; the server's answer to GetServerInfo proves it is there.
      return Call<pb::ServerInfo>(
                 "GetServerInfo", /*with_token=*/false,
                 [&](Stub& stub, grpc::ClientContext* context, pb::ServerInfo* response) {
                   return stub.GetServerInfo(context, pb::GetServerInfoRequest(), response);
                 })
          .status();
    }
    const std::uint64_t nonce = next_nonce_.fetch_add(1);
    pb::PingRequest request;
    request.set_nonce(nonce);
    Result<pb::PingResponse> response = Call<pb::PingResponse>(
        "Ping", /*with_token=*/true,
        [&](Stub& stub, grpc::ClientContext* context, pb::PingResponse* out) {
          return stub.Ping(context, request, out);
        });
    if (!response.ok()) return response.status();
    if (response->nonce() != nonce) {
      return Status(ErrorCode::kInternal, "Ping from " + peer_ + " echoed nonce " +
                                              std::to_string(response->nonce()) + ", not " +
                                              std::to_string(nonce));
    }
    return Status::Ok();
  }

 private:
  struct Credentials {
    std::string username;
    std::string password;
  };

  Status NotConnected() const {
    return Status(ErrorCode::kDisconnected, "not connected to " + peer_);
  }

  std::shared_ptr<Session> CurrentSession() const {
    std::lock_guard lock(mu_);
    return session_;
  }

  // One call on the current channel; with the session's token when `with_token` and there is a
  // session (without one the server answers NOT_LOGGED_IN).
  template <typename Response, typename Rpc>
  Result<Response> Call(std::string_view what, bool with_token, Rpc rpc) {
    std::shared_ptr<Stub> stub;
    std::string token;
    {
      std::lock_guard lock(mu_);
      if (!stub_) return NotConnected();
      stub = stub_;
      if (with_token && session_) token = session_->token();
    }
    return Invoke<Response>(calls_, *stub, token, options_.request_timeout, what, peer_, rpc);
  }

  // Opens a channel and asks for the server's limits, within connect_timeout.
  // Errors: kConnectionFailed, kTimeout, kUnsupportedVersion, kDisconnected (closed meanwhile).
  Result<std::shared_ptr<Stub>> Establish(HelloOk& hello) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(kKeepaliveTime.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(kKeepaliveTimeout.count()));
    // Responses are bounded by the server's max_frame_size, itself at most this.
    args.SetMaxReceiveMessageSize(static_cast<int>(kMaxMaxFrameSize));
    // A connection of this client's own, as a wire client has: not shared with other channels
    // of the process, so that Close() and Connect() really end and open one.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    Result<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        MakeCredentials(options_.tls, args);
    if (!credentials.ok()) return credentials.status();
    std::shared_ptr<Stub> stub;
    grpc::Status raw;
    Result<pb::ServerInfo> info = Status(ErrorCode::kInternal, "not attempted");
    // A first connection attempt can fail at once even though the server listens (seen under
    // load with ASan); gRPC then fails the call without waiting. A fresh channel gets another
    // attempt; a port where nothing listens still fails within a fraction of a second.
    for (int attempt = 1; attempt <= kConnectAttempts; ++attempt) {
      if (attempt > 1) std::this_thread::sleep_for(kConnectRetryPause);
      stub = pb::Messenger::NewStub(grpc::CreateCustomChannel(peer_, *credentials, args));
      info = Invoke<pb::ServerInfo>(
          calls_, *stub, "", options_.connect_timeout, "GetServerInfo", peer_,
          [](Stub& s, grpc::ClientContext* context, pb::ServerInfo* response) {
            return s.GetServerInfo(context, pb::GetServerInfoRequest(), response);
          },
          &raw);
      if (info.ok() || raw.error_code() != grpc::StatusCode::UNAVAILABLE) break;
      std::lock_guard lock(mu_);
      if (closed_) break;
    }
    if (!info.ok()) {
      const Status& status = info.status();
      if (status.code() == ErrorCode::kTimeout) {
        return Status(ErrorCode::kTimeout, "connecting to " + peer_ + " timed out after " +
                                               Millis(options_.connect_timeout));
      }
      if (status.code() == ErrorCode::kDisconnected) {
        std::lock_guard lock(mu_);
        if (closed_) {  // Close() cancelled the call.
          return Status(ErrorCode::kDisconnected,
                        "the connection to " + peer_ + " was closed while it was being set up");
        }
        if (options_.tls.enabled && IsTlsFailure(raw.error_message())) {
          return Status(ErrorCode::kTlsFailed,
                        "TLS with " + peer_ + " failed: " + TlsReason(raw.error_message()));
        }
        return Status(ErrorCode::kConnectionFailed,
                      "cannot connect to " + peer_ + ": " + raw.error_message());
      }
      return status;
    }
    if (info->protocol_version() != kProtocolVersion) {
      return Status(ErrorCode::kUnsupportedVersion,
                    "the server at " + peer_ + " speaks protocol version " +
                        std::to_string(info->protocol_version()) + ", this client " +
                        std::to_string(kProtocolVersion));
    }
    hello.protocol_version = static_cast<std::uint16_t>(info->protocol_version());
    hello.max_frame_size = info->max_frame_size();
    hello.max_prelogin_frame_size = 0;  // gRPC has no pre-login limit.
    hello.max_text_bytes = info->max_text_bytes();
    hello.max_queued_per_user = info->max_queued_per_user();
    hello.server_name = info->server_name();
    return stub;
  }

  struct NewSession {
    std::shared_ptr<Session> session;  // Not started yet.
    std::uint32_t unread_count = 0;
  };

  // Logs in on `stub`; the session's stream is not open yet (see StartInstalled).
  Result<NewSession> CreateSession(const std::shared_ptr<Stub>& stub, const std::string& username,
                                   const std::string& password) {
    pb::LoginRequest request;
    request.set_username(username);
    request.set_password(password);
    Result<pb::LoginResponse> login = Invoke<pb::LoginResponse>(
        calls_, *stub, "", options_.request_timeout, "Login", peer_,
        [&](Stub& s, grpc::ClientContext* context, pb::LoginResponse* response) {
          return s.Login(context, request, response);
        });
    if (!login.ok()) return login.status();
    NewSession created;
    created.session =
        std::make_shared<Session>(stub, login->session_token(), peer_, options_.request_timeout,
                                  static_cast<SessionEvents&>(*this));
    created.unread_count = login->unread_count();
    return created;
  }

  // Opens the stream of the session just installed as session_. On failure the session is
  // uninstalled and ended.
  Status StartInstalled(const std::shared_ptr<Session>& session) {
    Status started = session->Start();
    if (started.ok()) return started;
    {
      std::lock_guard lock(mu_);
      if (session_ == session) session_.reset();
    }
    EndSession(session);
    return started;
  }

  // Ends `session` from this side, waiting for its threads unless called on one of them.
  void EndSession(const std::shared_ptr<Session>& session) {
    session->Stop(/*flush=*/false);
    if (session->OnOwnThread()) {
      std::lock_guard lock(mu_);
      retired_.push_back(session);
      return;
    }
    session->Join();
  }

  // After a successful Logout or confirmed DeleteAccount: the session is over and its stream
  // ends without a push; the channel stays.
  void SessionOver(const std::shared_ptr<Session>& session) {
    {
      std::lock_guard lock(mu_);
      credentials_.reset();
      if (session && session_ == session) session_.reset();
    }
    if (session) EndSession(session);
  }

  // Joins sessions that ended on their own threads. Not from a session's thread.
  void JoinRetired() {
    std::vector<std::shared_ptr<Session>> retired;
    {
      std::lock_guard lock(mu_);
      retired.swap(retired_);
    }
    std::vector<std::shared_ptr<Session>> keep;
    for (std::shared_ptr<Session>& session : retired) {
      if (session->OnOwnThread()) {
        keep.push_back(std::move(session));  // Its own thread cannot join it; later.
        continue;
      }
      session->Join();
    }
    if (keep.empty()) return;
    std::lock_guard lock(mu_);
    retired_.insert(retired_.end(), keep.begin(), keep.end());
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
      backoff = installed ? kInitialBackoff : std::min(backoff * 2, max_backoff);
    }
  }

  // One attempt: a new channel, and a login with the last credentials that worked. Clears
  // reconnect_wanted_ when nothing more is to be done; returns true iff connected again.
  bool ReconnectOnce() {
    std::lock_guard connect_lock(connect_mu_);
    std::optional<Credentials> credentials;
    {
      std::lock_guard lock(mu_);
      if (closed_ || stopping_ || !reconnect_wanted_) return false;
      if (stub_) {  // Connect() was faster.
        reconnect_wanted_ = false;
        return false;
      }
      credentials = credentials_;
    }
    JoinRetired();
    HelloOk hello;
    Result<std::shared_ptr<Stub>> stub = Establish(hello);
    if (!stub.ok()) return false;
    std::shared_ptr<Session> session;
    if (credentials) {
      Result<NewSession> created =
          CreateSession(stub.value(), credentials->username, credentials->password);
      if (!created.ok()) {
        if (created.status().code() != ErrorCode::kAuthFailed) return false;  // Again later.
        // The password changed or the account is gone: stay connected, logged out; the
        // application's next request says NOT_LOGGED_IN.
        std::lock_guard lock(mu_);
        credentials_.reset();
      } else {
        session = created->session;
      }
    }
    bool installed = true;
    {
      std::lock_guard lock(mu_);
      if (!closed_ && !stopping_) {
        stub_ = std::move(stub).value();
        hello_ = hello;
        session_ = session;
        reconnect_wanted_ = false;
      } else {
        installed = false;
      }
    }
    if (!installed) {
      if (session) EndSession(session);
      return false;
    }
    // A stream that fails to start leaves the client connected and logged out.
    if (session) (void)StartInstalled(session);
    return true;
  }

  // ---- SessionEvents (on a session's reader thread) ----

  void OnDeliver(Session& session, const StoredMessage& message) override {
    const std::uint64_t id = message.message_id;
    bool duplicate = false;
    {
      std::lock_guard lock(seen_mu_);
      duplicate = seen_.Contains(id);
    }
    bool accepted = duplicate;
    session.HandOverStarted();
    if (!duplicate && HandOver(Push{Deliver{message}})) {
      accepted = true;
      std::lock_guard lock(seen_mu_);
      seen_.Insert(id);
    }
    session.HandOverDone(accepted ? std::optional<std::uint64_t>(id) : std::nullopt);
  }

  void OnStreamEnded(Session& session, const std::optional<pb::SessionEnded>& ended,
                     const Status& status) override {
    EndReason wire_reason = EndReason::kTakeover;
    const bool is_wire_reason = ended && ToWireEndReason(ended->reason(), wire_reason);
    const bool logged_out = ended && ended->reason() == pb::END_REASON_LOGGED_OUT;
    {
      std::lock_guard lock(mu_);
      if (session_.get() != &session) return;  // Already replaced or closed: nothing to say.
      retired_.push_back(session_);
      session_.reset();
      // This client's own Logout() or DeleteAccount(true) succeeded and has not yet said so:
      // the channel stays, logged out, and there is nothing to report.
      if (logged_out) return;
      if (stub_ == session.stub()) stub_.reset();
    }
    std::string message;
    bool may_reconnect = true;
    if (is_wire_reason) {
      (void)HandOver(Push{SessionEnded{wire_reason, ended->message()}});
      message = "the server ended the session (" + std::string(EndReasonName(wire_reason)) +
                (ended->message().empty() ? ")" : "): " + ended->message());
      may_reconnect =
          wire_reason != EndReason::kTakeover && wire_reason != EndReason::kLoginTimeout;
    } else if (ended && ended->reason() == pb::END_REASON_SLOW_CONSUMER) {
      message =
          "the server ended the session (SLOW_CONSUMER): this client fell too far behind in "
          "reading its pushes" +
          (ended->message().empty() ? std::string() : ": " + ended->message());
    } else if (ended) {
      message = "the server ended the session (reason " + std::to_string(ended->reason()) +
                (ended->message().empty() ? ")" : "): " + ended->message());
    } else if (status.ok()) {
      message = "the server at " + peer_ + " ended the session's push stream without a reason";
    } else if (status.code() == ErrorCode::kDisconnected) {
      message = status.message();
    } else {
      // The server refused the stream, most likely because the session had already ended
      // (taken over before it was opened): logging in again could take it back.
      message = "the server at " + peer_ + " refused the session's push stream (" +
                status.ToString() + ")";
      may_reconnect = false;
    }
    (void)HandOver(Push{Disconnected{Status(ErrorCode::kDisconnected, message)}});
    {
      std::lock_guard lock(mu_);
      if (!options_.auto_reconnect || !may_reconnect || closed_ || stopping_ || stub_) return;
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
  const std::string peer_;  // The gRPC target "host:port", for messages.
  // Fresh SEND ids start at a random point, so that they differ between client objects and
  // between runs of a program without any stored state.
  std::atomic<std::uint64_t> next_client_message_id_;
  std::atomic<std::uint64_t> next_nonce_;
  CallRegistry calls_;

  std::mutex connect_mu_;  // One channel set up at a time (Connect and reconnection).
  mutable std::mutex mu_;
  std::condition_variable reconnect_cv_;
  std::shared_ptr<Stub> stub_;                     // Null when not connected.
  std::shared_ptr<Session> session_;               // Null when not logged in.
  std::vector<std::shared_ptr<Session>> retired_;  // Ended; their threads not yet joined.
  HelloOk hello_;
  std::optional<Credentials> credentials_;  // The last successful Login, with auto_reconnect.
  bool closed_ = false;                     // Close() called and no Connect() since.
  bool reconnect_wanted_ = false;
  bool stopping_ = false;
  std::thread reconnect_thread_;

  std::mutex seen_mu_;
  RecentIds seen_;  // Ids of deliveries the application accepted.
};

}  // namespace

std::unique_ptr<Client> MakeGrpcClient(ClientOptions options, PushHandler on_push) {
  return std::make_unique<GrpcClient>(std::move(options), std::move(on_push));
}

}  // namespace messenger

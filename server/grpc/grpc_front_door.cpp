#include "grpc_front_door.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "grpc_session.h"
#include "messenger/codec/messages.h"
#include "messenger/server/clock.h"
#include "messenger/v1/messenger.grpc.pb.h"

namespace messenger {
namespace {

// The trailer that carries the protocol's error code (docs/PROTOCOL.md, 15.3).
constexpr char kErrorTrailer[] = "messenger-error-bin";
constexpr char kBearer[] = "Bearer ";
// Housekeeping period: how soon an ended session is detached from the core.
constexpr std::chrono::milliseconds kHousekeepingPeriod{100};
// An ended session whose stream has not finished by then (its client stopped reading) has its
// stream cancelled.
constexpr std::uint64_t kFinishGraceMs = 5000;
// Bytes of a FetchUndelivered response besides its messages; protobuf's per-message overhead is
// a few bytes above the wire's, hence the margin.
constexpr std::uint32_t kBatchMargin = 1024;

std::uint64_t Now() { return SystemClock().SteadyMs(); }

grpc::StatusCode GrpcCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotLoggedIn:
    case ErrorCode::kAuthFailed:
      return grpc::StatusCode::UNAUTHENTICATED;
    case ErrorCode::kUnexpectedMessage:
    case ErrorCode::kAlreadyLoggedIn:
    case ErrorCode::kClientIdReused:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorCode::kInvalidUsername:
    case ErrorCode::kInvalidPassword:
    case ErrorCode::kInvalidText:
    case ErrorCode::kInvalidPattern:
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kSelfSend:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::kUsernameTaken:
      return grpc::StatusCode::ALREADY_EXISTS;
    case ErrorCode::kUnknownRecipient:
      return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::kLoginThrottled:
    case ErrorCode::kQueueFull:
    case ErrorCode::kRateLimited:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case ErrorCode::kServerBusy:
      return grpc::StatusCode::UNAVAILABLE;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

// The failed call's status, with the protocol's code in the trailer; counted in `metrics`.
grpc::Status FailCall(Metrics& metrics, grpc::ServerContextBase& context, const Status& status) {
  metrics.errors(Transport::kGrpc, status.code()).Add();
  v1::ErrorDetail detail;
  detail.set_code(static_cast<std::uint32_t>(status.code()));
  detail.set_name(std::string(ErrorCodeName(status.code())));
  context.AddTrailingMetadata(kErrorTrailer, detail.SerializeAsString());
  return grpc::Status(GrpcCode(status.code()), status.message());
}

// 32 random bytes as 64 hexadecimal characters.
std::string NewToken() {
  static thread_local std::random_device source;  // /dev/urandom (getrandom) on Linux.
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  token.reserve(64);
  for (int i = 0; i < 8; ++i) {
    std::uint32_t word = source();
    for (int nibble = 0; nibble < 8; ++nibble) {
      token.push_back(kHex[word & 0xF]);
      word >>= 4;
    }
  }
  return token;
}

void Copy(const StoredMessage& from, v1::StoredMessage& to) {
  to.set_message_id(from.message_id);
  to.set_sender(from.sender);
  to.set_timestamp_ms(from.timestamp_ms);
  to.set_text(from.text);
}

std::uint16_t ClampU16(std::uint32_t value) {
  return static_cast<std::uint16_t>(std::min<std::uint32_t>(value, 0xFFFF));
}

using ServiceBase = v1::Messenger::WithCallbackMethod_Subscribe<v1::Messenger::Service>;

}  // namespace

class GrpcFrontDoor::Impl final : public ServiceBase {
 public:
  Impl(Messenger& messenger, const GrpcOptions& options)
      : messenger_(messenger), metrics_(messenger.metrics()), options_(options) {}

  Status Start() {
    const bool tls = !options_.tls_cert_pem.empty();
    std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
    if (tls) {
      grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      ssl.pem_key_cert_pairs.push_back({options_.tls_key_pem, options_.tls_cert_pem});
      credentials = grpc::SslServerCredentials(ssl);
    }
    grpc::ServerBuilder builder;
    int bound_port = 0;
    builder.AddListeningPort(options_.host + ":" + std::to_string(options_.port), credentials,
                             &bound_port);
    builder.RegisterService(this);
    builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_frame_size));
    // HTTP/2 keepalive stands in for the wire protocol's idle timeout (15.2).
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60 * 1000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10 * 1000);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    // A connection that has not finished its TLS and HTTP/2 handshakes by the login timeout is
    // closed, as the wire door closes one (gRPC's own default waits 120 s).
    builder.AddChannelArgument(
        GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
        static_cast<int>(std::min<std::uint64_t>(options_.login_timeout_ms, INT_MAX)));
    server_ = builder.BuildAndStart();
    if (!server_ || bound_port == 0) {
      return Status(ErrorCode::kInternal,
                    "cannot serve gRPC on " + options_.host + ":" + std::to_string(options_.port) +
                        (tls ? " (address in use or not local, or the TLS certificate and key "
                               "are not a valid PEM pair?)"
                             : " (address in use or not local?)"));
    }
    port_ = static_cast<std::uint16_t>(bound_port);
    housekeeper_ = std::thread([this] { Housekeep(); });
    return Status::Ok();
  }

  std::uint16_t port() const { return port_; }

  void Shutdown(std::chrono::milliseconds timeout) {
    if (!server_) return;
    // Open streams write what they hold (SESSION_ENDED after Messenger::Shutdown) and finish,
    // for at most `timeout`. Then gRPC cancels whatever still runs at once: waiting longer would
    // only wait for idle client connections to acknowledge the server going away.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (open_streams_ > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (housekeeper_.joinable()) housekeeper_.join();
    std::vector<std::shared_ptr<GrpcSession>> all;
    {
      std::lock_guard lock(mutex_);
      for (auto& [token, session] : sessions_) all.push_back(session);
      sessions_.clear();
    }
    for (auto& session : all) Retire(*session);
    server_.reset();
  }

  // ---- RPCs ----

  grpc::Status GetServerInfo(grpc::ServerContext*, const v1::GetServerInfoRequest*,
                             v1::ServerInfo* response) override {
    response->set_protocol_version(kProtocolVersion);
    response->set_max_frame_size(options_.max_frame_size);
    response->set_max_text_bytes(static_cast<std::uint32_t>(kMaxTextBytes));
    response->set_max_queued_per_user(messenger_.options().max_queued_per_user);
    response->set_server_name(options_.server_name);
    return grpc::Status::OK;
  }

  grpc::Status CreateAccount(grpc::ServerContext* context, const v1::CreateAccountRequest* request,
                             v1::CreateAccountResponse*) override {
    const Status status = messenger_.CreateAccount(request->username(), request->password());
    return status.ok() ? grpc::Status::OK : Fail(*context, status);
  }

  grpc::Status Login(grpc::ServerContext* context, const v1::LoginRequest* request,
                     v1::LoginResponse* response) override {
    bool full = false;
    {
      std::lock_guard lock(mutex_);
      full = static_cast<int>(sessions_.size()) >= options_.max_sessions;
    }
    if (full) {
      metrics_.connections_refused(Transport::kGrpc, RefuseReason::kServerBusy).Add();
      return Fail(*context, Status(ErrorCode::kServerBusy,
                                   "server is at its gRPC session limit (" +
                                       std::to_string(options_.max_sessions) + "); try later"));
    }
    auto session = std::make_shared<GrpcSession>(NewToken(), Now(), &metrics_);
    session->set_id(messenger_.Attach(*session, Transport::kGrpc));
    Result<LoginOk> login =
        messenger_.Login(session->id(), request->username(), request->password());
    if (!login.ok()) {
      messenger_.Detach(session->id());
      return Fail(*context, login.status());
    }
    // Counted before the session is visible to Retire, which takes it off again.
    metrics_.connections_accepted(Transport::kGrpc).Add();
    metrics_.connections_open(Transport::kGrpc).Add();
    {
      std::lock_guard lock(mutex_);
      sessions_.emplace(session->token(), session);
    }
    response->set_session_token(session->token());
    response->set_unread_count(login->unread_count);
    return grpc::Status::OK;
  }

  grpc::ServerWriteReactor<v1::ServerPush>* Subscribe(grpc::CallbackServerContext* context,
                                                      const v1::SubscribeRequest*) override {
    std::shared_ptr<GrpcSession> session = Authenticate(*context);
    if (!session) return Refused(context, NotLoggedIn(*context));
    if (!session->ClaimStream()) {
      return Refused(context,
                     Fail(*context, Status(ErrorCode::kUnexpectedMessage,
                                           "this session already has a Subscribe stream")));
    }
    auto* stream = new PushStream(context, session, open_streams_);
    // Sent before any write can start: the headers tell the client its stream is attached.
    stream->StartSendInitialMetadata();
    session->AttachStream(stream);
    return stream;
  }

  grpc::Status Logout(grpc::ServerContext* context, const v1::LogoutRequest*,
                      v1::LogoutResponse*) override {
    std::shared_ptr<GrpcSession> session = Authenticate(*context);
    if (!session) return NotLoggedIn(*context);
    const Status status = messenger_.Logout(session->id());
    if (!status.ok()) return Fail(*context, status);
    session->EndWith(v1::END_REASON_LOGGED_OUT, "logged out");
    Retire(*session);
    return grpc::Status::OK;
  }

  grpc::Status ListAccounts(grpc::ServerContext* context, const v1::ListAccountsRequest* request,
                            v1::ListAccountsResponse* response) override {
    std::shared_ptr<GrpcSession> session = Authenticate(*context);
    if (!session) return NotLoggedIn(*context);
    Result<AccountList> list = messenger_.ListAccounts(
        session->id(), {request->pattern(), request->cursor(), ClampU16(request->limit())});
    if (!list.ok()) return Fail(*context, list.status());
    for (const std::string& name : list->usernames) response->add_usernames(name);
    response->set_next_cursor(list->next_cursor);
    return grpc::Status::OK;
  }

  grpc::Status Send(grpc::ServerContext* context, const v1::SendRequest* request,
                    v1::SendResponse* response) override {
    std::shared_ptr<GrpcSession> session = Authenticate(*context);
    if (!session) return NotLoggedIn(*context);
    Result<SendOk> sent = messenger_.Send(
        session->id(), {request->recipient(), request->client_message_id(), request->text()});
    if (!sent.ok()) return Fail(*context, sent.status());
    response->set_message_id(sent->message_id);
    response->set_timestamp_ms(sent->timestamp_ms);
    response->set_delivery(sent->delivery == Delivery::kDelivered ? v1::DELIVERY_DELIVERED
                                                                  : v1::DELIVERY_QUEUED);
    return grpc::Status::OK;
  }

  grpc::Status FetchUndelivered(grpc::ServerContext* context,
                                const v1::FetchUndeliveredRequest* request,
                                v1::FetchUndeliveredResponse* response) override {
    std::shared_ptr<GrpcSession> session = Authenticate(*context);
    if (!session) return NotLoggedIn(*context);
    Result<MessageBatch> batch = messenger_.FetchUndelivered(
        session->id(), ClampU16(request->limit()), options_.max_frame_size - kBatchMargin);
    if (!batch.ok()) return Fail(*context, batch.status());
    for (const StoredMessage& message : batch->messages) Copy(message, *response->add_messages());
    response->set_remaining(batch->remaining);
    return grpc::Status::OK;
  }

  grpc::Status Ack(grpc::ServerContext* context, const v1::AckRequest* request,
                   v1::AckResponse*) override {
    std::shared_ptr<GrpcSession> session = Authenticate(*context);
    if (!session) return NotLoggedIn(*context);
    const std::vector<std::uint64_t> ids(request->message_ids().begin(),
                                         request->message_ids().end());
    const Status status = messenger_.Ack(session->id(), ids);
    return status.ok() ? grpc::Status::OK : Fail(*context, status);
  }

  grpc::Status DeleteAccount(grpc::ServerContext* context, const v1::DeleteAccountRequest* request,
                             v1::DeleteAccountResponse* response) override {
    std::shared_ptr<GrpcSession> session = Authenticate(*context);
    if (!session) return NotLoggedIn(*context);
    Result<std::uint32_t> unread = messenger_.DeleteAccount(session->id(), request->confirm());
    if (!unread.ok()) return Fail(*context, unread.status());
    if (!request->confirm()) {
      response->set_confirm_required(true);
      response->set_unread_count(*unread);
      return grpc::Status::OK;
    }
    session->EndWith(v1::END_REASON_LOGGED_OUT, "account deleted");
    Retire(*session);
    return grpc::Status::OK;
  }

  grpc::Status Ping(grpc::ServerContext* context, const v1::PingRequest* request,
                    v1::PingResponse* response) override {
    if (!Authenticate(*context)) return NotLoggedIn(*context);
    response->set_nonce(request->nonce());
    return grpc::Status::OK;
  }

 private:
  grpc::Status Fail(grpc::ServerContextBase& context, const Status& status) {
    return FailCall(metrics_, context, status);
  }

  grpc::Status NotLoggedIn(grpc::ServerContextBase& context) {
    return Fail(context, Status(ErrorCode::kNotLoggedIn, "log in first (no valid session token)"));
  }

  // The live session named by the call's `authorization: Bearer <token>`, or null.
  std::shared_ptr<GrpcSession> Authenticate(const grpc::ServerContextBase& context) {
    const auto& metadata = context.client_metadata();
    const auto it = metadata.find("authorization");
    if (it == metadata.end()) return nullptr;
    const std::string_view value(it->second.data(), it->second.size());
    if (value.substr(0, sizeof kBearer - 1) != kBearer) return nullptr;
    const std::string token(value.substr(sizeof kBearer - 1));
    std::lock_guard lock(mutex_);
    const auto found = sessions_.find(token);
    if (found == sessions_.end() || found->second->ended()) return nullptr;
    return found->second;
  }

  // A Subscribe refused before it started: a reactor that only finishes with `status`.
  static grpc::ServerWriteReactor<v1::ServerPush>* Refused(grpc::CallbackServerContext*,
                                                           grpc::Status status) {
    class Refusal final : public grpc::ServerWriteReactor<v1::ServerPush> {
     public:
      explicit Refusal(grpc::Status status) { Finish(std::move(status)); }
      void OnDone() override { delete this; }
    };
    return new Refusal(std::move(status));
  }

  // Detaches `session` from the core (once) and forgets its token. Its unacknowledged messages
  // become undelivered again. Never called under the core's lock.
  void Retire(GrpcSession& session) {
    if (!session.MarkRetired()) return;
    {
      std::lock_guard lock(mutex_);
      sessions_.erase(session.token());
    }
    messenger_.Detach(session.id());
    metrics_.connections_open(Transport::kGrpc).Sub();
  }

  // Ends sessions that never subscribed, retires ended ones, cancels streams stuck on a client
  // that stopped reading.
  void Housekeep() {
    std::unique_lock lock(mutex_);
    std::vector<std::shared_ptr<GrpcSession>> to_retire;
    while (!stopping_) {
      wake_.wait_for(lock, kHousekeepingPeriod);
      if (stopping_) break;
      const std::uint64_t now = Now();
      to_retire.clear();
      for (auto& [token, session] : sessions_) {
        if (!session->subscribed() && !session->ended() &&
            now - session->created_ms() >= options_.login_timeout_ms) {
          session->End(EndReason::kLoginTimeout, "no Subscribe stream within the login timeout");
        }
        if (session->ended()) to_retire.push_back(session);
      }
      std::erase_if(stuck_, [&](const std::shared_ptr<GrpcSession>& session) {
        if (!session->streaming()) return true;
        if (now - session->ended_ms() >= kFinishGraceMs) session->CancelStream();
        return false;
      });
      lock.unlock();
      for (auto& session : to_retire) {
        Retire(*session);
        if (session->streaming()) {
          std::lock_guard relock(mutex_);
          stuck_.push_back(session);
        }
      }
      to_retire.clear();
      lock.lock();
    }
  }

  Messenger& messenger_;
  Metrics& metrics_;
  const GrpcOptions options_;
  std::unique_ptr<grpc::Server> server_;
  std::uint16_t port_ = 0;
  std::atomic<int> open_streams_{0};  // Subscribe reactors alive.

  std::mutex mutex_;  // Guards the members below. Never held while calling the core.
  std::condition_variable wake_;
  bool stopping_ = false;
  std::unordered_map<std::string, std::shared_ptr<GrpcSession>> sessions_;  // By token.
  // Retired sessions whose stream has not finished yet.
  std::vector<std::shared_ptr<GrpcSession>> stuck_;
  std::thread housekeeper_;
};

Result<std::unique_ptr<GrpcFrontDoor>> GrpcFrontDoor::Start(Messenger& messenger,
                                                            const GrpcOptions& options) {
  if (options.max_sessions < 1) {
    return Status(ErrorCode::kInvalidArgument, "max_sessions must be at least 1");
  }
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return Status(ErrorCode::kInvalidArgument,
                  "TLS needs both a certificate and its private key, or neither");
  }
  auto impl = std::make_unique<Impl>(messenger, options);
  if (Status status = impl->Start(); !status.ok()) return status;
  return std::unique_ptr<GrpcFrontDoor>(new GrpcFrontDoor(std::move(impl)));
}

GrpcFrontDoor::GrpcFrontDoor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcFrontDoor::~GrpcFrontDoor() { Shutdown(std::chrono::seconds(1)); }

std::uint16_t GrpcFrontDoor::port() const { return impl_->port(); }

void GrpcFrontDoor::Shutdown(std::chrono::milliseconds timeout) { impl_->Shutdown(timeout); }

}  // namespace messenger

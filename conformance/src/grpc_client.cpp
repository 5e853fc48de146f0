#include "grpc_client.h"

#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <variant>

#include "connection.h"
#include "grpc_translate.h"
#include "messenger/codec/limits.h"

namespace messenger::conformance {
namespace {

// Section 15.2: "64 hexadecimal characters".
constexpr std::size_t kTokenLength = 64;

int MillisUntil(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 3'600'000));
}

bool IsHexToken(const std::string& token) {
  return token.size() == kTokenLength &&
         token.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
}

std::optional<std::string> ErrorDetail(const grpc::ClientContext& context) {
  for (const auto& [key, value] : context.GetServerTrailingMetadata()) {
    if (key == kErrorDetailKey) return std::string(value.data(), value.size());
  }
  return std::nullopt;
}

std::string ShowStatus(const grpc::Status& status) {
  return GrpcStatusName(status.error_code()) +
         (status.error_message().empty() ? "" : " \"" + status.error_message() + "\"");
}

}  // namespace

GrpcClient::GrpcClient(std::chrono::milliseconds call_timeout) : call_timeout_(call_timeout) {}

GrpcClient::~GrpcClient() {
  Close();
  // Only now: Receive may still be asked after Close().
  if (event_fd_ >= 0) ::close(event_fd_);
}

Status GrpcClient::Open(const std::string& host, std::uint16_t port,
                        std::chrono::milliseconds timeout, const ClientTls& tls) {
  Result<int> fd = ConnectTcp(host, port, timeout);
  if (!fd.ok()) return fd.status();
  target_ = host + ":" + std::to_string(port);
  grpc::ChannelArguments arguments;
  // Responses may be as large as the largest frame a server may allow.
  arguments.SetMaxReceiveMessageSize(static_cast<int>(kMaxMaxFrameSize));
  if (tls.enabled) {
    // gRPC cannot run TLS on a socket it is given, so it connects itself; the probe above only
    // told a closed port (kConnectionFailed) from a failed handshake (kTlsFailed).
    ::close(*fd);
    grpc::SslCredentialsOptions credentials;
    std::ifstream ca(tls.ca_file, std::ios::binary);
    credentials.pem_root_certs.assign(std::istreambuf_iterator<char>(ca), {});
    if (credentials.pem_root_certs.empty()) {
      return Status(ErrorCode::kTlsFailed, "cannot read the CA file " + tls.ca_file);
    }
    if (!tls.server_name.empty()) arguments.SetSslTargetNameOverride(tls.server_name);
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // A connection of its own.
    channel_ = grpc::CreateCustomChannel(target_, grpc::SslCredentials(credentials), arguments);
    stub_ = v1::Messenger::NewStub(channel_);
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + timeout)) {
      grpc::ClientContext context;  // Fails at once, with what went wrong.
      v1::ServerInfo info;
      const grpc::Status failed = stub_->GetServerInfo(&context, {}, &info);
      stub_.reset();
      channel_.reset();
      return Status(ErrorCode::kTlsFailed,
                    "no TLS connection to " + target_ + ": " + failed.error_message());
    }
  } else {
    // The channel owns the socket; our duplicate keeps it from being reused under another
    // number and lets Close() cut the connection.
    socket_fd_ = ::fcntl(*fd, F_DUPFD_CLOEXEC, 0);
    if (socket_fd_ < 0) {
      const std::string error = std::strerror(errno);
      ::close(*fd);
      return Status(ErrorCode::kConnectionFailed, "cannot set up a gRPC client: " + error);
    }
    channel_ = grpc::CreateCustomInsecureChannelFromFd(target_, *fd, arguments);
    stub_ = v1::Messenger::NewStub(channel_);
  }
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    return Status(ErrorCode::kConnectionFailed,
                  std::string("cannot set up a gRPC client: ") + std::strerror(errno));
  }
  worker_ = std::thread([this] { Work(); });
  return Status::Ok();
}

Status GrpcClient::SendRequest(const Frame& frame, std::chrono::milliseconds /*timeout*/) {
  if (!IsRequest(TypeOf(frame.message))) {
    write_error_ = std::string(MessageTypeName(TypeOf(frame.message))) +
                   " is not a request; gRPC has no call for it";
    return Status(ErrorCode::kInvalidArgument, write_error_);
  }
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(frame);
  }
  work_.notify_one();
  return Status::Ok();
}

Status GrpcClient::SendRaw(std::span<const std::uint8_t> /*bytes*/,
                           std::chrono::milliseconds /*timeout*/) {
  write_error_ = "gRPC has no byte stream of the wire protocol to write raw bytes to";
  return Status(ErrorCode::kInvalidArgument, write_error_);
}

bool GrpcClient::Receive(Clock::time_point deadline) {
  if (event_fd_ < 0) return false;
  if (Take()) return true;
  if (closed_) return false;
  pollfd p = {event_fd_, POLLIN, 0};
  ::poll(&p, 1, MillisUntil(deadline));
  return Take();
}

bool GrpcClient::Take() {
  std::uint64_t count = 0;
  // Reset before taking: a Post after this makes the descriptor readable again.
  while (::read(event_fd_, &count, sizeof count) < 0 && errno == EINTR) {
  }
  std::lock_guard lock(mutex_);
  bool any = !arrived_.empty();
  while (!arrived_.empty()) {
    inbox_.push_back(std::move(arrived_.front()));
    arrived_.pop_front();
  }
  if (arrived_close_ && !closed_) {
    closed_ = true;
    close_detail_ = *arrived_close_;
    any = true;
  }
  return any;
}

void GrpcClient::Post(Arrival arrival) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    arrived_.push_back(std::move(arrival));
  }
  const std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
}

void GrpcClient::PostClosed(std::string detail) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || arrived_close_) return;
    arrived_close_ = std::move(detail);
  }
  const std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
}

void GrpcClient::Close() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  // The connection goes first, so the server sees it vanish rather than calls cancelled.
  if (socket_fd_ >= 0) ::shutdown(socket_fd_, SHUT_RDWR);
  {
    std::lock_guard lock(mutex_);
    if (current_call_ != nullptr) current_call_->TryCancel();
    for (auto& stream : streams_) stream->context.TryCancel();
  }
  work_.notify_all();
  if (worker_.joinable()) worker_.join();
  // The worker is done: no stream is added any more.
  for (auto& stream : streams_) stream->context.TryCancel();
  for (auto& stream : streams_) {
    if (stream->thread.joinable()) stream->thread.join();
  }
  streams_.clear();
  stub_.reset();
  channel_.reset();
  if (socket_fd_ >= 0) ::close(socket_fd_);
  socket_fd_ = -1;
  if (!closed_) close_detail_ = "closed by the client";
}

void GrpcClient::Work() {
  for (;;) {
    Frame frame;
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [this] { return stopping_ || !requests_.empty(); });
      if (stopping_) return;
      frame = std::move(requests_.front());
      requests_.pop_front();
    }
    Execute(frame);
  }
}

template <typename Response, typename Invoke>
std::optional<Response> GrpcClient::Call(std::uint32_t request_id, bool with_token, Invoke invoke) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + call_timeout_);
  if (with_token && !token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return std::nullopt;
    current_call_ = &context;
  }
  Response response;
  const grpc::Status status = invoke(&context, &response);
  {
    std::lock_guard lock(mutex_);
    current_call_ = nullptr;
  }
  if (status.ok()) return response;
  Post(ErrorArrival(request_id, status, ErrorDetail(context)));
  return std::nullopt;
}

void GrpcClient::Execute(const Frame& frame) {
  const std::uint32_t id = frame.request_id;
  const Message& message = frame.message;
  if (const auto* hello = std::get_if<Hello>(&message)) {
    if (hello->protocol_version != kProtocolVersion) {
      Post(
          Unmatchable("nothing: HELLO protocol_version=" + std::to_string(hello->protocol_version) +
                      " has no gRPC counterpart (GetServerInfo negotiates no version)"));
      return;
    }
    const auto info = Call<v1::ServerInfo>(id, false, [&](auto* context, auto* response) {
      return stub_->GetServerInfo(context, v1::GetServerInfoRequest(), response);
    });
    if (info) Post(HelloOkArrival(id, *info));
  } else if (const auto* create = std::get_if<CreateAccount>(&message)) {
    v1::CreateAccountRequest request;
    request.set_username(create->username);
    request.set_password(create->password);
    const auto done =
        Call<v1::CreateAccountResponse>(id, false, [&](auto* context, auto* response) {
          return stub_->CreateAccount(context, request, response);
        });
    if (done) Post(FrameArrival(Frame{id, Ok{}}));
  } else if (const auto* login = std::get_if<Login>(&message)) {
    v1::LoginRequest request;
    request.set_username(login->username);
    request.set_password(login->password);
    const auto done = Call<v1::LoginResponse>(id, false, [&](auto* context, auto* response) {
      return stub_->Login(context, request, response);
    });
    if (!done) return;
    token_ = done->session_token();
    if (!IsHexToken(token_)) {
      Post(Unmatchable("LOGIN_OK #" + std::to_string(id) + " unread_count=" +
                       std::to_string(done->unread_count()) + " (but the session token \"" +
                       token_ + "\" is not 64 hexadecimal characters, section 15.2)"));
      return;
    }
    // The stream first: pushes held since Login are sent on it (section 15.2).
    Subscribe();
    Post(FrameArrival(Frame{id, LoginOk{done->unread_count()}}));
  } else if (std::holds_alternative<Logout>(message)) {
    const auto done = Call<v1::LogoutResponse>(id, true, [&](auto* context, auto* response) {
      return stub_->Logout(context, v1::LogoutRequest(), response);
    });
    if (done) Post(FrameArrival(Frame{id, Ok{}}));
  } else if (const auto* list = std::get_if<ListAccounts>(&message)) {
    v1::ListAccountsRequest request;
    request.set_pattern(list->pattern);
    request.set_cursor(list->cursor);
    request.set_limit(list->limit);
    const auto page = Call<v1::ListAccountsResponse>(id, true, [&](auto* context, auto* response) {
      return stub_->ListAccounts(context, request, response);
    });
    if (page) {
      AccountList out;
      out.usernames.assign(page->usernames().begin(), page->usernames().end());
      out.next_cursor = page->next_cursor();
      Post(FrameArrival(Frame{id, std::move(out)}));
    }
  } else if (const auto* send = std::get_if<Send>(&message)) {
    v1::SendRequest request;
    request.set_recipient(send->recipient);
    request.set_client_message_id(send->client_message_id);
    request.set_text(send->text);
    const auto sent = Call<v1::SendResponse>(id, true, [&](auto* context, auto* response) {
      return stub_->Send(context, request, response);
    });
    if (!sent) return;
    if (sent->delivery() != v1::DELIVERY_QUEUED && sent->delivery() != v1::DELIVERY_DELIVERED) {
      Post(Unmatchable("a SendResponse with delivery " + std::to_string(sent->delivery()) +
                       ", which is neither QUEUED nor DELIVERED"));
      return;
    }
    Post(FrameArrival(
        Frame{id, SendOk{sent->message_id(), sent->timestamp_ms(),
                         sent->delivery() == v1::DELIVERY_DELIVERED ? Delivery::kDelivered
                                                                    : Delivery::kQueued}}));
  } else if (const auto* fetch = std::get_if<FetchUndelivered>(&message)) {
    v1::FetchUndeliveredRequest request;
    request.set_limit(fetch->limit);
    const auto batch =
        Call<v1::FetchUndeliveredResponse>(id, true, [&](auto* context, auto* response) {
          return stub_->FetchUndelivered(context, request, response);
        });
    if (batch) {
      MessageBatch out;
      for (const v1::StoredMessage& m : batch->messages()) {
        out.messages.push_back(
            StoredMessage{m.message_id(), m.sender(), m.timestamp_ms(), m.text()});
      }
      out.remaining = batch->remaining();
      Post(FrameArrival(Frame{id, std::move(out)}));
    }
  } else if (const auto* ack = std::get_if<Ack>(&message)) {
    v1::AckRequest request;
    for (const std::uint64_t message_id : ack->message_ids) request.add_message_ids(message_id);
    const auto done = Call<v1::AckResponse>(id, true, [&](auto* context, auto* response) {
      return stub_->Ack(context, request, response);
    });
    if (done) Post(FrameArrival(Frame{id, Ok{}}));
  } else if (const auto* remove = std::get_if<DeleteAccount>(&message)) {
    v1::DeleteAccountRequest request;
    request.set_confirm(remove->confirm);
    const auto done = Call<v1::DeleteAccountResponse>(id, true, [&](auto* context, auto* response) {
      return stub_->DeleteAccount(context, request, response);
    });
    if (!done) return;
    if (done->confirm_required() == remove->confirm) {
      Post(Unmatchable("a DeleteAccountResponse with confirm_required=" +
                       std::string(done->confirm_required() ? "true" : "false") +
                       " unread_count=" + std::to_string(done->unread_count()) +
                       " to a DeleteAccount with confirm=" + (remove->confirm ? "true" : "false")));
      return;
    }
    if (done->confirm_required()) {
      Post(FrameArrival(Frame{id, ConfirmRequired{done->unread_count()}}));
    } else {
      Post(FrameArrival(Frame{id, Ok{}}));
    }
  } else if (const auto* ping = std::get_if<Ping>(&message)) {
    v1::PingRequest request;
    request.set_nonce(ping->nonce);
    const auto pong = Call<v1::PingResponse>(id, true, [&](auto* context, auto* response) {
      return stub_->Ping(context, request, response);
    });
    if (pong) Post(FrameArrival(Frame{id, Pong{pong->nonce()}}));
  }
}

void GrpcClient::Subscribe() {
  PushStream* stream = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    streams_.push_back(std::make_unique<PushStream>());
    stream = streams_.back().get();
  }
  // No deadline: the stream lives as long as the session.
  stream->context.AddMetadata("authorization", "Bearer " + token_);
  stream->reader = stub_->Subscribe(&stream->context, v1::SubscribeRequest());
  // LOGIN_OK is reported only once the server has attached the stream (its headers came, or
  // the call failed): no push the scenario expects next can miss it.
  stream->reader->WaitForInitialMetadata();
  stream->thread = std::thread([this, stream] { ReadPushes(*stream); });
}

void GrpcClient::ReadPushes(PushStream& stream) {
  v1::ServerPush push;
  std::optional<v1::EndReason> ended;
  while (stream.reader->Read(&push)) {
    if (ended) {
      Post(
          Unmatchable("a push after session_ended on the same stream (section 15.2: "
                      "session_ended comes last): " +
                      PushArrival(push).text));
    }
    if (push.has_session_ended()) ended = push.session_ended().reason();
    Post(PushArrival(push));
  }
  const grpc::Status status = stream.reader->Finish();
  bool newest = false;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    newest = streams_.back().get() == &stream;
  }
  if (ended) {
    const grpc::StatusCode expected = *ended == v1::END_REASON_SLOW_CONSUMER
                                          ? grpc::StatusCode::RESOURCE_EXHAUSTED
                                          : grpc::StatusCode::OK;
    // The connection may be lost between session_ended and the stream's status (a server
    // killed right after a LOGOUT): that is a crash, not a departure from section 15.2.
    const bool connection_lost = status.error_code() == grpc::StatusCode::UNAVAILABLE;
    if (status.error_code() != expected && !connection_lost) {
      Post(Unmatchable("the Subscribe stream finished with status " + ShowStatus(status) +
                       " after session_ended reason=" + EndReasonName(*ended) +
                       "; section 15.2 says " + GrpcStatusName(expected)));
    }
    // LOGGED_OUT leaves the client usable, as LOGOUT leaves a wire connection open.
    if (*ended != v1::END_REASON_LOGGED_OUT && newest) {
      PostClosed("the session ended (SESSION_ENDED reason=" + EndReasonName(*ended) +
                 ") and its Subscribe stream finished with status " + ShowStatus(status));
    }
    return;
  }
  if (status.ok()) {
    Post(
        Unmatchable("the Subscribe stream finished with status OK but without a session_ended "
                    "push (section 15.2)"));
  } else if (const std::optional<std::string> detail = ErrorDetail(stream.context)) {
    Post(Unmatchable("Subscribe failed: " + ErrorArrival(0, status, detail).text));
  }
  if (newest) PostClosed("the Subscribe stream failed: " + ShowStatus(status));
}

}  // namespace messenger::conformance

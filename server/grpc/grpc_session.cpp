#include "grpc_session.h"

#include <utility>

#include "messenger/server/clock.h"

namespace messenger {
namespace {

std::uint64_t Now() { return SystemClock().SteadyMs(); }

v1::EndReason ToProto(EndReason reason) {
  switch (reason) {
    case EndReason::kTakeover:
      return v1::END_REASON_TAKEOVER;
    case EndReason::kServerShutdown:
      return v1::END_REASON_SERVER_SHUTDOWN;
    case EndReason::kIdleTimeout:
      return v1::END_REASON_IDLE_TIMEOUT;
    case EndReason::kLoginTimeout:
      return v1::END_REASON_LOGIN_TIMEOUT;
  }
  return v1::END_REASON_UNSPECIFIED;
}

}  // namespace

GrpcSession::GrpcSession(std::string token, std::uint64_t created_ms, Metrics* metrics)
    : token_(std::move(token)), created_ms_(created_ms), metrics_(metrics) {}

void GrpcSession::Deliver(const StoredMessage& message) {
  {
    std::lock_guard lock(mutex_);
    if (ended_) return;
    if (held_.size() >= kMaxHeldPushes) {
      // The messages stay stored; they are delivered again to the user's next session.
      held_.clear();
      if (metrics_ != nullptr) metrics_->slow_consumer_disconnects(Transport::kGrpc).Add();
      EndLocked(v1::END_REASON_SLOW_CONSUMER,
                "more than " + std::to_string(kMaxHeldPushes) + " pushes waiting to be read",
                grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "slow consumer"), Now());
    } else {
      v1::StoredMessage& out = *held_.emplace_back().mutable_deliver();
      out.set_message_id(message.message_id);
      out.set_sender(message.sender);
      out.set_timestamp_ms(message.timestamp_ms);
      out.set_text(message.text);
    }
  }
  Pump();
}

void GrpcSession::End(EndReason reason, const std::string& message) {
  EndWith(ToProto(reason), message);
}

void GrpcSession::EndWith(v1::EndReason reason, const std::string& message,
                          grpc::Status final_status) {
  {
    std::lock_guard lock(mutex_);
    if (ended_) return;
    EndLocked(reason, message, std::move(final_status), Now());
  }
  Pump();
}

void GrpcSession::EndLocked(v1::EndReason reason, const std::string& message,
                            grpc::Status final_status, std::uint64_t now_ms) {
  v1::SessionEnded& ended = *held_.emplace_back().mutable_session_ended();
  ended.set_reason(reason);
  ended.set_message(message);
  final_status_ = std::move(final_status);
  ended_ = true;
  ended_ms_ = now_ms;
}

bool GrpcSession::ended() const {
  std::lock_guard lock(mutex_);
  return ended_;
}

std::uint64_t GrpcSession::ended_ms() const {
  std::lock_guard lock(mutex_);
  return ended_ms_;
}

bool GrpcSession::subscribed() const {
  std::lock_guard lock(mutex_);
  return subscribed_;
}

bool GrpcSession::streaming() const {
  std::lock_guard lock(mutex_);
  return stream_ != nullptr;
}

bool GrpcSession::ClaimStream() {
  std::lock_guard lock(mutex_);
  if (subscribed_) return false;
  subscribed_ = true;
  return true;
}

void GrpcSession::AttachStream(PushStream* stream) {
  {
    std::lock_guard lock(mutex_);
    stream_ = stream;
  }
  Pump();
}

void GrpcSession::WriteDone(bool ok, std::uint64_t now_ms) {
  {
    std::lock_guard lock(mutex_);
    writing_ = false;
    if (!ok) {
      // The client is gone: nothing more can be written; the stream finishes next.
      held_.clear();
      if (!ended_) {
        ended_ = true;
        ended_ms_ = now_ms;
      }
    }
  }
  Pump();
}

void GrpcSession::StreamCancelled(std::uint64_t now_ms) {
  {
    std::lock_guard lock(mutex_);
    held_.clear();
    if (!ended_) {
      ended_ = true;
      ended_ms_ = now_ms;
    }
    final_status_ = grpc::Status::CANCELLED;
  }
  Pump();
}

void GrpcSession::StreamDone(std::uint64_t now_ms) {
  std::lock_guard lock(mutex_);
  stream_ = nullptr;
  if (!ended_) {
    ended_ = true;
    ended_ms_ = now_ms;
  }
}

void GrpcSession::CancelStream() {
  std::lock_guard lock(mutex_);
  // TryCancel only asks gRPC to cancel: OnCancel and OnDone follow on its threads.
  if (stream_ != nullptr) stream_->context()->TryCancel();
}

void GrpcSession::Pump() {
  PushStream* stream = nullptr;
  bool finish = false;
  grpc::Status status;
  {
    std::lock_guard lock(mutex_);
    if (stream_ == nullptr || writing_) return;
    stream = stream_;
    if (!held_.empty()) {
      in_flight_ = std::move(held_.front());
      held_.pop_front();
      writing_ = true;
    } else if (ended_) {
      finish = true;
      status = final_status_;
      // After Finish the reactor may be deleted at any moment: it is never touched again. Its
      // OnDone still runs StreamDone, which only clears what is already clear.
      stream_ = nullptr;
    } else {
      return;
    }
  }
  if (finish) {
    stream->Finish(status);
  } else {
    stream->StartWrite(&in_flight_);
  }
}

PushStream::PushStream(grpc::CallbackServerContext* context, std::shared_ptr<GrpcSession> session,
                       std::atomic<int>& open_streams)
    : context_(context), session_(std::move(session)), open_streams_(open_streams) {
  ++open_streams_;
}

void PushStream::OnWriteDone(bool ok) { session_->WriteDone(ok, Now()); }

void PushStream::OnCancel() { session_->StreamCancelled(Now()); }

void PushStream::OnDone() {
  session_->StreamDone(Now());
  --open_streams_;
  delete this;
}

}  // namespace messenger

#include "grpc_translate.h"

#include <limits>
#include <string>
#include <utility>

namespace messenger::conformance {
namespace {

// Replaces the first `from` in `line` by `to`; `from` must occur before any string value.
std::string ReplaceFirst(std::string line, std::string_view from, std::string_view to) {
  const std::size_t at = line.find(from);
  if (at != std::string::npos) line.replace(at, from.size(), to);
  return line;
}

std::string Quoted(const std::string& text) {
  // Describe's own escaping, by way of a frame whose only string is the text.
  const std::string described = Describe(Frame{1, Error{ErrorCode::kInternal, text}});
  return described.substr(described.find("message=") + 8);
}

}  // namespace

std::optional<grpc::StatusCode> GrpcStatusFor(ErrorCode code) {
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
    case ErrorCode::kInternal:
      return grpc::StatusCode::INTERNAL;
    default:
      return std::nullopt;
  }
}

std::string GrpcStatusName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "status " + std::to_string(static_cast<int>(code));
  }
}

Arrival FrameArrival(const Frame& frame) {
  Arrival arrival;
  arrival.frame = frame;
  arrival.text = Describe(frame);
  arrival.matchable = true;
  return arrival;
}

Arrival Unmatchable(std::string what) {
  Arrival arrival;
  arrival.text = std::move(what);
  return arrival;
}

Arrival HelloOkArrival(std::uint32_t request_id, const v1::ServerInfo& info) {
  if (info.protocol_version() > std::numeric_limits<std::uint16_t>::max()) {
    return Unmatchable(
        "a ServerInfo with protocol_version=" + std::to_string(info.protocol_version()) +
        ", which no HELLO_OK can carry (a u16)");
  }
  HelloOk hello;
  hello.protocol_version = static_cast<std::uint16_t>(info.protocol_version());
  hello.max_frame_size = info.max_frame_size();
  hello.max_text_bytes = info.max_text_bytes();
  hello.max_queued_per_user = info.max_queued_per_user();
  hello.server_name = info.server_name();
  Arrival arrival;
  // ServerInfo has no max_prelogin_frame_size: shown as absent rather than as any number.
  arrival.text = ReplaceFirst(Describe(Frame{request_id, hello}), " max_prelogin_frame_size=0 ",
                              std::string(" max_prelogin_frame_size=") + kAbsent + " ");
  arrival.matchable = true;
  return arrival;
}

Arrival ErrorArrival(std::uint32_t request_id, const grpc::Status& status,
                     const std::optional<std::string>& detail) {
  const std::string shown_status =
      GrpcStatusName(status.error_code()) + " " + Quoted(status.error_message());
  if (!detail) {
    return Unmatchable("a failed RPC with status " + shown_status + " and no " + kErrorDetailKey +
                       " trailer (section 15.3 requires one for every protocol error)");
  }
  v1::ErrorDetail parsed;
  if (!parsed.ParseFromString(*detail)) {
    return Unmatchable("a failed RPC with status " + shown_status + " whose " + kErrorDetailKey +
                       " trailer is not a serialized ErrorDetail");
  }
  const std::string raw = "code " + std::to_string(parsed.code()) + " name \"" + parsed.name() +
                          "\", status " + shown_status;
  if (parsed.code() > std::numeric_limits<std::uint16_t>::max() ||
      !IsKnownErrorCode(static_cast<std::uint16_t>(parsed.code()))) {
    return Unmatchable("a failed RPC with an error code the protocol does not have: " + raw);
  }
  const auto code = static_cast<ErrorCode>(parsed.code());
  Arrival arrival = FrameArrival(Frame{request_id, Error{code, status.error_message()}});
  if (parsed.name() != ErrorCodeName(code)) {
    return Unmatchable(arrival.text + " (but the trailer names the code \"" + parsed.name() +
                       "\"; section 8 calls " + std::to_string(parsed.code()) + " " +
                       std::string(ErrorCodeName(code)) + ")");
  }
  const std::optional<grpc::StatusCode> expected = GrpcStatusFor(code);
  if (!expected) {
    return Unmatchable(arrival.text + " (with status " + GrpcStatusName(status.error_code()) +
                       "; section 15.3 gives this code no gRPC counterpart)");
  }
  if (*expected != status.error_code()) {
    return Unmatchable(arrival.text + " (but with status " + GrpcStatusName(status.error_code()) +
                       "; section 15.3 maps " + std::string(ErrorCodeName(code)) + " to " +
                       GrpcStatusName(*expected) + ")");
  }
  return arrival;
}

std::string EndReasonName(v1::EndReason reason) {
  switch (reason) {
    case v1::END_REASON_TAKEOVER:
      return "TAKEOVER";
    case v1::END_REASON_SERVER_SHUTDOWN:
      return "SERVER_SHUTDOWN";
    case v1::END_REASON_IDLE_TIMEOUT:
      return "IDLE_TIMEOUT";
    case v1::END_REASON_LOGIN_TIMEOUT:
      return "LOGIN_TIMEOUT";
    case v1::END_REASON_LOGGED_OUT:
      return "LOGGED_OUT";
    case v1::END_REASON_SLOW_CONSUMER:
      return "SLOW_CONSUMER";
    default:
      return "";
  }
}

Arrival PushArrival(const v1::ServerPush& push) {
  if (push.has_deliver()) {
    const v1::StoredMessage& m = push.deliver();
    return FrameArrival(
        Frame{0, Deliver{StoredMessage{m.message_id(), m.sender(), m.timestamp_ms(), m.text()}}});
  }
  if (!push.has_session_ended())
    return Unmatchable(
        "a ServerPush with neither deliver nor "
        "session_ended");
  const v1::SessionEnded& ended = push.session_ended();
  const std::string name = EndReasonName(ended.reason());
  if (name.empty()) {
    return Unmatchable("a session_ended push with reason " + v1::EndReason_Name(ended.reason()) +
                       ", which section 15.2 does not define (message " + Quoted(ended.message()) +
                       ")");
  }
  const int wire_reason = static_cast<int>(ended.reason());
  if (wire_reason >= static_cast<int>(EndReason::kTakeover) &&
      wire_reason <= static_cast<int>(EndReason::kLoginTimeout)) {
    return FrameArrival(
        Frame{0, SessionEnded{static_cast<EndReason>(wire_reason), ended.message()}});
  }
  // A reason only gRPC has: the wire's form with the proto's name for it.
  Arrival arrival;
  arrival.text =
      ReplaceFirst(Describe(Frame{0, SessionEnded{EndReason::kTakeover, ended.message()}}),
                   "reason=TAKEOVER ", "reason=" + name + " ");
  arrival.matchable = true;
  return arrival;
}

}  // namespace messenger::conformance

#include "messenger/codec/status.h"

namespace messenger {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "OK";
    case ErrorCode::kFrameTooLarge:
      return "FRAME_TOO_LARGE";
    case ErrorCode::kMalformedFrame:
      return "MALFORMED_FRAME";
    case ErrorCode::kHandshakeRequired:
      return "HANDSHAKE_REQUIRED";
    case ErrorCode::kUnsupportedVersion:
      return "UNSUPPORTED_VERSION";
    case ErrorCode::kUnknownType:
      return "UNKNOWN_TYPE";
    case ErrorCode::kMalformedBody:
      return "MALFORMED_BODY";
    case ErrorCode::kInvalidUtf8:
      return "INVALID_UTF8";
    case ErrorCode::kUnexpectedMessage:
      return "UNEXPECTED_MESSAGE";
    case ErrorCode::kNotLoggedIn:
      return "NOT_LOGGED_IN";
    case ErrorCode::kAlreadyLoggedIn:
      return "ALREADY_LOGGED_IN";
    case ErrorCode::kInvalidUsername:
      return "INVALID_USERNAME";
    case ErrorCode::kInvalidPassword:
      return "INVALID_PASSWORD";
    case ErrorCode::kInvalidText:
      return "INVALID_TEXT";
    case ErrorCode::kInvalidPattern:
      return "INVALID_PATTERN";
    case ErrorCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case ErrorCode::kUsernameTaken:
      return "USERNAME_TAKEN";
    case ErrorCode::kAuthFailed:
      return "AUTH_FAILED";
    case ErrorCode::kLoginThrottled:
      return "LOGIN_THROTTLED";
    case ErrorCode::kUnknownRecipient:
      return "UNKNOWN_RECIPIENT";
    case ErrorCode::kSelfSend:
      return "SELF_SEND";
    case ErrorCode::kQueueFull:
      return "QUEUE_FULL";
    case ErrorCode::kRateLimited:
      return "RATE_LIMITED";
    case ErrorCode::kClientIdReused:
      return "CLIENT_ID_REUSED";
    case ErrorCode::kServerBusy:
      return "SERVER_BUSY";
    case ErrorCode::kInternal:
      return "INTERNAL";
    case ErrorCode::kConnectionFailed:
      return "CONNECTION_FAILED";
    case ErrorCode::kDisconnected:
      return "DISCONNECTED";
    case ErrorCode::kTimeout:
      return "TIMEOUT";
    case ErrorCode::kTlsFailed:
      return "TLS_FAILED";
  }
  return "UNKNOWN";
}

bool IsKnownErrorCode(std::uint16_t value) {
  const auto code = static_cast<ErrorCode>(value);
  return code != ErrorCode::kOk && value < 1000 && ErrorCodeName(code) != "UNKNOWN";
}

bool IsFatal(ErrorCode code) {
  switch (code) {
    case ErrorCode::kFrameTooLarge:
    case ErrorCode::kMalformedFrame:
    case ErrorCode::kHandshakeRequired:
    case ErrorCode::kUnsupportedVersion:
    case ErrorCode::kServerBusy:
      return true;
    default:
      return false;
  }
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(ErrorCodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace messenger

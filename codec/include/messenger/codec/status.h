// Status and Result<T>: the project's one error currency.
//
// Every fallible call returns a Status (or a Result<T> carrying a value or a Status) instead of
// throwing, so errors cross module boundaries as values. The ErrorCode is the protocol's: the same
// number travels in an ERROR frame (docs/PROTOCOL.md, "Error codes"). Values are immutable and
// thread-compatible.
#ifndef MESSENGER_CODEC_STATUS_H_
#define MESSENGER_CODEC_STATUS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace messenger {

// Wire values are fixed by docs/PROTOCOL.md; never renumber.
enum class ErrorCode : std::uint16_t {
  kOk = 0,  // Never sent on the wire.
  // Framing and handshake: fatal, the peer answers then closes the connection.
  kFrameTooLarge = 1,
  kMalformedFrame = 2,
  kHandshakeRequired = 3,
  kUnsupportedVersion = 4,
  // The frame was well delimited but its content is not acceptable: request-level.
  kUnknownType = 10,
  kMalformedBody = 11,
  kInvalidUtf8 = 12,
  kUnexpectedMessage = 13,
  // Session state.
  kNotLoggedIn = 20,
  kAlreadyLoggedIn = 21,
  // Argument rules.
  kInvalidUsername = 30,
  kInvalidPassword = 31,
  kInvalidText = 32,
  kInvalidPattern = 33,
  kInvalidArgument = 34,
  // Accounts.
  kUsernameTaken = 40,
  kAuthFailed = 41,
  kLoginThrottled = 42,
  // Sending.
  kUnknownRecipient = 50,
  kSelfSend = 51,
  kQueueFull = 52,
  kRateLimited = 53,
  kClientIdReused = 54,
  // Server condition.
  kServerBusy = 60,
  kInternal = 61,
  // Local to a client, never on the wire: the connection itself failed.
  kConnectionFailed = 1000,  // Could not connect.
  kDisconnected = 1001,      // The connection ended before the response arrived.
  kTimeout = 1002,           // No response within the request timeout.
  kTlsFailed = 1003,         // TLS handshake failed or the server's certificate is not trusted.
};

// Returns true iff `value` is a wire ErrorCode listed above (not kOk, not a local code).
bool IsKnownErrorCode(std::uint16_t value);

// Returns true iff a peer that sends or receives this error must close the connection afterwards
// (the byte stream can no longer be trusted or the server refuses to serve it).
bool IsFatal(ErrorCode code);

// Returns the protocol name of `code`, e.g. "FRAME_TOO_LARGE"; "UNKNOWN" for values not listed.
std::string_view ErrorCodeName(ErrorCode code);

class Status {
 public:
  Status() = default;  // OK.
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool fatal() const { return IsFatal(code_); }

  // "OK" or "CODE_NAME: message", for logs and test output.
  std::string ToString() const;

  friend bool operator==(const Status&, const Status&) = default;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// A value of T or a non-OK Status. REQUIRES for value(): ok().
template <typename T>
class Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design, like a return value.
  Result(Status status) : data_(std::move(status)) {}  // NOLINT: REQUIRES !status.ok().

  bool ok() const { return std::holds_alternative<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T& value() & { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

  // OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(data_); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace messenger

#endif  // MESSENGER_CODEC_STATUS_H_

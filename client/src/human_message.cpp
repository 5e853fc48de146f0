// HumanMessage: one sentence per error code, for people. The server's ERROR message is for logs
// and not part of the protocol, so it is quoted only where it states a rule the person broke, and
// only when it is short printable ASCII (it comes from the network and is shown on a terminal).

#include <string>
#include <string_view>

#include "messenger/client/client.h"
#include "messenger/codec/status.h"

namespace messenger {
namespace {

// Longest server detail worth quoting in a sentence.
constexpr std::size_t kMaxQuotedDetail = 160;

bool IsQuotable(std::string_view detail) {
  if (detail.empty() || detail.size() > kMaxQuotedDetail) return false;
  for (const char c : detail) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

// "<lead>: <detail>." when the server's detail can be shown, else `fallback`.
std::string WithDetail(std::string_view lead, std::string_view detail, std::string_view fallback) {
  if (!IsQuotable(detail)) return std::string(fallback);
  std::string out(lead);
  out += ": ";
  out += detail;
  if (out.back() != '.') out += '.';
  return out;
}

}  // namespace

std::string HumanMessage(const Status& status) {
  const std::string& detail = status.message();
  switch (status.code()) {
    case ErrorCode::kOk:
      return "Done.";
    case ErrorCode::kFrameTooLarge:
      return "That request is too large for the server.";
    case ErrorCode::kMalformedFrame:
      return "The client and the server could not understand each other; please reconnect.";
    case ErrorCode::kHandshakeRequired:
      return "The connection was not set up properly; please reconnect.";
    case ErrorCode::kUnsupportedVersion:
      return "The server speaks a different protocol version than this program.";
    case ErrorCode::kUnknownType:
      return "The server does not know that request.";
    case ErrorCode::kMalformedBody:
      return "The server could not read that request.";
    case ErrorCode::kInvalidUtf8:
      return "The text contains bytes that are not valid UTF-8.";
    case ErrorCode::kUnexpectedMessage:
      return "The server did not expect that request at this point.";
    case ErrorCode::kNotLoggedIn:
      return "You need to log in first.";
    case ErrorCode::kAlreadyLoggedIn:
      return "You are already logged in; log out first.";
    case ErrorCode::kInvalidUsername:
      return WithDetail("That username is not allowed", detail,
                        "That username is not allowed: use 1 to 32 letters, digits, '.', '_' or "
                        "'-', starting with a letter or digit.");
    case ErrorCode::kInvalidPassword:
      return WithDetail("That password is not allowed", detail,
                        "That password is not allowed: use 8 to 256 bytes.");
    case ErrorCode::kInvalidText:
      return "A message must not be empty or longer than 4096 bytes.";
    case ErrorCode::kInvalidPattern:
      return "That search pattern is not valid: close every '[' and keep it under 129 bytes.";
    case ErrorCode::kInvalidArgument:
      return "The server refused a value in that request as out of range.";
    case ErrorCode::kUsernameTaken:
      return "That username is already taken.";
    case ErrorCode::kAuthFailed:
      return "Wrong username or password.";
    case ErrorCode::kLoginThrottled:
      return "Too many failed logins for that name; wait a minute and try again.";
    case ErrorCode::kUnknownRecipient:
      return "There is no user with that name.";
    case ErrorCode::kSelfSend:
      return "You cannot send a message to yourself.";
    case ErrorCode::kQueueFull:
      return "That user has too many unread messages; try again later.";
    case ErrorCode::kRateLimited:
      return "You are sending too fast; wait a moment and try again.";
    case ErrorCode::kClientIdReused:
      return "The message was not sent: its id was already used for a different message.";
    case ErrorCode::kServerBusy:
      return "The server is full right now; try again later.";
    case ErrorCode::kInternal:
      return "The server ran into a problem and did nothing; try again.";
    case ErrorCode::kConnectionFailed:
      return "Could not connect to the server; check the address and that the server is running.";
    case ErrorCode::kDisconnected:
      return "Lost the connection to the server.";
    case ErrorCode::kTimeout:
      return "The server did not answer in time.";
    case ErrorCode::kTlsFailed:  // The detail is this client's own, e.g. why a certificate failed.
      return WithDetail("No secure connection to the server", detail,
                        "Could not set up a secure connection to the server.");
  }
  return "Something went wrong.";
}

}  // namespace messenger

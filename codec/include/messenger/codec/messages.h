// Typed protocol messages: one struct per frame type of docs/PROTOCOL.md, gathered in `Message`.
//
// Plain values with no invariants of their own; the codec checks what the wire format requires
// (lengths, UTF-8, enum ranges) and the server checks the protocol's rules (see rules.h).
#ifndef MESSENGER_CODEC_MESSAGES_H_
#define MESSENGER_CODEC_MESSAGES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "messenger/codec/status.h"

namespace messenger {

// Wire values of the frame type byte. Requests 0x01-0x3F, responses 0x40-0x7F, pushes 0x80-0xBF.
enum class MessageType : std::uint8_t {
  kHello = 0x01,
  kCreateAccount = 0x02,
  kLogin = 0x03,
  kLogout = 0x04,
  kListAccounts = 0x05,
  kSend = 0x06,
  kFetchUndelivered = 0x07,
  kAck = 0x08,
  kDeleteAccount = 0x09,
  kPing = 0x0A,

  kHelloOk = 0x41,
  kOk = 0x42,
  kLoginOk = 0x43,
  kAccountList = 0x44,
  kSendOk = 0x45,
  kMessageBatch = 0x46,
  kConfirmRequired = 0x47,
  kPong = 0x48,
  kError = 0x7F,

  kDeliver = 0x81,
  kSessionEnded = 0x82,
};

// How the server disposed of an accepted SEND.
enum class Delivery : std::uint8_t {
  kQueued = 0,     // Stored; the recipient was offline.
  kDelivered = 1,  // Stored and pushed to the recipient's live session (still awaits its ACK).
};

// Why the server ended a session on its own initiative.
enum class EndReason : std::uint8_t {
  kTakeover = 1,        // The same user logged in on another connection.
  kServerShutdown = 2,  // The server is stopping.
  kIdleTimeout = 3,     // Nothing arrived within the idle timeout.
  kLoginTimeout = 4,    // No successful LOGIN within the pre-login timeout.
};

// ---- Requests (client to server) ----
struct Hello {
  static constexpr MessageType kType = MessageType::kHello;
  std::uint16_t protocol_version = 0;
  friend bool operator==(const Hello&, const Hello&) = default;
};
struct CreateAccount {
  static constexpr MessageType kType = MessageType::kCreateAccount;
  std::string username;
  std::string password;
  friend bool operator==(const CreateAccount&, const CreateAccount&) = default;
};
struct Login {
  static constexpr MessageType kType = MessageType::kLogin;
  std::string username;
  std::string password;
  friend bool operator==(const Login&, const Login&) = default;
};
struct Logout {
  static constexpr MessageType kType = MessageType::kLogout;
  friend bool operator==(const Logout&, const Logout&) = default;
};
struct ListAccounts {
  static constexpr MessageType kType = MessageType::kListAccounts;
  std::string pattern;  // Glob; empty means "*".
  std::string cursor;   // Empty for the first page, else the previous reply's next_cursor.
  std::uint16_t limit = 0;
  friend bool operator==(const ListAccounts&, const ListAccounts&) = default;
};
struct Send {
  static constexpr MessageType kType = MessageType::kSend;
  std::string recipient;
  std::uint64_t client_message_id = 0;  // Chosen by the client; makes a retried SEND idempotent.
  std::string text;
  friend bool operator==(const Send&, const Send&) = default;
};
struct FetchUndelivered {
  static constexpr MessageType kType = MessageType::kFetchUndelivered;
  std::uint16_t limit = 0;
  friend bool operator==(const FetchUndelivered&, const FetchUndelivered&) = default;
};
struct Ack {
  static constexpr MessageType kType = MessageType::kAck;
  std::vector<std::uint64_t> message_ids;
  friend bool operator==(const Ack&, const Ack&) = default;
};
struct DeleteAccount {
  static constexpr MessageType kType = MessageType::kDeleteAccount;
  bool confirm = false;
  friend bool operator==(const DeleteAccount&, const DeleteAccount&) = default;
};
struct Ping {
  static constexpr MessageType kType = MessageType::kPing;
  std::uint64_t nonce = 0;
  friend bool operator==(const Ping&, const Ping&) = default;
};

// ---- Responses (server to client, echoing the request id) ----
struct HelloOk {
  static constexpr MessageType kType = MessageType::kHelloOk;
  std::uint16_t protocol_version = 0;
  std::uint32_t max_frame_size = 0;
  std::uint32_t max_prelogin_frame_size = 0;
  std::uint32_t max_text_bytes = 0;
  std::uint32_t max_queued_per_user = 0;
  std::string server_name;
  friend bool operator==(const HelloOk&, const HelloOk&) = default;
};
struct Ok {
  static constexpr MessageType kType = MessageType::kOk;
  friend bool operator==(const Ok&, const Ok&) = default;
};
struct LoginOk {
  static constexpr MessageType kType = MessageType::kLoginOk;
  std::uint32_t unread_count = 0;
  friend bool operator==(const LoginOk&, const LoginOk&) = default;
};
struct AccountList {
  static constexpr MessageType kType = MessageType::kAccountList;
  std::vector<std::string> usernames;
  std::string next_cursor;  // Empty when this is the last page.
  friend bool operator==(const AccountList&, const AccountList&) = default;
};
struct SendOk {
  static constexpr MessageType kType = MessageType::kSendOk;
  std::uint64_t message_id = 0;
  std::uint64_t timestamp_ms = 0;  // Server time of acceptance, ms since the Unix epoch (UTC).
  Delivery delivery = Delivery::kQueued;
  friend bool operator==(const SendOk&, const SendOk&) = default;
};
// One stored message as a recipient sees it (in MESSAGE_BATCH and DELIVER).
struct StoredMessage {
  std::uint64_t message_id = 0;
  std::string sender;
  std::uint64_t timestamp_ms = 0;
  std::string text;
  friend bool operator==(const StoredMessage&, const StoredMessage&) = default;
};
struct MessageBatch {
  static constexpr MessageType kType = MessageType::kMessageBatch;
  std::vector<StoredMessage> messages;  // Oldest first.
  std::uint32_t remaining = 0;          // Undelivered messages not in this batch.
  friend bool operator==(const MessageBatch&, const MessageBatch&) = default;
};
struct ConfirmRequired {
  static constexpr MessageType kType = MessageType::kConfirmRequired;
  std::uint32_t unread_count = 0;  // Messages that deletion would destroy.
  friend bool operator==(const ConfirmRequired&, const ConfirmRequired&) = default;
};
struct Pong {
  static constexpr MessageType kType = MessageType::kPong;
  std::uint64_t nonce = 0;
  friend bool operator==(const Pong&, const Pong&) = default;
};
// A response to a failed request, or with request id 0 a connection-level error.
struct Error {
  static constexpr MessageType kType = MessageType::kError;
  ErrorCode code = ErrorCode::kInternal;
  std::string message;  // Human-readable, for logs; clients branch on `code`.
  friend bool operator==(const Error&, const Error&) = default;
};

// ---- Pushes (server to client, request id 0) ----
struct Deliver {
  static constexpr MessageType kType = MessageType::kDeliver;
  StoredMessage message;
  friend bool operator==(const Deliver&, const Deliver&) = default;
};
struct SessionEnded {
  static constexpr MessageType kType = MessageType::kSessionEnded;
  EndReason reason = EndReason::kTakeover;
  std::string message;
  friend bool operator==(const SessionEnded&, const SessionEnded&) = default;
};

using Message =
    std::variant<Hello, CreateAccount, Login, Logout, ListAccounts, Send, FetchUndelivered, Ack,
                 DeleteAccount, Ping, HelloOk, Ok, LoginOk, AccountList, SendOk, MessageBatch,
                 ConfirmRequired, Pong, Error, Deliver, SessionEnded>;

// A message with the request id of its frame header: a request's own id, the echoed id in a
// response, 0 in a push or a connection-level ERROR.
struct Frame {
  std::uint32_t request_id = 0;
  Message message;
  friend bool operator==(const Frame&, const Frame&) = default;
};

// Returns the wire type of `message`.
MessageType TypeOf(const Message& message);

// Returns the protocol name of a type, e.g. "SEND"; "UNKNOWN" for values not listed.
std::string_view MessageTypeName(MessageType type);

// Returns the protocol name of a SESSION_ENDED reason, e.g. "TAKEOVER"; "UNKNOWN" for values not
// listed.
std::string_view EndReasonName(EndReason reason);

// True iff `type` is sent by clients (and so must carry a non-zero request id).
bool IsRequest(MessageType type);
// True iff `type` is a server push (and so must carry request id 0).
bool IsPush(MessageType type);

// One-line human-readable form used in the spec's examples, logs and test failure output, e.g.
// `SEND #7 recipient="bob" client_message_id=42 text="hi"`. Deterministic: equal frames give
// equal strings. Passwords are shown, since this is for tests; loggers must not log requests raw.
std::string Describe(const Frame& frame);

// The inverse of Describe(): returns the frame f with Describe(f) == line. Only that canonical form
// is accepted: the type's fields in order, single spaces, decimal numbers without leading zeros,
// enum values by name, strings escaped exactly as Describe escapes them (\", \\, and \xHH with
// upper-case hex for the bytes 0x00-0x1F and 0x7F only). Request ids are not checked against the
// type and strings are not checked for UTF-8; EncodeFrame does both. Errors: kInvalidArgument,
// with a message naming the 1-based column where `line` departs from the form and why.
Result<Frame> ParseDescription(std::string_view line);

}  // namespace messenger

#endif  // MESSENGER_CODEC_MESSAGES_H_

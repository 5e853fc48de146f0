#include "messenger/codec/messages.h"

#include <cstdio>
#include <string>

#include "fields.h"

namespace messenger {

std::string_view EndReasonName(EndReason reason) {
  switch (reason) {
    case EndReason::kTakeover:
      return "TAKEOVER";
    case EndReason::kServerShutdown:
      return "SERVER_SHUTDOWN";
    case EndReason::kIdleTimeout:
      return "IDLE_TIMEOUT";
    case EndReason::kLoginTimeout:
      return "LOGIN_TIMEOUT";
  }
  return "UNKNOWN";
}

namespace codec_internal {

std::string_view EnumName(Delivery v) {
  switch (v) {
    case Delivery::kQueued:
      return "QUEUED";
    case Delivery::kDelivered:
      return "DELIVERED";
  }
  return "UNKNOWN";
}

std::string_view EnumName(EndReason v) { return EndReasonName(v); }

namespace {

// The Describe() visitor: ` name=value` per field, lists as [a,b], nested messages as {...}.
class Printer {
 public:
  explicit Printer(std::string& out) : out_(out) {}

  void U8(std::string_view name, std::uint8_t v) { Number(name, v); }
  void U16(std::string_view name, std::uint16_t v) { Number(name, v); }
  void U32(std::string_view name, std::uint32_t v) { Number(name, v); }
  void U64(std::string_view name, std::uint64_t v) { Number(name, v); }
  void Bool(std::string_view name, bool v) {
    Key(name);
    out_ += v ? "true" : "false";
  }
  void Str(std::string_view name, const std::string& s) {
    Key(name);
    out_ += '"';
    for (const char c : s) {
      const auto byte = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (byte < 0x20 || byte == 0x7F) {
        char escaped[5];
        std::snprintf(escaped, sizeof escaped, "\\x%02X", byte);
        out_ += escaped;
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }
  template <typename E>
  void Enum(std::string_view name, E v) {
    Key(name);
    out_ += EnumName(v);
  }
  template <typename T, typename F>
  void List(std::string_view name, const std::vector<T>& items, F element) {
    Key(name);
    out_ += '[';
    first_ = true;
    for (const T& item : items) element(item);
    first_ = false;
    out_ += ']';
  }
  template <typename T>
  void Nested(const T& message) {
    Key("");
    out_ += '{';
    first_ = true;
    Fields(*this, message);
    first_ = false;
    out_ += '}';
  }

 private:
  template <typename T>
  void Number(std::string_view name, T v) {
    Key(name);
    out_ += std::to_string(v);
  }
  // Named fields are separated by spaces, unnamed list items by commas.
  void Key(std::string_view name) {
    if (name.empty()) {
      if (!first_) out_ += ',';
    } else {
      if (!first_) out_ += ' ';
      out_ += name;
      out_ += '=';
    }
    first_ = false;
  }

  std::string& out_;
  bool first_ = false;
};

}  // namespace
}  // namespace codec_internal

MessageType TypeOf(const Message& message) {
  return std::visit([](const auto& m) { return std::decay_t<decltype(m)>::kType; }, message);
}

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello:
      return "HELLO";
    case MessageType::kCreateAccount:
      return "CREATE_ACCOUNT";
    case MessageType::kLogin:
      return "LOGIN";
    case MessageType::kLogout:
      return "LOGOUT";
    case MessageType::kListAccounts:
      return "LIST_ACCOUNTS";
    case MessageType::kSend:
      return "SEND";
    case MessageType::kFetchUndelivered:
      return "FETCH_UNDELIVERED";
    case MessageType::kAck:
      return "ACK";
    case MessageType::kDeleteAccount:
      return "DELETE_ACCOUNT";
    case MessageType::kPing:
      return "PING";
    case MessageType::kHelloOk:
      return "HELLO_OK";
    case MessageType::kOk:
      return "OK";
    case MessageType::kLoginOk:
      return "LOGIN_OK";
    case MessageType::kAccountList:
      return "ACCOUNT_LIST";
    case MessageType::kSendOk:
      return "SEND_OK";
    case MessageType::kMessageBatch:
      return "MESSAGE_BATCH";
    case MessageType::kConfirmRequired:
      return "CONFIRM_REQUIRED";
    case MessageType::kPong:
      return "PONG";
    case MessageType::kError:
      return "ERROR";
    case MessageType::kDeliver:
      return "DELIVER";
    case MessageType::kSessionEnded:
      return "SESSION_ENDED";
  }
  return "UNKNOWN";
}

bool IsRequest(MessageType type) { return static_cast<std::uint8_t>(type) < 0x40; }

bool IsPush(MessageType type) { return static_cast<std::uint8_t>(type) >= 0x80; }

std::string Describe(const Frame& frame) {
  const MessageType type = TypeOf(frame.message);
  std::string out(MessageTypeName(type));
  out += " #";
  out += std::to_string(frame.request_id);
  codec_internal::Printer printer(out);
  std::visit([&printer](const auto& message) { codec_internal::Fields(printer, message); },
             frame.message);
  return out;
}

}  // namespace messenger

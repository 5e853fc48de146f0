// ParseDescription: the inverse of Describe(), a fourth visitor over the field list of fields.h.
// It reads exactly what the Printer in messages.cpp writes, field by field in the same order, so
// the two cannot disagree about names, order, separators or escaping.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "fields.h"
#include "messenger/codec/messages.h"

namespace messenger {
namespace codec_internal {
namespace {

// Every value of enum E that a body may carry, with its name. Built once per enum type.
template <typename E>
const std::vector<std::pair<std::string_view, E>>& EnumValues() {
  static const std::vector<std::pair<std::string_view, E>> values = [] {
    using Raw = std::underlying_type_t<E>;
    std::vector<std::pair<std::string_view, E>> all;
    for (std::uint32_t raw = 0; raw <= std::numeric_limits<Raw>::max(); ++raw) {
      const auto value = static_cast<E>(static_cast<Raw>(raw));
      if (IsValidEnum(value)) all.emplace_back(EnumName(value), value);
    }
    return all;
  }();
  return values;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // Lower case is not the canonical form.
}

// The Describe() reader. Mirrors Printer: ` name=value` per named field, unnamed list items
// separated by commas, records in braces with their first field unprefixed.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  void U8(std::string_view name, std::uint8_t& v) { Number(name, v); }
  void U16(std::string_view name, std::uint16_t& v) { Number(name, v); }
  void U32(std::string_view name, std::uint32_t& v) { Number(name, v); }
  void U64(std::string_view name, std::uint64_t& v) { Number(name, v); }
  void Bool(std::string_view name, bool& v) {
    if (!Key(name)) return;
    const std::string_view word = Word();
    if (word == "true") {
      v = true;
    } else if (word == "false") {
      v = false;
    } else {
      FailAt(pos_ - word.size(),
             "expected true or false for " + What(name) + ", got " + Quote(word));
    }
  }
  void Str(std::string_view name, std::string& s) {
    if (!Key(name)) return;
    if (!Expect('"', "a string in double quotes for " + What(name))) return;
    s.clear();
    while (ok()) {
      if (pos_ == text_.size()) return FailAt(pos_, "the string of " + What(name) + " never ends");
      const char c = text_[pos_];
      const auto byte = static_cast<unsigned char>(c);
      if (c == '"') {
        ++pos_;
        return;
      }
      if (byte < 0x20 || byte == 0x7F) {
        return FailAt(pos_, "a control byte must be written as \\x" + Hex(byte));
      }
      if (c != '\\') {
        s += c;
        ++pos_;
        continue;
      }
      const std::size_t escape = pos_;
      const char kind = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
      if (kind == '"' || kind == '\\') {
        s += kind;
        pos_ += 2;
        continue;
      }
      if (kind != 'x') {
        return FailAt(escape, "unknown escape; a string knows only \\\", \\\\ and \\xHH");
      }
      const int high = pos_ + 2 < text_.size() ? HexDigit(text_[pos_ + 2]) : -1;
      const int low = pos_ + 3 < text_.size() ? HexDigit(text_[pos_ + 3]) : -1;
      if (high < 0 || low < 0) {
        return FailAt(escape, "\\x must be followed by two upper-case hex digits");
      }
      const auto value = static_cast<unsigned char>(high * 16 + low);
      if (value >= 0x20 && value != 0x7F) {
        return FailAt(escape, "only control bytes are escaped; write this byte as itself");
      }
      s += static_cast<char>(value);
      pos_ += 4;
    }
  }
  template <typename E>
  void Enum(std::string_view name, E& v) {
    if (!Key(name)) return;
    const std::size_t start = pos_;
    const std::string_view word = Word();
    for (const auto& [value_name, value] : EnumValues<E>()) {
      if (value_name == word) {
        v = value;
        return;
      }
    }
    std::string known;
    for (const auto& entry : EnumValues<E>()) {
      known += (known.empty() ? "" : ", ") + std::string(entry.first);
    }
    FailAt(start, Quote(word) + " is not a value of " + What(name) + " (one of " + known + ")");
  }
  template <typename T, typename F>
  void List(std::string_view name, std::vector<T>& items, F element) {
    if (!Key(name)) return;
    if (!Expect('[', "'[' opening the list " + What(name))) return;
    items.clear();
    first_ = true;
    while (ok() && Peek() != ']') {
      if (pos_ == text_.size()) return FailAt(pos_, "the list " + What(name) + " never ends");
      element(items.emplace_back());
    }
    first_ = false;
    Expect(']', "']' closing the list " + What(name));
  }
  template <typename T>
  void Nested(T& message) {
    if (!Key("")) return;
    if (!Expect('{', "'{' opening a record")) return;
    first_ = true;
    Fields(*this, message);
    first_ = false;
    Expect('}', "'}' closing the record");
  }

  // Reads `TYPE #request_id` into `frame`, then the type's fields; the line must end there.
  void ReadFrame(Frame& frame) {
    const std::size_t start = pos_;
    const std::string_view type = Word();
    if (!EmplaceType(type, frame.message,
                     std::make_index_sequence<std::variant_size_v<Message>>())) {
      return FailAt(start, type.empty() ? "expected a message type such as SEND"
                                        : Quote(type) + " is not a message type");
    }
    if (!Expect(' ', "' #' and the request id after the type")) return;
    if (!Expect('#', "'#' and the request id after the type")) return;
    ReadNumber("the request id", frame.request_id);
    if (!ok()) return;
    std::visit([this](auto& message) { Fields(*this, message); }, frame.message);
    if (ok() && pos_ != text_.size()) {
      FailAt(pos_, "unexpected text after the last field of " + std::string(type));
    }
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

 private:
  template <std::size_t... I>
  static bool EmplaceType(std::string_view type, Message& out, std::index_sequence<I...>) {
    auto try_one = [&]<std::size_t Index>() {
      using Alternative = std::variant_alternative_t<Index, Message>;
      if (MessageTypeName(Alternative::kType) != type) return false;
      out.emplace<Index>();
      return true;
    };
    return (try_one.template operator()<I>() || ...);
  }

  // Consumes what Printer::Key writes before a value; false (with the error set) if absent.
  bool Key(std::string_view name) {
    if (!ok()) return false;
    const bool first = first_;
    first_ = false;
    if (name.empty()) return first || Expect(',', "',' between list items or a closing ']'");
    if (!first && !Expect(' ', "' ' before field '" + std::string(name) + "'")) return false;
    const std::size_t start = pos_;
    if (text_.substr(pos_, name.size()) != name || Peek(name.size()) != '=') {
      const std::size_t end = std::min(text_.find_first_of(" =", pos_), text_.size());
      FailAt(start, "expected field '" + std::string(name) + "', got " +
                        (start == text_.size() ? std::string("the end of the line")
                                               : Quote(text_.substr(start, end - start))));
      return false;
    }
    pos_ += name.size() + 1;
    return true;
  }

  template <typename T>
  void Number(std::string_view name, T& v) {
    if (!Key(name)) return;
    ReadNumber(What(name), v);
  }

  // Decimal, no sign, no leading zeros, within T.
  template <typename T>
  void ReadNumber(const std::string& what, T& v) {
    const std::size_t start = pos_;
    std::uint64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      const auto digit = static_cast<std::uint64_t>(text_[pos_] - '0');
      if (value > (std::numeric_limits<T>::max() - digit) / 10) {
        return FailAt(start,
                      what + " is larger than " + std::to_string(std::numeric_limits<T>::max()));
      }
      value = value * 10 + digit;
      ++pos_;
    }
    if (pos_ == start) return FailAt(start, "expected a decimal number for " + what);
    if (text_[start] == '0' && pos_ - start > 1) {
      return FailAt(start, what + " has a leading zero");
    }
    v = static_cast<T>(value);
  }

  // The run of [A-Za-z0-9_] at the current position (an enum value, a bool, a type name).
  std::string_view Word() {
    const std::size_t start = pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      const bool word_char =
          (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
      if (!word_char) break;
      ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }

  char Peek(std::size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }

  bool Expect(char c, const std::string& what) {
    if (!ok()) return false;
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    FailAt(pos_, "expected " + what + ", got " +
                     (pos_ == text_.size() ? std::string("the end of the line")
                                           : Quote(text_.substr(pos_, 12))));
    return false;
  }

  void FailAt(std::size_t column, const std::string& message) {
    if (!ok()) return;
    status_ = Status(ErrorCode::kInvalidArgument,
                     "column " + std::to_string(column + 1) + ": " + message);
  }

  static std::string What(std::string_view name) {
    return name.empty() ? std::string("a list item") : "field '" + std::string(name) + "'";
  }
  static std::string Quote(std::string_view text) { return "'" + std::string(text) + "'"; }
  static std::string Hex(unsigned char byte) {
    const char* digits = "0123456789ABCDEF";
    return {digits[byte >> 4], digits[byte & 0xF]};
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  bool first_ = false;
  Status status_;
};

}  // namespace
}  // namespace codec_internal

Result<Frame> ParseDescription(std::string_view line) {
  codec_internal::Parser parser(line);
  Frame frame;
  parser.ReadFrame(frame);
  if (!parser.ok()) return parser.status();
  return frame;
}

}  // namespace messenger

#include "frame_template.h"

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/messages.h"

namespace messenger::conformance {
namespace {

bool IsWordChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

class TemplateParser {
 public:
  TemplateParser(std::string_view line, bool holes) : line_(line), holes_(holes) {}

  Result<FrameTemplate> Parse() {
    FrameTemplate out;
    out.type = Word();
    if (out.type.empty()) return Fail("expected a message type such as SEND");
    if (!Take(' ') || !Take('#')) return Fail("expected ' #' and the request id after the type");
    if (!ReadValue(out.request_id)) return status_;
    if (out.request_id.kind != Value::Kind::kAtom && out.request_id.kind != Value::Kind::kAny &&
        out.request_id.kind != Value::Kind::kCapture) {
      FailAt(out.request_id.begin, "a request id is a number");
      return status_;
    }
    while (pos_ < line_.size()) {
      if (!Take(' ')) return Fail("expected ' ' before the next field");
      while (Take(' ')) {
      }
      if (pos_ == line_.size()) break;
      std::string name;
      Value value;
      if (!ReadField(name, value)) return status_;
      out.names.push_back(std::move(name));
      out.values.push_back(std::move(value));
    }
    return out;
  }

 private:
  bool ReadField(std::string& name, Value& value) {
    const std::size_t start = pos_;
    name = Word();
    if (name.empty() || !Take('=')) {
      pos_ = start;
      FailAt(start, "expected name=value");
      return false;
    }
    return ReadValue(value);
  }

  bool ReadValue(Value& value) {
    value.begin = pos_;
    const char c = pos_ < line_.size() ? line_[pos_] : '\0';
    if (c == '"') {
      value.kind = Value::Kind::kString;
      if (!ReadString(value.text)) return false;
    } else if (c == '[') {
      value.kind = Value::Kind::kList;
      ++pos_;
      if (!Take(']')) {
        do {
          if (!ReadValue(value.items.emplace_back())) return false;
        } while (Take(','));
        if (!Take(']')) return FailAt(pos_, "expected ',' or ']' in a list");
      }
    } else if (c == '{') {
      value.kind = Value::Kind::kRecord;
      ++pos_;
      do {
        if (!ReadField(value.names.emplace_back(), value.items.emplace_back())) return false;
      } while (Take(' '));
      if (!Take('}')) return FailAt(pos_, "expected ' ' or '}' in a record");
    } else if (c == '*' && holes_) {
      value.kind = Value::Kind::kAny;
      ++pos_;
    } else if (c == '$' && holes_) {
      value.kind = Value::Kind::kCapture;
      ++pos_;
      value.text = Word();
      if (value.text.empty()) return FailAt(value.begin, "expected a capture name after '$'");
    } else {
      value.kind = Value::Kind::kAtom;
      value.text = Word();
      if (value.text.empty()) {
        return FailAt(pos_, holes_ ? "expected a value (number, name, \"string\", [list], "
                                     "{record}, * or $capture)"
                                   : "expected a value (number, name, \"string\", [list] or "
                                     "{record})");
      }
    }
    value.end = pos_;
    return true;
  }

  bool ReadString(std::string& out) {
    ++pos_;  // The opening quote.
    for (;;) {
      if (pos_ >= line_.size()) return FailAt(pos_, "the string never ends");
      const char c = line_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      const char kind = pos_ + 1 < line_.size() ? line_[pos_ + 1] : '\0';
      if (kind == '"' || kind == '\\') {
        out += kind;
        pos_ += 2;
      } else if (kind == 'x' && pos_ + 3 < line_.size() && HexValue(line_[pos_ + 2]) >= 0 &&
                 HexValue(line_[pos_ + 3]) >= 0) {
        out += static_cast<char>(HexValue(line_[pos_ + 2]) * 16 + HexValue(line_[pos_ + 3]));
        pos_ += 4;
      } else {
        return FailAt(pos_, "unknown escape; strings know \\\", \\\\ and \\xHH");
      }
    }
  }

  std::string Word() {
    const std::size_t start = pos_;
    while (pos_ < line_.size() && IsWordChar(line_[pos_])) ++pos_;
    return std::string(line_.substr(start, pos_ - start));
  }

  bool Take(char c) {
    if (pos_ < line_.size() && line_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Status Fail(const std::string& message) {
    FailAt(pos_, message);
    return status_;
  }
  bool FailAt(std::size_t at, const std::string& message) {
    if (status_.ok()) {
      status_ =
          Status(ErrorCode::kInvalidArgument, "column " + std::to_string(at + 1) + ": " + message);
    }
    return false;
  }

  std::string_view line_;
  bool holes_;
  std::size_t pos_ = 0;
  Status status_;
};

bool HasHole(const Value& value) {
  if (value.kind == Value::Kind::kAny || value.kind == Value::Kind::kCapture) return true;
  for (const Value& item : value.items) {
    if (HasHole(item)) return true;
  }
  return false;
}

std::string_view Span(std::string_view line, const Value& value) {
  return line.substr(value.begin, value.end - value.begin);
}

// The Describe() of a default-constructed frame of each type, parsed: the types' field lists,
// and a valid value for every field.
struct Schema {
  std::string line;
  FrameTemplate fields;
};

template <std::size_t... I>
std::map<std::string, Schema> BuildSchemas(std::index_sequence<I...>) {
  std::map<std::string, Schema> schemas;
  (
      [&schemas] {
        Schema schema;
        schema.line = Describe(Frame{1, std::variant_alternative_t<I, Message>{}});
        schema.fields = *ParseTemplate(schema.line, false);
        const std::string type = schema.fields.type;
        schemas.emplace(type, std::move(schema));
      }(),
      ...);
  return schemas;
}

const std::map<std::string, Schema>& Schemas() {
  static const std::map<std::string, Schema> schemas =
      BuildSchemas(std::make_index_sequence<std::variant_size_v<Message>>());
  return schemas;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : " ") + name;
  return out.empty() ? "(none)" : out;
}

constexpr char kRequestId[] = "request id";

class Matcher {
 public:
  Matcher(std::string_view expected_line, std::string_view actual_line, Bindings& captures)
      : expected_line_(expected_line), actual_line_(actual_line), captures_(captures) {}

  std::optional<std::string> Compare(const Value& expected, const Value& actual,
                                     const std::string& path) {
    switch (expected.kind) {
      case Value::Kind::kAny:
        return std::nullopt;
      case Value::Kind::kCapture: {
        const std::string value(Span(actual_line_, actual));
        const auto [it, inserted] = captures_.emplace(expected.text, value);
        if (inserted || it->second == value) return std::nullopt;
        return Label(path) + ": expected $" + expected.text + " = " + it->second +
               " (as captured earlier in this line), got " + value;
      }
      default:
        break;
    }
    if (expected.kind != actual.kind) return Differ(expected, actual, path);
    switch (expected.kind) {
      case Value::Kind::kAtom:
      case Value::Kind::kString:
        if (expected.text != actual.text) return Differ(expected, actual, path);
        return std::nullopt;
      case Value::Kind::kList:
        if (expected.items.size() != actual.items.size()) {
          return Label(path) + ": expected " + std::to_string(expected.items.size()) +
                 " item(s), got " + std::to_string(actual.items.size()) + ": " +
                 std::string(Span(actual_line_, actual));
        }
        for (std::size_t i = 0; i < expected.items.size(); ++i) {
          if (auto d = Compare(expected.items[i], actual.items[i],
                               path + "[" + std::to_string(i) + "]")) {
            return d;
          }
        }
        return std::nullopt;
      case Value::Kind::kRecord:
        if (expected.names != actual.names) {
          return Label(path) + ": expected a record of " + JoinNames(expected.names) +
                 ", got one of " + JoinNames(actual.names);
        }
        for (std::size_t i = 0; i < expected.items.size(); ++i) {
          if (auto d =
                  Compare(expected.items[i], actual.items[i], path + "." + expected.names[i])) {
            return d;
          }
        }
        return std::nullopt;
      default:
        return std::nullopt;
    }
  }

 private:
  std::string Differ(const Value& expected, const Value& actual, const std::string& path) {
    return Label(path) + ": expected " + std::string(Span(expected_line_, expected)) + ", got " +
           std::string(Span(actual_line_, actual));
  }

  // A value's place for messages: "request id", or e.g. "field 'messages[1].text'".
  static std::string Label(const std::string& path) {
    return path == kRequestId ? path : "field '" + path + "'";
  }

  std::string_view expected_line_;
  std::string_view actual_line_;
  Bindings& captures_;
};

bool IsGrpcOnlyEndReason(const Value& value) {
  return value.kind == Value::Kind::kAtom &&
         (value.text == "LOGGED_OUT" || value.text == "SLOW_CONSUMER");
}

}  // namespace

Result<FrameTemplate> ParseTemplate(std::string_view line, bool holes) {
  return TemplateParser(line, holes).Parse();
}

std::string Substitute(std::string_view line, const Bindings& bindings) {
  std::string out;
  bool in_string = false;
  for (std::size_t i = 0; i < line.size();) {
    const char c = line[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < line.size()) {
        out += line[i + 1];
        i += 2;
        continue;
      }
      if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '$') {
      std::size_t end = i + 1;
      while (end < line.size() && IsWordChar(line[end])) ++end;
      const auto it = bindings.find(std::string(line.substr(i + 1, end - i - 1)));
      if (end > i + 1 && it != bindings.end()) {
        out += it->second;
        i = end;
        continue;
      }
    }
    out += c;
    ++i;
  }
  return out;
}

std::vector<std::string> Variables(std::string_view line) {
  std::vector<std::string> names;
  bool in_string = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '$') {
      std::size_t end = i + 1;
      while (end < line.size() && IsWordChar(line[end])) ++end;
      if (end > i + 1) names.emplace_back(line.substr(i + 1, end - i - 1));
      i = end - 1;
    }
  }
  return names;
}

std::optional<std::string> Match(const FrameTemplate& expected, std::string_view expected_line,
                                 const FrameTemplate& actual, std::string_view actual_line,
                                 Bindings& captures) {
  if (expected.type != actual.type) {
    return "expected " + expected.type + ", got " + actual.type;
  }
  Bindings found = captures;
  Matcher matcher(expected_line, actual_line, found);
  if (auto d = matcher.Compare(expected.request_id, actual.request_id, kRequestId)) return d;
  if (expected.names != actual.names) {
    return "expected the fields " + JoinNames(expected.names) + ", got " + JoinNames(actual.names);
  }
  for (std::size_t i = 0; i < expected.values.size(); ++i) {
    if (auto d = matcher.Compare(expected.values[i], actual.values[i], expected.names[i])) {
      return d;
    }
  }
  captures = std::move(found);
  return std::nullopt;
}

Status CheckTemplate(std::string_view line, bool holes) {
  const Result<FrameTemplate> parsed = ParseTemplate(line, holes);
  if (!parsed.ok()) return parsed.status();
  const auto it = Schemas().find(parsed->type);
  if (it == Schemas().end()) {
    std::string known;
    for (const auto& [type, schema] : Schemas()) known += (known.empty() ? "" : ", ") + type;
    return Status(ErrorCode::kInvalidArgument,
                  "'" + parsed->type + "' is not a message type (one of " + known + ")");
  }
  const Schema& schema = it->second;
  if (parsed->names != schema.fields.names) {
    return Status(ErrorCode::kInvalidArgument,
                  parsed->type + " has the fields " + JoinNames(schema.fields.names) +
                      " (all of them, in this order); the line gives " + JoinNames(parsed->names));
  }
  // Fill every hole with the default frame's value for its field, so the codec's own parser can
  // judge all the values that are written out.
  std::string probe = parsed->type + " #";
  probe +=
      HasHole(parsed->request_id) ? std::string("1") : std::string(Span(line, parsed->request_id));
  std::vector<std::size_t> field_starts;
  for (std::size_t i = 0; i < parsed->names.size(); ++i) {
    field_starts.push_back(probe.size() + 1);
    probe += " " + parsed->names[i] + "=";
    // The end reasons only gRPC has are names the codec does not know; they stand as written.
    const bool grpc_only_reason = parsed->type == "SESSION_ENDED" && parsed->names[i] == "reason" &&
                                  IsGrpcOnlyEndReason(parsed->values[i]);
    probe += HasHole(parsed->values[i]) || grpc_only_reason
                 ? Span(schema.line, schema.fields.values[i])
                 : Span(line, parsed->values[i]);
  }
  const Result<Frame> frame = ParseDescription(probe);
  if (frame.ok()) return Status::Ok();
  // The codec names a column of the probe; say which field that is instead.
  std::string message = frame.status().message();
  std::size_t column = 0;
  if (message.rfind("column ", 0) == 0) {
    const std::size_t colon = message.find(": ");
    column = std::stoul(message.substr(7, colon - 7)) - 1;
    message = message.substr(colon + 2);
  }
  std::string where = "the request id";
  for (std::size_t i = 0; i < field_starts.size(); ++i) {
    if (column >= field_starts[i]) where = "field '" + parsed->names[i] + "'";
  }
  return Status(ErrorCode::kInvalidArgument,
                where + " is not in the canonical one-line form: " + message);
}

}  // namespace messenger::conformance

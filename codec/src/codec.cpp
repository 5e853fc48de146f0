#include "messenger/codec/codec.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "fields.h"
#include "messenger/codec/rules.h"

namespace messenger {
namespace {

using codec_internal::Fields;
using codec_internal::IsValidEnum;

constexpr std::size_t kMaxFieldLength = 0xFFFF;  // u16 length prefixes and list counts.

// How error messages name a field; list items are visited without a name of their own.
std::string FieldName(std::string_view name) {
  return name.empty() ? std::string("a list item") : "field '" + std::string(name) + "'";
}

Status Malformed(std::string message) {
  return Status(ErrorCode::kMalformedBody, std::move(message));
}

template <typename T>
void PutBigEndian(Bytes& out, T value) {
  for (int shift = (sizeof(T) - 1) * 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>(value >> shift));
  }
}

template <typename T>
T GetBigEndian(const std::uint8_t* p) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value = static_cast<T>((value << 8) | p[i]);
  return value;
}

// Request ids: requests and every response but ERROR carry a non-zero id; pushes carry 0; an ERROR
// with id 0 is a connection-level error.
bool RequestIdAllowed(MessageType type, std::uint32_t request_id) {
  if (IsPush(type)) return request_id == 0;
  if (type == MessageType::kError) return true;
  return request_id != 0;
}

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}

  void U8(std::string_view, std::uint8_t v) { out_.push_back(v); }
  void U16(std::string_view, std::uint16_t v) { PutBigEndian(out_, v); }
  void U32(std::string_view, std::uint32_t v) { PutBigEndian(out_, v); }
  void U64(std::string_view, std::uint64_t v) { PutBigEndian(out_, v); }
  void Bool(std::string_view, bool v) { out_.push_back(v ? 1 : 0); }
  void Str(std::string_view name, const std::string& s) {
    if (s.size() > kMaxFieldLength) {
      return Fail(Malformed(FieldName(name) + " is longer than 65535 bytes"));
    }
    if (!IsValidUtf8(s)) {
      return Fail(Status(ErrorCode::kInvalidUtf8, FieldName(name) + " is not valid UTF-8"));
    }
    PutBigEndian(out_, static_cast<std::uint16_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  template <typename E>
  void Enum(std::string_view name, E v) {
    if (!IsValidEnum(v)) return Fail(Malformed("field '" + std::string(name) + "' out of range"));
    PutBigEndian(out_, static_cast<std::underlying_type_t<E>>(v));
  }
  template <typename T, typename F>
  void List(std::string_view name, const std::vector<T>& items, F element) {
    if (items.size() > kMaxFieldLength) {
      return Fail(Malformed("list '" + std::string(name) + "' has more than 65535 items"));
    }
    PutBigEndian(out_, static_cast<std::uint16_t>(items.size()));
    for (const T& item : items) element(item);
  }
  template <typename T>
  void Nested(const T& message) {
    Fields(*this, message);
  }

  const Status& status() const { return status_; }

 private:
  void Fail(Status status) {
    if (status_.ok()) status_ = std::move(status);
  }

  Bytes& out_;
  Status status_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}

  void U8(std::string_view name, std::uint8_t& v) { Number(name, v); }
  void U16(std::string_view name, std::uint16_t& v) { Number(name, v); }
  void U32(std::string_view name, std::uint32_t& v) { Number(name, v); }
  void U64(std::string_view name, std::uint64_t& v) { Number(name, v); }
  void Bool(std::string_view name, bool& v) {
    std::uint8_t byte = 0;
    Number(name, byte);
    if (byte > 1) Fail(Malformed("field '" + std::string(name) + "' is not a bool (0 or 1)"));
    v = byte == 1;
  }
  void Str(std::string_view name, std::string& s) {
    std::uint16_t length = 0;
    Number(name, length);
    const std::uint8_t* p = Take(name, length);
    if (p == nullptr) return;
    s.assign(reinterpret_cast<const char*>(p), length);
    if (!IsValidUtf8(s)) {
      Fail(Status(ErrorCode::kInvalidUtf8, FieldName(name) + " is not valid UTF-8"));
    }
  }
  template <typename E>
  void Enum(std::string_view name, E& v) {
    std::underlying_type_t<E> raw = 0;
    Number(name, raw);
    v = static_cast<E>(raw);
    if (status_.ok() && !IsValidEnum(v)) {
      Fail(Malformed("field '" + std::string(name) + "' has unknown value " +
                     std::to_string(static_cast<unsigned>(raw))));
    }
  }
  template <typename T, typename F>
  void List(std::string_view name, std::vector<T>& items, F element) {
    std::uint16_t count = 0;
    Number(name, count);
    // Every element takes at least one byte, so a count beyond the bytes left is a lie; checking
    // it first keeps a hostile count from reserving memory.
    if (status_.ok() && count > in_.size() - pos_) {
      Fail(Malformed("list '" + std::string(name) + "' claims " + std::to_string(count) +
                     " items but the body ends first"));
    }
    items.clear();
    if (!status_.ok()) return;
    items.reserve(count);
    for (std::uint16_t i = 0; i < count && status_.ok(); ++i) element(items.emplace_back());
  }
  template <typename T>
  void Nested(T& message) {
    Fields(*this, message);
  }

  const Status& status() const { return status_; }
  std::size_t remaining() const { return in_.size() - pos_; }

 private:
  template <typename T>
  void Number(std::string_view name, T& v) {
    const std::uint8_t* p = Take(name, sizeof(T));
    v = p == nullptr ? T{} : GetBigEndian<T>(p);
  }
  const std::uint8_t* Take(std::string_view name, std::size_t n) {
    if (!status_.ok()) return nullptr;
    if (in_.size() - pos_ < n) {
      Fail(Malformed(name.empty() ? std::string("body ends inside a list item")
                                  : "body ends inside field '" + std::string(name) + "'"));
      return nullptr;
    }
    const std::uint8_t* p = in_.data() + pos_;
    pos_ += n;
    return p;
  }
  void Fail(Status status) {
    if (status_.ok()) status_ = std::move(status);
  }

  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  Status status_;
};

// Emplaces the alternative of `out` whose kType is `type` and reads its fields; false if no
// alternative has that type.
template <std::size_t... I>
bool ReadByType(MessageType type, Reader& reader, Message& out, std::index_sequence<I...>) {
  auto try_one = [&]<std::size_t Index>() {
    if (std::variant_alternative_t<Index, Message>::kType != type) return false;
    Fields(reader, out.emplace<Index>());
    return true;
  };
  return (try_one.template operator()<I>() || ...);
}

}  // namespace

Status EncodeFrame(const Frame& frame, Bytes& out) {
  const std::size_t start = out.size();
  const MessageType type = TypeOf(frame.message);
  if (!RequestIdAllowed(type, frame.request_id)) {
    return Malformed("request id " + std::to_string(frame.request_id) + " is not allowed for " +
                     std::string(MessageTypeName(type)));
  }
  PutBigEndian(out, std::uint32_t{0});  // Length, patched below.
  out.push_back(static_cast<std::uint8_t>(type));
  PutBigEndian(out, frame.request_id);
  Writer writer(out);
  std::visit([&writer](const auto& message) { Fields(writer, message); }, frame.message);
  if (!writer.status().ok()) {
    out.resize(start);
    return writer.status();
  }
  const std::size_t length = out.size() - start - kLengthPrefixSize;
  if (length > 0xFFFFFFFFu) {
    out.resize(start);
    return Malformed("frame longer than 4 GiB");
  }
  for (std::size_t i = 0; i < kLengthPrefixSize; ++i) {
    out[start + i] = static_cast<std::uint8_t>(length >> (8 * (kLengthPrefixSize - 1 - i)));
  }
  return Status::Ok();
}

DecodeResult DecodeFrame(std::span<const std::uint8_t> frame) {
  DecodeResult result;
  if (frame.size() < kFrameHeaderSize) {
    result.status =
        Status(ErrorCode::kMalformedFrame, "frame of " + std::to_string(frame.size()) +
                                               " bytes is shorter than the 5-byte header");
    return result;
  }
  const auto type = static_cast<MessageType>(frame[0]);
  result.request_id = GetBigEndian<std::uint32_t>(frame.data() + 1);
  Reader reader(frame.subspan(kFrameHeaderSize));
  if (!ReadByType(type, reader, result.message,
                  std::make_index_sequence<std::variant_size_v<Message>>())) {
    result.status =
        Status(ErrorCode::kUnknownType, "unknown frame type " + std::to_string(unsigned{frame[0]}));
    return result;
  }
  if (!RequestIdAllowed(type, result.request_id)) {
    result.status = Malformed("request id " + std::to_string(result.request_id) +
                              " is not allowed for " + std::string(MessageTypeName(type)));
  } else if (!reader.status().ok()) {
    result.status = reader.status();
  } else if (reader.remaining() != 0) {
    result.status = Malformed(std::to_string(reader.remaining()) + " trailing bytes after the " +
                              std::string(MessageTypeName(type)) + " body");
  }
  return result;
}

FrameDecoder::FrameDecoder(std::uint32_t max_frame_size) : max_frame_size_(max_frame_size) {}

void FrameDecoder::SetMaxFrameSize(std::uint32_t max_frame_size) {
  max_frame_size_ = max_frame_size;
}

void FrameDecoder::Feed(std::span<const std::uint8_t> bytes) {
  while (!bytes.empty() && !failed_) {
    if (prefix_filled_ < kLengthPrefixSize) {
      const std::size_t n = std::min(kLengthPrefixSize - prefix_filled_, bytes.size());
      std::memcpy(prefix_ + prefix_filled_, bytes.data(), n);
      prefix_filled_ += n;
      bytes = bytes.subspan(n);
      if (prefix_filled_ < kLengthPrefixSize) return;
      frame_size_ = GetBigEndian<std::uint32_t>(prefix_);
      // Checked before a single body byte is stored.
      if (frame_size_ > max_frame_size_) {
        return FailStream(
            Status(ErrorCode::kFrameTooLarge, "frame length " + std::to_string(frame_size_) +
                                                  " exceeds the limit of " +
                                                  std::to_string(max_frame_size_) + " bytes"));
      }
      if (frame_size_ < kFrameHeaderSize) {
        return FailStream(Status(
            ErrorCode::kMalformedFrame,
            "frame length " + std::to_string(frame_size_) + " is shorter than the 5-byte header"));
      }
      frame_.clear();
      frame_.reserve(frame_size_);
      continue;
    }
    const std::size_t n = std::min<std::size_t>(frame_size_ - frame_.size(), bytes.size());
    frame_.insert(frame_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    bytes = bytes.subspan(n);
    if (frame_.size() == frame_size_) FinishFrame();
  }
}

void FrameDecoder::FailStream(Status status) {
  failed_ = true;
  ready_.push_back({0, std::move(status), Message{}});
}

void FrameDecoder::FinishFrame() {
  ready_.push_back(DecodeFrame(frame_));
  prefix_filled_ = 0;
  frame_.clear();
}

std::optional<DecodeResult> FrameDecoder::Next() {
  if (ready_.empty()) return std::nullopt;
  DecodeResult result = std::move(ready_.front());
  ready_.pop_front();
  return result;
}

}  // namespace messenger

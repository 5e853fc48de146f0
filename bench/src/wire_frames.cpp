#include "wire_frames.h"

#include <cstring>

#include "bench.h"
#include "messenger/codec/messages.h"

namespace messenger::bench {
namespace {

void PutBig(std::uint8_t* p, std::uint64_t value, std::size_t bytes) {
  for (std::size_t i = bytes; i-- > 0;) {
    p[i] = static_cast<std::uint8_t>(value & 0xFF);
    value >>= 8;
  }
}

// Appends the length prefix and header of a frame whose body is `body_size` bytes; returns the
// offset of the body in `out`.
std::size_t AppendHeader(Bytes& out, MessageType type, std::uint32_t request_id,
                         std::size_t body_size) {
  const std::size_t start = out.size();
  out.resize(start + kLengthPrefixSize + kFrameHeaderSize + body_size);
  std::uint8_t* p = out.data() + start;
  PutBig(p, kFrameHeaderSize + body_size, 4);
  p[4] = static_cast<std::uint8_t>(type);
  PutBig(p + 5, request_id, 4);
  return start + kLengthPrefixSize + kFrameHeaderSize;
}

}  // namespace

SendTemplate::SendTemplate(const std::string& recipient, const std::string& text) {
  // Encoded by the codec, so the template is canonical by construction.
  (void)EncodeFrame(Frame{1, Send{recipient, 0, text}}, bytes_);
  constexpr std::size_t kBody = kLengthPrefixSize + kFrameHeaderSize;
  client_id_offset_ = kBody + 2 + recipient.size();
  text_offset_ = client_id_offset_ + 8 + 2;
}

void SendTemplate::AppendTo(Bytes& out, std::uint32_t request_id, std::uint64_t client_message_id,
                            std::int64_t stamp_ns) const {
  const std::size_t start = out.size();
  out.insert(out.end(), bytes_.begin(), bytes_.end());
  std::uint8_t* p = out.data() + start;
  PutBig(p + 5, request_id, 4);
  PutBig(p + client_id_offset_, client_message_id, 8);
  WriteStamp(reinterpret_cast<char*>(p + text_offset_), stamp_ns);
}

void AppendAck(Bytes& out, std::uint32_t request_id, std::span<const std::uint64_t> ids) {
  std::size_t at = AppendHeader(out, MessageType::kAck, request_id, 2 + 8 * ids.size());
  PutBig(out.data() + at, ids.size(), 2);
  at += 2;
  for (const std::uint64_t id : ids) {
    PutBig(out.data() + at, id, 8);
    at += 8;
  }
}

void AppendFetch(Bytes& out, std::uint32_t request_id, std::uint16_t limit) {
  const std::size_t at = AppendHeader(out, MessageType::kFetchUndelivered, request_id, 2);
  PutBig(out.data() + at, limit, 2);
}

bool ParseSendOk(std::span<const std::uint8_t> body, std::uint64_t& message_id) {
  if (body.size() != 17) return false;
  message_id = ReadBig<std::uint64_t>(body.data());
  return true;
}

bool ParseStoredMessage(std::span<const std::uint8_t> body, std::size_t& offset, MessageView& out) {
  // message_id u64, sender str, timestamp_ms u64, text str.
  if (body.size() - offset < 8 + 2) return false;
  out.message_id = ReadBig<std::uint64_t>(body.data() + offset);
  offset += 8;
  const std::size_t sender_size = ReadBig<std::uint16_t>(body.data() + offset);
  offset += 2;
  if (body.size() - offset < sender_size + 8 + 2) return false;
  offset += sender_size + 8;
  const std::size_t text_size = ReadBig<std::uint16_t>(body.data() + offset);
  offset += 2;
  if (body.size() - offset < text_size) return false;
  out.text = reinterpret_cast<const char*>(body.data() + offset);
  out.text_size = text_size;
  offset += text_size;
  return true;
}

FrameBuffer::FrameBuffer(std::size_t initial_capacity) : data_(initial_capacity) {}

std::span<std::uint8_t> FrameBuffer::WriteSpace(std::size_t min_free) {
  // Room for the rest of a partial frame that is larger than the usual read.
  if (pending_frame_ > end_ - begin_ && pending_frame_ - (end_ - begin_) > min_free) {
    min_free = pending_frame_ - (end_ - begin_);
  }
  if (data_.size() - end_ < min_free) {
    // Move the partial frame to the front; grow only if that is not enough.
    if (begin_ > 0) {
      std::memmove(data_.data(), data_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (data_.size() - end_ < min_free) data_.resize(end_ + min_free);
  }
  return {data_.data() + end_, data_.size() - end_};
}

bool FrameBuffer::Next(FrameView& view, bool& malformed) {
  malformed = false;
  const std::size_t available = end_ - begin_;
  if (available < kLengthPrefixSize) return false;
  const std::uint8_t* p = data_.data() + begin_;
  const std::uint32_t length = ReadBig<std::uint32_t>(p);
  if (length < kFrameHeaderSize) {
    malformed = true;
    return false;
  }
  if (available - kLengthPrefixSize < length) {
    pending_frame_ = kLengthPrefixSize + length;
    return false;
  }
  pending_frame_ = 0;
  view.type = p[4];
  view.request_id = ReadBig<std::uint32_t>(p + 5);
  view.frame = {p + kLengthPrefixSize, length};
  view.body = {p + kLengthPrefixSize + kFrameHeaderSize, length - kFrameHeaderSize};
  begin_ += kLengthPrefixSize + length;
  if (begin_ == end_) begin_ = end_ = 0;
  return true;
}

}  // namespace messenger::bench

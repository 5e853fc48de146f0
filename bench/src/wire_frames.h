// Allocation-free encoding and parsing of the few frames on the benchmark's hot path (SEND, ACK,
// FETCH_UNDELIVERED out; SEND_OK, OK, DELIVER, MESSAGE_BATCH in), plus a receive buffer that
// splits a byte stream into frames in place.
//
// The codec (messenger/codec/codec.h) builds typed messages with owned strings and vectors, which
// costs allocations per message; these helpers write and read the same canonical bytes directly.
// wire_frames_test checks them byte for byte against EncodeFrame and DecodeFrame. Everything else
// (handshake, login, errors) goes through the codec. Not thread-safe; one per connection.
#ifndef MESSENGER_BENCH_WIRE_FRAMES_H_
#define MESSENGER_BENCH_WIRE_FRAMES_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "messenger/codec/codec.h"

namespace messenger::bench {

// A SEND frame encoded once by the codec; copies differ only in request id, client message id and
// the timestamp at the start of the text.
class SendTemplate {
 public:
  // REQUIRES: `recipient` and `text` are valid UTF-8, text.size() >= kStampBytes.
  SendTemplate(const std::string& recipient, const std::string& text);

  // Appends one SEND to `out`.
  void AppendTo(Bytes& out, std::uint32_t request_id, std::uint64_t client_message_id,
                std::int64_t stamp_ns) const;

  std::size_t size() const { return bytes_.size(); }

 private:
  Bytes bytes_;
  std::size_t client_id_offset_ = 0;
  std::size_t text_offset_ = 0;
};

// Appends ACK(message_ids). REQUIRES: ids.size() <= kMaxAckIds.
void AppendAck(Bytes& out, std::uint32_t request_id, std::span<const std::uint64_t> ids);
// Appends FETCH_UNDELIVERED(limit).
void AppendFetch(Bytes& out, std::uint32_t request_id, std::uint16_t limit);

// One complete frame inside a FrameBuffer: valid until the next WriteSpace().
struct FrameView {
  std::uint8_t type = 0;
  std::uint32_t request_id = 0;
  std::span<const std::uint8_t> frame;  // Header and body, without the length prefix.
  std::span<const std::uint8_t> body;
};

// Reads a big-endian unsigned integer of `N` bytes at `p`.
template <typename T>
T ReadBig(const std::uint8_t* p) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value = static_cast<T>((value << 8) | p[i]);
  return value;
}

// Returns true and the message id of a SEND_OK body.
bool ParseSendOk(std::span<const std::uint8_t> body, std::uint64_t& message_id);

// A StoredMessage's fields without copying: `text` points into the frame.
struct MessageView {
  std::uint64_t message_id = 0;
  const char* text = nullptr;
  std::size_t text_size = 0;
};

// Parses one StoredMessage at body[offset...], advancing offset. Returns false if truncated.
bool ParseStoredMessage(std::span<const std::uint8_t> body, std::size_t& offset, MessageView& out);

// Calls `visit(MessageView)` for each message of a MESSAGE_BATCH body and sets `remaining`.
// Returns false if the body is malformed.
template <typename Visit>
bool ParseMessageBatch(std::span<const std::uint8_t> body, std::uint32_t& remaining,
                       Visit&& visit) {
  if (body.size() < 6) return false;
  const auto count = ReadBig<std::uint16_t>(body.data());
  std::size_t offset = 2;
  for (std::uint16_t i = 0; i < count; ++i) {
    MessageView message;
    if (!ParseStoredMessage(body, offset, message)) return false;
    visit(message);
  }
  if (body.size() - offset != 4) return false;
  remaining = ReadBig<std::uint32_t>(body.data() + offset);
  return true;
}

// A growable receive buffer. Fill via WriteSpace()/Commit(); take frames with Next().
class FrameBuffer {
 public:
  explicit FrameBuffer(std::size_t initial_capacity = 256 * 1024);

  // Space to read into: at least `min_free` bytes (the buffer compacts or grows to make room).
  std::span<std::uint8_t> WriteSpace(std::size_t min_free = 64 * 1024);
  void Commit(std::size_t bytes) { end_ += bytes; }

  // Returns true and the next complete frame, or false if more bytes are needed. Sets `malformed`
  // when a length prefix is below the header size (the stream cannot be delimited).
  bool Next(FrameView& view, bool& malformed);

 private:
  Bytes data_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::size_t pending_frame_ = 0;  // Full size of a frame seen only in part, else 0.
};

}  // namespace messenger::bench

#endif  // MESSENGER_BENCH_WIRE_FRAMES_H_

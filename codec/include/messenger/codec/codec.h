// The sans-I/O wire codec: frames to bytes and bytes to frames (docs/PROTOCOL.md, "Framing").
//
// No sockets, threads or clocks: callers move bytes. Hostile input never throws or aborts; it
// yields a typed Status. A FrameDecoder is a single-threaded object (one per connection); the free
// functions are thread-safe.
#ifndef MESSENGER_CODEC_CODEC_H_
#define MESSENGER_CODEC_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger {

using Bytes = std::vector<std::uint8_t>;

// Appends the canonical encoding of `frame` (length prefix, header, body) to `out`.
// Returns OK, or leaves `out` unchanged and returns:
//   kInvalidUtf8     a string field is not valid UTF-8;
//   kMalformedBody   a string longer than 65535 bytes, a list longer than 65535 items, a request
//                    with request id 0, or a push with a non-zero request id.
// The result may exceed a peer's frame limit; callers that care compare the size.
Status EncodeFrame(const Frame& frame, Bytes& out);

// Decoded form of one frame: the message, or the error it produced.
struct DecodeResult {
  std::uint32_t request_id = 0;  // From the header; 0 if the header could not be read.
  Status status;                 // OK iff `message` holds the decoded message.
  Message message;
};

// Decodes exactly one frame given without its length prefix (header + body).
// Errors: kMalformedFrame (shorter than the header: fatal), kUnknownType, kMalformedBody
// (truncated field, trailing bytes, out-of-range enum or bool, request id not allowed for the
// type), kInvalidUtf8. All but kMalformedFrame are request-level.
DecodeResult DecodeFrame(std::span<const std::uint8_t> frame);

// Splits a byte stream into frames and decodes them. Input may be cut at any byte.
//
// A length prefix above the current limit is rejected as soon as its four bytes are read, before
// any body byte is buffered: the decoder never holds more than one frame of at most the limit.
class FrameDecoder {
 public:
  // REQUIRES: kFrameHeaderSize <= max_frame_size.
  explicit FrameDecoder(std::uint32_t max_frame_size = kDefaultMaxFrameSize);

  // Changes the limit for frames whose length prefix has not been read yet.
  // REQUIRES: kFrameHeaderSize <= max_frame_size.
  void SetMaxFrameSize(std::uint32_t max_frame_size);
  std::uint32_t max_frame_size() const { return max_frame_size_; }

  // Consumes `bytes`, decoding every frame they complete. After a fatal error (kFrameTooLarge,
  // kMalformedFrame) the rest of the stream is ignored.
  void Feed(std::span<const std::uint8_t> bytes);

  // Returns the next decoded frame or error in stream order, or nullopt if more bytes are needed.
  // A fatal error is the last result the decoder ever returns.
  std::optional<DecodeResult> Next();

  // True once a fatal error has been produced (it may still be waiting in Next()).
  bool failed() const { return failed_; }

 private:
  void FailStream(Status status);
  void FinishFrame();

  std::uint32_t max_frame_size_;
  bool failed_ = false;
  std::uint8_t prefix_[kLengthPrefixSize] = {};
  std::size_t prefix_filled_ = 0;
  std::uint32_t frame_size_ = 0;  // Size of the frame being read; valid once the prefix is full.
  Bytes frame_;                   // Bytes of the frame being read (at most frame_size_).
  std::deque<DecodeResult> ready_;
};

}  // namespace messenger

#endif  // MESSENGER_CODEC_CODEC_H_

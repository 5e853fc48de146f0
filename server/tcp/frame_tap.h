// FrameTap: follows the frame boundaries of the byte stream a client sends, without buffering
// bodies, so the connection can hand the WireSession one frame at a time (and stop between two
// frames while its output is backed up) and can log who asked for what.
//
// It reads only the length prefix and the 5-byte header of each frame; the one body it keeps is
// that of a small LOGIN, to learn the username for the logs (never the password). It judges
// nothing: the WireSession, fed the same bytes, decides what is valid. Not thread-safe.
#ifndef MESSENGER_SERVER_TCP_FRAME_TAP_H_
#define MESSENGER_SERVER_TCP_FRAME_TAP_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "messenger/codec/codec.h"

namespace messenger {

struct TappedFrame {
  std::uint8_t type = 0;  // Raw type byte; 0 if the frame was shorter than its header.
  std::uint32_t request_id = 0;
  std::uint32_t size = 0;      // Header + body bytes (the length prefix).
  std::string login_username;  // The username of a well-formed LOGIN, else empty.
};

class FrameTap {
 public:
  // How many of the first bytes of `available` belong to the current frame (its length prefix
  // included): feeding exactly that many ends at a frame boundary, or uses up `available`.
  std::size_t BytesToFrameEnd(std::span<const std::uint8_t> available) const;

  // Consumes `bytes`. REQUIRES: bytes.size() <= BytesToFrameEnd(bytes). Returns the frame that
  // `bytes` completed, if any.
  std::optional<TappedFrame> Consume(std::span<const std::uint8_t> bytes);

 private:
  std::uint8_t prefix_[kLengthPrefixSize] = {};
  std::size_t prefix_filled_ = 0;
  std::uint32_t frame_size_ = 0;  // Valid once the prefix is full.
  std::uint32_t frame_seen_ = 0;  // Bytes of the frame consumed so far.
  std::uint8_t header_[kFrameHeaderSize] = {};
  Bytes login_frame_;  // The whole frame, kept only while it may be a small LOGIN.
};

// What a block of encoded server output (whole frames, as a WireSession appends them) contains,
// for the connection's logs and close reasons.
struct ReplySummary {
  std::optional<Error> fatal_error;           // A fatal ERROR: the session closes after it.
  std::optional<SessionEnded> session_ended;  // A SESSION_ENDED push.
  std::optional<std::uint32_t> login_ok_id;   // Request id of a LOGIN_OK.
  bool has_ok = false;                        // An OK (LOGOUT and DELETE_ACCOUNT answer it).
  // With `describe`: each frame as "TYPE #id" ("ERROR #id CODE"), comma-separated. Never message
  // texts: logs must not hold what users wrote.
  std::string description;
};
ReplySummary SummarizeReplies(std::span<const std::uint8_t> bytes, bool describe);

}  // namespace messenger

#endif  // MESSENGER_SERVER_TCP_FRAME_TAP_H_

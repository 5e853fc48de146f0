#include "frame_tap.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <variant>

#include "messenger/codec/limits.h"

namespace messenger {
namespace {

std::uint32_t ReadU32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace

std::size_t FrameTap::BytesToFrameEnd(std::span<const std::uint8_t> available) const {
  if (prefix_filled_ < kLengthPrefixSize) {
    const std::size_t prefix_missing = kLengthPrefixSize - prefix_filled_;
    if (available.size() < prefix_missing) return available.size();
    std::uint8_t prefix[kLengthPrefixSize];
    std::memcpy(prefix, prefix_, prefix_filled_);
    std::memcpy(prefix + prefix_filled_, available.data(), prefix_missing);
    const std::uint64_t frame_end = std::uint64_t{prefix_missing} + ReadU32(prefix);
    return static_cast<std::size_t>(std::min<std::uint64_t>(available.size(), frame_end));
  }
  return std::min<std::size_t>(available.size(), frame_size_ - frame_seen_);
}

std::optional<TappedFrame> FrameTap::Consume(std::span<const std::uint8_t> bytes) {
  std::size_t at = 0;
  if (prefix_filled_ < kLengthPrefixSize) {
    const std::size_t n = std::min(bytes.size(), kLengthPrefixSize - prefix_filled_);
    std::memcpy(prefix_ + prefix_filled_, bytes.data(), n);
    prefix_filled_ += n;
    at = n;
    if (prefix_filled_ < kLengthPrefixSize) return std::nullopt;
    frame_size_ = ReadU32(prefix_);
    frame_seen_ = 0;
    login_frame_.clear();
  }
  const auto body = bytes.subspan(at);
  for (std::size_t i = 0; i < body.size() && frame_seen_ + i < kFrameHeaderSize; ++i) {
    header_[frame_seen_ + i] = body[i];
  }
  // Only a LOGIN that fits the pre-login limit is kept whole, so the tap never holds more
  // than that per connection.
  const bool may_be_login =
      frame_size_ <= kMaxPreloginFrameSize &&
      (frame_seen_ == 0
           ? (body.empty() || body[0] == static_cast<std::uint8_t>(MessageType::kLogin))
           : !login_frame_.empty());
  if (may_be_login) login_frame_.insert(login_frame_.end(), body.begin(), body.end());
  frame_seen_ += static_cast<std::uint32_t>(body.size());
  if (frame_seen_ < frame_size_) return std::nullopt;

  TappedFrame frame;
  frame.size = frame_size_;
  if (frame_size_ >= kFrameHeaderSize) {
    frame.type = header_[0];
    frame.request_id = ReadU32(header_ + 1);
  }
  if (frame.type == static_cast<std::uint8_t>(MessageType::kLogin) &&
      login_frame_.size() == frame_size_) {
    DecodeResult decoded = DecodeFrame(login_frame_);
    if (decoded.status.ok()) {
      if (auto* login = std::get_if<Login>(&decoded.message)) {
        frame.login_username = std::move(login->username);
      }
    }
  }
  login_frame_.clear();
  prefix_filled_ = 0;
  frame_size_ = 0;
  frame_seen_ = 0;
  return frame;
}

ReplySummary SummarizeReplies(std::span<const std::uint8_t> bytes, bool describe) {
  ReplySummary summary;
  std::size_t at = 0;
  while (bytes.size() - at >= kLengthPrefixSize + kFrameHeaderSize) {
    const std::uint32_t size = ReadU32(bytes.data() + at);
    if (size < kFrameHeaderSize || size > bytes.size() - at - kLengthPrefixSize) break;
    const auto frame = bytes.subspan(at + kLengthPrefixSize, size);
    at += kLengthPrefixSize + size;
    const auto type = static_cast<MessageType>(frame[0]);
    const std::uint32_t request_id = ReadU32(frame.data() + 1);
    if (describe) {
      if (!summary.description.empty()) summary.description += ", ";
      summary.description += MessageTypeName(type);
      if (request_id != 0) summary.description += " #" + std::to_string(request_id);
    }
    switch (type) {
      case MessageType::kLoginOk:
        summary.login_ok_id = request_id;
        break;
      case MessageType::kOk:
        summary.has_ok = true;
        break;
      case MessageType::kError:
      case MessageType::kSessionEnded: {
        DecodeResult decoded = DecodeFrame(frame);
        if (!decoded.status.ok()) break;
        if (auto* error = std::get_if<Error>(&decoded.message)) {
          if (describe) {
            summary.description += ' ';
            summary.description += ErrorCodeName(error->code);
          }
          if (IsFatal(error->code)) summary.fatal_error = std::move(*error);
        } else if (auto* ended = std::get_if<SessionEnded>(&decoded.message)) {
          summary.session_ended = std::move(*ended);
        }
        break;
      }
      default:
        break;
    }
  }
  return summary;
}

}  // namespace messenger

// Protocol constants and default limits (docs/PROTOCOL.md, "Limits"). Every limit has a reason.
#ifndef MESSENGER_CODEC_LIMITS_H_
#define MESSENGER_CODEC_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace messenger {

// The one protocol version this codec speaks; HELLO carries it.
inline constexpr std::uint16_t kProtocolVersion = 1;

// Bytes of the big-endian length prefix that precedes every frame.
inline constexpr std::size_t kLengthPrefixSize = 4;
// Bytes of the frame header (type u8, request id u32) that the length prefix counts.
inline constexpr std::size_t kFrameHeaderSize = 5;

// Default largest frame (header + body): a full FETCH page of maximum-size texts fits in it.
inline constexpr std::uint32_t kDefaultMaxFrameSize = 256 * 1024;
// Bounds for a configured maximum: small enough that a frame of every type fits, large enough
// that one connection cannot make the server buffer unbounded memory.
inline constexpr std::uint32_t kMinMaxFrameSize = 8 * 1024;
inline constexpr std::uint32_t kMaxMaxFrameSize = 16 * 1024 * 1024;
// Largest frame accepted before LOGIN_OK: HELLO, CREATE_ACCOUNT and LOGIN fit, so an
// unauthenticated stranger can make the server buffer at most this much per connection.
inline constexpr std::uint32_t kMaxPreloginFrameSize = 1024;

// Usernames are short ASCII identifiers (see CheckUsername).
inline constexpr std::size_t kMaxUsernameBytes = 32;
// Passwords: a floor against trivial guessing, a ceiling that fits a pre-login frame.
inline constexpr std::size_t kMinPasswordBytes = 8;
inline constexpr std::size_t kMaxPasswordBytes = 256;
// Largest message text in UTF-8 bytes: a chat line, not a file transfer.
inline constexpr std::size_t kMaxTextBytes = 4096;
// Longest LIST_ACCOUNTS pattern: enough for any real filter, bounds matching work.
inline constexpr std::size_t kMaxPatternBytes = 128;
// Largest page sizes a client may ask for, so one reply stays far below the frame limit.
inline constexpr std::uint16_t kMaxListLimit = 500;
inline constexpr std::uint16_t kMaxFetchLimit = 50;
// Most ids in one ACK: one FETCH page many times over, bounded work per request.
inline constexpr std::size_t kMaxAckIds = 1000;

}  // namespace messenger

#endif  // MESSENGER_CODEC_LIMITS_H_

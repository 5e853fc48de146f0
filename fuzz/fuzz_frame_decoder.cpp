// Fuzzes FrameDecoder, the codec's stream surface: the input is the byte stream a peer sends.
//
// The split of the stream into Feed() calls, the points where results are drained and the frame
// limit all derive from a hash of the input, so every mutation also tries new cut points while the
// corpus stays plain recorded streams (length prefix included). Invariants, each aborting on
// violation so libFuzzer keeps the input:
//   - a chunked feed yields the same results as one Feed() of the whole stream, and both match
//     a direct reading of the framing rules (prefix, limit, DecodeFrame of each delimited frame);
//   - every decoded frame re-encodes to exactly the bytes it was read from;
//   - a fatal error is FRAME_TOO_LARGE or MALFORMED_FRAME with request id 0, it is the last
//     result, and failed() reports it; any other error is request-level.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger {
namespace {

using ByteSpan = std::span<const std::uint8_t>;

[[noreturn]] void Violation(const char* invariant, const std::string& detail) {
  std::fprintf(stderr, "fuzz_frame_decoder: invariant violated: %s\n  %s\n", invariant,
               detail.c_str());
  std::abort();
}

// FNV-1a: a cheap, stable hash, so one input always gets the same splits and limit.
std::uint64_t Hash(ByteSpan data) {
  std::uint64_t hash = 0xCBF29CE484222325u;
  for (const std::uint8_t byte : data) {
    hash ^= byte;
    hash *= 0x100000001B3u;
  }
  return hash;
}

// SplitMix64: a tiny deterministic generator; the harness must not keep state between inputs.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, n). REQUIRES: n > 0.
  std::uint64_t Below(std::uint64_t n) { return Next() % n; }

 private:
  std::uint64_t state_;
};

// The limits a decoder runs with in practice (pre-login, smallest configurable, default), plus
// an arbitrary value between the pre-login limit and the default.
std::uint32_t PickMaxFrameSize(Rng& rng) {
  switch (rng.Below(4)) {
    case 0:
      return kMaxPreloginFrameSize;
    case 1:
      return kMinMaxFrameSize;
    case 2:
      return kDefaultMaxFrameSize;
    default:
      return static_cast<std::uint32_t>(
          kMaxPreloginFrameSize + rng.Below(kDefaultMaxFrameSize - kMaxPreloginFrameSize + 1));
  }
}

// Mostly tiny chunks, which cut length prefixes and headers, sometimes empty or large ones.
std::size_t PickChunkSize(Rng& rng, std::size_t left) {
  std::size_t size = 0;
  switch (rng.Below(5)) {
    case 0:
      size = 0;
      break;
    case 1:
      size = 1;
      break;
    case 2:
      size = 2 + rng.Below(7);
      break;
    case 3:
      size = 1 + rng.Below(300);
      break;
    default:
      size = 1 + rng.Below(left + 1);
      break;
  }
  return size < left ? size : left;
}

std::uint32_t ReadU32(ByteSpan bytes) {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

std::string Show(const DecodeResult& result) {
  std::string text = result.status.ToString() + " id=" + std::to_string(result.request_id);
  if (result.status.ok()) text += " " + Describe(Frame{result.request_id, result.message});
  return text;
}

bool IsFramingError(ErrorCode code) {
  return code == ErrorCode::kFrameTooLarge || code == ErrorCode::kMalformedFrame;
}

bool IsRequestLevelDecodeError(ErrorCode code) {
  return code == ErrorCode::kUnknownType || code == ErrorCode::kMalformedBody ||
         code == ErrorCode::kInvalidUtf8;
}

// What the framing rules say `stream` must produce, read directly rather than incrementally.
// `frames[i]` holds the header+body bytes of results[i] when that result came from a delimited
// frame (empty for a framing error).
struct Expected {
  std::vector<DecodeResult> results;
  std::vector<ByteSpan> frames;
};

Expected ReadByRules(ByteSpan stream, std::uint32_t max_frame_size) {
  Expected expected;
  std::size_t pos = 0;
  while (stream.size() - pos >= kLengthPrefixSize) {
    const std::uint32_t length = ReadU32(stream.subspan(pos));
    pos += kLengthPrefixSize;
    if (length > max_frame_size || length < kFrameHeaderSize) {
      const ErrorCode code =
          length > max_frame_size ? ErrorCode::kFrameTooLarge : ErrorCode::kMalformedFrame;
      expected.results.push_back({0, Status(code, ""), Message{}});
      expected.frames.emplace_back();
      break;
    }
    if (stream.size() - pos < length) break;  // The frame is incomplete: nothing yet.
    const ByteSpan frame = stream.subspan(pos, length);
    expected.results.push_back(DecodeFrame(frame));
    expected.frames.push_back(frame);
    pos += length;
  }
  return expected;
}

// Moves every ready result out of `decoder`, checking that nothing follows a fatal error and
// that failed() agrees with what was yielded.
void Drain(FrameDecoder& decoder, std::vector<DecodeResult>& results) {
  while (std::optional<DecodeResult> result = decoder.Next()) {
    if (!results.empty() && results.back().status.fatal()) {
      Violation("nothing is yielded after a fatal error",
                "after " + Show(results.back()) + " came " + Show(*result));
    }
    results.push_back(std::move(*result));
  }
  const bool fatal_yielded = !results.empty() && results.back().status.fatal();
  if (decoder.failed() != fatal_yielded) {
    Violation("failed() is true iff a fatal error was produced",
              std::string("failed()=") + (decoder.failed() ? "true" : "false") + " after " +
                  std::to_string(results.size()) + " results");
  }
}

std::vector<DecodeResult> FeedWhole(ByteSpan stream, std::uint32_t max_frame_size) {
  FrameDecoder decoder(max_frame_size);
  decoder.Feed(stream);
  std::vector<DecodeResult> results;
  Drain(decoder, results);
  return results;
}

std::vector<DecodeResult> FeedInChunks(ByteSpan stream, std::uint32_t max_frame_size, Rng& rng) {
  FrameDecoder decoder(max_frame_size);
  std::vector<DecodeResult> results;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    const std::size_t n = PickChunkSize(rng, stream.size() - pos);
    decoder.Feed(stream.subspan(pos, n));
    pos += n;
    // Drain only sometimes, so results also wait in the decoder across feeds.
    if (rng.Below(2) == 0) Drain(decoder, results);
  }
  Drain(decoder, results);
  if (decoder.failed()) {
    // A failed decoder ignores whatever else arrives.
    decoder.Feed(stream);
    Drain(decoder, results);
  }
  return results;
}

// Compares two result sequences. Framing errors are compared by code only when `framing_by_code` is
// set (the rules reading does not reproduce the decoder's message text).
void CheckSame(const char* invariant, const std::vector<DecodeResult>& want,
               const std::vector<DecodeResult>& got, bool framing_by_code) {
  if (want.size() != got.size()) {
    Violation(invariant,
              std::to_string(want.size()) + " results expected, got " + std::to_string(got.size()));
  }
  for (std::size_t i = 0; i < want.size(); ++i) {
    const DecodeResult& a = want[i];
    const DecodeResult& b = got[i];
    const bool same_status = framing_by_code && IsFramingError(a.status.code())
                                 ? a.status.code() == b.status.code()
                                 : a.status == b.status;
    const bool same_message = !a.status.ok() || a.message == b.message;
    if (a.request_id != b.request_id || !same_status || !same_message) {
      Violation(invariant,
                "result " + std::to_string(i) + ": expected " + Show(a) + ", got " + Show(b));
    }
  }
}

void CheckResult(const DecodeResult& result, ByteSpan frame_bytes, bool is_last) {
  const ErrorCode code = result.status.code();
  if (result.status.fatal()) {
    if (!IsFramingError(code)) Violation("a fatal error is a framing error", Show(result));
    if (result.request_id != 0) Violation("a framing error carries request id 0", Show(result));
    if (!is_last) Violation("a fatal error is the last result", Show(result));
    return;
  }
  if (!result.status.ok()) {
    if (!IsRequestLevelDecodeError(code)) {
      Violation("a non-fatal error is UNKNOWN_TYPE, MALFORMED_BODY or INVALID_UTF8", Show(result));
    }
    return;
  }
  const Frame frame{result.request_id, result.message};
  Bytes encoded;
  const Status status = EncodeFrame(frame, encoded);
  if (!status.ok()) {
    Violation("a decoded frame re-encodes", status.ToString() + " for " + Describe(frame));
  }
  const ByteSpan encoded_frame = ByteSpan(encoded).subspan(kLengthPrefixSize);
  if (ReadU32(encoded) != encoded_frame.size() ||
      !std::equal(encoded_frame.begin(), encoded_frame.end(), frame_bytes.begin(),
                  frame_bytes.end())) {
    Violation("a decoded frame re-encodes to the bytes it came from", Describe(frame));
  }
  const DecodeResult again = DecodeFrame(encoded_frame);
  if (!again.status.ok() || again.request_id != frame.request_id ||
      !(again.message == frame.message)) {
    Violation("a re-encoded frame decodes to an equal frame",
              Describe(frame) + " became " + Show(again));
  }
}

}  // namespace
}  // namespace messenger

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace messenger;
  const ByteSpan stream(data, size);
  Rng rng(Hash(stream));
  const std::uint32_t max_frame_size = PickMaxFrameSize(rng);

  const Expected expected = ReadByRules(stream, max_frame_size);
  const std::vector<DecodeResult> whole = FeedWhole(stream, max_frame_size);
  const std::vector<DecodeResult> chunked = FeedInChunks(stream, max_frame_size, rng);

  CheckSame("one Feed() of the stream follows the framing rules", expected.results, whole,
            /*framing_by_code=*/true);
  CheckSame("a chunked feed yields what one Feed() yields", whole, chunked,
            /*framing_by_code=*/false);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    CheckResult(whole[i], expected.frames[i], i + 1 == whole.size());
  }
  return 0;
}

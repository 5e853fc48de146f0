// Fuzzes DecodeFrame and the canonical encoding: the input is one frame without its length prefix
// (header + body). Invariants, each aborting on violation so libFuzzer keeps the input:
//   - input shorter than the header gives MALFORMED_FRAME; any other error is request-level
//     (UNKNOWN_TYPE, MALFORMED_BODY, INVALID_UTF8) and carries the header's request id;
//   - a decoded frame has the header's type and id, and EncodeFrame gives back exactly the
//     4-byte big-endian length of the input followed by the input: one encoding per message;
//   - Describe gives one line starting "TYPE #id".
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <utility>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger {
namespace {

[[noreturn]] void Violation(const char* invariant, const std::string& detail) {
  std::fprintf(stderr, "fuzz_roundtrip: invariant violated: %s\n  %s\n", invariant, detail.c_str());
  std::abort();
}

std::uint32_t ReadU32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace
}  // namespace messenger

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace messenger;
  const std::span<const std::uint8_t> input(data, size);
  DecodeResult result = DecodeFrame(input);

  if (size < kFrameHeaderSize) {
    if (result.status.code() != ErrorCode::kMalformedFrame) {
      Violation("a frame shorter than the header is MALFORMED_FRAME", result.status.ToString());
    }
    return 0;
  }
  const std::uint32_t header_id = ReadU32(data + 1);
  if (result.request_id != header_id) {
    Violation("the result carries the header's request id",
              std::to_string(result.request_id) + " != " + std::to_string(header_id));
  }
  if (!result.status.ok()) {
    const ErrorCode code = result.status.code();
    if (code != ErrorCode::kUnknownType && code != ErrorCode::kMalformedBody &&
        code != ErrorCode::kInvalidUtf8) {
      Violation("a delimited frame gives only request-level errors", result.status.ToString());
    }
    return 0;
  }

  const Frame frame{result.request_id, std::move(result.message)};
  if (static_cast<std::uint8_t>(TypeOf(frame.message)) != data[0]) {
    Violation("the decoded message has the header's type", Describe(frame));
  }

  const std::string text = Describe(frame);
  const std::string head =
      std::string(MessageTypeName(TypeOf(frame.message))) + " #" + std::to_string(header_id);
  if (text.compare(0, head.size(), head) != 0 || text.find('\n') != std::string::npos ||
      text.find('\r') != std::string::npos) {
    Violation("Describe gives one line starting with the type and id", text);
  }

  Bytes encoded;
  const Status status = EncodeFrame(frame, encoded);
  if (!status.ok()) Violation("a decoded frame encodes", status.ToString() + " for " + text);
  if (encoded.size() != kLengthPrefixSize + size || ReadU32(encoded.data()) != size ||
      !std::equal(input.begin(), input.end(), encoded.begin() + kLengthPrefixSize)) {
    Violation("the encoding is canonical: length prefix + the decoded bytes", text);
  }
  return 0;
}

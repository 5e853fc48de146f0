// Keeps docs/PROTOCOL.md and the codec identical: every example frame in the spec decodes to its
// description and re-encodes to its bytes, every error example yields its error, and the fuzz
// corpus generated from the examples is the one committed.
#include "spec_vectors.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger::spec {
namespace {

std::string Hex(const Bytes& bytes) {
  std::string out;
  char pair[4];
  for (const std::uint8_t b : bytes) {
    std::snprintf(pair, sizeof pair, "%02x", b);
    if (!out.empty()) out += ' ';
    out += pair;
  }
  return out;
}

std::string Where(int line) { return "docs/PROTOCOL.md:" + std::to_string(line); }

// Parses the document once for the whole suite; a parse failure fails each test with its line.
class SpecVectorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::string error;
    static const std::optional<SpecVectors> parsed = LoadSpecVectors(SourceProtocolPath(), error);
    ASSERT_TRUE(parsed.has_value()) << error;
    vectors_ = &*parsed;
  }
  const SpecVectors& vectors() const { return *vectors_; }

 private:
  const SpecVectors* vectors_ = nullptr;
};

std::vector<DecodeResult> DecodeAll(FrameDecoder& decoder) {
  std::vector<DecodeResult> results;
  while (auto result = decoder.Next()) results.push_back(std::move(*result));
  return results;
}

std::vector<DecodeResult> DecodeWhole(const Bytes& bytes, std::uint32_t limit) {
  FrameDecoder decoder(limit);
  decoder.Feed(bytes);
  return DecodeAll(decoder);
}

std::vector<DecodeResult> DecodeByteByByte(const Bytes& bytes, std::uint32_t limit) {
  FrameDecoder decoder(limit);
  std::vector<DecodeResult> results;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    decoder.Feed(std::span<const std::uint8_t>(bytes).subspan(i, 1));
    for (DecodeResult& result : DecodeAll(decoder)) results.push_back(std::move(result));
  }
  return results;
}

std::string Summary(const std::vector<DecodeResult>& results) {
  std::string out;
  for (const DecodeResult& result : results) {
    out += "\n  #" + std::to_string(result.request_id) + " ";
    out += result.status.ok() ? Describe({result.request_id, result.message})
                              : result.status.ToString();
  }
  return out.empty() ? "\n  (no result: the decoder wants more bytes)" : out;
}

// The request id in a frame's header, or 0 if the bytes end first.
std::uint32_t HeaderRequestId(const Bytes& bytes) {
  if (bytes.size() < kLengthPrefixSize + kFrameHeaderSize) return 0;
  std::uint32_t id = 0;
  for (std::size_t i = kLengthPrefixSize + 1; i < kLengthPrefixSize + kFrameHeaderSize; ++i) {
    id = (id << 8) | bytes[i];
  }
  return id;
}

template <std::size_t... I>
std::vector<MessageType> AllTypes(std::index_sequence<I...>) {
  return {std::variant_alternative_t<I, Message>::kType...};
}

TEST_F(SpecVectorsTest, ProtocolDocumentHoldsVectors) {
  EXPECT_FALSE(vectors().frames.empty());
  EXPECT_FALSE(vectors().bad_frames.empty());
}

TEST_F(SpecVectorsTest, EveryFrameVectorDecodesToItsDescription) {
  for (const FrameVector& vector : vectors().frames) {
    SCOPED_TRACE(Where(vector.line) + ": " + vector.description);
    const std::vector<DecodeResult> results = DecodeWhole(vector.bytes, kDefaultMaxFrameSize);
    ASSERT_EQ(results.size(), 1u) << "the bytes must hold exactly one frame:" << Summary(results);
    ASSERT_TRUE(results[0].status.ok()) << results[0].status.ToString();
    EXPECT_EQ(Describe({results[0].request_id, results[0].message}), vector.description);
  }
}

TEST_F(SpecVectorsTest, EveryFrameVectorReencodesToTheSameBytes) {
  for (const FrameVector& vector : vectors().frames) {
    SCOPED_TRACE(Where(vector.line) + ": " + vector.description);
    const std::vector<DecodeResult> results = DecodeWhole(vector.bytes, kDefaultMaxFrameSize);
    ASSERT_EQ(results.size(), 1u) << Summary(results);
    ASSERT_TRUE(results[0].status.ok()) << results[0].status.ToString();
    Bytes encoded;
    ASSERT_TRUE(EncodeFrame({results[0].request_id, results[0].message}, encoded).ok());
    EXPECT_EQ(Hex(encoded), Hex(vector.bytes)) << "the encoding must be canonical";
  }
}

TEST_F(SpecVectorsTest, FrameVectorsDecodeTheSameFedOneByteAtATime) {
  for (const FrameVector& vector : vectors().frames) {
    SCOPED_TRACE(Where(vector.line) + ": " + vector.description);
    const std::vector<DecodeResult> whole = DecodeWhole(vector.bytes, kDefaultMaxFrameSize);
    const std::vector<DecodeResult> split = DecodeByteByByte(vector.bytes, kDefaultMaxFrameSize);
    ASSERT_EQ(whole.size(), 1u) << Summary(whole);
    ASSERT_EQ(split.size(), 1u) << Summary(split);
    EXPECT_EQ(split[0].status, whole[0].status);
    EXPECT_EQ(split[0].request_id, whole[0].request_id);
    EXPECT_EQ(split[0].message, whole[0].message);
  }
}

TEST_F(SpecVectorsTest, AllFrameVectorsDecodeInOrderFromOneStream) {
  Bytes stream;
  for (const FrameVector& vector : vectors().frames) {
    stream.insert(stream.end(), vector.bytes.begin(), vector.bytes.end());
  }
  const std::vector<DecodeResult> results = DecodeWhole(stream, kDefaultMaxFrameSize);
  ASSERT_EQ(results.size(), vectors().frames.size()) << Summary(results);
  for (std::size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].status.ok()) << Where(vectors().frames[i].line);
    EXPECT_EQ(Describe({results[i].request_id, results[i].message}),
              vectors().frames[i].description);
  }
}

TEST_F(SpecVectorsTest, EveryMessageTypeHasAFrameVector) {
  std::set<std::uint8_t> shown;
  for (const FrameVector& vector : vectors().frames) {
    if (vector.bytes.size() > kLengthPrefixSize) shown.insert(vector.bytes[kLengthPrefixSize]);
  }
  std::string missing;
  for (const MessageType type :
       AllTypes(std::make_index_sequence<std::variant_size_v<Message>>())) {
    if (shown.count(static_cast<std::uint8_t>(type)) == 0) {
      missing += " " + std::string(MessageTypeName(type));
    }
  }
  EXPECT_TRUE(missing.empty()) << "PROTOCOL.md has no 'frame' example of:" << missing;
}

TEST_F(SpecVectorsTest, EveryBadFrameVectorYieldsItsError) {
  for (const BadFrameVector& vector : vectors().bad_frames) {
    SCOPED_TRACE(Where(vector.line) + ": EXPECT " + std::string(ErrorCodeName(vector.expected)) +
                 " limit=" + std::to_string(vector.limit));
    FrameDecoder decoder(vector.limit);
    decoder.Feed(vector.bytes);
    const std::vector<DecodeResult> results = DecodeAll(decoder);
    ASSERT_EQ(results.size(), 1u) << "a bad-frame input yields exactly one result:"
                                  << Summary(results);
    EXPECT_EQ(ErrorCodeName(results[0].status.code()), ErrorCodeName(vector.expected))
        << results[0].status.ToString();
    EXPECT_EQ(decoder.failed(), IsFatal(vector.expected))
        << "framing errors end the stream; body errors leave it usable";
    // Fatal framing errors answer no frame (id 0); body errors echo the frame's request id.
    const std::uint32_t expected_id = IsFatal(vector.expected) ? 0 : HeaderRequestId(vector.bytes);
    EXPECT_EQ(results[0].request_id, expected_id);
  }
}

TEST_F(SpecVectorsTest, BadFrameVectorsYieldTheSameErrorFedOneByteAtATime) {
  for (const BadFrameVector& vector : vectors().bad_frames) {
    SCOPED_TRACE(Where(vector.line));
    const std::vector<DecodeResult> results = DecodeByteByByte(vector.bytes, vector.limit);
    ASSERT_EQ(results.size(), 1u) << Summary(results);
    EXPECT_EQ(ErrorCodeName(results[0].status.code()), ErrorCodeName(vector.expected))
        << results[0].status.ToString();
  }
}

TEST_F(SpecVectorsTest, RequestLevelErrorsLeaveTheStreamUsable) {
  ASSERT_FALSE(vectors().frames.empty());
  const FrameVector& next = vectors().frames.front();
  for (const BadFrameVector& vector : vectors().bad_frames) {
    if (IsFatal(vector.expected)) continue;
    SCOPED_TRACE(Where(vector.line));
    Bytes stream = vector.bytes;
    stream.insert(stream.end(), next.bytes.begin(), next.bytes.end());
    const std::vector<DecodeResult> results = DecodeWhole(stream, vector.limit);
    ASSERT_EQ(results.size(), 2u) << Summary(results);
    EXPECT_EQ(ErrorCodeName(results[0].status.code()), ErrorCodeName(vector.expected));
    ASSERT_TRUE(results[1].status.ok()) << results[1].status.ToString();
    EXPECT_EQ(Describe({results[1].request_id, results[1].message}), next.description);
  }
}

TEST_F(SpecVectorsTest, EveryCodecErrorHasABadFrameVector) {
  std::set<ErrorCode> shown;
  for (const BadFrameVector& vector : vectors().bad_frames) shown.insert(vector.expected);
  std::string missing;
  for (const ErrorCode code :
       {ErrorCode::kFrameTooLarge, ErrorCode::kMalformedFrame, ErrorCode::kUnknownType,
        ErrorCode::kMalformedBody, ErrorCode::kInvalidUtf8}) {
    if (shown.count(code) == 0) missing += " " + std::string(ErrorCodeName(code));
  }
  EXPECT_TRUE(missing.empty()) << "PROTOCOL.md has no 'bad-frame' example of:" << missing;
}

TEST_F(SpecVectorsTest, SessionLinesShowFramesGivenInFull) {
  EXPECT_FALSE(vectors().session_lines.empty()) << "the worked example session is missing";
  std::set<std::string> described;
  for (const FrameVector& vector : vectors().frames) described.insert(vector.description);
  for (const SessionLine& line : vectors().session_lines) {
    EXPECT_EQ(described.count(line.description), 1u)
        << Where(line.line) << ": no 'frame' block shows \"" << line.description << "\"";
  }
}

TEST_F(SpecVectorsTest, CommittedCorpusMatchesTheSpec) {
  std::map<std::string, Bytes> expected;
  for (CorpusFile& file : BuildCorpus(vectors())) expected[file.path] = std::move(file.contents);
  std::map<std::string, Bytes> actual;
  for (CorpusFile& file : ReadCorpus(SourceCorpusDir())) {
    actual[file.path] = std::move(file.contents);
  }
  std::string drift;
  for (const auto& [path, contents] : expected) {
    const auto found = actual.find(path);
    if (found == actual.end()) {
      drift += "\n  missing: " + path;
    } else if (found->second != contents) {
      drift += "\n  differs: " + path;
    }
  }
  for (const auto& [path, contents] : actual) {
    if (expected.count(path) == 0) drift += "\n  stale:   " + path;
  }
  EXPECT_TRUE(drift.empty()) << "fuzz/corpus no longer matches the vectors in docs/PROTOCOL.md:"
                             << drift << "\nRegenerate it with:\n  " << RegenerateCorpusCommand()
                             << "\n(or: cmake --build <build dir> --target regenerate_spec_corpus)";
}

// ---- The reader itself: malformed blocks are reported with their line. ----

TEST(SpecVectorParserTest, ReadsFrameBadFrameAndSessionBlocks) {
  const std::string doc =
      "# Title\n"
      "```frame\n"
      "LOGOUT #12\n"
      "00 00 00 05   ; length 5\n"
      "04 00 00 00 0C\n"
      "```\n"
      "text\n"
      "```bad-frame\n"
      "EXPECT FRAME_TOO_LARGE limit=1024\n"
      "00 00 04 01\n"
      "```\n"
      "```session\n"
      "# comment\n"
      "alice -> server: LOGOUT #12\n"
      "```\n";
  std::string error;
  const auto vectors = ParseSpecVectors(doc, "doc.md", error);
  ASSERT_TRUE(vectors.has_value()) << error;
  ASSERT_EQ(vectors->frames.size(), 1u);
  EXPECT_EQ(vectors->frames[0].line, 2);
  EXPECT_EQ(vectors->frames[0].description, "LOGOUT #12");
  EXPECT_EQ(Hex(vectors->frames[0].bytes), "00 00 00 05 04 00 00 00 0c");
  ASSERT_EQ(vectors->bad_frames.size(), 1u);
  EXPECT_EQ(vectors->bad_frames[0].expected, ErrorCode::kFrameTooLarge);
  EXPECT_EQ(vectors->bad_frames[0].limit, 1024u);
  EXPECT_EQ(Hex(vectors->bad_frames[0].bytes), "00 00 04 01");
  ASSERT_EQ(vectors->session_lines.size(), 1u);
  EXPECT_EQ(vectors->session_lines[0].from, "alice");
  EXPECT_EQ(vectors->session_lines[0].to, "server");
  EXPECT_EQ(vectors->session_lines[0].description, "LOGOUT #12");
}

TEST(SpecVectorParserTest, IgnoresOtherCodeBlocks) {
  const std::string doc = "```text\nnot hex at all\n```\n````markdown\n```frame\n```\n````\n";
  std::string error;
  const auto vectors = ParseSpecVectors(doc, "doc.md", error);
  ASSERT_TRUE(vectors.has_value()) << error;
  EXPECT_TRUE(vectors->frames.empty());
}

TEST(SpecVectorParserTest, ReportsTheLineOfABadHexByte) {
  std::string error;
  EXPECT_FALSE(ParseSpecVectors("\n```frame\nOK #1\n00 00 00 05\n42 0x01\n```\n", "d.md", error));
  EXPECT_EQ(error, "d.md:5: '0x01' is not a byte as two hex digits");
}

TEST(SpecVectorParserTest, ReportsAnUnclosedBlockAtItsFence) {
  std::string error;
  EXPECT_FALSE(ParseSpecVectors("x\n```frame\nOK #1\n00 00 00 05\n", "d.md", error));
  EXPECT_EQ(error, "d.md:2: code block is never closed");
}

TEST(SpecVectorParserTest, ReportsAFrameBlockWithoutBytes) {
  std::string error;
  EXPECT_FALSE(ParseSpecVectors("```frame\nOK #1\n; only a comment\n```\n", "d.md", error));
  EXPECT_EQ(error, "d.md:1: block holds no bytes");
}

TEST(SpecVectorParserTest, ReportsAnUnknownErrorName) {
  std::string error;
  EXPECT_FALSE(
      ParseSpecVectors("```bad-frame\nEXPECT NO_SUCH_ERROR limit=1024\nff\n```\n", "d.md", error));
  EXPECT_EQ(error, "d.md:2: 'NO_SUCH_ERROR' is not an error code name");
}

TEST(SpecVectorParserTest, ReportsALimitBelowTheHeaderSize) {
  std::string error;
  EXPECT_FALSE(
      ParseSpecVectors("```bad-frame\nEXPECT MALFORMED_FRAME limit=4\nff\n```\n", "d.md", error));
  EXPECT_EQ(error, "d.md:2: limit '4' is not a whole number from 5 to 4294967295");
}

TEST(SpecVectorParserTest, ReportsAMalformedExpectLine) {
  std::string error;
  EXPECT_FALSE(ParseSpecVectors("```bad-frame\nEXPECT MALFORMED_FRAME\nff\n```\n", "d.md", error));
  EXPECT_EQ(error,
            "d.md:2: expected 'EXPECT <ERROR_NAME> limit=<max frame size>', got 'EXPECT "
            "MALFORMED_FRAME'");
}

TEST(SpecVectorParserTest, RefusesAnIndentedVectorFence) {
  std::string error;
  EXPECT_FALSE(ParseSpecVectors("- item\n  ```frame\n  OK #1\n  ```\n", "d.md", error));
  EXPECT_EQ(error, "d.md:2: a 'frame' fence must start at column 0");
}

TEST(SpecVectorParserTest, ReportsAMalformedSessionLine) {
  std::string error;
  EXPECT_FALSE(ParseSpecVectors("```session\nalice: OK #1\n```\n", "d.md", error));
  EXPECT_EQ(error, "d.md:2: expected '<from> -> <to>: <frame description>'");
}

TEST(SpecCorpusTest, NamesFilesByVectorNumberAndType) {
  SpecVectors vectors;
  vectors.frames.push_back({10, "OK #2", Bytes{0, 0, 0, 5, 0x42, 0, 0, 0, 2}});
  vectors.frames.push_back(
      {20, "PING #1 nonce=0", Bytes{0, 0, 0, 13, 0x0A, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}});
  vectors.bad_frames.push_back({30, ErrorCode::kFrameTooLarge, 1024, Bytes{0xFF, 0xFF}});
  const std::vector<CorpusFile> files = BuildCorpus(vectors);
  std::vector<std::string> paths;
  for (const CorpusFile& file : files) paths.push_back(file.path);
  EXPECT_EQ(paths, (std::vector<std::string>{
                       "fuzz_frame_decoder/spec-001-ok", "fuzz_frame_decoder/spec-002-ping",
                       "fuzz_frame_decoder/spec-all-frames",
                       "fuzz_frame_decoder/spec-bad-001-frame-too-large",
                       "fuzz_roundtrip/spec-001-ok", "fuzz_roundtrip/spec-002-ping"}));
  EXPECT_EQ(Hex(files[2].contents),
            Hex(vectors.frames[0].bytes) + " " + Hex(vectors.frames[1].bytes));
  EXPECT_EQ(Hex(files[4].contents), "42 00 00 00 02") << "roundtrip seeds drop the length prefix";
}

}  // namespace
}  // namespace messenger::spec

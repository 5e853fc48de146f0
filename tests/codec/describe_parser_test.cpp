// ParseDescription is the exact inverse of Describe: every spec vector's one-line form parses back
// to the frame its bytes encode, arbitrary frames survive Describe -> Parse, and lines that are not
// the canonical form are refused with the column and the reason.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "generators.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "spec_vectors.h"

namespace messenger {
namespace {

const spec::SpecVectors& Vectors() {
  static std::string error;
  static const std::optional<spec::SpecVectors> parsed =
      spec::LoadSpecVectors(spec::SourceProtocolPath(), error);
  if (!parsed) ADD_FAILURE() << error;
  static const spec::SpecVectors empty;
  return parsed ? *parsed : empty;
}

std::string Where(int line) { return "docs/PROTOCOL.md:" + std::to_string(line); }

TEST(DescribeParserTest, EverySpecFrameVectorParsesToTheFrameItsBytesEncode) {
  ASSERT_FALSE(Vectors().frames.empty());
  for (const spec::FrameVector& vector : Vectors().frames) {
    const DecodeResult decoded =
        DecodeFrame(std::span<const std::uint8_t>(vector.bytes).subspan(kLengthPrefixSize));
    ASSERT_TRUE(decoded.status.ok()) << Where(vector.line) << ": " << decoded.status.ToString();
    const Frame expected{decoded.request_id, decoded.message};

    const Result<Frame> parsed = ParseDescription(vector.description);
    ASSERT_TRUE(parsed.ok()) << Where(vector.line) << ": " << parsed.status().ToString();
    EXPECT_EQ(*parsed, expected) << Where(vector.line) << ": parsed as " << Describe(*parsed);

    Bytes encoded;
    ASSERT_TRUE(EncodeFrame(*parsed, encoded).ok()) << Where(vector.line);
    EXPECT_EQ(encoded, vector.bytes) << Where(vector.line);
  }
}

TEST(DescribeParserTest, EverySessionLineOfTheSpecParsesAndDescribesBackIdentically) {
  ASSERT_FALSE(Vectors().session_lines.empty());
  for (const spec::SessionLine& line : Vectors().session_lines) {
    const Result<Frame> parsed = ParseDescription(line.description);
    ASSERT_TRUE(parsed.ok()) << Where(line.line) << ": " << parsed.status().ToString();
    EXPECT_EQ(Describe(*parsed), line.description) << Where(line.line);
  }
}

RC_GTEST_PROP(DescribeParserProperty, ParsingTheDescriptionOfAnyFrameGivesItBack,
              (const Frame& frame)) {
  const std::string line = Describe(frame);
  const Result<Frame> parsed = ParseDescription(line);
  RC_ASSERT(parsed.ok());
  RC_ASSERT(*parsed == frame);
}

TEST(DescribeParserTest, ControlBytesQuotesAndBackslashesRoundTrip) {
  const Frame frame{7, Send{"bob", 44, std::string("a\0b\x1F\x7F\"\\ z\n", 10)}};
  const std::string line = Describe(frame);
  EXPECT_EQ(line,
            R"(SEND #7 recipient="bob" client_message_id=44 text="a\x00b\x1F\x7F\"\\ z\x0A")");
  const Result<Frame> parsed = ParseDescription(line);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, frame);
}

TEST(DescribeParserTest, NestedRecordsAndEmptyListsParse) {
  const Result<Frame> parsed = ParseDescription(
      R"(MESSAGE_BATCH #3 messages=[{message_id=1 sender="a" timestamp_ms=2 text="x"},)"
      R"({message_id=3 sender="b" timestamp_ms=4 text="y"}] remaining=5)");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const MessageBatch expected{{{1, "a", 2, "x"}, {3, "b", 4, "y"}}, 5};
  EXPECT_EQ(*parsed, (Frame{3, expected}));

  const Result<Frame> empty = ParseDescription("ACK #22 message_ids=[]");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(*empty, (Frame{22, Ack{}}));
}

TEST(DescribeParserTest, RequestIdsAreNotJudgedByTheParser) {
  // Describe shows any frame, and the parser gives any of them back; EncodeFrame judges ids.
  const Result<Frame> parsed = ParseDescription("PING #0 nonce=1");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, (Frame{0, Ping{1}}));
}

struct MalformedLine {
  const char* line;
  const char* reason;  // Expected within the error message, after "column N: ".
  int column;
};

TEST(DescribeParserTest, LinesThatAreNotTheCanonicalFormAreRefusedWithColumnAndReason) {
  const MalformedLine cases[] = {
      {"", "expected a message type", 1},
      {"SENDX #1", "'SENDX' is not a message type", 1},
      {"send #1", "'send' is not a message type", 1},
      {"PING#1 nonce=1", "expected ' #'", 5},
      {"PING  #1 nonce=1", "expected '#'", 6},
      {"PING #x nonce=1", "expected a decimal number for the request id", 7},
      {"PING #4294967296 nonce=1", "the request id is larger than 4294967295", 7},
      {"PING #1", "expected ' ' before field 'nonce', got the end of the line", 8},
      {"PING #1 nonse=1", "expected field 'nonce', got 'nonse'", 9},
      {"PING #1  nonce=1", "expected field 'nonce'", 9},
      {"PING #1 nonce=1 extra=2", "unexpected text after the last field of PING", 16},
      {"PING #1 nonce=01", "field 'nonce' has a leading zero", 15},
      {"PING #1 nonce=-1", "expected a decimal number for field 'nonce'", 15},
      {"PING #1 nonce=18446744073709551616", "field 'nonce' is larger than", 15},
      {"HELLO #1 protocol_version=65536", "larger than 65535", 27},
      {"DELETE_ACCOUNT #5 confirm=yes", "expected true or false for field 'confirm'", 27},
      {"SEND_OK #5 message_id=1 timestamp_ms=2 delivery=SENT", "'SENT' is not a value of", 49},
      {"SEND_OK #5 message_id=1 timestamp_ms=2 delivery=0", "one of QUEUED, DELIVERED", 49},
      {"ERROR #8 code=NO_SUCH_CODE message=\"\"", "'NO_SUCH_CODE' is not a value", 15},
      {"SEND #5 recipient=bob client_message_id=1 text=\"hi\"", "a string in double quotes", 19},
      {"SEND #5 recipient=\"bob client_message_id=1", "never ends", 43},
      {"SEND #5 recipient=\"b\\ob\" client_message_id=1 text=\"\"", "unknown escape", 21},
      {"SEND #5 recipient=\"b\" client_message_id=1 text=\"\\x0a\"", "upper-case hex digits", 49},
      {"SEND #5 recipient=\"b\" client_message_id=1 text=\"\\x41\"", "write this byte as itself",
       49},
      {"SEND #5 recipient=\"b\" client_message_id=1 text=\"a\tb\"", "written as \\x09", 50},
      {"ACK #4 message_ids=[1 2]", "expected ',' between list items", 22},
      {"ACK #4 message_ids=[1,2", "the list field 'message_ids' never ends", 24},
      {"ACK #4 message_ids=1", "expected '[' opening the list field 'message_ids'", 20},
      {"ACK #4 message_ids=[1,]", "expected a decimal number for a list item", 23},
      {"MESSAGE_BATCH #3 messages=[{message_id=1 sender=\"a\" timestamp_ms=2}] remaining=0",
       "expected ' ' before field 'text'", 67},
      {"MESSAGE_BATCH #3 messages=[message_id=1] remaining=0", "expected '{' opening a record", 28},
  };
  for (const MalformedLine& c : cases) {
    const Result<Frame> parsed = ParseDescription(c.line);
    ASSERT_FALSE(parsed.ok()) << c.line << " parsed as " << Describe(*parsed);
    EXPECT_EQ(parsed.status().code(), ErrorCode::kInvalidArgument) << c.line;
    const std::string message = parsed.status().message();
    EXPECT_EQ(message.rfind("column " + std::to_string(c.column) + ": ", 0), 0u)
        << c.line << "\n  error: " << message;
    EXPECT_NE(message.find(c.reason), std::string::npos) << c.line << "\n  error: " << message;
  }
}

}  // namespace
}  // namespace messenger

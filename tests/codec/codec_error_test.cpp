// Every error the codec can produce, and the boundaries on either side of it: framing
// (FrameDecoder), bodies (DecodeFrame), the encoder's refusals, the Status tables and rules.h.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/rules.h"
#include "messenger/codec/status.h"

namespace messenger {

// Failure output names codes and shows frames in the spec's one-line form.
static void PrintTo(ErrorCode code, std::ostream* os) {
  *os << ErrorCodeName(code) << " (" << static_cast<unsigned>(code) << ")";
}
static void PrintTo(const Status& status, std::ostream* os) { *os << status.ToString(); }
static void PrintTo(const Frame& frame, std::ostream* os) { *os << Describe(frame); }

namespace {

using ::testing::HasSubstr;

// ---- Building bytes by hand, independently of the encoder ----

// A frame body (or any byte run) written field by field in wire order.
class Body {
 public:
  Body() = default;
  Body(std::initializer_list<std::uint8_t> bytes) : bytes_(bytes) {}

  Body& U8(std::uint8_t v) {
    bytes_.push_back(v);
    return *this;
  }
  Body& U16(std::uint16_t v) { return BigEndian(v, 2); }
  Body& U32(std::uint32_t v) { return BigEndian(v, 4); }
  Body& U64(std::uint64_t v) { return BigEndian(v, 8); }
  // u16 length, then the bytes as given (valid UTF-8 or not).
  Body& Str(std::string_view s) {
    U16(static_cast<std::uint16_t>(s.size()));
    return Raw(s);
  }
  Body& Raw(std::string_view s) {
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  // A stored message as it appears in MESSAGE_BATCH and DELIVER.
  Body& Stored(std::uint64_t id, std::string_view sender, std::uint64_t ts, std::string_view text) {
    return U64(id).Str(sender).U64(ts).Str(text);
  }

  const Bytes& bytes() const { return bytes_; }

 private:
  Body& BigEndian(std::uint64_t v, int size) {
    for (int shift = (size - 1) * 8; shift >= 0; shift -= 8) {
      bytes_.push_back(static_cast<std::uint8_t>(v >> shift));
    }
    return *this;
  }

  Bytes bytes_;
};

// Header + body, without the length prefix: what DecodeFrame takes.
Bytes RawFrame(std::uint8_t type, std::uint32_t request_id, const Body& body = {}) {
  Bytes frame = Body().U8(type).U32(request_id).bytes();
  frame.insert(frame.end(), body.bytes().begin(), body.bytes().end());
  return frame;
}
Bytes RawFrame(MessageType type, std::uint32_t request_id, const Body& body = {}) {
  return RawFrame(static_cast<std::uint8_t>(type), request_id, body);
}

Bytes LengthPrefix(std::uint32_t length) { return Body().U32(length).bytes(); }

// Length prefix + frame: what goes on the wire.
Bytes OnWire(const Bytes& frame) {
  Bytes out = LengthPrefix(static_cast<std::uint32_t>(frame.size()));
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

Bytes Encode(const Frame& frame) {
  Bytes out;
  const Status status = EncodeFrame(frame, out);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return out;
}

// The encoding of `frame` without its length prefix.
Bytes EncodeRaw(const Frame& frame) {
  const Bytes wire = Encode(frame);
  return Bytes(wire.begin() + kLengthPrefixSize, wire.end());
}

std::vector<DecodeResult> Drain(FrameDecoder& decoder) {
  std::vector<DecodeResult> results;
  while (std::optional<DecodeResult> result = decoder.Next()) results.push_back(*result);
  return results;
}

Frame FrameOf(const DecodeResult& result) { return Frame{result.request_id, result.message}; }

// One valid message of every type, in variant order, with a request id its type allows.
std::vector<Frame> OneFrameOfEachType() {
  const StoredMessage stored{11, "alice", 1700000000000, "hello \xF0\x9F\x91\x8B"};
  return {
      {1, Hello{kProtocolVersion}},
      {2, CreateAccount{"alice", "correct horse"}},
      {3, Login{"Alice", "correct horse"}},
      {4, Logout{}},
      {5, ListAccounts{"a*", "", 20}},
      {6, Send{"bob", 42, "hi"}},
      {7, FetchUndelivered{50}},
      {8, Ack{{1, 2, 3}}},
      {9, DeleteAccount{true}},
      {10, Ping{0xDEADBEEF}},
      {11, HelloOk{1, kDefaultMaxFrameSize, kMaxPreloginFrameSize, 4096, 10000, "poco"}},
      {12, Ok{}},
      {13, LoginOk{3}},
      {14, AccountList{{"alice", "bob"}, "bob"}},
      {15, SendOk{7, 1700000000000, Delivery::kDelivered}},
      {16, MessageBatch{{stored, stored}, 4}},
      {17, ConfirmRequired{2}},
      {18, Pong{0xDEADBEEF}},
      {19, Error{ErrorCode::kAuthFailed, "no"}},
      {0, Deliver{stored}},
      {0, SessionEnded{EndReason::kTakeover, "logged in elsewhere"}},
  };
}

TEST(TestFramesTest, CoverEveryMessageTypeOnce) {
  std::set<std::size_t> indices;
  for (const Frame& frame : OneFrameOfEachType()) indices.insert(frame.message.index());
  EXPECT_EQ(indices.size(), std::variant_size_v<Message>);
  EXPECT_EQ(OneFrameOfEachType().size(), std::variant_size_v<Message>);
}

// ---- FrameDecoder: framing ----

TEST(FrameDecoderTest, ReturnsNothingBeforeAnyInput) {
  FrameDecoder decoder;
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.failed());
  EXPECT_EQ(decoder.max_frame_size(), kDefaultMaxFrameSize);
}

TEST(FrameDecoderTest, IgnoresEmptyFeed) {
  FrameDecoder decoder;
  decoder.Feed({});
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.failed());
}

TEST(FrameDecoderTest, DecodesAFrameFedByteByByteOnlyAtItsLastByte) {
  const Frame frame{7, Send{"bob", 42, "hi"}};
  const Bytes wire = Encode(frame);
  // The limit is the frame's own length: the decoder never needs room for more.
  FrameDecoder decoder(static_cast<std::uint32_t>(wire.size() - kLengthPrefixSize));
  for (std::size_t i = 0; i + 1 < wire.size(); ++i) {
    decoder.Feed(std::span<const std::uint8_t>(wire).subspan(i, 1));
    ASSERT_FALSE(decoder.Next().has_value()) << "after byte " << i;
  }
  decoder.Feed(std::span<const std::uint8_t>(wire).subspan(wire.size() - 1));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->status.ok()) << result->status.ToString();
  EXPECT_EQ(FrameOf(*result), frame);
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.failed());
}

TEST(FrameDecoderTest, DecodesEveryFrameOfOneFeedInOrder) {
  Bytes wire;
  for (const Frame& frame : OneFrameOfEachType()) ASSERT_TRUE(EncodeFrame(frame, wire).ok());
  FrameDecoder decoder;
  decoder.Feed(wire);
  const std::vector<DecodeResult> results = Drain(decoder);
  const std::vector<Frame> frames = OneFrameOfEachType();
  ASSERT_EQ(results.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_TRUE(results[i].status.ok()) << results[i].status.ToString();
    EXPECT_EQ(FrameOf(results[i]), frames[i]);
  }
}

TEST(FrameDecoderTest, HoldsAnIncompleteFrameWithoutResult) {
  const Bytes wire = Encode(Frame{1, Ping{5}});
  FrameDecoder decoder;
  decoder.Feed(std::span<const std::uint8_t>(wire).first(wire.size() - 1));
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.failed());
}

TEST(FrameDecoderTest, RejectsOversizedLengthBeforeBuffering) {
  FrameDecoder decoder(100);
  const Bytes prefix = LengthPrefix(101);
  decoder.Feed(std::span<const std::uint8_t>(prefix).first(3));
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.failed());
  // The fourth byte alone completes the verdict: no body byte is needed or awaited.
  decoder.Feed(std::span<const std::uint8_t>(prefix).subspan(3));
  EXPECT_TRUE(decoder.failed());
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
  EXPECT_TRUE(result->status.fatal());
  EXPECT_EQ(result->request_id, 0u);
  EXPECT_THAT(result->status.message(), HasSubstr("101"));
  EXPECT_FALSE(decoder.Next().has_value());
}

TEST(FrameDecoderTest, RejectsLargestPossibleLengthPrefix) {
  FrameDecoder decoder(kMaxMaxFrameSize);
  decoder.Feed(LengthPrefix(0xFFFFFFFF));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
}

TEST(FrameDecoderTest, RejectsDefaultLimitPlusOne) {
  FrameDecoder decoder;
  decoder.Feed(LengthPrefix(kDefaultMaxFrameSize + 1));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
}

TEST(FrameDecoderTest, AwaitsBodyWhenLengthEqualsDefaultLimit) {
  FrameDecoder decoder;
  decoder.Feed(LengthPrefix(kDefaultMaxFrameSize));
  decoder.Feed(RawFrame(MessageType::kOk, 1));
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_FALSE(decoder.failed());
}

TEST(FrameDecoderTest, AcceptsFrameExactlyAtTheLimit) {
  const Frame frame{3, Login{"alice", "correct horse"}};
  const Bytes wire = Encode(frame);
  const auto length = static_cast<std::uint32_t>(wire.size() - kLengthPrefixSize);

  FrameDecoder at_limit(length);
  at_limit.Feed(wire);
  std::optional<DecodeResult> result = at_limit.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->status.ok()) << result->status.ToString();
  EXPECT_EQ(FrameOf(*result), frame);

  FrameDecoder one_below(length - 1);
  one_below.Feed(wire);
  result = one_below.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
}

TEST(FrameDecoderTest, PreloginLimitRejectsLargerFrame) {
  FrameDecoder decoder(kMaxPreloginFrameSize);
  const Bytes wire = Encode(Frame{6, Send{"bob", 1, std::string(kMaxPreloginFrameSize, 'x')}});
  decoder.Feed(wire);
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
}

TEST(FrameDecoderTest, SetMaxFrameSizeAppliesToTheNextPrefixNotTheCurrentFrame) {
  const Frame big{1, Send{"bob", 1, std::string(100, 'x')}};
  const Bytes big_wire = Encode(big);
  FrameDecoder decoder;
  decoder.Feed(std::span<const std::uint8_t>(big_wire).first(20));  // Prefix and part of the body.
  decoder.SetMaxFrameSize(50);
  EXPECT_EQ(decoder.max_frame_size(), 50u);
  decoder.Feed(std::span<const std::uint8_t>(big_wire).subspan(20));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->status.ok()) << result->status.ToString();
  EXPECT_EQ(FrameOf(*result), big);

  decoder.Feed(big_wire);  // The same frame again, now above the lowered limit.
  result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
}

TEST(FrameDecoderTest, SetMaxFrameSizeAppliesToAPartlyReadPrefix) {
  const Bytes wire = Encode(Frame{1, Send{"bob", 1, std::string(100, 'x')}});
  FrameDecoder decoder;
  decoder.Feed(std::span<const std::uint8_t>(wire).first(2));
  decoder.SetMaxFrameSize(50);
  decoder.Feed(std::span<const std::uint8_t>(wire).subspan(2, 2));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
}

TEST(FrameDecoderTest, RaisingTheLimitAdmitsLargerFrames) {
  // As after LOGIN_OK: the pre-login limit gives way to the configured one.
  const Frame frame{6, Send{"bob", 1, std::string(4000, 'x')}};
  FrameDecoder decoder(kMaxPreloginFrameSize);
  decoder.Feed(Encode(Frame{3, Login{"alice", "correct horse"}}));
  decoder.SetMaxFrameSize(kDefaultMaxFrameSize);
  decoder.Feed(Encode(frame));
  const std::vector<DecodeResult> results = Drain(decoder);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_TRUE(results[1].status.ok()) << results[1].status.ToString();
  EXPECT_EQ(FrameOf(results[1]), frame);
}

TEST(FrameDecoderTest, ReturnsFramesFedBeforeAFatalErrorFirst) {
  const Frame first{1, Ping{1}};
  const Frame second{2, Logout{}};
  FrameDecoder decoder(100);
  decoder.Feed(Concat({Encode(first), Encode(second), LengthPrefix(101)}));
  EXPECT_TRUE(decoder.failed());  // Already failed while earlier results still wait.
  const std::vector<DecodeResult> results = Drain(decoder);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(FrameOf(results[0]), first);
  EXPECT_EQ(FrameOf(results[1]), second);
  EXPECT_EQ(results[2].status.code(), ErrorCode::kFrameTooLarge);
}

TEST(FrameDecoderTest, IgnoresAllInputAfterAFatalError) {
  FrameDecoder decoder(100);
  decoder.Feed(Concat({LengthPrefix(101), Encode(Frame{1, Ping{1}})}));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kFrameTooLarge);
  EXPECT_FALSE(decoder.Next().has_value());

  // Well past the rejected length: a decoder that went on reading would complete a "frame".
  for (std::uint32_t id = 2; id < 40; ++id) decoder.Feed(Encode(Frame{id, Ping{id}}));
  decoder.SetMaxFrameSize(kDefaultMaxFrameSize);
  decoder.Feed(Encode(Frame{40, Ping{40}}));
  EXPECT_FALSE(decoder.Next().has_value());
  EXPECT_TRUE(decoder.failed());
}

TEST(FrameDecoderTest, RejectsLengthBelowHeaderSizeAsMalformedFrame) {
  for (std::uint32_t length = 0; length < kFrameHeaderSize; ++length) {
    SCOPED_TRACE("length " + std::to_string(length));
    FrameDecoder decoder;
    // Followed by bytes that would form a valid frame, which must not be read as one.
    decoder.Feed(Concat({LengthPrefix(length), Encode(Frame{1, Ping{1}})}));
    EXPECT_TRUE(decoder.failed());
    const std::vector<DecodeResult> results = Drain(decoder);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].status.code(), ErrorCode::kMalformedFrame);
    EXPECT_TRUE(results[0].status.fatal());
    EXPECT_EQ(results[0].request_id, 0u);
  }
}

TEST(FrameDecoderTest, ReportsMalformedFrameAfterExactlyFourBytes) {
  FrameDecoder decoder;
  const Bytes prefix = LengthPrefix(4);
  decoder.Feed(std::span<const std::uint8_t>(prefix).first(3));
  EXPECT_FALSE(decoder.Next().has_value());
  decoder.Feed(std::span<const std::uint8_t>(prefix).subspan(3));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status.code(), ErrorCode::kMalformedFrame);
}

TEST(FrameDecoderTest, AcceptsHeaderOnlyFrame) {
  FrameDecoder decoder;
  decoder.Feed(OnWire(RawFrame(MessageType::kLogout, 9)));
  std::optional<DecodeResult> result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->status.ok()) << result->status.ToString();
  EXPECT_EQ(FrameOf(*result), (Frame{9, Logout{}}));
}

TEST(FrameDecoderTest, ContinuesAfterRequestLevelErrors) {
  FrameDecoder decoder;
  decoder.Feed(Concat({
      OnWire(RawFrame(0x3F, 1)),                            // UNKNOWN_TYPE
      OnWire(RawFrame(MessageType::kPing, 2, Body{1, 2})),  // MALFORMED_BODY
      OnWire(RawFrame(MessageType::kSend, 3, Body().Str("\xC0\x80").U64(1).Str("x"))),  // UTF-8
      Encode(Frame{4, Ping{4}}),
  }));
  const std::vector<DecodeResult> results = Drain(decoder);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].status.code(), ErrorCode::kUnknownType);
  EXPECT_EQ(results[1].status.code(), ErrorCode::kMalformedBody);
  EXPECT_EQ(results[2].status.code(), ErrorCode::kInvalidUtf8);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(results[i].status.fatal());
    EXPECT_EQ(results[i].request_id, static_cast<std::uint32_t>(i + 1));
  }
  EXPECT_EQ(FrameOf(results[3]), (Frame{4, Ping{4}}));
  EXPECT_FALSE(decoder.failed());
}

// ---- DecodeFrame: header ----

TEST(DecodeFrameTest, RejectsFrameShorterThanHeaderAsMalformedFrame) {
  const Bytes full = RawFrame(MessageType::kLogout, 0x01020304);
  for (std::size_t size = 0; size < kFrameHeaderSize; ++size) {
    SCOPED_TRACE("size " + std::to_string(size));
    const DecodeResult result = DecodeFrame(std::span<const std::uint8_t>(full).first(size));
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedFrame);
    EXPECT_EQ(result.request_id, 0u);
  }
}

TEST(DecodeFrameTest, ReportsUnknownTypeWithTheRequestId) {
  std::set<std::uint8_t> known;
  for (const Frame& frame : OneFrameOfEachType()) {
    known.insert(static_cast<std::uint8_t>(TypeOf(frame.message)));
  }
  for (unsigned type = 0; type <= 0xFF; ++type) {
    if (known.count(static_cast<std::uint8_t>(type)) != 0) continue;
    SCOPED_TRACE("type " + std::to_string(type));
    const DecodeResult result =
        DecodeFrame(RawFrame(static_cast<std::uint8_t>(type), 0xA1B2C3D4, Body{1, 2, 3}));
    EXPECT_EQ(result.status.code(), ErrorCode::kUnknownType);
    EXPECT_FALSE(result.status.fatal());
    EXPECT_EQ(result.request_id, 0xA1B2C3D4u);
  }
}

TEST(DecodeFrameTest, ReportsUnknownTypeEvenWithRequestIdZero) {
  const DecodeResult result = DecodeFrame(RawFrame(0x00, 0));
  EXPECT_EQ(result.status.code(), ErrorCode::kUnknownType);
  EXPECT_EQ(result.request_id, 0u);
}

// ---- DecodeFrame: MALFORMED_BODY ----

struct BadBody {
  const char* what;
  MessageType type;
  Body body;
};

TEST(DecodeFrameTest, RejectsTruncatedFieldOfEachKind) {
  const std::vector<BadBody> cases = {
      {"u16 (HELLO, 1 of 2 bytes)", MessageType::kHello, Body{0x00}},
      {"u16 missing (FETCH_UNDELIVERED)", MessageType::kFetchUndelivered, Body()},
      {"u16 after strings (LIST_ACCOUNTS)", MessageType::kListAccounts,
       Body().Str("a*").Str("").U8(0)},
      {"u32 (LOGIN_OK, 3 of 4 bytes)", MessageType::kLoginOk, Body{0, 0, 1}},
      {"u32 missing (CONFIRM_REQUIRED)", MessageType::kConfirmRequired, Body()},
      {"u32 inside HELLO_OK", MessageType::kHelloOk, Body().U16(1).U32(1).U16(0)},
      {"u64 (PING, 7 of 8 bytes)", MessageType::kPing, Body{0, 0, 0, 0, 0, 0, 0}},
      {"u64 missing (PONG)", MessageType::kPong, Body()},
      {"u64 between strings (SEND)", MessageType::kSend, Body().Str("bob").U32(0)},
      {"bool missing (DELETE_ACCOUNT)", MessageType::kDeleteAccount, Body()},
      {"u8 enum missing (SEND_OK)", MessageType::kSendOk, Body().U64(1).U64(2)},
      {"u8 enum missing (SESSION_ENDED)", MessageType::kSessionEnded, Body()},
      {"u16 enum (ERROR, 1 of 2 bytes)", MessageType::kError, Body{0x00}},
      {"string length (CREATE_ACCOUNT, 1 of 2 bytes)", MessageType::kCreateAccount, Body{0x00}},
      {"string bytes (CREATE_ACCOUNT, 3 of 5)", MessageType::kCreateAccount,
       Body().U16(5).Raw("ali")},
      {"second string missing (LOGIN)", MessageType::kLogin, Body().Str("alice")},
      {"last string (HELLO_OK server_name)", MessageType::kHelloOk,
       Body().U16(1).U32(1).U32(1).U32(1).U32(1).U16(4).Raw("po")},
      {"string after enum (SESSION_ENDED)", MessageType::kSessionEnded, Body().U8(1)},
      {"string after enum (ERROR)", MessageType::kError, Body().U16(11).U8(0)},
      {"list count (ACK, 1 of 2 bytes)", MessageType::kAck, Body{0x00}},
      {"list count missing (ACCOUNT_LIST)", MessageType::kAccountList, Body()},
      {"u64 list item (ACK)", MessageType::kAck, Body().U16(2).U64(1).U8(0).U8(0).U8(0)},
      {"string list item (ACCOUNT_LIST)", MessageType::kAccountList,
       Body().U16(1).U16(10).Raw("ab")},
      {"field after list (ACCOUNT_LIST next_cursor)", MessageType::kAccountList,
       Body().U16(1).Str("alice")},
      {"nested item (MESSAGE_BATCH)", MessageType::kMessageBatch,
       Body().U16(1).U64(1).Str("alice").U64(2).U16(3)},
      {"second nested item (MESSAGE_BATCH)", MessageType::kMessageBatch,
       Body().U16(2).Stored(1, "a", 2, "x").U64(3)},
      {"u32 after list (MESSAGE_BATCH remaining)", MessageType::kMessageBatch,
       Body().U16(0).U16(0)},
      {"flattened message (DELIVER text)", MessageType::kDeliver,
       Body().U64(1).Str("alice").U64(2).U16(5).Raw("hey")},
  };
  for (const BadBody& c : cases) {
    SCOPED_TRACE(c.what);
    const std::uint32_t id = IsPush(c.type) ? 0 : 77;
    const DecodeResult result = DecodeFrame(RawFrame(c.type, id, c.body));
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody) << result.status.ToString();
    EXPECT_FALSE(result.status.fatal());
    EXPECT_EQ(result.request_id, id);
  }
}

TEST(DecodeFrameTest, RejectsTrailingBytesAfterEveryType) {
  for (const Frame& frame : OneFrameOfEachType()) {
    SCOPED_TRACE(Describe(frame));
    Bytes raw = EncodeRaw(frame);
    ASSERT_TRUE(DecodeFrame(raw).status.ok());
    raw.push_back(0x00);
    const DecodeResult result = DecodeFrame(raw);
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody) << result.status.ToString();
    EXPECT_EQ(result.request_id, frame.request_id);
  }
}

TEST(DecodeFrameTest, RejectsBoolOtherThanZeroOrOne) {
  EXPECT_EQ(FrameOf(DecodeFrame(RawFrame(MessageType::kDeleteAccount, 1, Body{0}))),
            (Frame{1, DeleteAccount{false}}));
  EXPECT_EQ(FrameOf(DecodeFrame(RawFrame(MessageType::kDeleteAccount, 1, Body{1}))),
            (Frame{1, DeleteAccount{true}}));
  for (const std::uint8_t value : std::initializer_list<std::uint8_t>{2, 0x80, 0xFF}) {
    SCOPED_TRACE("bool byte " + std::to_string(value));
    const DecodeResult result = DecodeFrame(RawFrame(MessageType::kDeleteAccount, 1, Body{value}));
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody);
  }
}

TEST(DecodeFrameTest, RejectsUnknownDeliveryValue) {
  for (const std::uint8_t value : std::initializer_list<std::uint8_t>{0, 1}) {
    EXPECT_TRUE(
        DecodeFrame(RawFrame(MessageType::kSendOk, 1, Body().U64(1).U64(2).U8(value))).status.ok());
  }
  for (const std::uint8_t value : std::initializer_list<std::uint8_t>{2, 3, 0x7F, 0xFF}) {
    SCOPED_TRACE("delivery " + std::to_string(value));
    const DecodeResult result =
        DecodeFrame(RawFrame(MessageType::kSendOk, 1, Body().U64(1).U64(2).U8(value)));
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody);
  }
}

TEST(DecodeFrameTest, RejectsUnknownEndReason) {
  for (const std::uint8_t value : std::initializer_list<std::uint8_t>{1, 2, 3, 4}) {
    EXPECT_TRUE(
        DecodeFrame(RawFrame(MessageType::kSessionEnded, 0, Body().U8(value).Str(""))).status.ok());
  }
  for (const std::uint8_t value : std::initializer_list<std::uint8_t>{0, 5, 0x80, 0xFF}) {
    SCOPED_TRACE("reason " + std::to_string(value));
    const DecodeResult result =
        DecodeFrame(RawFrame(MessageType::kSessionEnded, 0, Body().U8(value).Str("")));
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody);
  }
}

TEST(DecodeFrameTest, AcceptsEveryKnownErrorCodeAndRejectsOthers) {
  int known = 0;
  for (std::uint32_t value = 0; value <= 0xFFFF; ++value) {
    const auto code = static_cast<std::uint16_t>(value);
    const DecodeResult result =
        DecodeFrame(RawFrame(MessageType::kError, 5, Body().U16(code).Str("m")));
    if (IsKnownErrorCode(code)) {
      ++known;
      ASSERT_TRUE(result.status.ok()) << "code " << value << ": " << result.status.ToString();
      ASSERT_EQ(std::get<Error>(result.message).code, static_cast<ErrorCode>(code));
    } else {
      ASSERT_EQ(result.status.code(), ErrorCode::kMalformedBody) << "code " << value;
    }
  }
  EXPECT_EQ(known, 25);
}

TEST(DecodeFrameTest, RejectsListCountLargerThanTheBody) {
  const std::vector<BadBody> cases = {
      {"ACK claiming 65535 ids with one present", MessageType::kAck, Body().U16(0xFFFF).U64(1)},
      {"ACK claiming 2 ids with one present", MessageType::kAck, Body().U16(2).U64(1)},
      {"ACCOUNT_LIST claiming 3 names in 2 bytes", MessageType::kAccountList, Body().U16(3).U16(0)},
      {"ACCOUNT_LIST claiming 65535 names, body empty", MessageType::kAccountList,
       Body().U16(0xFFFF)},
      {"MESSAGE_BATCH claiming 100 messages with one present", MessageType::kMessageBatch,
       Body().U16(100).Stored(1, "a", 2, "x").U32(0)},
  };
  for (const BadBody& c : cases) {
    SCOPED_TRACE(c.what);
    const DecodeResult result = DecodeFrame(RawFrame(c.type, 1, c.body));
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody) << result.status.ToString();
    EXPECT_EQ(result.request_id, 1u);
  }
}

TEST(DecodeFrameTest, RejectsRequestIdZeroOnRequestsAndResponses) {
  for (const Frame& frame : OneFrameOfEachType()) {
    const MessageType type = TypeOf(frame.message);
    if (IsPush(type) || type == MessageType::kError) continue;
    SCOPED_TRACE(MessageTypeName(type));
    Bytes raw = EncodeRaw(frame);
    std::fill(raw.begin() + 1, raw.begin() + kFrameHeaderSize, std::uint8_t{0});
    const DecodeResult result = DecodeFrame(raw);
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody) << result.status.ToString();
    EXPECT_EQ(result.request_id, 0u);
  }
}

TEST(DecodeFrameTest, RejectsNonZeroRequestIdOnPushes) {
  for (const Frame& frame : OneFrameOfEachType()) {
    const MessageType type = TypeOf(frame.message);
    if (!IsPush(type)) continue;
    for (const std::uint32_t id : {1u, 0xFFFFFFFFu}) {
      SCOPED_TRACE(std::string(MessageTypeName(type)) + " #" + std::to_string(id));
      Bytes raw = EncodeRaw(frame);
      const Bytes header = RawFrame(type, id);
      std::copy(header.begin(), header.end(), raw.begin());
      const DecodeResult result = DecodeFrame(raw);
      EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody) << result.status.ToString();
      EXPECT_EQ(result.request_id, id);
    }
  }
}

TEST(DecodeFrameTest, AcceptsErrorWithRequestIdZeroOrNonZero) {
  for (const std::uint32_t id : {0u, 1u, 0xFFFFFFFFu}) {
    const DecodeResult result = DecodeFrame(
        RawFrame(MessageType::kError, id, Body().U16(2).Str("frame length 3 is too short")));
    ASSERT_TRUE(result.status.ok()) << result.status.ToString();
    EXPECT_EQ(FrameOf(result),
              (Frame{id, Error{ErrorCode::kMalformedFrame, "frame length 3 is too short"}}));
  }
}

// ---- INVALID_UTF8 ----

struct Utf8Case {
  const char* what;
  std::string bytes;
};

std::vector<Utf8Case> InvalidUtf8Cases() {
  return {
      {"overlong 2-byte NUL C0 80", "\xC0\x80"},
      {"overlong 2-byte C1 BF", "\xC1\xBF"},
      {"overlong 3-byte E0 80 80", "\xE0\x80\x80"},
      {"overlong 3-byte for U+07FF", "\xE0\x9F\xBF"},
      {"overlong 4-byte F0 80 80 80", "\xF0\x80\x80\x80"},
      {"overlong 4-byte for U+FFFF", "\xF0\x8F\xBF\xBF"},
      {"surrogate U+D800", "\xED\xA0\x80"},
      {"surrogate U+DFFF", "\xED\xBF\xBF"},
      {"surrogate pair as CESU-8", "\xED\xA0\xBD\xED\xB8\x80"},
      {"U+110000", "\xF4\x90\x80\x80"},
      {"lead F5", "\xF5\x80\x80\x80"},
      {"lead F7 (U+1FFFFF)", "\xF7\xBF\xBF\xBF"},
      {"5-byte form", "\xF8\x88\x80\x80\x80"},
      {"byte FE", "\xFE"},
      {"byte FF", "\xFF"},
      {"truncated 2-byte at end", "ab\xC3"},
      {"truncated 3-byte at end", "\xE2\x82"},
      {"truncated 4-byte at end", "\xF0\x9F\x98"},
      {"truncated 3-byte before ASCII", "\xE2\x82z"},
      {"truncated 4-byte before a new lead", "\xF0\x9F\xC3\xA9"},
      {"lone continuation 80", "\x80"},
      {"lone continuation BF", "\xBF"},
      {"continuation after ASCII",
       "a\x80"
       "b"},
      {"extra continuation after a 2-byte sequence", "\xC3\xA9\xA9"},
  };
}

std::vector<Utf8Case> ValidUtf8Cases() {
  return {
      {"empty", ""},
      {"NUL", std::string("a\0b", 3)},
      {"U+007F", "\x7F"},
      {"U+0080", "\xC2\x80"},
      {"U+07FF", "\xDF\xBF"},
      {"U+0800", "\xE0\xA0\x80"},
      {"U+D7FF", "\xED\x9F\xBF"},
      {"U+E000", "\xEE\x80\x80"},
      {"U+FFFD", "\xEF\xBF\xBD"},
      {"U+FFFF", "\xEF\xBF\xBF"},
      {"U+10000", "\xF0\x90\x80\x80"},
      {"U+10FFFF", "\xF4\x8F\xBF\xBF"},
      {"mixed", "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x91\x8B"},
  };
}

TEST(Utf8Test, IsValidUtf8RejectsEveryIllFormedSequence) {
  for (const Utf8Case& c : InvalidUtf8Cases()) {
    EXPECT_FALSE(IsValidUtf8(c.bytes)) << c.what;
  }
}

TEST(Utf8Test, IsValidUtf8AcceptsBoundaryCodePoints) {
  for (const Utf8Case& c : ValidUtf8Cases()) {
    EXPECT_TRUE(IsValidUtf8(c.bytes)) << c.what;
  }
}

TEST(DecodeFrameTest, RejectsInvalidUtf8InEveryKindOfStringField) {
  for (const Utf8Case& c : InvalidUtf8Cases()) {
    SCOPED_TRACE(c.what);
    const std::string& bad = c.bytes;
    const std::vector<BadBody> placements = {
        {"SEND text", MessageType::kSend, Body().Str("bob").U64(1).Str(bad)},
        {"LOGIN username", MessageType::kLogin, Body().Str(bad).Str("password")},
        {"ACCOUNT_LIST item", MessageType::kAccountList, Body().U16(2).Str("a").Str(bad).Str("")},
        {"MESSAGE_BATCH nested sender", MessageType::kMessageBatch,
         Body().U16(1).Stored(1, bad, 2, "x").U32(0)},
        {"HELLO_OK server_name", MessageType::kHelloOk,
         Body().U16(1).U32(1).U32(1).U32(1).U32(1).Str(bad)},
        {"ERROR message", MessageType::kError, Body().U16(61).Str(bad)},
    };
    for (const BadBody& p : placements) {
      SCOPED_TRACE(p.what);
      const DecodeResult result = DecodeFrame(RawFrame(p.type, 31, p.body));
      EXPECT_EQ(result.status.code(), ErrorCode::kInvalidUtf8) << result.status.ToString();
      EXPECT_FALSE(result.status.fatal());
      EXPECT_EQ(result.request_id, 31u);
    }
    const DecodeResult push =
        DecodeFrame(RawFrame(MessageType::kSessionEnded, 0, Body().U8(2).Str(bad)));
    EXPECT_EQ(push.status.code(), ErrorCode::kInvalidUtf8);
  }
}

TEST(DecodeFrameTest, AcceptsBoundaryCodePointsInStrings) {
  for (const Utf8Case& c : ValidUtf8Cases()) {
    SCOPED_TRACE(c.what);
    const DecodeResult result =
        DecodeFrame(RawFrame(MessageType::kSend, 1, Body().Str("bob").U64(1).Str(c.bytes)));
    ASSERT_TRUE(result.status.ok()) << result.status.ToString();
    EXPECT_EQ(std::get<Send>(result.message).text, c.bytes);
  }
}

// ---- EncodeFrame: refusals leave the output untouched ----

// Encodes `frame` into a buffer already holding other bytes; expects `code` and no change.
void ExpectRefused(const Frame& frame, ErrorCode code) {
  const Bytes before = {0xAA, 0xBB, 0xCC};
  Bytes out = before;
  const Status status = EncodeFrame(frame, out);
  EXPECT_EQ(status.code(), code) << status.ToString();
  EXPECT_EQ(out, before);
}

TEST(EncodeFrameTest, AppendsToExistingBytes) {
  Bytes out = {0xAA};
  ASSERT_TRUE(EncodeFrame(Frame{1, Ping{0x0102030405060708}}, out).ok());
  EXPECT_EQ(out, (Bytes{0xAA, 0, 0, 0, 13, 0x0A, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(EncodeFrameTest, RefusesStringLongerThan65535Bytes) {
  ExpectRefused(Frame{1, Send{"bob", 1, std::string(65536, 'x')}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{1, AccountList{{"a", std::string(65536, 'x')}, ""}},
                ErrorCode::kMalformedBody);
}

TEST(EncodeFrameTest, Accepts65535ByteString) {
  const Frame frame{1, Send{"bob", 1, std::string(65535, 'x')}};
  const Bytes raw = EncodeRaw(frame);
  const DecodeResult result = DecodeFrame(raw);
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  EXPECT_EQ(FrameOf(result), frame);
}

TEST(EncodeFrameTest, RefusesInvalidUtf8InEveryKindOfStringField) {
  for (const Utf8Case& c : InvalidUtf8Cases()) {
    SCOPED_TRACE(c.what);
    const std::string& bad = c.bytes;
    ExpectRefused(Frame{1, Send{"bob", 1, bad}}, ErrorCode::kInvalidUtf8);
    ExpectRefused(Frame{1, CreateAccount{bad, "password"}}, ErrorCode::kInvalidUtf8);
    ExpectRefused(Frame{1, AccountList{{"a", bad}, ""}}, ErrorCode::kInvalidUtf8);
    // The bad string comes after fields already written: those must be rolled back too.
    ExpectRefused(Frame{1, MessageBatch{{{1, "a", 2, "x"}, {3, "b", 4, bad}}, 0}},
                  ErrorCode::kInvalidUtf8);
    ExpectRefused(Frame{0, Deliver{{1, bad, 2, "x"}}}, ErrorCode::kInvalidUtf8);
    ExpectRefused(Frame{0, Error{ErrorCode::kInternal, bad}}, ErrorCode::kInvalidUtf8);
  }
}

TEST(EncodeFrameTest, RefusesListLongerThan65535Items) {
  ExpectRefused(Frame{1, Ack{std::vector<std::uint64_t>(65536, 1)}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{1, AccountList{std::vector<std::string>(65536), ""}},
                ErrorCode::kMalformedBody);
  ExpectRefused(Frame{1, MessageBatch{std::vector<StoredMessage>(65536), 0}},
                ErrorCode::kMalformedBody);
}

TEST(EncodeFrameTest, Accepts65535ItemList) {
  std::vector<std::uint64_t> ids(65535);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  const Frame frame{1, Ack{ids}};
  const DecodeResult result = DecodeFrame(EncodeRaw(frame));
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  EXPECT_EQ(FrameOf(result), frame);
}

TEST(EncodeFrameTest, RefusesRequestIdZeroOnRequestsAndResponses) {
  for (Frame frame : OneFrameOfEachType()) {
    const MessageType type = TypeOf(frame.message);
    if (IsPush(type) || type == MessageType::kError) continue;
    SCOPED_TRACE(MessageTypeName(type));
    frame.request_id = 0;
    ExpectRefused(frame, ErrorCode::kMalformedBody);
  }
}

TEST(EncodeFrameTest, RefusesNonZeroRequestIdOnPushes) {
  ExpectRefused(Frame{1, Deliver{{1, "a", 2, "x"}}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{0xFFFFFFFF, SessionEnded{EndReason::kIdleTimeout, ""}},
                ErrorCode::kMalformedBody);
}

TEST(EncodeFrameTest, AcceptsConnectionLevelErrorWithRequestIdZero) {
  const Frame frame{0, Error{ErrorCode::kServerBusy, "too many connections"}};
  EXPECT_EQ(FrameOf(DecodeFrame(EncodeRaw(frame))), frame);
}

TEST(EncodeFrameTest, RefusesOutOfRangeEnums) {
  ExpectRefused(Frame{1, SendOk{1, 2, static_cast<Delivery>(2)}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{0, SessionEnded{static_cast<EndReason>(0), ""}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{0, SessionEnded{static_cast<EndReason>(5), ""}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{1, Error{ErrorCode::kOk, ""}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{1, Error{static_cast<ErrorCode>(5), ""}}, ErrorCode::kMalformedBody);
  ExpectRefused(Frame{1, Error{static_cast<ErrorCode>(0xFFFF), ""}}, ErrorCode::kMalformedBody);
}

// ---- Status, error codes and message types ----

struct CodeRow {
  ErrorCode code;
  std::uint16_t wire;
  const char* name;
  bool fatal;
};

// docs/PROTOCOL.md, "Error codes".
const CodeRow kErrorCodes[] = {
    {ErrorCode::kFrameTooLarge, 1, "FRAME_TOO_LARGE", true},
    {ErrorCode::kMalformedFrame, 2, "MALFORMED_FRAME", true},
    {ErrorCode::kHandshakeRequired, 3, "HANDSHAKE_REQUIRED", true},
    {ErrorCode::kUnsupportedVersion, 4, "UNSUPPORTED_VERSION", true},
    {ErrorCode::kUnknownType, 10, "UNKNOWN_TYPE", false},
    {ErrorCode::kMalformedBody, 11, "MALFORMED_BODY", false},
    {ErrorCode::kInvalidUtf8, 12, "INVALID_UTF8", false},
    {ErrorCode::kUnexpectedMessage, 13, "UNEXPECTED_MESSAGE", false},
    {ErrorCode::kNotLoggedIn, 20, "NOT_LOGGED_IN", false},
    {ErrorCode::kAlreadyLoggedIn, 21, "ALREADY_LOGGED_IN", false},
    {ErrorCode::kInvalidUsername, 30, "INVALID_USERNAME", false},
    {ErrorCode::kInvalidPassword, 31, "INVALID_PASSWORD", false},
    {ErrorCode::kInvalidText, 32, "INVALID_TEXT", false},
    {ErrorCode::kInvalidPattern, 33, "INVALID_PATTERN", false},
    {ErrorCode::kInvalidArgument, 34, "INVALID_ARGUMENT", false},
    {ErrorCode::kUsernameTaken, 40, "USERNAME_TAKEN", false},
    {ErrorCode::kAuthFailed, 41, "AUTH_FAILED", false},
    {ErrorCode::kLoginThrottled, 42, "LOGIN_THROTTLED", false},
    {ErrorCode::kUnknownRecipient, 50, "UNKNOWN_RECIPIENT", false},
    {ErrorCode::kSelfSend, 51, "SELF_SEND", false},
    {ErrorCode::kQueueFull, 52, "QUEUE_FULL", false},
    {ErrorCode::kRateLimited, 53, "RATE_LIMITED", false},
    {ErrorCode::kClientIdReused, 54, "CLIENT_ID_REUSED", false},
    {ErrorCode::kServerBusy, 60, "SERVER_BUSY", true},
    {ErrorCode::kInternal, 61, "INTERNAL", false},
};

TEST(StatusTest, ErrorCodesHaveTheProtocolValuesNamesAndSeverity) {
  for (const CodeRow& row : kErrorCodes) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(static_cast<std::uint16_t>(row.code), row.wire);
    EXPECT_EQ(ErrorCodeName(row.code), row.name);
    EXPECT_EQ(IsFatal(row.code), row.fatal);
    EXPECT_TRUE(IsKnownErrorCode(row.wire));
    EXPECT_EQ(Status(row.code, "x").fatal(), row.fatal);
  }
}

// Codes a client reports about its own connection; they never travel in an ERROR frame.
const CodeRow kLocalCodes[] = {
    {ErrorCode::kConnectionFailed, 1000, "CONNECTION_FAILED", false},
    {ErrorCode::kDisconnected, 1001, "DISCONNECTED", false},
    {ErrorCode::kTimeout, 1002, "TIMEOUT", false},
    {ErrorCode::kTlsFailed, 1003, "TLS_FAILED", false},
};

TEST(StatusTest, OnlyListedValuesAreKnownErrorCodes) {
  std::set<std::uint16_t> listed;
  for (const CodeRow& row : kErrorCodes) listed.insert(row.wire);
  std::set<std::uint16_t> local;
  for (const CodeRow& row : kLocalCodes) local.insert(row.wire);
  for (std::uint32_t value = 0; value <= 0xFFFF; ++value) {
    const auto wire = static_cast<std::uint16_t>(value);
    ASSERT_EQ(IsKnownErrorCode(wire), listed.count(wire) == 1) << value;
    if (listed.count(wire) == 0 && local.count(wire) == 0 && wire != 0) {
      ASSERT_EQ(ErrorCodeName(static_cast<ErrorCode>(wire)), "UNKNOWN") << value;
      ASSERT_FALSE(IsFatal(static_cast<ErrorCode>(wire))) << value;
    }
  }
}

TEST(StatusTest, LocalCodesAreNamedButNeverEncodedOrDecoded) {
  for (const CodeRow& row : kLocalCodes) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(static_cast<std::uint16_t>(row.code), row.wire);
    EXPECT_EQ(ErrorCodeName(row.code), row.name);
    EXPECT_FALSE(IsKnownErrorCode(row.wire));
    Bytes out;
    EXPECT_EQ(EncodeFrame(Frame{1, Error{row.code, "x"}}, out).code(), ErrorCode::kMalformedBody);
    EXPECT_TRUE(out.empty());
    const DecodeResult result =
        DecodeFrame(RawFrame(MessageType::kError, 1, Body().U16(row.wire).Str("x")));
    EXPECT_EQ(result.status.code(), ErrorCode::kMalformedBody);
  }
}

TEST(StatusTest, DefaultIsOkAndNotFatal) {
  const Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.code(), ErrorCode::kOk);
  EXPECT_FALSE(ok.fatal());
  EXPECT_EQ(ok.ToString(), "OK");
  EXPECT_EQ(ok, Status::Ok());
  EXPECT_EQ(ErrorCodeName(ErrorCode::kOk), "OK");
  EXPECT_FALSE(IsKnownErrorCode(0));
}

TEST(StatusTest, ToStringNamesTheCodeAndMessage) {
  const Status status(ErrorCode::kMalformedBody, "body ends inside field 'text'");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.ToString(), "MALFORMED_BODY: body ends inside field 'text'");
  EXPECT_NE(status, Status(ErrorCode::kMalformedBody, "other"));
}

TEST(ResultTest, HoldsAValueOrAStatus) {
  const Result<int> value(42);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 42);
  EXPECT_TRUE(value.status().ok());

  const Result<int> error(Status(ErrorCode::kAuthFailed, "no"));
  EXPECT_FALSE(error.ok());
  EXPECT_EQ(error.status(), Status(ErrorCode::kAuthFailed, "no"));
}

TEST(MessageTypeTest, NamesAndDirectionsFollowTheTypeRanges) {
  const std::vector<std::string> names = {"HELLO",
                                          "CREATE_ACCOUNT",
                                          "LOGIN",
                                          "LOGOUT",
                                          "LIST_ACCOUNTS",
                                          "SEND",
                                          "FETCH_UNDELIVERED",
                                          "ACK",
                                          "DELETE_ACCOUNT",
                                          "PING",
                                          "HELLO_OK",
                                          "OK",
                                          "LOGIN_OK",
                                          "ACCOUNT_LIST",
                                          "SEND_OK",
                                          "MESSAGE_BATCH",
                                          "CONFIRM_REQUIRED",
                                          "PONG",
                                          "ERROR",
                                          "DELIVER",
                                          "SESSION_ENDED"};
  const std::vector<unsigned> wires = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                       0x08, 0x09, 0x0A, 0x41, 0x42, 0x43, 0x44,
                                       0x45, 0x46, 0x47, 0x48, 0x7F, 0x81, 0x82};
  const std::vector<Frame> frames = OneFrameOfEachType();
  ASSERT_EQ(names.size(), frames.size());
  ASSERT_EQ(wires.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const MessageType type = TypeOf(frames[i].message);
    const std::string& name = names[i];
    const auto wire = static_cast<std::uint8_t>(type);
    SCOPED_TRACE(name);
    EXPECT_EQ(wire, wires[i]);
    EXPECT_EQ(MessageTypeName(type), name);
    EXPECT_EQ(IsRequest(type), wire >= 0x01 && wire <= 0x3F);
    EXPECT_EQ(IsPush(type), wire >= 0x80 && wire <= 0xBF);
    EXPECT_TRUE(IsRequest(type) || IsPush(type) || (wire >= 0x40 && wire <= 0x7F));
  }
  EXPECT_EQ(MessageTypeName(static_cast<MessageType>(0x00)), "UNKNOWN");
  EXPECT_EQ(MessageTypeName(static_cast<MessageType>(0x83)), "UNKNOWN");
}

// ---- rules.h ----

TEST(CheckUsernameTest, AcceptsOneToThirtyTwoAllowedCharacters) {
  for (const std::string& name : std::vector<std::string>{
           "a", "Z", "7", "alice", "Alice.Smith", "bob_2", "x-y", "0.-_", "a..b",
           std::string(kMaxUsernameBytes, 'a'), "A" + std::string(kMaxUsernameBytes - 1, '-')}) {
    EXPECT_TRUE(CheckUsername(name).ok()) << name;
  }
}

TEST(CheckUsernameTest, RejectsEmptyAndOverlongNames) {
  for (const std::string& name : {std::string(), std::string(kMaxUsernameBytes + 1, 'a')}) {
    const Status status = CheckUsername(name);
    EXPECT_EQ(status.code(), ErrorCode::kInvalidUsername) << name.size();
    EXPECT_FALSE(status.message().empty());
  }
}

TEST(CheckUsernameTest, RejectsNamesNotStartingWithLetterOrDigit) {
  for (const std::string_view name : {".alice", "_alice", "-alice", ".", "_", "-"}) {
    EXPECT_EQ(CheckUsername(name).code(), ErrorCode::kInvalidUsername) << name;
  }
}

TEST(CheckUsernameTest, RejectsGlobMetacharactersSpacesAndOtherPunctuation) {
  for (const std::string& name :
       std::vector<std::string>{"al*ce", "al?ce", "al[i]ce", "a!", "*", "?", "[abc]", "al ice",
                                " alice", "alice ", "al@ice", "al/ice", "al\\ice", "al:ice",
                                "al\tice", "al+ice", std::string("al\0ce", 5)}) {
    EXPECT_EQ(CheckUsername(name).code(), ErrorCode::kInvalidUsername) << name;
  }
}

TEST(CheckUsernameTest, RejectsNonAscii) {
  for (const std::string_view name : {"j\xC3\xB6rg", "\xC3\xA9mile", "caf\xC3\xA9", "\xE2\x82\xAC",
                                      "bob\xF0\x9F\x91\x8B", "a\xFF"}) {
    EXPECT_EQ(CheckUsername(name).code(), ErrorCode::kInvalidUsername) << name;
  }
}

TEST(CheckPasswordTest, AcceptsEightTo256BytesOfUtf8) {
  const std::string four_byte = "\xF0\x9F\x94\x91";  // U+1F511, 4 bytes.
  std::string max_multibyte;
  for (std::size_t i = 0; i < kMaxPasswordBytes / 4; ++i) max_multibyte += four_byte;
  for (const std::string& password :
       {std::string(kMinPasswordBytes, 'p'), std::string(kMaxPasswordBytes, 'p'),
        four_byte + four_byte, std::string("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"), max_multibyte,
        std::string("pass word"), std::string("pass\0word", 9)}) {
    EXPECT_TRUE(CheckPassword(password).ok()) << password.size() << " bytes";
  }
}

TEST(CheckPasswordTest, CountsBytesNotCharacters) {
  // Seven bytes in four characters is too short; 257 bytes in 65 characters too long.
  const std::string four_byte = "\xF0\x9F\x94\x91";
  std::string over;
  for (std::size_t i = 0; i < kMaxPasswordBytes / 4; ++i) over += four_byte;
  over += "p";
  for (const std::string& password :
       {std::string("\xC3\xA9\xC3\xA9\xC3\xA9p"), over, std::string(), std::string(7, 'p'),
        std::string(kMaxPasswordBytes + 1, 'p')}) {
    EXPECT_EQ(CheckPassword(password).code(), ErrorCode::kInvalidPassword)
        << password.size() << " bytes";
  }
}

TEST(CheckPasswordTest, RejectsInvalidUtf8OfAValidLength) {
  for (const Utf8Case& c : InvalidUtf8Cases()) {
    EXPECT_EQ(CheckPassword("password" + c.bytes).code(), ErrorCode::kInvalidPassword) << c.what;
  }
}

TEST(CheckTextTest, AcceptsOneTo4096BytesOfUtf8) {
  std::string max_multibyte;
  while (max_multibyte.size() + 3 <= kMaxTextBytes) max_multibyte += "\xE2\x82\xAC";
  max_multibyte.append(kMaxTextBytes - max_multibyte.size(), 'x');
  for (const std::string& text : {std::string("x"), std::string("\xF0\x9F\x91\x8B"),
                                  std::string(kMaxTextBytes, 'x'), max_multibyte}) {
    EXPECT_TRUE(CheckText(text).ok()) << text.size() << " bytes";
  }
}

TEST(CheckTextTest, RejectsEmptyOverlongAndInvalidUtf8) {
  EXPECT_EQ(CheckText("").code(), ErrorCode::kInvalidText);
  EXPECT_EQ(CheckText(std::string(kMaxTextBytes + 1, 'x')).code(), ErrorCode::kInvalidText);
  // 4097 bytes made of multi-byte characters: the limit is in bytes.
  std::string over = std::string(kMaxTextBytes - 1, 'x') + "\xC3\xA9";
  EXPECT_EQ(CheckText(over).code(), ErrorCode::kInvalidText);
  for (const Utf8Case& c : InvalidUtf8Cases()) {
    EXPECT_EQ(CheckText("hi " + c.bytes).code(), ErrorCode::kInvalidText) << c.what;
  }
}

TEST(CanonicalUsernameTest, LowerCasesAsciiLettersOnly) {
  EXPECT_EQ(CanonicalUsername("Alice"), "alice");
  EXPECT_EQ(CanonicalUsername("ALICE.Smith_9-X"), "alice.smith_9-x");
  EXPECT_EQ(CanonicalUsername("bob"), "bob");
  EXPECT_EQ(CanonicalUsername("0.-_"), "0.-_");
  EXPECT_EQ(CanonicalUsername("AZaz09"), "azaz09");
}

TEST(CanonicalUsernameTest, MakesCaseVariantsOneKeyAndKeepsOthersApart) {
  EXPECT_EQ(CanonicalUsername("Alice"), CanonicalUsername("aLiCe"));
  EXPECT_NE(CanonicalUsername("alice"), CanonicalUsername("alice_"));
  EXPECT_NE(CanonicalUsername("a.b"), CanonicalUsername("a-b"));
}

}  // namespace
}  // namespace messenger

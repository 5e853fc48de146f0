// Properties of the codec over arbitrary messages, byte strings and chunk splits (RapidCheck).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "generators.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/rules.h"
#include "messenger/codec/status.h"

namespace messenger {
namespace {

using testgen::GenFrame;
using testgen::GenFrameOfIndex;
using testgen::GenUnsigned;
using testgen::UniformInRange;

constexpr std::size_t kMessageTypeCount = std::variant_size_v<Message>;

void PutU32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

std::uint32_t GetU32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

// The encoding of a frame the generators promise is valid; a refusal is a bug in the generators.
Bytes EncodeValid(const Frame& frame) {
  Bytes bytes;
  const Status status = EncodeFrame(frame, bytes);
  if (!status.ok()) throw std::logic_error("generated frame does not encode: " + status.ToString());
  return bytes;
}

// Prefixes `frame` (header + body) with its big-endian length.
Bytes WithLengthPrefix(const Bytes& frame) {
  Bytes out;
  PutU32(out, static_cast<std::uint32_t>(frame.size()));
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

template <std::size_t... I>
std::vector<std::uint8_t> TypeBytesOf(std::index_sequence<I...>) {
  return {static_cast<std::uint8_t>(std::variant_alternative_t<I, Message>::kType)...};
}

// The wire value of every message type, in variant order.
std::vector<std::uint8_t> KnownTypeBytes() {
  return TypeBytesOf(std::make_index_sequence<kMessageTypeCount>());
}

// Positions at which to cut a byte string of `size` bytes: random positions, or every k bytes
// (k = 1 feeds byte by byte).
rc::Gen<std::vector<std::size_t>> GenCuts(std::size_t size) {
  return rc::gen::oneOf(
      rc::gen::container<std::vector<std::size_t>>(UniformInRange<std::size_t>(0, size + 1)),
      rc::gen::map(rc::gen::inRange<std::size_t>(1, 65), [size](std::size_t step) {
        std::vector<std::size_t> cuts;
        for (std::size_t at = step; at < size; at += step) cuts.push_back(at);
        return cuts;
      }));
}

// Feeds `bytes` to `decoder` in pieces cut at `cuts`, taking every result after each piece.
std::vector<DecodeResult> FeedInPieces(FrameDecoder& decoder, const Bytes& bytes,
                                       std::vector<std::size_t> cuts) {
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(bytes.size());
  std::vector<DecodeResult> results;
  std::size_t start = 0;
  for (const std::size_t cut : cuts) {
    decoder.Feed(std::span<const std::uint8_t>(bytes).subspan(start, cut - start));
    start = cut;
    while (std::optional<DecodeResult> result = decoder.Next()) results.push_back(*result);
  }
  return results;
}

// Frame limits worth trying: the protocol's named ones, the smallest possible, and any other.
rc::Gen<std::uint32_t> GenLimit(std::uint32_t max) {
  return rc::gen::weightedOneOf<std::uint32_t>({
      {1, rc::gen::element<std::uint32_t>(kFrameHeaderSize, kMaxPreloginFrameSize, kMinMaxFrameSize,
                                          kDefaultMaxFrameSize, max)},
      {2, UniformInRange<std::uint32_t>(kFrameHeaderSize, 4096)},
      {1, UniformInRange<std::uint32_t>(kFrameHeaderSize, max)},
  });
}

// What FrameDecoder must produce for `stream` however it is cut, written as plainly as possible:
// length, limit check, header check, then DecodeFrame on exactly that many bytes.
std::vector<DecodeResult> ReferenceDecode(const Bytes& stream, std::uint32_t limit) {
  std::vector<DecodeResult> results;
  std::size_t pos = 0;
  while (stream.size() - pos >= kLengthPrefixSize) {
    const std::uint32_t length = GetU32(stream.data() + pos);
    if (length > limit) {
      results.push_back({0, Status(ErrorCode::kFrameTooLarge, ""), Message{}});
      break;
    }
    if (length < kFrameHeaderSize) {
      results.push_back({0, Status(ErrorCode::kMalformedFrame, ""), Message{}});
      break;
    }
    if (stream.size() - pos - kLengthPrefixSize < length) break;
    results.push_back(DecodeFrame(
        std::span<const std::uint8_t>(stream).subspan(pos + kLengthPrefixSize, length)));
    pos += kLengthPrefixSize + length;
  }
  return results;
}

// One piece of a hostile stream: a valid frame, a well-delimited frame with a random header and
// body, a frame whose length is below the header size, or raw bytes.
rc::Gen<Bytes> GenStreamPiece() {
  const auto random_bytes = rc::gen::container<Bytes>(rc::gen::arbitrary<std::uint8_t>());
  const auto type_byte =
      rc::gen::oneOf(rc::gen::elementOf(KnownTypeBytes()), rc::gen::arbitrary<std::uint8_t>());
  return rc::gen::weightedOneOf<Bytes>({
      {3, rc::gen::map(GenFrame(), EncodeValid)},
      {3, rc::gen::apply(
              [](std::uint8_t type, std::uint32_t request_id, const Bytes& body) {
                Bytes frame{type};
                PutU32(frame, request_id);
                frame.insert(frame.end(), body.begin(), body.end());
                return WithLengthPrefix(frame);
              },
              type_byte, GenUnsigned<std::uint32_t>(), random_bytes)},
      {1, rc::gen::apply(
              [](std::uint32_t length, const Bytes& rest) {
                Bytes out;
                PutU32(out, length);
                out.insert(out.end(), rest.begin(), rest.end());
                return out;
              },
              rc::gen::inRange<std::uint32_t>(0, kFrameHeaderSize), random_bytes)},
      {1, random_bytes},
  });
}

bool IsCodecError(ErrorCode code) {
  return code == ErrorCode::kFrameTooLarge || code == ErrorCode::kMalformedFrame ||
         code == ErrorCode::kUnknownType || code == ErrorCode::kMalformedBody ||
         code == ErrorCode::kInvalidUtf8;
}

// ---- Round trip ----

RC_GTEST_PROP(CodecPropertyTest, DecodeInvertsEncodeForEveryMessageType, (const Frame& frame)) {
  RC_TAG(std::string(MessageTypeName(TypeOf(frame.message))));
  Bytes bytes;
  RC_ASSERT(EncodeFrame(frame, bytes) == Status::Ok());
  RC_ASSERT(bytes.size() >= kLengthPrefixSize + kFrameHeaderSize);
  RC_ASSERT(std::size_t{GetU32(bytes.data())} == bytes.size() - kLengthPrefixSize);
  RC_ASSERT(bytes[kLengthPrefixSize] == static_cast<std::uint8_t>(TypeOf(frame.message)));

  const DecodeResult direct =
      DecodeFrame(std::span<const std::uint8_t>(bytes).subspan(kLengthPrefixSize));
  RC_ASSERT(direct.status == Status::Ok());
  RC_ASSERT(direct.request_id == frame.request_id);
  RC_ASSERT(direct.message == frame.message);

  // Through the stream decoder, with the limit exactly the frame's length.
  FrameDecoder decoder(static_cast<std::uint32_t>(bytes.size() - kLengthPrefixSize));
  decoder.Feed(bytes);
  std::optional<DecodeResult> streamed = decoder.Next();
  RC_ASSERT(streamed.has_value());
  RC_ASSERT(streamed->status == Status::Ok());
  RC_ASSERT((Frame{streamed->request_id, streamed->message}) == frame);
  RC_ASSERT(!decoder.Next().has_value());
  RC_ASSERT(!decoder.failed());
}

RC_GTEST_PROP(FrameDecoderPropertyTest, ChunkSplitsDoNotChangeTheDecodedFrames, ()) {
  const auto count = *rc::gen::inRange<std::size_t>(0, 9);
  const auto frames = *rc::gen::container<std::vector<Frame>>(count, GenFrame());
  Bytes stream;
  for (const Frame& frame : frames) {
    RC_ASSERT(EncodeFrame(frame, stream) == Status::Ok());
  }
  const auto cuts = *GenCuts(stream.size());

  FrameDecoder decoder(kMaxMaxFrameSize);
  const std::vector<DecodeResult> results = FeedInPieces(decoder, stream, cuts);
  RC_ASSERT(results.size() == frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    RC_ASSERT(results[i].status == Status::Ok());
    RC_ASSERT((Frame{results[i].request_id, results[i].message}) == frames[i]);
  }
  RC_ASSERT(!decoder.failed());
}

// ---- Canonical encoding ----

// Header + body bytes that sometimes decode: a known type with a random body, or a valid
// encoding with a few bytes changed, inserted or removed.
rc::Gen<Bytes> GenCandidateFrame() {
  const auto random_body = rc::gen::apply(
      [](std::uint8_t type, std::uint32_t request_id, const Bytes& body) {
        Bytes frame{type};
        PutU32(frame, request_id);
        frame.insert(frame.end(), body.begin(), body.end());
        return frame;
      },
      rc::gen::elementOf(KnownTypeBytes()), GenUnsigned<std::uint32_t>(),
      rc::gen::container<Bytes>(rc::gen::arbitrary<std::uint8_t>()));

  struct Edit {
    int kind;  // 0 replace, 1 insert, 2 erase.
    std::size_t at;
    std::uint8_t value;
  };
  const auto edit = rc::gen::apply(
      [](int kind, std::size_t at, std::uint8_t value) {
        return Edit{kind, at, value};
      },
      rc::gen::inRange(0, 3), rc::gen::arbitrary<std::size_t>(),
      rc::gen::arbitrary<std::uint8_t>());
  const auto edited_valid = rc::gen::apply(
      [](const Frame& frame, const std::vector<Edit>& edits) {
        const Bytes encoded = EncodeValid(frame);
        Bytes bytes(encoded.begin() + kLengthPrefixSize, encoded.end());
        for (const Edit& e : edits) {
          const std::size_t at = e.at % (bytes.size() + 1);
          if (e.kind == 0 && at < bytes.size()) {
            bytes[at] = e.value;
          } else if (e.kind == 1) {
            bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), e.value);
          } else if (at < bytes.size()) {
            bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at));
          }
        }
        return bytes;
      },
      GenFrame(), rc::gen::mapcat(rc::gen::inRange<std::size_t>(1, 4), [edit](std::size_t n) {
        return rc::gen::container<std::vector<Edit>>(n, edit);
      }));

  return rc::gen::oneOf(random_body, edited_valid);
}

// Most candidates fail to decode, so each case tries several to keep the decodable ones many.
RC_GTEST_PROP(CodecPropertyTest, ReencodingADecodedFrameGivesTheSameBytes, ()) {
  const auto candidates = *rc::gen::container<std::vector<Bytes>>(16, GenCandidateFrame());
  for (const Bytes& frame : candidates) {
    const DecodeResult result = DecodeFrame(frame);
    if (!result.status.ok()) continue;
    Bytes reencoded;
    RC_ASSERT(EncodeFrame(Frame{result.request_id, result.message}, reencoded) == Status::Ok());
    RC_ASSERT(reencoded == WithLengthPrefix(frame));
  }
}

// ---- Hostile streams ----

RC_GTEST_PROP(FrameDecoderPropertyTest, ArbitraryBytesInArbitraryChunksMatchTheReference, ()) {
  const auto limit = *GenLimit(kMaxMaxFrameSize);
  const auto pieces = *rc::gen::container<std::vector<Bytes>>(*rc::gen::inRange<std::size_t>(0, 9),
                                                              GenStreamPiece());
  Bytes stream;
  for (const Bytes& piece : pieces) stream.insert(stream.end(), piece.begin(), piece.end());
  const auto cuts = *GenCuts(stream.size());

  FrameDecoder decoder(limit);
  const std::vector<DecodeResult> results = FeedInPieces(decoder, stream, cuts);
  const std::vector<DecodeResult> expected = ReferenceDecode(stream, limit);

  RC_ASSERT(results.size() == expected.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    const DecodeResult& got = results[i];
    RC_ASSERT(got.request_id == expected[i].request_id);
    RC_ASSERT(got.status.code() == expected[i].status.code());
    RC_ASSERT(got.status.ok() || IsCodecError(got.status.code()));
    RC_ASSERT(got.status.ok() || !got.status.message().empty());
    if (got.status.ok()) {
      RC_ASSERT(got.message == expected[i].message);
      Bytes reencoded;
      RC_ASSERT(EncodeFrame(Frame{got.request_id, got.message}, reencoded) == Status::Ok());
    } else if (got.status.fatal()) {
      RC_ASSERT(i + 1 == results.size());  // Nothing follows a fatal error.
      RC_ASSERT(got.request_id == 0u);
    } else {
      RC_ASSERT(got.status == expected[i].status);
    }
  }
  const bool ended_fatally = !results.empty() && results.back().status.fatal();
  RC_ASSERT(decoder.failed() == ended_fatally);

  // Once failed, the stream is dead: more input yields nothing.
  if (ended_fatally) {
    decoder.Feed(*rc::gen::map(GenFrame(), EncodeValid));
    RC_ASSERT(!decoder.Next().has_value());
    RC_ASSERT(decoder.failed());
  }
}

RC_GTEST_PROP(FrameDecoderPropertyTest, RejectsOversizedPrefixAsSoonAsItsFourthByteArrives, ()) {
  const auto limit = *GenLimit(0xFFFFFFFE);
  const auto length = static_cast<std::uint32_t>(
      *UniformInRange<std::uint64_t>(std::uint64_t{limit} + 1, std::uint64_t{1} << 32));
  const auto earlier =
      *rc::gen::container<std::vector<Frame>>(*rc::gen::inRange<std::size_t>(0, 4), GenFrame());
  const auto body = *rc::gen::container<Bytes>(rc::gen::arbitrary<std::uint8_t>());

  FrameDecoder decoder(kMaxMaxFrameSize);
  for (const Frame& frame : earlier) decoder.Feed(EncodeValid(frame));
  decoder.SetMaxFrameSize(limit);  // Applies from the next length prefix on.
  for (const Frame& frame : earlier) {
    std::optional<DecodeResult> result = decoder.Next();
    RC_ASSERT(result.has_value());
    RC_ASSERT((Frame{result->request_id, result->message}) == frame);
  }

  Bytes prefix;
  PutU32(prefix, length);
  for (std::size_t i = 0; i + 1 < kLengthPrefixSize; ++i) {
    decoder.Feed(std::span<const std::uint8_t>(prefix).subspan(i, 1));
    RC_ASSERT(!decoder.failed());
    RC_ASSERT(!decoder.Next().has_value());
  }
  decoder.Feed(std::span<const std::uint8_t>(prefix).subspan(kLengthPrefixSize - 1, 1));
  RC_ASSERT(decoder.failed());
  std::optional<DecodeResult> result = decoder.Next();
  RC_ASSERT(result.has_value());
  RC_ASSERT(result->status.code() == ErrorCode::kFrameTooLarge);
  RC_ASSERT(result->request_id == 0u);
  RC_ASSERT(!decoder.Next().has_value());

  decoder.Feed(body);
  RC_ASSERT(!decoder.Next().has_value());
}

// ---- Describe ----

RC_GTEST_PROP(DescribePropertyTest, IsDeterministicAndSeparatesUnequalFramesOfOneType, ()) {
  const auto index = *UniformInRange<std::size_t>(0, kMessageTypeCount);
  const Frame a = *GenFrameOfIndex(index);
  const Frame b = *GenFrameOfIndex(index);
  const Frame a_copy = a;
  RC_ASSERT(Describe(a) == Describe(a_copy));
  RC_ASSERT((Describe(a) == Describe(b)) == (a == b));
}

// A frame one byte away on the wire is a different frame (or no frame), and Describe must show
// the difference: the near misses random pairs would rarely produce.
RC_GTEST_PROP(DescribePropertyTest, SeparatesFramesOneByteApart, (const Frame& frame)) {
  Bytes bytes = EncodeValid(frame);
  const auto at = *rc::gen::inRange<std::size_t>(kLengthPrefixSize, bytes.size());
  const auto flip = *rc::gen::inRange<int>(1, 256);
  bytes[at] = static_cast<std::uint8_t>(bytes[at] ^ flip);
  const DecodeResult changed =
      DecodeFrame(std::span<const std::uint8_t>(bytes).subspan(kLengthPrefixSize));
  RC_CLASSIFY(changed.status.ok(), "decoded");
  if (!changed.status.ok()) return;
  const Frame other{changed.request_id, changed.message};
  RC_ASSERT(other != frame);  // The encoding is canonical.
  RC_ASSERT(Describe(other) != Describe(frame));
}

// Escaping is what keeps one string field from impersonating the next; random strings would
// almost never hit the forgeries below, so they are spelled out.
TEST(DescribeTest, EscapesQuotesBackslashesAndControlBytes) {
  EXPECT_EQ(Describe(Frame{1, Send{"a\"b", 2, "c\\d\n\x7F\xC3\xA9"}}),
            "SEND #1 recipient=\"a\\\"b\" client_message_id=2 text=\"c\\\\d\\x0A\\x7F\xC3\xA9\"");
}

TEST(DescribeTest, StringContentCannotForgeAFieldBoundary) {
  const Frame forged_quote{1, CreateAccount{"x\" password=\"y", ""}};
  const Frame plain{1, CreateAccount{"x", "y\" password=\""}};
  EXPECT_NE(Describe(forged_quote), Describe(plain));
  const Frame list_forgery{1, AccountList{{"a\",\"b"}, ""}};
  const Frame list_two{1, AccountList{{"a", "b"}, ""}};
  EXPECT_NE(Describe(list_forgery), Describe(list_two));
}

// ---- The generators themselves ----

// The properties above are only as strong as what the generators produce; this pins down that
// they reach every type, every enum value and the string shapes that matter. Fixed seed, so it
// is deterministic.
TEST(GeneratorsTest, ReachEveryMessageTypeEnumValueAndRequestIdShape) {
  rc::Random random(0x5EEDu);
  std::set<std::size_t> indices;
  std::set<Delivery> deliveries;
  std::set<EndReason> reasons;
  bool error_with_id_zero = false;
  bool error_with_id = false;
  bool empty_ack = false;
  bool non_empty_ack = false;
  bool empty_batch = false;
  bool non_empty_batch = false;
  for (int i = 0; i < 2000; ++i) {
    const Frame frame = GenFrame()(random.split(), i % (rc::kNominalSize + 1)).value();
    const MessageType type = TypeOf(frame.message);
    indices.insert(frame.message.index());
    if (IsPush(type)) {
      EXPECT_EQ(frame.request_id, 0u) << Describe(frame);
    } else if (type == MessageType::kError) {
      (frame.request_id == 0 ? error_with_id_zero : error_with_id) = true;
    } else {
      EXPECT_NE(frame.request_id, 0u) << Describe(frame);
    }
    if (const auto* m = std::get_if<SendOk>(&frame.message)) deliveries.insert(m->delivery);
    if (const auto* m = std::get_if<SessionEnded>(&frame.message)) reasons.insert(m->reason);
    if (const auto* m = std::get_if<Ack>(&frame.message)) {
      (m->message_ids.empty() ? empty_ack : non_empty_ack) = true;
    }
    if (const auto* m = std::get_if<MessageBatch>(&frame.message)) {
      (m->messages.empty() ? empty_batch : non_empty_batch) = true;
    }
  }
  EXPECT_EQ(indices.size(), kMessageTypeCount);
  EXPECT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(reasons.size(), 4u);
  EXPECT_TRUE(error_with_id_zero);
  EXPECT_TRUE(error_with_id);
  EXPECT_TRUE(empty_ack && non_empty_ack);
  EXPECT_TRUE(empty_batch && non_empty_batch);

  std::set<ErrorCode> codes;
  for (int i = 0; i < 2000; ++i) codes.insert(testgen::GenErrorCode()(random.split()).value());
  std::size_t known = 0;
  for (std::uint32_t v = 0; v <= 0xFFFF; ++v)
    known += IsKnownErrorCode(static_cast<std::uint16_t>(v));
  EXPECT_EQ(codes.size(), known);
  EXPECT_EQ(codes.count(ErrorCode::kOk), 0u);
}

TEST(GeneratorsTest, StringsAreValidUtf8OfEveryLengthClassWithoutSurrogates) {
  rc::Random random(0xC0DEu);
  bool empty = false;
  bool max_length = false;
  std::set<int> sequence_lengths;
  for (int i = 0; i < 2000; ++i) {
    const std::string s =
        testgen::GenUtf8String()(random.split(), i % (rc::kNominalSize + 1)).value();
    ASSERT_LE(s.size(), testgen::kMaxStringBytes);
    ASSERT_TRUE(IsValidUtf8(s));
    empty |= s.empty();
    max_length |= s.size() == testgen::kMaxStringBytes;
    for (std::size_t k = 0; k < s.size(); ++k) {
      const auto b = static_cast<std::uint8_t>(s[k]);
      // A surrogate's encoding starts ED A0..BF.
      if (b == 0xED) {
        ASSERT_LT(static_cast<std::uint8_t>(s[k + 1]), 0xA0);
      }
      if (b < 0x80) sequence_lengths.insert(1);
      if ((b & 0xE0) == 0xC0) sequence_lengths.insert(2);
      if ((b & 0xF0) == 0xE0) sequence_lengths.insert(3);
      if ((b & 0xF8) == 0xF0) sequence_lengths.insert(4);
    }
  }
  EXPECT_TRUE(empty);
  EXPECT_TRUE(max_length);
  EXPECT_EQ(sequence_lengths, (std::set<int>{1, 2, 3, 4}));
}

}  // namespace
}  // namespace messenger

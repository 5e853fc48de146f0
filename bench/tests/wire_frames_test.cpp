#include "wire_frames.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "bench.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"

namespace messenger::bench {
namespace {

Bytes Encode(const Frame& frame) {
  Bytes out;
  EXPECT_TRUE(EncodeFrame(frame, out).ok());
  return out;
}

TEST(WireFramesTest, SendTemplateCopiesAreCanonicalSendFrames) {
  const std::string text = MakeText(64);
  const SendTemplate send("recipient-7", text);
  Bytes out;
  send.AppendTo(out, 7, 42, 0x0123456789abcdef);
  send.AppendTo(out, 8, 43, 5);

  std::string first = text;
  WriteStamp(first.data(), 0x0123456789abcdef);
  std::string second = text;
  WriteStamp(second.data(), 5);
  Bytes expected = Encode(Frame{7, Send{"recipient-7", 42, first}});
  const Bytes next = Encode(Frame{8, Send{"recipient-7", 43, second}});
  expected.insert(expected.end(), next.begin(), next.end());
  EXPECT_EQ(out, expected);
}

TEST(WireFramesTest, AckAndFetchMatchTheCodec) {
  const std::vector<std::uint64_t> ids = {1, 1001, 0xFFFFFFFFFFFFFFFFull};
  Bytes out;
  AppendAck(out, 3, ids);
  AppendFetch(out, 4, 50);
  AppendAck(out, 5, {});
  Bytes expected = Encode(Frame{3, Ack{ids}});
  for (const Bytes& more : {Encode(Frame{4, FetchUndelivered{50}}), Encode(Frame{5, Ack{}})}) {
    expected.insert(expected.end(), more.begin(), more.end());
  }
  EXPECT_EQ(out, expected);
}

TEST(WireFramesTest, StampRoundTripsAndRejectsNonHex) {
  char text[kStampBytes];
  WriteStamp(text, 1234567890123);
  EXPECT_EQ(ReadStamp(text, sizeof text), 1234567890123);
  text[3] = 'x';
  EXPECT_EQ(ReadStamp(text, sizeof text), -1);
  EXPECT_EQ(ReadStamp(text, kStampBytes - 1), -1);
}

// Feeds `stream` to a FrameBuffer `chunk` bytes at a time and returns the frames it yields.
std::vector<DecodeResult> Split(const Bytes& stream, std::size_t chunk) {
  FrameBuffer buffer(16);
  std::vector<DecodeResult> frames;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    const std::size_t n = std::min(chunk, stream.size() - at);
    const std::span<std::uint8_t> space = buffer.WriteSpace(n);
    std::memcpy(space.data(), stream.data() + at, n);
    buffer.Commit(n);
    FrameView view;
    bool malformed = false;
    while (buffer.Next(view, malformed)) frames.push_back(DecodeFrame(view.frame));
    EXPECT_FALSE(malformed);
  }
  return frames;
}

TEST(WireFramesTest, FrameBufferSplitsAStreamCutAtAnyByte) {
  const StoredMessage message{77, "alice", 1735732800000, std::string(3000, 'm')};
  const std::vector<Frame> frames = {
      Frame{1, SendOk{1001, 1735732800000, Delivery::kDelivered}},
      Frame{0, Deliver{message}},
      Frame{2, MessageBatch{{message, message}, 9}},
      Frame{3, Ok{}},
  };
  Bytes stream;
  for (const Frame& f : frames) {
    const Bytes bytes = Encode(f);
    stream.insert(stream.end(), bytes.begin(), bytes.end());
  }
  for (const std::size_t chunk :
       {std::size_t{1}, std::size_t{7}, std::size_t{100}, stream.size()}) {
    const std::vector<DecodeResult> got = Split(stream, chunk);
    ASSERT_EQ(got.size(), frames.size()) << "chunk " << chunk;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      ASSERT_TRUE(got[i].status.ok());
      EXPECT_EQ((Frame{got[i].request_id, got[i].message}), frames[i]) << "chunk " << chunk;
    }
  }
}

TEST(WireFramesTest, FrameBufferReportsALengthBelowTheHeader) {
  FrameBuffer buffer;
  const std::uint8_t bytes[] = {0, 0, 0, 4, 0x42, 0, 0, 0};
  const std::span<std::uint8_t> space = buffer.WriteSpace(sizeof bytes);
  std::memcpy(space.data(), bytes, sizeof bytes);
  buffer.Commit(sizeof bytes);
  FrameView view;
  bool malformed = false;
  EXPECT_FALSE(buffer.Next(view, malformed));
  EXPECT_TRUE(malformed);
}

std::span<const std::uint8_t> BodyOf(const Bytes& frame) {
  return {frame.data() + kLengthPrefixSize + kFrameHeaderSize,
          frame.size() - kLengthPrefixSize - kFrameHeaderSize};
}

TEST(WireFramesTest, ParsesSendOkDeliverAndBatchAsTheCodecEncodesThem) {
  std::uint64_t id = 0;
  const Bytes send_ok = Encode(Frame{1, SendOk{1001, 5, Delivery::kQueued}});
  ASSERT_TRUE(ParseSendOk(BodyOf(send_ok), id));
  EXPECT_EQ(id, 1001u);

  const StoredMessage first{42, "Bob", 9, "hello"};
  const StoredMessage second{43, "carol", 10, "Grüße"};
  const Bytes deliver = Encode(Frame{0, Deliver{first}});
  MessageView view;
  std::size_t offset = 0;
  ASSERT_TRUE(ParseStoredMessage(BodyOf(deliver), offset, view));
  EXPECT_EQ(offset, BodyOf(deliver).size());
  EXPECT_EQ(view.message_id, 42u);
  EXPECT_EQ(std::string(view.text, view.text_size), "hello");

  const Bytes batch = Encode(Frame{2, MessageBatch{{first, second}, 12}});
  std::vector<std::uint64_t> ids;
  std::vector<std::string> texts;
  std::uint32_t remaining = 0;
  ASSERT_TRUE(ParseMessageBatch(BodyOf(batch), remaining, [&](const MessageView& m) {
    ids.push_back(m.message_id);
    texts.emplace_back(m.text, m.text_size);
  }));
  EXPECT_EQ(ids, (std::vector<std::uint64_t>{42, 43}));
  EXPECT_EQ(texts, (std::vector<std::string>{"hello", "Grüße"}));
  EXPECT_EQ(remaining, 12u);
}

TEST(WireFramesTest, RejectsTruncatedBatches) {
  const Bytes batch = Encode(Frame{2, MessageBatch{{StoredMessage{1, "a", 2, "xyz"}}, 0}});
  const std::span<const std::uint8_t> body = BodyOf(batch);
  std::uint32_t remaining = 0;
  for (std::size_t cut = 0; cut < body.size(); ++cut) {
    EXPECT_FALSE(ParseMessageBatch(body.first(cut), remaining, [](const MessageView&) {}))
        << "cut at " << cut;
  }
}

}  // namespace
}  // namespace messenger::bench

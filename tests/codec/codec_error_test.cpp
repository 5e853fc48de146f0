#include "messenger/codec/codec.h"

#include <gtest/gtest.h>

namespace messenger {
namespace {

TEST(CodecSmokeTest, SendRoundTrips) {
  Frame frame{7, Send{"bob", 42, "hi"}};
  Bytes bytes;
  ASSERT_TRUE(EncodeFrame(frame, bytes).ok());
  FrameDecoder decoder;
  decoder.Feed(bytes);
  auto result = decoder.Next();
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->status.ok()) << result->status.ToString();
  EXPECT_EQ(Frame({result->request_id, result->message}), frame);
  EXPECT_EQ(Describe(frame), "SEND #7 recipient=\"bob\" client_message_id=42 text=\"hi\"");
}

}  // namespace
}  // namespace messenger

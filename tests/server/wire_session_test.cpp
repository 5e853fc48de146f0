// The wire protocol's session logic, driven with bytes and no sockets.
#include "messenger/server/wire_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "fakes.h"
#include "messenger/codec/limits.h"

namespace messenger {
namespace {

using testing::ControlledStore;
using testing::FakeClock;
using testing::FakeHasher;
using testing::MockSink;
using ::testing::NiceMock;

constexpr char kPassword[] = "correct horse";

// Decodes everything in `bytes` (server output never exceeds the default limit).
std::vector<Frame> DecodeAll(const Bytes& bytes) {
  FrameDecoder decoder(kMaxMaxFrameSize);
  decoder.Feed(bytes);
  std::vector<Frame> frames;
  while (auto result = decoder.Next()) {
    EXPECT_TRUE(result->status.ok()) << result->status.ToString();
    frames.push_back({result->request_id, result->message});
  }
  return frames;
}

Bytes Encode(const std::vector<Frame>& frames) {
  Bytes bytes;
  for (const Frame& frame : frames) EXPECT_TRUE(EncodeFrame(frame, bytes).ok());
  return bytes;
}

class WireSessionTest : public ::testing::Test {
 protected:
  WireSessionTest() : messenger_(*store_, hasher_, clock_) { Reconnect(); }

  void Reconnect() {
    session_.reset();
    session_ = std::make_unique<WireSession>(messenger_, sink_, WireOptions{}, now_);
  }

  // Sends `frames` as one chunk; returns the decoded replies. Records whether it stays open.
  std::vector<Frame> Exchange(const std::vector<Frame>& frames) {
    return ExchangeBytes(Encode(frames));
  }
  std::vector<Frame> ExchangeBytes(const Bytes& bytes) {
    Bytes out;
    open_ = session_->OnBytes(bytes, now_, out);
    return DecodeAll(out);
  }
  Frame One(Frame request) {
    std::vector<Frame> replies = Exchange({std::move(request)});
    EXPECT_EQ(replies.size(), 1u);
    return replies.empty() ? Frame{} : replies[0];
  }

  void HelloAndLogin(const std::string& name) {
    ASSERT_EQ(One({1, Hello{kProtocolVersion}}).message.index(), Message(HelloOk{}).index());
    ASSERT_TRUE(messenger_.CreateAccount(name, kPassword).ok());
    ASSERT_TRUE(std::holds_alternative<LoginOk>(One({2, Login{name, kPassword}}).message));
  }

  static ErrorCode CodeOf(const Frame& frame) {
    const auto* error = std::get_if<Error>(&frame.message);
    return error ? error->code : ErrorCode::kOk;
  }

  FakeClock clock_;
  FakeHasher hasher_;
  std::unique_ptr<ControlledStore> store_ = std::make_unique<ControlledStore>();
  Messenger messenger_;
  NiceMock<MockSink> sink_;
  std::unique_ptr<WireSession> session_;
  std::uint64_t now_ = 0;
  bool open_ = true;
};

TEST_F(WireSessionTest, HelloOkAnnouncesTheLimits) {
  const Frame reply = One({9, Hello{kProtocolVersion}});
  EXPECT_EQ(reply.request_id, 9u);
  const auto* ok = std::get_if<HelloOk>(&reply.message);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->protocol_version, kProtocolVersion);
  EXPECT_EQ(ok->max_frame_size, kDefaultMaxFrameSize);
  EXPECT_EQ(ok->max_prelogin_frame_size, kMaxPreloginFrameSize);
  EXPECT_EQ(ok->max_text_bytes, kMaxTextBytes);
  EXPECT_EQ(ok->max_queued_per_user, 10000u);
  EXPECT_TRUE(open_);
}

TEST_F(WireSessionTest, AnythingBeforeHelloIsFatal) {
  const Frame reply = One({5, Ping{1}});
  EXPECT_EQ(reply.request_id, 5u);
  EXPECT_EQ(CodeOf(reply), ErrorCode::kHandshakeRequired);
  EXPECT_FALSE(open_);
  EXPECT_TRUE(Exchange({{6, Hello{kProtocolVersion}}}).empty()) << "closed sessions stay silent";
}

TEST_F(WireSessionTest, BeforeHelloEvenRequestLevelErrorsClose) {
  EXPECT_EQ(CodeOf(One({5, Pong{1}})), ErrorCode::kHandshakeRequired);
  EXPECT_FALSE(open_);
  Reconnect();
  const Bytes unknown_type = {0, 0, 0, 5, 0x3E, 0, 0, 0, 42};
  std::vector<Frame> replies = ExchangeBytes(unknown_type);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(CodeOf(replies[0]), ErrorCode::kUnknownType);
  EXPECT_FALSE(open_);
}

TEST_F(WireSessionTest, ListPagesFitTheFrameLimit) {
  session_.reset();
  WireOptions options;
  options.max_frame_size = kMinMaxFrameSize;
  session_ = std::make_unique<WireSession>(messenger_, sink_, options, now_);
  HelloAndLogin("a");
  for (int i = 0; i < 300; ++i) {
    // Maximum-length names: the worst case for the page size.
    std::string name = std::to_string(1000 + i) + std::string(kMaxUsernameBytes - 4, 'n');
    ASSERT_TRUE(messenger_.CreateAccount(name, kPassword).ok());
  }
  const Frame reply = One({3, ListAccounts{"*", "", kMaxListLimit}});
  const auto* list = std::get_if<AccountList>(&reply.message);
  ASSERT_NE(list, nullptr) << Describe(reply);
  EXPECT_GT(list->usernames.size(), 100u);
  EXPECT_LT(list->usernames.size(), 300u);
  EXPECT_FALSE(list->next_cursor.empty());
  Bytes encoded;
  ASSERT_TRUE(EncodeFrame(reply, encoded).ok());
  EXPECT_LE(encoded.size() - kLengthPrefixSize, kMinMaxFrameSize);
}

TEST_F(WireSessionTest, WrongVersionIsFatal) {
  EXPECT_EQ(CodeOf(One({1, Hello{2}})), ErrorCode::kUnsupportedVersion);
  EXPECT_FALSE(open_);
}

TEST_F(WireSessionTest, RequestLevelErrorsKeepTheConnection) {
  HelloAndLogin("alice");
  Bytes unknown_type = {0, 0, 0, 5, 0x3E, 0, 0, 0, 42};
  std::vector<Frame> replies = ExchangeBytes(unknown_type);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].request_id, 42u);
  EXPECT_EQ(CodeOf(replies[0]), ErrorCode::kUnknownType);
  EXPECT_TRUE(open_);
  EXPECT_EQ(CodeOf(One({43, Hello{kProtocolVersion}})), ErrorCode::kUnexpectedMessage);
  EXPECT_EQ(CodeOf(One({44, Pong{1}})), ErrorCode::kUnexpectedMessage);
  EXPECT_EQ(CodeOf(One({45, Login{"alice", kPassword}})), ErrorCode::kAlreadyLoggedIn);
  EXPECT_TRUE(open_);
  EXPECT_EQ(One({46, Ping{77}}).message, Message(Pong{77}));
}

TEST_F(WireSessionTest, PreLoginFrameLimitAppliesUntilLoginOk) {
  ASSERT_EQ(One({1, Hello{kProtocolVersion}}).request_id, 1u);
  const Frame big{2, Send{"bob", 1, std::string(2000, 'x')}};
  const Frame reply = One(big);
  EXPECT_EQ(reply.request_id, 0u) << "framing errors carry request id 0";
  EXPECT_EQ(CodeOf(reply), ErrorCode::kFrameTooLarge);
  EXPECT_FALSE(open_);

  Reconnect();
  HelloAndLogin("alice");
  ASSERT_TRUE(messenger_.CreateAccount("bob", kPassword).ok());
  EXPECT_TRUE(std::holds_alternative<SendOk>(One(big).message));
  EXPECT_EQ(One({3, Logout{}}).message, Message(Ok{}));
  EXPECT_EQ(CodeOf(One(big)), ErrorCode::kFrameTooLarge) << "limit restored after LOGOUT";
}

TEST_F(WireSessionTest, OperationsOverTheWire) {
  HelloAndLogin("alice");
  ASSERT_TRUE(messenger_.CreateAccount("bob", kPassword).ok());
  EXPECT_EQ(CodeOf(One({10, Send{"alice", 1, "me"}})), ErrorCode::kSelfSend);
  const Frame sent = One({11, Send{"bob", 2, "hi bob"}});
  const auto* ok = std::get_if<SendOk>(&sent.message);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->delivery, Delivery::kQueued);
  EXPECT_EQ(One({12, ListAccounts{"b*", "", 10}}).message, Message(AccountList{{"bob"}, ""}));
  EXPECT_EQ(One({13, DeleteAccount{false}}).message, Message(ConfirmRequired{0}));

  // Pipelined requests are answered in order.
  std::vector<Frame> replies =
      Exchange({{20, Ping{1}}, {21, FetchUndelivered{5}}, {22, Ping{2}}, {23, Logout{}}});
  ASSERT_EQ(replies.size(), 4u);
  for (std::size_t i = 0; i < replies.size(); ++i) EXPECT_EQ(replies[i].request_id, 20 + i);

  Reconnect();
  ASSERT_EQ(One({1, Hello{kProtocolVersion}}).request_id, 1u);
  EXPECT_EQ(One({2, Login{"bob", kPassword}}).message, Message(LoginOk{1}));
  const Frame batch = One({3, FetchUndelivered{10}});
  const auto* messages = std::get_if<MessageBatch>(&batch.message);
  ASSERT_NE(messages, nullptr);
  ASSERT_EQ(messages->messages.size(), 1u);
  EXPECT_EQ(messages->messages[0].text, "hi bob");
  EXPECT_EQ(messages->messages[0].message_id, ok->message_id);
  EXPECT_EQ(One({4, Ack{{ok->message_id}}}).message, Message(Ok{}));
  EXPECT_EQ(One({5, DeleteAccount{true}}).message, Message(Ok{}));
  EXPECT_EQ(CodeOf(One({6, FetchUndelivered{1}})), ErrorCode::kNotLoggedIn);
}

TEST_F(WireSessionTest, PipelinedSendsShareOneStoreWriteAndAreAnsweredInOrder) {
  HelloAndLogin("alice");
  ASSERT_TRUE(messenger_.CreateAccount("bob", kPassword).ok());
  std::vector<Frame> requests;
  for (std::uint32_t i = 0; i < 5; ++i) requests.push_back({20 + i, Send{"bob", 1 + i, "hi"}});
  requests[3] = {23, Send{"alice", 4, "to myself"}};
  requests.push_back({25, Ping{1}});  // Ends the group: the SEND after it is a write of its own.
  requests.push_back({26, Send{"bob", 6, "after the ping"}});

  const std::vector<Frame> replies = Exchange(requests);
  ASSERT_EQ(replies.size(), requests.size());
  std::uint64_t last_id = 0;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    EXPECT_EQ(replies[i].request_id, 20 + i);
    if (i == 3) {
      EXPECT_EQ(CodeOf(replies[i]), ErrorCode::kSelfSend);
    } else if (i == 5) {
      EXPECT_EQ(replies[i].message, Message(Pong{1}));
    } else {
      const auto* ok = std::get_if<SendOk>(&replies[i].message);
      ASSERT_NE(ok, nullptr) << i;
      EXPECT_GT(ok->message_id, last_id);
      last_id = ok->message_id;
    }
  }
  EXPECT_EQ(store_->append_many_sizes(), (std::vector<std::size_t>{4, 1}));
}

TEST_F(WireSessionTest, PipelinedAcksShareOneStoreWriteAndAreAnsweredInOrder) {
  HelloAndLogin("bob");
  ASSERT_TRUE(messenger_.CreateAccount("alice", kPassword).ok());
  const SessionId alice = messenger_.Attach(sink_);
  ASSERT_TRUE(messenger_.Login(alice, "alice", kPassword).ok());
  std::vector<std::uint64_t> ids;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    Result<SendOk> sent = messenger_.Send(alice, {"bob", i, "hi"});
    ASSERT_TRUE(sent.ok());
    ids.push_back(sent->message_id);
  }
  messenger_.Detach(alice);

  // SEND, then a run of three ACKs (one of them too long), then a SEND: three store writes.
  const std::vector<std::uint64_t> too_many(kMaxAckIds + 1, ids[2]);
  const std::vector<Frame> replies = Exchange({{30, Send{"alice", 1, "thanks"}},
                                               {31, Ack{{ids[0]}}},
                                               {32, Ack{too_many}},
                                               {33, Ack{{ids[1], 999999}}},
                                               {34, Send{"alice", 2, "bye"}}});
  ASSERT_EQ(replies.size(), 5u);
  for (std::size_t i = 0; i < replies.size(); ++i) EXPECT_EQ(replies[i].request_id, 30 + i);
  EXPECT_TRUE(std::holds_alternative<SendOk>(replies[0].message));
  EXPECT_EQ(replies[1].message, Message(Ok{}));
  EXPECT_EQ(CodeOf(replies[2]), ErrorCode::kInvalidArgument);
  EXPECT_EQ(replies[3].message, Message(Ok{}));
  EXPECT_TRUE(std::holds_alternative<SendOk>(replies[4].message));
  EXPECT_EQ(store_->ack_calls, 1);
  EXPECT_EQ(store_->append_many_sizes(), (std::vector<std::size_t>{1, 1, 1, 1, 1}));
  Result<std::uint32_t> left = store_->CountMessages("bob");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 1u);
}

TEST_F(WireSessionTest, ARunOfAcksCommitsAtMostOneAcksWorthOfIdsAtOnce) {
  HelloAndLogin("bob");
  const std::vector<std::uint64_t> six_hundred(600, 1);
  const std::vector<Frame> replies =
      Exchange({{1, Ack{six_hundred}}, {2, Ack{six_hundred}}, {3, Ack{{1, 2}}}, {4, Ack{{3}}}});
  ASSERT_EQ(replies.size(), 4u);
  for (const Frame& reply : replies) EXPECT_EQ(reply.message, Message(Ok{}));
  EXPECT_EQ(store_->ack_calls, 2);  // 600, then 600 + 2 + 1.
}

TEST_F(WireSessionTest, AGroupOfPipelinedSendsIsCappedPerStoreWrite) {
  HelloAndLogin("alice");
  ASSERT_TRUE(messenger_.CreateAccount("bob", kPassword).ok());
  const std::size_t cap = WireSession::kMaxRequestsPerCommit;
  std::vector<Frame> requests;
  for (std::uint32_t i = 1; i <= cap + 3; ++i) requests.push_back({i, Send{"bob", i, "hi"}});
  ASSERT_EQ(Exchange(requests).size(), requests.size());
  EXPECT_EQ(store_->append_many_sizes(), (std::vector<std::size_t>{cap, 3}));
}

TEST_F(WireSessionTest, ByteAtATimeGivesTheSameReplies) {
  const Bytes input = Encode({{1, Hello{kProtocolVersion}}, {2, Ping{7}}, {3, Ping{8}}});
  Bytes out;
  for (std::uint8_t byte : input) ASSERT_TRUE(session_->OnBytes({&byte, 1}, now_, out));
  const std::vector<Frame> replies = DecodeAll(out);
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[2], (Frame{3, Pong{8}}));
}

TEST_F(WireSessionTest, LoginTimeoutEndsAnAnonymousConnection) {
  ASSERT_EQ(One({1, Hello{kProtocolVersion}}).request_id, 1u);
  EXPECT_EQ(session_->Deadline(), WireOptions{}.login_timeout_ms);
  Bytes out;
  EXPECT_TRUE(session_->OnTick(WireOptions{}.login_timeout_ms - 1, out));
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(session_->OnTick(WireOptions{}.login_timeout_ms, out));
  const std::vector<Frame> frames = DecodeAll(out);
  ASSERT_EQ(frames.size(), 1u);
  const auto* ended = std::get_if<SessionEnded>(&frames[0].message);
  ASSERT_NE(ended, nullptr);
  EXPECT_EQ(ended->reason, EndReason::kLoginTimeout);
}

TEST_F(WireSessionTest, IdleTimeoutEndsAQuietSessionAndTrafficDefersIt) {
  HelloAndLogin("alice");
  const std::uint64_t idle = WireOptions{}.idle_timeout_ms;
  now_ = idle - 10;
  ASSERT_EQ(One({3, Ping{1}}).message, Message(Pong{1}));
  Bytes out;
  EXPECT_TRUE(session_->OnTick(idle + 10, out)) << "the PING reset the idle clock";
  EXPECT_EQ(session_->Deadline(), now_ + idle);
  EXPECT_FALSE(session_->OnTick(now_ + idle, out));
  const std::vector<Frame> frames = DecodeAll(out);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(std::get<SessionEnded>(frames[0].message).reason, EndReason::kIdleTimeout);
}

TEST_F(WireSessionTest, PartialFramesDoNotDeferTheIdleTimeout) {
  HelloAndLogin("alice");
  const std::uint64_t idle = WireOptions{}.idle_timeout_ms;
  const Bytes ping = Encode({{3, Ping{1}}});
  Bytes out;
  ASSERT_TRUE(session_->OnBytes({ping.data(), ping.size() - 1}, idle - 10, out));
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(session_->OnTick(idle, out)) << "a trickled partial frame must not reset the clock";
  const std::vector<Frame> frames = DecodeAll(out);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(std::get<SessionEnded>(frames[0].message).reason, EndReason::kIdleTimeout);
}

TEST_F(WireSessionTest, DestroyingTheSessionLogsOut) {
  HelloAndLogin("alice");
  const SessionId id = session_->id();
  EXPECT_TRUE(messenger_.IsLoggedIn(id));
  session_.reset();
  EXPECT_FALSE(messenger_.IsLoggedIn(id));
}

}  // namespace
}  // namespace messenger

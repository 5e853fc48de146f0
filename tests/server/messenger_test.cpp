// Unit tests of the core: the in-memory store, a fake clock and hasher, mocked session sinks.
#include "messenger/server/messenger.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fakes.h"
#include "messenger/codec/limits.h"

namespace messenger {
namespace {

using ::testing::_;
using testing::ControlledStore;
using ::testing::ElementsAre;
using testing::FakeClock;
using testing::FakeHasher;
using ::testing::Field;
using testing::MockSink;
using ::testing::NiceMock;
using ::testing::StrictMock;

constexpr char kPassword[] = "correct horse";

std::vector<std::string> Texts(const MessageBatch& batch) {
  std::vector<std::string> texts;
  for (const StoredMessage& m : batch.messages) texts.push_back(m.text);
  return texts;
}

class MessengerTest : public ::testing::Test {
 protected:
  MessengerTest() { Make({}); }

  void Make(MessengerOptions options) {
    messenger_.reset();
    store_ = std::make_unique<ControlledStore>();
    messenger_ = std::make_unique<Messenger>(*store_, hasher_, clock_, options);
  }

  // A connection with a sink that ignores pushes.
  SessionId Connect() { return messenger_->Attach(quiet_sink_); }

  // Creates `name` and logs it in on a new connection.
  SessionId Online(const std::string& name, SessionSink* sink = nullptr) {
    EXPECT_TRUE(messenger_->CreateAccount(name, kPassword).ok());
    const SessionId session = messenger_->Attach(sink ? *sink : quiet_sink_);
    EXPECT_TRUE(messenger_->Login(session, name, kPassword).ok());
    return session;
  }

  Result<SendOk> SendText(SessionId from, const std::string& to, const std::string& text,
                          std::uint64_t client_id = 0) {
    if (client_id == 0) client_id = ++next_client_id_;
    return messenger_->Send(from, {to, client_id, text});
  }

  Result<MessageBatch> Fetch(SessionId session, std::uint16_t limit = 50) {
    return messenger_->FetchUndelivered(session, limit, kDefaultMaxFrameSize);
  }

  FakeClock clock_;
  FakeHasher hasher_;
  NiceMock<MockSink> quiet_sink_;
  std::unique_ptr<ControlledStore> store_;
  std::unique_ptr<Messenger> messenger_;
  std::uint64_t next_client_id_ = 1000;
};

TEST_F(MessengerTest, CreateAccountEnforcesNameAndPasswordRules) {
  EXPECT_EQ(messenger_->CreateAccount("bad name", kPassword).code(), ErrorCode::kInvalidUsername);
  EXPECT_EQ(messenger_->CreateAccount("a*", kPassword).code(), ErrorCode::kInvalidUsername);
  EXPECT_EQ(messenger_->CreateAccount("alice", "short").code(), ErrorCode::kInvalidPassword);
  EXPECT_TRUE(messenger_->CreateAccount("Alice", kPassword).ok());
}

TEST_F(MessengerTest, NamesAreUniqueIgnoringCase) {
  ASSERT_TRUE(messenger_->CreateAccount("Alice", kPassword).ok());
  const int hashes = hasher_.hashes;
  EXPECT_EQ(messenger_->CreateAccount("alice", kPassword).code(), ErrorCode::kUsernameTaken);
  EXPECT_EQ(messenger_->CreateAccount("ALICE", kPassword).code(), ErrorCode::kUsernameTaken);
  EXPECT_EQ(hasher_.hashes, hashes) << "a taken name must not cost a password hash";
}

TEST_F(MessengerTest, LoginReportsUnreadCountAndAcceptsAnyCase) {
  const SessionId alice = Online("Alice");
  ASSERT_TRUE(messenger_->CreateAccount("Bob", kPassword).ok());
  ASSERT_TRUE(SendText(alice, "bob", "one").ok());
  ASSERT_TRUE(SendText(alice, "BOB", "two").ok());
  const SessionId bob = Connect();
  Result<LoginOk> login = messenger_->Login(bob, "bOb", kPassword);
  ASSERT_TRUE(login.ok()) << login.status().ToString();
  EXPECT_EQ(login->unread_count, 2u);
  EXPECT_TRUE(messenger_->IsLoggedIn(bob));
}

TEST_F(MessengerTest, WrongPasswordAndUnknownNameFailAlike) {
  ASSERT_TRUE(messenger_->CreateAccount("alice", kPassword).ok());
  const SessionId session = Connect();
  const Result<LoginOk> wrong = messenger_->Login(session, "alice", "not the password");
  const Result<LoginOk> unknown = messenger_->Login(session, "nobody", "not the password");
  EXPECT_EQ(wrong.status(), unknown.status());
  EXPECT_EQ(wrong.status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ(hasher_.verifies, 2) << "an unknown name must cost a verify too";
  EXPECT_FALSE(messenger_->IsLoggedIn(session));
}

TEST_F(MessengerTest, RepeatedFailuresThrottleTheNameWhetherOrNotItExists) {
  ASSERT_TRUE(messenger_->CreateAccount("alice", kPassword).ok());
  const SessionId session = Connect();
  for (const std::string name : {"alice", "ghost"}) {
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(messenger_->Login(session, name, "wrong password").status().code(),
                ErrorCode::kAuthFailed);
    }
    EXPECT_EQ(messenger_->Login(session, name, kPassword).status().code(),
              ErrorCode::kLoginThrottled);
  }
  clock_.Advance(61 * 1000);
  EXPECT_TRUE(messenger_->Login(session, "alice", kPassword).ok());
}

TEST_F(MessengerTest, SecondLoginTakesOverAndEndsTheFirstSession) {
  ASSERT_TRUE(messenger_->CreateAccount("alice", kPassword).ok());
  StrictMock<MockSink> first_sink;
  const SessionId first = messenger_->Attach(first_sink);
  ASSERT_TRUE(messenger_->Login(first, "alice", kPassword).ok());
  EXPECT_CALL(first_sink, End(EndReason::kTakeover, _));
  const SessionId second = Connect();
  ASSERT_TRUE(messenger_->Login(second, "alice", kPassword).ok());
  EXPECT_FALSE(messenger_->IsLoggedIn(first));
  EXPECT_TRUE(messenger_->IsLoggedIn(second));
  messenger_->Detach(first);
}

TEST_F(MessengerTest, LoginTwiceOnOneSessionIsRefused) {
  const SessionId alice = Online("alice");
  EXPECT_EQ(messenger_->Login(alice, "alice", kPassword).status().code(),
            ErrorCode::kAlreadyLoggedIn);
}

TEST_F(MessengerTest, EveryUserOperationNeedsLogin) {
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  const SessionId session = Connect();
  EXPECT_EQ(SendText(session, "bob", "hi").status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(Fetch(session).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(messenger_->ListAccounts(session, {"*", "", 10}).status().code(),
            ErrorCode::kNotLoggedIn);
  const std::vector<std::uint64_t> ids{1};
  EXPECT_EQ(messenger_->Ack(session, ids).code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(messenger_->DeleteAccount(session, true).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(messenger_->Logout(session).code(), ErrorCode::kNotLoggedIn);
}

TEST_F(MessengerTest, SendToOnlineRecipientPushesAtOnce) {
  StrictMock<MockSink> bob_sink;
  const SessionId alice = Online("Alice");
  const SessionId bob = Online("bob", &bob_sink);
  EXPECT_CALL(bob_sink, Deliver(::testing::AllOf(Field(&StoredMessage::sender, "Alice"),
                                                 Field(&StoredMessage::text, "hello"))));
  Result<SendOk> sent = SendText(alice, "bob", "hello");
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(sent->delivery, Delivery::kDelivered);
  ::testing::Mock::VerifyAndClearExpectations(&bob_sink);
  // Pushed but not ACKed: not fetched again on the same session.
  EXPECT_TRUE(Fetch(bob)->messages.empty());
  messenger_->Detach(bob);
}

// Records pushes from any thread.
class RecordingSink final : public SessionSink {
 public:
  void Deliver(const StoredMessage& message) override {
    std::lock_guard lock(mutex_);
    delivered_.push_back(message);
  }
  void End(EndReason, const std::string&) override {}
  std::vector<StoredMessage> delivered() const {
    std::lock_guard lock(mutex_);
    return delivered_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<StoredMessage> delivered_;
};

TEST_F(MessengerTest, PushesToOneRecipientLeaveInIdOrderWhenSendsFinishOutOfOrder) {
  RecordingSink bob_sink;
  const SessionId alice = Online("alice");
  const SessionId carol = Online("carol");
  const SessionId bob = Online("bob", &bob_sink);

  store_->HoldAppendsOf("first");  // Committed with the smaller id, then delayed.
  std::thread first_sender([&] { EXPECT_TRUE(SendText(alice, "bob", "first").ok()); });
  store_->AwaitHeld();
  Result<SendOk> second = SendText(carol, "bob", "second");
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(bob_sink.delivered().empty()) << "pushed ahead of a smaller id still in flight";

  store_->Release();
  first_sender.join();
  const std::vector<StoredMessage> delivered = bob_sink.delivered();
  ASSERT_EQ(delivered.size(), 2u);
  EXPECT_EQ(delivered[0].text, "first");
  EXPECT_EQ(delivered[1].text, "second");
  EXPECT_LT(delivered[0].message_id, delivered[1].message_id);
  messenger_->Detach(bob);
}

TEST_F(MessengerTest, HeldSendDoesNotDelayPushesToOtherRecipients) {
  RecordingSink bob_sink;
  RecordingSink dave_sink;
  const SessionId alice = Online("alice");
  const SessionId carol = Online("carol");
  const SessionId bob = Online("bob", &bob_sink);
  const SessionId dave = Online("dave", &dave_sink);

  store_->HoldAppendsOf("slow");
  std::thread slow_sender([&] { EXPECT_TRUE(SendText(alice, "bob", "slow").ok()); });
  store_->AwaitHeld();
  ASSERT_TRUE(SendText(carol, "dave", "quick").ok());
  EXPECT_EQ(dave_sink.delivered().size(), 1u);
  store_->Release();
  slow_sender.join();
  EXPECT_EQ(bob_sink.delivered().size(), 1u);
  messenger_->Detach(bob);
  messenger_->Detach(dave);
}

TEST_F(MessengerTest, AFetchOvertakenByAnotherFetchAndItsAckReturnsNothingTwice) {
  // gRPC lets one session run FETCH_UNDELIVERED calls concurrently, ACK in between.
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  ASSERT_TRUE(SendText(alice, "bob", "one").ok());
  ASSERT_TRUE(SendText(alice, "bob", "two").ok());
  const SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());

  store_->HoldNextList();  // The slow fetch has read "one" and "two" and waits.
  Result<MessageBatch> slow = Status(ErrorCode::kInternal, "not run");
  std::thread slow_fetch([&] { slow = Fetch(bob); });
  store_->AwaitHeld();
  Result<MessageBatch> quick = Fetch(bob);
  ASSERT_TRUE(quick.ok());
  ASSERT_THAT(Texts(*quick), ElementsAre("one", "two"));
  const std::vector<std::uint64_t> ids{quick->messages[0].message_id,
                                       quick->messages[1].message_id};
  ASSERT_TRUE(messenger_->Ack(bob, ids).ok());
  store_->Release();
  slow_fetch.join();
  ASSERT_TRUE(slow.ok());
  EXPECT_TRUE(slow->messages.empty()) << "handed out by the other fetch and already acknowledged";
}

TEST_F(MessengerTest, FailedFetchLeavesTheSessionUnchanged) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  ASSERT_TRUE(SendText(alice, "bob", "one").ok());
  ASSERT_TRUE(SendText(alice, "bob", "two").ok());
  const SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());

  store_->fail_reads = true;
  EXPECT_EQ(Fetch(bob).status().code(), ErrorCode::kInternal);
  store_->fail_reads = false;
  EXPECT_THAT(Texts(*Fetch(bob)), ElementsAre("one", "two")) << "nothing was marked handed";
}

TEST_F(MessengerTest, FailedLoginLeavesTheSessionLoggedOut) {
  RecordingSink alice_sink;
  ASSERT_TRUE(messenger_->CreateAccount("alice", kPassword).ok());
  const SessionId bob = Online("bob");
  const SessionId session = messenger_->Attach(alice_sink);

  store_->fail_reads = true;
  EXPECT_EQ(messenger_->Login(session, "alice", kPassword).status().code(), ErrorCode::kInternal);
  store_->fail_reads = false;
  EXPECT_FALSE(messenger_->IsLoggedIn(session));
  Result<SendOk> sent = SendText(bob, "alice", "hello");
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(sent->delivery, Delivery::kQueued) << "alice must not count as online";
  EXPECT_TRUE(alice_sink.delivered().empty());
  Result<LoginOk> retry = messenger_->Login(session, "alice", kPassword);
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_EQ(retry->unread_count, 1u);
  messenger_->Detach(session);
}

TEST_F(MessengerTest, FailedLoginDoesNotTakeOverTheUsersOtherSession) {
  StrictMock<MockSink> first_sink;  // Any End() would fail the test.
  ASSERT_TRUE(messenger_->CreateAccount("alice", kPassword).ok());
  const SessionId first = messenger_->Attach(first_sink);
  ASSERT_TRUE(messenger_->Login(first, "alice", kPassword).ok());
  const SessionId second = Connect();
  store_->fail_reads = true;
  EXPECT_EQ(messenger_->Login(second, "alice", kPassword).status().code(), ErrorCode::kInternal);
  store_->fail_reads = false;
  EXPECT_TRUE(messenger_->IsLoggedIn(first));
  EXPECT_FALSE(messenger_->IsLoggedIn(second));
  messenger_->Detach(first);
}

TEST_F(MessengerTest, SendToOfflineRecipientIsQueuedAndFetchedOldestFirst) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  for (const char* text : {"one", "two", "three"}) {
    Result<SendOk> sent = SendText(alice, "bob", text);
    ASSERT_TRUE(sent.ok());
    EXPECT_EQ(sent->delivery, Delivery::kQueued);
  }
  const SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());
  Result<MessageBatch> first = Fetch(bob, 2);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(Texts(*first), ElementsAre("one", "two"));
  EXPECT_EQ(first->remaining, 1u);
  EXPECT_EQ(first->messages[0].sender, "alice");
  EXPECT_LT(first->messages[0].message_id, first->messages[1].message_id);
  Result<MessageBatch> second = Fetch(bob, 2);
  EXPECT_THAT(Texts(*second), ElementsAre("three"));
  EXPECT_EQ(second->remaining, 0u);
}

TEST_F(MessengerTest, UnackedMessagesAreRedeliveredAfterTheSessionEnds) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  ASSERT_TRUE(SendText(alice, "bob", "one").ok());
  ASSERT_TRUE(SendText(alice, "bob", "two").ok());
  SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());
  Result<MessageBatch> batch = Fetch(bob);
  ASSERT_EQ(batch->messages.size(), 2u);
  const std::vector<std::uint64_t> ack{batch->messages[0].message_id};
  ASSERT_TRUE(messenger_->Ack(bob, ack).ok());
  messenger_->Detach(bob);  // Dropped before ACKing "two".

  bob = Connect();
  Result<LoginOk> login = messenger_->Login(bob, "bob", kPassword);
  EXPECT_EQ(login->unread_count, 1u);
  EXPECT_THAT(Texts(*Fetch(bob)), ElementsAre("two"));
}

TEST_F(MessengerTest, AckIgnoresOtherUsersMessagesAndUnknownIds) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  ASSERT_TRUE(messenger_->CreateAccount("carol", kPassword).ok());
  const std::uint64_t to_bob = SendText(alice, "bob", "for bob")->message_id;
  SendText(alice, "carol", "for carol");
  const SessionId carol = Connect();
  ASSERT_TRUE(messenger_->Login(carol, "carol", kPassword).ok());
  const std::vector<std::uint64_t> ids{to_bob, 999999};
  EXPECT_TRUE(messenger_->Ack(carol, ids).ok());
  const SessionId bob = Connect();
  EXPECT_EQ(messenger_->Login(bob, "bob", kPassword)->unread_count, 1u);
  const std::vector<std::uint64_t> too_many(kMaxAckIds + 1, 1);
  EXPECT_EQ(messenger_->Ack(bob, too_many).code(), ErrorCode::kInvalidArgument);
}

TEST_F(MessengerTest, SendRefusesSelfUnknownAndBadText) {
  const SessionId alice = Online("alice");
  EXPECT_EQ(SendText(alice, "ALICE", "hi").status().code(), ErrorCode::kSelfSend);
  EXPECT_EQ(SendText(alice, "nobody", "hi").status().code(), ErrorCode::kUnknownRecipient);
  EXPECT_EQ(SendText(alice, "not a name", "hi").status().code(), ErrorCode::kUnknownRecipient);
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  EXPECT_EQ(SendText(alice, "bob", "").status().code(), ErrorCode::kInvalidText);
  EXPECT_EQ(SendText(alice, "bob", std::string(kMaxTextBytes + 1, 'x')).status().code(),
            ErrorCode::kInvalidText);
  EXPECT_TRUE(SendText(alice, "bob", std::string(kMaxTextBytes, 'x')).ok());
}

TEST_F(MessengerTest, SendManyAnswersEachInTurnWithOneStoreWriteAndPushesInIdOrder) {
  Make({.send_rate_per_second = 10, .send_burst = 5});
  RecordingSink bob_sink;
  const SessionId alice = Online("alice");
  const SessionId bob = Online("bob", &bob_sink);
  const std::vector<messenger::Send> requests = {
      {"bob", 1, "one"},   {"Alice", 2, "to myself"}, {"nobody", 3, "lost"},
      {"bob", 4, ""},      {"BOB", 5, "two"},         {"bob", 1, "one"},  // A retry.
      {"bob", 6, "three"},
  };
  const std::vector<Result<SendOk>> results = messenger_->SendMany(alice, requests);
  ASSERT_EQ(results.size(), requests.size());
  ASSERT_TRUE(results[0].ok()) << results[0].status().ToString();
  EXPECT_EQ(results[0]->delivery, Delivery::kDelivered);
  EXPECT_EQ(results[1].status().code(), ErrorCode::kSelfSend);
  EXPECT_EQ(results[2].status(), Status(ErrorCode::kUnknownRecipient, "no user named 'nobody'"));
  EXPECT_EQ(results[3].status().code(), ErrorCode::kInvalidText);
  ASSERT_TRUE(results[4].ok());
  ASSERT_TRUE(results[5].ok());
  EXPECT_EQ(*results[5], *results[0]);
  ASSERT_TRUE(results[6].ok()) << results[6].status().ToString();
  EXPECT_LT(results[0]->message_id, results[4]->message_id);
  EXPECT_LT(results[4]->message_id, results[6]->message_id);

  // The five that passed the checks made without the store (the unknown recipient too) went to
  // it together.
  EXPECT_EQ(store_->append_many_sizes(), (std::vector<std::size_t>{5}));
  const std::vector<StoredMessage> delivered = bob_sink.delivered();
  ASSERT_EQ(delivered.size(), 3u);
  EXPECT_EQ(delivered[0].text, "one");
  EXPECT_EQ(delivered[1].text, "two");
  EXPECT_EQ(delivered[2].text, "three");
  EXPECT_EQ(delivered[2].message_id, results[6]->message_id);
  messenger_->Detach(bob);
}

TEST_F(MessengerTest, SendManyTakesRateTokensForTheWholeGroupBeforeTheStoreAnswers) {
  Make({.send_rate_per_second = 10, .send_burst = 3});
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  ASSERT_TRUE(SendText(alice, "bob", "one", 1).ok());
  const std::vector<messenger::Send> requests = {
      {"bob", 1, "one"}, {"bob", 2, "two"}, {"bob", 3, "three"}};
  const std::vector<Result<SendOk>> results = messenger_->SendMany(alice, requests);
  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0].ok());  // The retry holds a token until the store has answered it...
  ASSERT_TRUE(results[1].ok());
  EXPECT_EQ(results[2].status().code(), ErrorCode::kRateLimited);
  // ...and gives it back then, as a retry costs none.
  EXPECT_TRUE(SendText(alice, "bob", "three", 3).ok());
  EXPECT_EQ(SendText(alice, "bob", "four", 4).status().code(), ErrorCode::kRateLimited);
}

TEST_F(MessengerTest, SendManyBeforeLoginRefusesEveryRequestWithoutTheStore) {
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  const std::vector<messenger::Send> requests = {{"bob", 1, "one"}, {"bob", 2, "two"}};
  const std::vector<Result<SendOk>> results = messenger_->SendMany(Connect(), requests);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(results[1].status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_TRUE(store_->append_many_sizes().empty());
}

TEST_F(MessengerTest, AckManyRemovesEveryValidListInOneStoreWrite) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  std::vector<std::uint64_t> sent;
  for (int i = 0; i < 3; ++i) sent.push_back(SendText(alice, "bob", "m")->message_id);
  const SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());
  ASSERT_EQ(Fetch(bob)->messages.size(), 3u);

  const std::vector<std::uint64_t> too_many(kMaxAckIds + 1, sent[2]);
  const std::vector<std::uint64_t> first = {sent[0]};
  const std::vector<std::uint64_t> second_and_stranger = {sent[1], 999999};
  const std::vector<std::span<const std::uint64_t>> lists = {first, too_many, second_and_stranger};
  const int writes = store_->ack_calls;
  const std::vector<Status> results = messenger_->AckMany(bob, lists);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].ok()) << results[0].ToString();
  EXPECT_EQ(results[1].code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(results[2].ok()) << results[2].ToString();
  EXPECT_EQ(store_->ack_calls - writes, 1);
  // Only the message of the refused list is still stored, and it is still handed to bob.
  Result<std::uint32_t> left = store_->CountMessages("bob");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 1u);
  EXPECT_TRUE(Fetch(bob)->messages.empty());
  messenger_->Detach(bob);
}

TEST_F(MessengerTest, AckManyBeforeLoginRefusesEveryListWithoutTheStore) {
  const std::vector<std::uint64_t> ids = {1, 2};
  const std::vector<std::span<const std::uint64_t>> lists = {ids, ids};
  const std::vector<Status> results = messenger_->AckMany(Connect(), lists);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(results[1].code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(store_->ack_calls, 0);
}

TEST_F(MessengerTest, SendManyWhoseStoreWriteFailsPushesNothingAndGivesTheTokensBack) {
  Make({.send_rate_per_second = 10, .send_burst = 2});
  StrictMock<MockSink> bob_sink;  // No Deliver expected.
  const SessionId alice = Online("alice");
  const SessionId bob = Online("bob", &bob_sink);
  store_->fail_writes = true;
  const std::vector<messenger::Send> requests = {{"bob", 1, "one"}, {"bob", 2, "two"}};
  const std::vector<Result<SendOk>> results = messenger_->SendMany(alice, requests);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status().code(), ErrorCode::kInternal);
  EXPECT_EQ(results[1].status().code(), ErrorCode::kInternal);
  store_->fail_writes = false;
  // Both tokens came back: the burst of two is whole again.
  EXPECT_CALL(bob_sink, Deliver(_)).Times(2);
  EXPECT_TRUE(SendText(alice, "bob", "one", 1).ok());
  EXPECT_TRUE(SendText(alice, "bob", "two", 2).ok());
  messenger_->Detach(bob);
}

TEST_F(MessengerTest, AckManyWhoseStoreWriteFailsKeepsEveryMessage) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  const std::uint64_t id = SendText(alice, "bob", "m")->message_id;
  const SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());
  ASSERT_EQ(Fetch(bob)->messages.size(), 1u);

  store_->fail_writes = true;
  const std::vector<std::uint64_t> one = {id};
  const std::vector<std::uint64_t> too_many(kMaxAckIds + 1, id);
  const std::vector<std::span<const std::uint64_t>> lists = {one, too_many};
  const std::vector<Status> results = messenger_->AckMany(bob, lists);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].code(), ErrorCode::kInternal);
  EXPECT_EQ(results[1].code(), ErrorCode::kInvalidArgument);  // Its own refusal, not the store's.
  store_->fail_writes = false;
  Result<std::uint32_t> left = store_->CountMessages("bob");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 1u);
  // Still handed to this session, so a new session gets it again.
  EXPECT_TRUE(Fetch(bob)->messages.empty());
  messenger_->Detach(bob);
  const SessionId again = Connect();
  EXPECT_EQ(messenger_->Login(again, "bob", kPassword)->unread_count, 1u);
  ASSERT_EQ(Fetch(again)->messages.size(), 1u);
}

TEST_F(MessengerTest, RetriedSendReturnsTheOriginalResultAndStoresOnce) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  Result<SendOk> first = SendText(alice, "bob", "hello", 7);
  clock_.Advance(5000);
  Result<SendOk> retry = SendText(alice, "bob", "hello", 7);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(*retry, *first);
  EXPECT_EQ(SendText(alice, "bob", "different", 7).status().code(), ErrorCode::kClientIdReused);
  const SessionId bob = Connect();
  EXPECT_EQ(messenger_->Login(bob, "bob", kPassword)->unread_count, 1u);
}

TEST_F(MessengerTest, SendRateLimitRefusesBeyondTheBurstAndRecovers) {
  Make({.send_rate_per_second = 10, .send_burst = 3});
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(SendText(alice, "bob", "m", 100 + i).ok());
  EXPECT_EQ(SendText(alice, "bob", "m", 200).status().code(), ErrorCode::kRateLimited);
  // A retry of an accepted SEND is still answered while limited.
  EXPECT_TRUE(SendText(alice, "bob", "m", 100).ok());
  clock_.Advance(100);  // One token at 10/s.
  EXPECT_TRUE(SendText(alice, "bob", "m", 201).ok());
}

TEST_F(MessengerTest, FullRecipientQueueRefusesWithQueueFull) {
  Make({.max_queued_per_user = 2, .send_rate_per_second = 0});
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  ASSERT_TRUE(SendText(alice, "bob", "1").ok());
  ASSERT_TRUE(SendText(alice, "bob", "2").ok());
  EXPECT_EQ(SendText(alice, "bob", "3").status().code(), ErrorCode::kQueueFull);
}

TEST_F(MessengerTest, DeleteWarnsWithTheExactCountThenDeletes) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  ASSERT_TRUE(messenger_->CreateAccount("carol", kPassword).ok());
  SendText(alice, "bob", "1");
  SendText(alice, "bob", "2");
  SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());
  ASSERT_TRUE(SendText(bob, "carol", "from bob").ok());
  EXPECT_EQ(*messenger_->DeleteAccount(bob, false), 2u);
  EXPECT_TRUE(messenger_->IsLoggedIn(bob)) << "the warning changes nothing";
  EXPECT_EQ(*messenger_->DeleteAccount(bob, true), 2u);
  EXPECT_FALSE(messenger_->IsLoggedIn(bob));

  EXPECT_EQ(SendText(alice, "bob", "hello?").status().code(), ErrorCode::kUnknownRecipient);
  EXPECT_EQ(messenger_->CreateAccount("Bob", kPassword).code(), ErrorCode::kUsernameTaken);
  EXPECT_EQ(messenger_->Login(bob, "bob", kPassword).status().code(), ErrorCode::kAuthFailed);
  // What bob sent before leaving still reaches carol, under his name.
  const SessionId carol = Connect();
  ASSERT_TRUE(messenger_->Login(carol, "carol", kPassword).ok());
  Result<MessageBatch> batch = Fetch(carol);
  ASSERT_EQ(batch->messages.size(), 1u);
  EXPECT_EQ(batch->messages[0].sender, "bob");
}

TEST_F(MessengerTest, ListFiltersSortsAndPagesServerSide) {
  const SessionId me = Online("zed");
  for (const char* name : {"alice", "Bob", "bobby", "carol", "dave", "user1", "user2", "userx"}) {
    ASSERT_TRUE(messenger_->CreateAccount(name, kPassword).ok());
  }
  auto list = [&](std::string pattern, std::string cursor, std::uint16_t limit) {
    return messenger_->ListAccounts(me, {std::move(pattern), std::move(cursor), limit});
  };
  EXPECT_THAT(list("b*", "", 10)->usernames, ElementsAre("Bob", "bobby"));
  EXPECT_THAT(list("B?B", "", 10)->usernames, ElementsAre("Bob"));
  EXPECT_THAT(list("user[0-9]", "", 10)->usernames, ElementsAre("user1", "user2"));
  EXPECT_THAT(list("[!abu]*", "", 10)->usernames, ElementsAre("carol", "dave", "zed"));
  EXPECT_TRUE(list("nomatch*", "", 10)->usernames.empty());

  // Paging through everything three at a time visits each name once, in order.
  std::vector<std::string> all;
  std::string cursor;
  int pages = 0;
  do {
    Result<AccountList> page = list("", cursor, 3);
    ASSERT_TRUE(page.ok());
    all.insert(all.end(), page->usernames.begin(), page->usernames.end());
    cursor = page->next_cursor;
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(
      all, ElementsAre("alice", "Bob", "bobby", "carol", "dave", "user1", "user2", "userx", "zed"));

  EXPECT_EQ(list("[ab", "", 10).status().code(), ErrorCode::kInvalidPattern);
  EXPECT_EQ(list("*", "", 0).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(list("*", "Not A Cursor", 5).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(MessengerTest, ListDoesNotShowDeletedAccounts) {
  const SessionId me = Online("me");
  const SessionId gone = Online("gone");
  ASSERT_TRUE(messenger_->DeleteAccount(gone, true).ok());
  EXPECT_THAT(messenger_->ListAccounts(me, {"*", "", 10})->usernames, ElementsAre("me"));
}

TEST_F(MessengerTest, FetchStopsAtTheByteBudgetButReturnsAtLeastOne) {
  const SessionId alice = Online("alice");
  ASSERT_TRUE(messenger_->CreateAccount("bob", kPassword).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(SendText(alice, "bob", std::string(1000, 'x')).ok());
  const SessionId bob = Connect();
  ASSERT_TRUE(messenger_->Login(bob, "bob", kPassword).ok());
  Result<MessageBatch> batch = messenger_->FetchUndelivered(bob, 50, 10);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->messages.size(), 1u);
  EXPECT_EQ(batch->remaining, 2u);
  EXPECT_EQ(messenger_->FetchUndelivered(bob, 0, 1000).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(messenger_->FetchUndelivered(Connect(), 0, 1000).status().code(),
            ErrorCode::kNotLoggedIn)
      << "the session state is checked before the arguments";
}

TEST_F(MessengerTest, ShutdownEndsEverySession) {
  StrictMock<MockSink> a, b;
  const SessionId logged_in = Online("alice", &a);
  const SessionId anonymous = messenger_->Attach(b);
  EXPECT_CALL(a, End(EndReason::kServerShutdown, _));
  EXPECT_CALL(b, End(EndReason::kServerShutdown, _));
  messenger_->Shutdown();
  messenger_->Detach(logged_in);
  messenger_->Detach(anonymous);
}

}  // namespace
}  // namespace messenger

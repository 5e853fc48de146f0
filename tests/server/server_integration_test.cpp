// Drives the real poco_messenger binary over loopback TCP: it is started on port 0, announces the
// bound port on its readiness line, and is stopped with SIGTERM (SIGKILL after a timeout). Every
// wait is bounded; a failing test prints the frames it got, decoded, and the server's log.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "server_harness.h"

namespace messenger::test {
namespace {

class ServerIntegrationTest : public ServerTest {};

TEST_F(ServerIntegrationTest, HelloReportsTheConfiguredLimits) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"max-frame-size", "65536"}, {"max-queued", "500"}}));
  TestClient client;
  ASSERT_TRUE(client.Connect(server.port()));
  const std::optional<Frame> reply = client.Call(Hello{kProtocolVersion});
  ASSERT_TRUE(Is<HelloOk>(reply)) << Show(reply);
  const HelloOk& hello = Get<HelloOk>(reply);
  EXPECT_EQ(hello.protocol_version, kProtocolVersion);
  EXPECT_EQ(hello.max_frame_size, 65536u);
  EXPECT_EQ(hello.max_prelogin_frame_size, kMaxPreloginFrameSize);
  EXPECT_EQ(hello.max_text_bytes, kMaxTextBytes);
  EXPECT_EQ(hello.max_queued_per_user, 500u);
  EXPECT_FALSE(hello.server_name.empty());

  // A second HELLO is a request-level error; an unknown version on a new connection is fatal.
  EXPECT_TRUE(IsError(client.Call(Hello{kProtocolVersion}), ErrorCode::kUnexpectedMessage));
  TestClient future;
  ASSERT_TRUE(future.Connect(server.port()));
  const std::uint32_t id = future.Send(Hello{99});
  const std::optional<Frame> refused = future.WaitResponse(id);
  EXPECT_TRUE(IsError(refused, ErrorCode::kUnsupportedVersion)) << Show(refused);
  EXPECT_TRUE(future.WaitClosed());
}

TEST_F(ServerIntegrationTest, ConfigFileSettingsApplyAndTheCommandLineWins) {
  const std::filesystem::path config = dir_ / "server.properties";
  std::ofstream(config) << "# settings for the test\n"
                           "max-queued = 321\n"
                           "max-frame-size = 9000\n";
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"config", config.string()}, {"max-frame-size", "70000"}}));
  TestClient client;
  ASSERT_TRUE(client.Connect(server.port()));
  const std::optional<Frame> reply = client.Call(Hello{kProtocolVersion});
  ASSERT_TRUE(Is<HelloOk>(reply)) << Show(reply);
  EXPECT_EQ(Get<HelloOk>(reply).max_queued_per_user, 321u);
  EXPECT_EQ(Get<HelloOk>(reply).max_frame_size, 70000u);
}

TEST_F(ServerIntegrationTest, EveryOperationWorksOverTheWire) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  TestClient alice, bob, carol;
  for (TestClient* client : {&alice, &bob, &carol}) {
    ASSERT_TRUE(client->Connect(server.port()));
    ASSERT_TRUE(client->Hello());
  }
  // Requests before login are refused, except CREATE_ACCOUNT, LOGIN and PING.
  EXPECT_TRUE(IsError(alice.Call(Send{"bob", 1, "hi"}), ErrorCode::kNotLoggedIn));
  for (const char* name : {"alice", "bob", "Bobby", "carol"}) ASSERT_TRUE(alice.Create(name));
  EXPECT_TRUE(IsError(alice.Call(CreateAccount{"ALICE", kPassword}), ErrorCode::kUsernameTaken));
  EXPECT_TRUE(IsError(alice.Call(Login{"alice", "wrong password"}), ErrorCode::kAuthFailed));

  std::uint32_t unread = 99;
  ASSERT_TRUE(alice.Login("alice", &unread));
  EXPECT_EQ(unread, 0u);
  EXPECT_TRUE(IsError(alice.Call(Login{"alice", kPassword}), ErrorCode::kAlreadyLoggedIn));

  // LIST_ACCOUNTS: glob, canonical order, paging with an opaque cursor.
  std::optional<Frame> page = alice.Call(ListAccounts{"B*", "", 1});
  ASSERT_TRUE(Is<AccountList>(page)) << Show(page);
  EXPECT_EQ(Get<AccountList>(page).usernames, std::vector<std::string>{"bob"});
  ASSERT_FALSE(Get<AccountList>(page).next_cursor.empty());
  page = alice.Call(ListAccounts{"B*", Get<AccountList>(page).next_cursor, 1});
  ASSERT_TRUE(Is<AccountList>(page)) << Show(page);
  EXPECT_EQ(Get<AccountList>(page).usernames, std::vector<std::string>{"Bobby"});
  EXPECT_TRUE(Get<AccountList>(page).next_cursor.empty());
  page = alice.Call(ListAccounts{"?aro[!x]", "", 10});
  ASSERT_TRUE(Is<AccountList>(page)) << Show(page);
  EXPECT_EQ(Get<AccountList>(page).usernames, std::vector<std::string>{"carol"});
  EXPECT_TRUE(IsError(alice.Call(ListAccounts{"[abc", "", 10}), ErrorCode::kInvalidPattern));

  // Live delivery: bob is online, so the message is pushed to him at once.
  ASSERT_TRUE(bob.Login("BOB"));
  std::optional<Frame> sent = alice.Call(Send{"bob", 1, "hello bob"});
  ASSERT_TRUE(Is<SendOk>(sent)) << Show(sent);
  EXPECT_EQ(Get<SendOk>(sent).delivery, Delivery::kDelivered);
  const std::optional<Frame> push = bob.WaitPush();
  ASSERT_TRUE(Is<Deliver>(push)) << Show(push);
  EXPECT_EQ(push->request_id, 0u);
  EXPECT_EQ(Get<Deliver>(push).message.message_id, Get<SendOk>(sent).message_id);
  EXPECT_EQ(Get<Deliver>(push).message.sender, "alice");
  EXPECT_EQ(Get<Deliver>(push).message.text, "hello bob");
  EXPECT_EQ(Get<Deliver>(push).message.timestamp_ms, Get<SendOk>(sent).timestamp_ms);
  EXPECT_TRUE(Is<Ok>(bob.Call(Ack{{Get<SendOk>(sent).message_id}})));

  // Offline delivery: queued, counted at login, fetched, ACKed.
  sent = alice.Call(Send{"carol", 2, "hello carol"});
  ASSERT_TRUE(Is<SendOk>(sent)) << Show(sent);
  EXPECT_EQ(Get<SendOk>(sent).delivery, Delivery::kQueued);
  EXPECT_TRUE(IsError(alice.Call(Send{"nobody", 3, "hi"}), ErrorCode::kUnknownRecipient));
  EXPECT_TRUE(IsError(alice.Call(Send{"Alice", 4, "hi"}), ErrorCode::kSelfSend));
  ASSERT_TRUE(carol.Login("carol", &unread));
  EXPECT_EQ(unread, 1u);
  std::optional<Frame> batch = carol.Call(FetchUndelivered{10});
  ASSERT_TRUE(Is<MessageBatch>(batch)) << Show(batch);
  ASSERT_EQ(Get<MessageBatch>(batch).messages.size(), 1u);
  EXPECT_EQ(Get<MessageBatch>(batch).messages[0].sender, "alice");
  EXPECT_EQ(Get<MessageBatch>(batch).messages[0].text, "hello carol");
  EXPECT_EQ(Get<MessageBatch>(batch).remaining, 0u);
  EXPECT_TRUE(Is<Ok>(carol.Call(Ack{{Get<SendOk>(sent).message_id}})));
  EXPECT_TRUE(Is<Ok>(carol.Call(Logout{})));
  ASSERT_TRUE(carol.Login("carol", &unread));
  EXPECT_EQ(unread, 0u);

  // DELETE_ACCOUNT: first the count of what would be lost, then the deletion.
  for (std::uint64_t i = 10; i < 12; ++i) {
    ASSERT_TRUE(Is<SendOk>(alice.Call(Send{"bob", i, "unread " + std::to_string(i)})));
  }
  std::optional<Frame> confirm = bob.Call(DeleteAccount{false});
  ASSERT_TRUE(Is<ConfirmRequired>(confirm)) << Show(confirm);
  EXPECT_EQ(Get<ConfirmRequired>(confirm).unread_count, 2u);
  EXPECT_TRUE(Is<Ok>(bob.Call(DeleteAccount{true})));
  EXPECT_TRUE(IsError(bob.Call(ListAccounts{"", "", 10}), ErrorCode::kNotLoggedIn));
  EXPECT_TRUE(IsError(alice.Call(Send{"bob", 20, "hi"}), ErrorCode::kUnknownRecipient));
  EXPECT_TRUE(IsError(bob.Call(CreateAccount{"bob", kPassword}), ErrorCode::kUsernameTaken));

  const std::optional<Frame> pong = alice.Call(Ping{0xFEEDFACECAFEBEEF});
  ASSERT_TRUE(Is<Pong>(pong)) << Show(pong);
  EXPECT_EQ(Get<Pong>(pong).nonce, 0xFEEDFACECAFEBEEFu);
  EXPECT_TRUE(Is<Ok>(alice.Call(Logout{})));
}

TEST_F(ServerIntegrationTest, SecondLoginTakesOverTheFirstConnection) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  TestClient first, second;
  ASSERT_TRUE(first.Connect(server.port()));
  ASSERT_TRUE(second.Connect(server.port()));
  ASSERT_TRUE(first.Hello());
  ASSERT_TRUE(second.Hello());
  ASSERT_TRUE(first.Create("alice"));
  ASSERT_TRUE(first.Login("alice"));
  ASSERT_TRUE(second.Login("Alice"));
  const std::optional<Frame> ended = first.WaitPush();
  ASSERT_TRUE(Is<SessionEnded>(ended)) << Show(ended);
  EXPECT_EQ(Get<SessionEnded>(ended).reason, EndReason::kTakeover);
  EXPECT_TRUE(first.WaitClosed());
  EXPECT_TRUE(Is<Pong>(second.Call(Ping{1})));
}

TEST_F(ServerIntegrationTest, PipelinedRequestsAreAnsweredInOrder) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  TestClient client;
  ASSERT_TRUE(client.Connect(server.port()));
  ASSERT_TRUE(client.Hello());
  // Thousands of requests in one write, before reading any answer.
  constexpr std::uint32_t kRequests = 5000;
  Bytes burst;
  for (std::uint32_t i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(EncodeFrame({1000 + i, Ping{i}}, burst).ok());
  }
  client.SendRaw(burst);
  for (std::uint32_t i = 0; i < kRequests; ++i) {
    const std::optional<Frame> reply = client.WaitResponse(1000 + i);
    ASSERT_TRUE(Is<Pong>(reply)) << "request " << i << ": " << Show(reply);
    ASSERT_EQ(Get<Pong>(reply).nonce, i);
  }
}

TEST_F(ServerIntegrationTest, HundredConcurrentClientsAreAllServed) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  constexpr int kClients = 100;
  std::vector<TestClient> clients(kClients);
  for (TestClient& client : clients) ASSERT_TRUE(client.Connect(server.port()));
  // All connected at once: each is answered while every other one stays open, which a server
  // that queued connections behind a small thread pool would not do.
  std::vector<std::uint32_t> ids;
  for (TestClient& client : clients) ids.push_back(client.Send(Hello{kProtocolVersion}));
  for (int i = 0; i < kClients; ++i) {
    const std::optional<Frame> reply = clients[i].WaitResponse(ids[i]);
    ASSERT_TRUE(Is<HelloOk>(reply)) << "client " << i << ": " << Show(reply);
  }
  for (int i = 0; i < kClients; ++i) ids[i] = clients[i].Send(Ping{static_cast<std::uint64_t>(i)});
  for (int i = 0; i < kClients; ++i) {
    const std::optional<Frame> reply = clients[i].WaitResponse(ids[i]);
    ASSERT_TRUE(Is<Pong>(reply)) << "client " << i << ": " << Show(reply);
    EXPECT_EQ(Get<Pong>(reply).nonce, static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(server.Terminate(), 0);
}

TEST_F(ServerIntegrationTest, ConnectionBeyondTheLimitGetsServerBusyAndOthersKeepWorking) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"max-connections", "4"}}));
  std::vector<TestClient> clients(4);
  for (TestClient& client : clients) {
    ASSERT_TRUE(client.Connect(server.port()));
    ASSERT_TRUE(client.Hello());
  }

  TestClient extra;
  ASSERT_TRUE(extra.Connect(server.port()));
  extra.Send(Hello{kProtocolVersion});
  const std::optional<Frame> busy = extra.WaitResponse(0);
  ASSERT_TRUE(IsError(busy, ErrorCode::kServerBusy)) << Show(busy);
  EXPECT_TRUE(extra.WaitClosed());

  for (TestClient& client : clients) EXPECT_TRUE(Is<Pong>(client.Call(Ping{7})));

  // A freed slot is usable again (once the server has seen the close).
  clients.pop_back();
  bool served = false;
  const SteadyTime deadline = Now() + seconds(5);
  while (!served && Now() < deadline) {
    TestClient again;
    ASSERT_TRUE(again.Connect(server.port()));
    const std::optional<Frame> reply = again.Call(Hello{kProtocolVersion});
    served = Is<HelloOk>(reply);
    if (!served) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(served) << "a connection slot was not released after a client left";
}

TEST_F(ServerIntegrationTest, OversizedLengthPrefixIsFatalBeforeTheBodyArrives) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  TestClient bystander;
  ASSERT_TRUE(bystander.Connect(server.port()));
  ASSERT_TRUE(bystander.Hello());

  TestClient client;
  ASSERT_TRUE(client.Connect(server.port()));
  ASSERT_TRUE(client.Hello());
  // 1 MiB announced, 3 bytes sent: the error must not wait for the body.
  client.SendRaw({0x00, 0x10, 0x00, 0x00, 0x0A, 0x00, 0x00});
  const std::optional<Frame> error = client.WaitResponse(0);
  ASSERT_TRUE(IsError(error, ErrorCode::kFrameTooLarge)) << Show(error);
  EXPECT_TRUE(client.WaitClosed());

  EXPECT_TRUE(Is<Pong>(bystander.Call(Ping{1})));
}

TEST_F(ServerIntegrationTest, BadBodyIsARequestErrorAndTheConnectionStaysUsable) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  TestClient client;
  ASSERT_TRUE(client.Connect(server.port()));
  ASSERT_TRUE(client.Hello());

  client.SendRaw(RawFrame(0x0A, 1000, {0x01, 0x02, 0x03}));  // PING with a truncated nonce.
  std::optional<Frame> reply = client.WaitResponse(1000);
  EXPECT_TRUE(IsError(reply, ErrorCode::kMalformedBody)) << Show(reply);
  client.SendRaw(RawFrame(0x3E, 1001, {}));  // No such request type.
  reply = client.WaitResponse(1001);
  EXPECT_TRUE(IsError(reply, ErrorCode::kUnknownType)) << Show(reply);
  client.SendRaw(RawFrame(0x42, 1002, {}));  // OK is a response, not a request.
  reply = client.WaitResponse(1002);
  EXPECT_TRUE(IsError(reply, ErrorCode::kUnexpectedMessage)) << Show(reply);
  // CREATE_ACCOUNT whose username is not UTF-8.
  client.SendRaw(RawFrame(0x02, 1003, {0x00, 0x02, 0xC3, 0x28, 0x00, 0x00}));
  reply = client.WaitResponse(1003);
  EXPECT_TRUE(IsError(reply, ErrorCode::kInvalidUtf8)) << Show(reply);

  reply = client.Call(Ping{5});
  ASSERT_TRUE(Is<Pong>(reply)) << Show(reply);
  EXPECT_EQ(Get<Pong>(reply).nonce, 5u);
  EXPECT_FALSE(client.closed());
}

TEST_F(ServerIntegrationTest, GarbageFromOneClientDoesNotAffectAnother) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  TestClient alice, bob;
  ASSERT_TRUE(alice.Connect(server.port()));
  ASSERT_TRUE(bob.Connect(server.port()));
  ASSERT_TRUE(alice.Hello());
  ASSERT_TRUE(bob.Hello());
  ASSERT_TRUE(alice.Create("alice"));
  ASSERT_TRUE(alice.Create("bob"));
  ASSERT_TRUE(alice.Login("alice"));
  ASSERT_TRUE(bob.Login("bob"));

  for (const bool handshake_first : {false, true}) {
    TestClient mallory;
    ASSERT_TRUE(mallory.Connect(server.port()));
    if (handshake_first) {
      ASSERT_TRUE(mallory.Hello());
    }
    std::mt19937 random(handshake_first ? 2 : 1);
    Bytes garbage(64 * 1024);
    for (std::uint8_t& byte : garbage) byte = static_cast<std::uint8_t>(random());
    mallory.SendRaw(garbage);
    EXPECT_TRUE(mallory.WaitClosed()) << "garbage did not get the connection closed";
  }

  const std::optional<Frame> sent = alice.Call(Send{"bob", 1, "still here"});
  ASSERT_TRUE(Is<SendOk>(sent)) << Show(sent);
  const std::optional<Frame> push = bob.WaitPush();
  ASSERT_TRUE(Is<Deliver>(push)) << Show(push);
  EXPECT_EQ(Get<Deliver>(push).message.text, "still here");
}

TEST_F(ServerIntegrationTest, LoginTimeoutEndsTheSession) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"login-timeout", "1"}}));
  TestClient client;
  ASSERT_TRUE(client.Connect(server.port()));
  ASSERT_TRUE(client.Hello());
  const std::optional<Frame> ended = client.WaitPush(seconds(5));
  ASSERT_TRUE(Is<SessionEnded>(ended)) << Show(ended);
  EXPECT_EQ(Get<SessionEnded>(ended).reason, EndReason::kLoginTimeout);
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(ServerIntegrationTest, SlowConsumerIsDisconnectedWithoutBlockingTheSender) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"send-timeout", "1"}, {"send-rate", "0"}, {"sync", "normal"}}));
  TestClient alice, bob;
  ASSERT_TRUE(alice.Connect(server.port()));
  ASSERT_TRUE(bob.Connect(server.port(), /*receive_buffer=*/4096));
  ASSERT_TRUE(alice.Hello());
  ASSERT_TRUE(alice.Create("alice"));
  ASSERT_TRUE(alice.Create("bob"));
  ASSERT_TRUE(alice.Login("alice"));
  ASSERT_TRUE(bob.Hello());
  ASSERT_TRUE(bob.Login("bob"));
  // From here on bob reads nothing.

  // Alice sends large messages until the server has given up on bob: a SEND to him then comes
  // back QUEUED instead of DELIVERED. No SEND may wait on bob.
  const std::string text(4000, 'x');
  std::uint64_t sent = 0;
  bool bob_dropped = false;
  auto slowest = milliseconds(0);
  const SteadyTime deadline = Now() + seconds(20);
  while (!bob_dropped && Now() < deadline) {
    const SteadyTime start = Now();
    const std::optional<Frame> reply = alice.Call(Send{"bob", ++sent, text});
    slowest = std::max(slowest, std::chrono::duration_cast<milliseconds>(Now() - start));
    ASSERT_TRUE(Is<SendOk>(reply)) << "SEND " << sent << ": " << Show(reply);
    bob_dropped = Get<SendOk>(reply).delivery == Delivery::kQueued;
    std::this_thread::sleep_for(milliseconds(2));
  }
  ASSERT_TRUE(bob_dropped) << "bob was never disconnected; " << sent << " messages sent";
  EXPECT_LT(slowest, milliseconds(1000)) << "the sender waited on the slow consumer";
  EXPECT_TRUE(bob.WaitClosed(seconds(10)));

  // Nothing was lost: all of it is stored for bob's next session.
  TestClient bob_again;
  ASSERT_TRUE(bob_again.Connect(server.port()));
  ASSERT_TRUE(bob_again.Hello());
  std::uint32_t unread = 0;
  ASSERT_TRUE(bob_again.Login("bob", &unread));
  EXPECT_EQ(unread, sent);
  std::uint64_t fetched = 0;
  std::uint64_t last_id = 0;
  for (int pages = 0; pages < 1000 && fetched < sent; ++pages) {
    const std::optional<Frame> batch = bob_again.Call(FetchUndelivered{kMaxFetchLimit});
    ASSERT_TRUE(Is<MessageBatch>(batch)) << Show(batch);
    ASSERT_FALSE(Get<MessageBatch>(batch).messages.empty());
    for (const StoredMessage& message : Get<MessageBatch>(batch).messages) {
      EXPECT_GT(message.message_id, last_id);
      last_id = message.message_id;
      EXPECT_EQ(message.text, text);
      ++fetched;
    }
  }
  EXPECT_EQ(fetched, sent);
}

TEST_F(ServerIntegrationTest, PushBacklogBeyondTheCapDisconnectsTheConsumer) {
  ServerProcess& server = NewServer();
  // A send timeout far beyond the test: only the cap on queued pushes can drop bob.
  ASSERT_TRUE(server.Start({{"send-timeout", "600"}, {"send-rate", "0"}, {"sync", "normal"}}));
  TestClient alice, bob;
  ASSERT_TRUE(alice.Connect(server.port()));
  ASSERT_TRUE(bob.Connect(server.port(), /*receive_buffer=*/4096));
  ASSERT_TRUE(alice.Hello());
  ASSERT_TRUE(alice.Create("alice"));
  ASSERT_TRUE(alice.Create("bob"));
  ASSERT_TRUE(alice.Login("alice"));
  ASSERT_TRUE(bob.Hello());
  ASSERT_TRUE(bob.Login("bob"));

  const std::string text(4000, 'y');
  std::uint64_t sent = 0;
  bool bob_dropped = false;
  const SteadyTime deadline = Now() + seconds(30);
  while (!bob_dropped && Now() < deadline) {
    const std::optional<Frame> reply = alice.Call(Send{"bob", ++sent, text});
    ASSERT_TRUE(Is<SendOk>(reply)) << "SEND " << sent << ": " << Show(reply);
    bob_dropped = Get<SendOk>(reply).delivery == Delivery::kQueued;
  }
  ASSERT_TRUE(bob_dropped) << "bob was never disconnected; " << sent << " messages sent";
  // The cap is 4 MiB of pushes: about a thousand of these messages, not a handful.
  EXPECT_GT(sent, 500u);
  EXPECT_TRUE(bob.WaitClosed(seconds(10)));

  TestClient bob_again;
  ASSERT_TRUE(bob_again.Connect(server.port()));
  ASSERT_TRUE(bob_again.Hello());
  std::uint32_t unread = 0;
  ASSERT_TRUE(bob_again.Login("bob", &unread));
  EXPECT_EQ(unread, sent);
}

TEST_F(ServerIntegrationTest, RestartKeepsAccountsAndQueuedMessages) {
  ServerProcess& first = NewServer();
  ASSERT_TRUE(first.Start());
  TestClient alice, stranger;
  ASSERT_TRUE(alice.Connect(first.port()));
  ASSERT_TRUE(alice.Hello());
  ASSERT_TRUE(alice.Create("alice"));
  ASSERT_TRUE(alice.Create("bob"));
  ASSERT_TRUE(alice.Login("alice"));
  for (std::uint64_t i = 1; i <= 3; ++i) {
    const std::optional<Frame> reply = alice.Call(Send{"bob", i, "queued " + std::to_string(i)});
    ASSERT_TRUE(Is<SendOk>(reply)) << Show(reply);
    EXPECT_EQ(Get<SendOk>(reply).delivery, Delivery::kQueued);
  }
  ASSERT_TRUE(stranger.Connect(first.port()));
  ASSERT_TRUE(stranger.Hello());

  // SIGTERM: every session is told, then the process exits cleanly.
  EXPECT_EQ(first.Terminate(), 0);
  for (TestClient* client : {&alice, &stranger}) {
    const std::optional<Frame> ended = client->WaitPush();
    ASSERT_TRUE(Is<SessionEnded>(ended)) << Show(ended);
    EXPECT_EQ(Get<SessionEnded>(ended).reason, EndReason::kServerShutdown);
    EXPECT_TRUE(client->WaitClosed());
  }

  ServerProcess& second = NewServer();
  ASSERT_TRUE(second.Start());
  TestClient bob;
  ASSERT_TRUE(bob.Connect(second.port()));
  ASSERT_TRUE(bob.Hello());
  EXPECT_TRUE(IsError(bob.Call(CreateAccount{"alice", kPassword}), ErrorCode::kUsernameTaken));
  std::uint32_t unread = 0;
  ASSERT_TRUE(bob.Login("bob", &unread));
  EXPECT_EQ(unread, 3u);
  const std::optional<Frame> batch = bob.Call(FetchUndelivered{10});
  ASSERT_TRUE(Is<MessageBatch>(batch)) << Show(batch);
  ASSERT_EQ(Get<MessageBatch>(batch).messages.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(Get<MessageBatch>(batch).messages[i].text, "queued " + std::to_string(i + 1));
    EXPECT_EQ(Get<MessageBatch>(batch).messages[i].sender, "alice");
  }
  EXPECT_EQ(second.Terminate(), 0);
}

TEST_F(ServerIntegrationTest, KillNineRightAfterSendOkLosesNothing) {
  ServerProcess& first = NewServer();
  ASSERT_TRUE(first.Start());
  TestClient alice;
  ASSERT_TRUE(alice.Connect(first.port()));
  ASSERT_TRUE(alice.Hello());
  ASSERT_TRUE(alice.Create("alice"));
  ASSERT_TRUE(alice.Create("bob"));
  ASSERT_TRUE(alice.Login("alice"));
  constexpr std::uint64_t kMessages = 5;
  for (std::uint64_t i = 1; i <= kMessages; ++i) {
    ASSERT_TRUE(Is<SendOk>(alice.Call(Send{"bob", i, "durable " + std::to_string(i)})));
  }
  first.Kill();  // No shutdown, no final commit: only what was durable when answered survives.

  ServerProcess& second = NewServer();
  ASSERT_TRUE(second.Start());
  TestClient bob;
  ASSERT_TRUE(bob.Connect(second.port()));
  ASSERT_TRUE(bob.Hello());
  std::uint32_t unread = 0;
  ASSERT_TRUE(bob.Login("bob", &unread));
  EXPECT_EQ(unread, kMessages);
  const std::optional<Frame> batch = bob.Call(FetchUndelivered{10});
  ASSERT_TRUE(Is<MessageBatch>(batch)) << Show(batch);
  ASSERT_EQ(Get<MessageBatch>(batch).messages.size(), kMessages);
  EXPECT_EQ(Get<MessageBatch>(batch).messages.back().text, "durable " + std::to_string(kMessages));
}

TEST_F(ServerIntegrationTest, BadUsageExitsWithCodeTwoAndSaysWhy) {
  ServerProcess& server = NewServer();
  EXPECT_EQ(server.RunToExit({"--max-frame-size", "100"}), 2);
  EXPECT_NE(server.log().find("--max-frame-size"), std::string::npos) << server.log();
  EXPECT_EQ(server.RunToExit({"--no-such-option", "1"}), 2);
  EXPECT_EQ(server.RunToExit({"--sync", "sometimes"}), 2);
}

}  // namespace
}  // namespace messenger::test

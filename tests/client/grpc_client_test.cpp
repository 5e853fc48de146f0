// Tests of the gRPC client against the server's real gRPC front door, in-process, with a TCP
// front door on the same Messenger: so a gRPC client and a wire client message each other, take
// each other's sessions over and see each other's unacknowledged messages. Every wait is
// bounded.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "grpc_front_door.h"
#include "messenger/client/client.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "messenger/server/clock.h"
#include "messenger/server/messenger.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/store.h"
#include "tcp_front_door.h"
#include "test_support.h"

namespace messenger {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
using testing::Eventually;
using testing::PlainHasher;

// Bound on waiting for anything that should happen promptly on loopback.
constexpr milliseconds kWait{5000};
constexpr std::string_view kPassword = "correct horse";

// Records every push a client hands to its handler. Thread-safe.
class PushLog {
 public:
  // The handler accepts deliveries iff accept() is true when they arrive.
  PushHandler Handler() {
    return [this](const Push& push) {
      std::lock_guard lock(mu_);
      pushes_.push_back(push);
      changed_.notify_all();
      return accept_;
    };
  }

  void set_accept(bool accept) {
    std::lock_guard lock(mu_);
    accept_ = accept;
  }

  // Waits until at least `count` pushes of type T have arrived.
  template <typename T>
  bool WaitFor(std::size_t count, milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return CountLocked<T>() >= count; });
  }

  template <typename T>
  std::vector<T> All() const {
    std::lock_guard lock(mu_);
    std::vector<T> out;
    for (const Push& push : pushes_) {
      if (const T* item = std::get_if<T>(&push)) out.push_back(*item);
    }
    return out;
  }

  template <typename T>
  std::size_t Count() const {
    std::lock_guard lock(mu_);
    return CountLocked<T>();
  }

  // The index of each push's alternative (0 Deliver, 1 SessionEnded, 2 Disconnected), in
  // arrival order.
  std::vector<std::size_t> Kinds() const {
    std::lock_guard lock(mu_);
    std::vector<std::size_t> out;
    for (const Push& push : pushes_) out.push_back(push.index());
    return out;
  }

 private:
  template <typename T>
  std::size_t CountLocked() const {
    return static_cast<std::size_t>(
        std::count_if(pushes_.begin(), pushes_.end(),
                      [](const Push& p) { return std::holds_alternative<T>(p); }));
  }

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Push> pushes_;
  bool accept_ = true;
};

std::vector<std::uint64_t> Ids(const std::vector<StoredMessage>& messages) {
  std::vector<std::uint64_t> ids;
  for (const StoredMessage& message : messages) ids.push_back(message.message_id);
  return ids;
}

std::vector<std::uint64_t> Ids(const std::vector<Deliver>& delivers) {
  std::vector<std::uint64_t> ids;
  for (const Deliver& deliver : delivers) ids.push_back(deliver.message.message_id);
  return ids;
}

constexpr std::size_t kDeliverKind = 0;
constexpr std::size_t kSessionEndedKind = 1;
constexpr std::size_t kDisconnectedKind = 2;

// ---- Both front doors on one Messenger, in-process ----

class GrpcClientTest : public ::testing::Test {
 protected:
  GrpcClientTest()
      : store_(MakeMemoryStore()), messenger_(*store_, hasher_, SystemClock(), Options()) {}

  void SetUp() override {
    TcpOptions tcp;
    tcp.host = "127.0.0.1";
    tcp.port = 0;
    tcp.max_connections = 64;
    Result<std::unique_ptr<TcpFrontDoor>> door = TcpFrontDoor::Start(messenger_, tcp);
    ASSERT_OK(door.status());
    tcp_door_ = std::move(door).value();
    ASSERT_OK(StartGrpc(0));
  }

  void TearDown() override {
    StopGrpc();
    if (tcp_door_) {
      tcp_door_->StopAccepting();
      EXPECT_TRUE(tcp_door_->Shutdown(2s));
      tcp_door_.reset();
    }
  }

  static MessengerOptions Options() {
    MessengerOptions options;
    options.send_rate_per_second = 0;  // The concurrency test sends hundreds at once.
    return options;
  }

  Status StartGrpc(std::uint16_t port, int max_sessions = 1000) {
    GrpcOptions options;
    options.host = "127.0.0.1";
    options.port = port;
    options.max_sessions = max_sessions;
    Result<std::unique_ptr<GrpcFrontDoor>> door = GrpcFrontDoor::Start(messenger_, options);
    if (!door.ok()) return door.status();
    grpc_door_ = std::move(door).value();
    grpc_port_ = grpc_door_->port();
    return Status::Ok();
  }

  // Streams still open are cancelled after `timeout`; the Messenger stays usable.
  void StopGrpc(milliseconds timeout = 1s) {
    if (!grpc_door_) return;
    grpc_door_->Shutdown(timeout);
    grpc_door_.reset();
  }

  ClientOptions GrpcOpts() const {
    ClientOptions options;
    options.host = "127.0.0.1";
    options.port = grpc_port_;
    options.connect_timeout = 2s;
    options.request_timeout = kWait;
    return options;
  }

  ClientOptions WireOpts() const {
    ClientOptions options = GrpcOpts();
    options.port = tcp_door_->port();
    return options;
  }

  std::unique_ptr<Client> GrpcConnected(PushHandler handler = {}) {
    return Connected(MakeGrpcClient(GrpcOpts(), std::move(handler)));
  }

  static std::unique_ptr<Client> Connected(std::unique_ptr<Client> client) {
    EXPECT_OK(client->Connect());
    return client;
  }

  // Registers `name` (if not yet registered) and returns `client` logged in as it.
  static std::unique_ptr<Client> LoggedIn(std::unique_ptr<Client> client, const std::string& name) {
    EXPECT_OK(client->Connect());
    const Status created = client->CreateAccount(name, kPassword);
    EXPECT_TRUE(created.ok() || created.code() == ErrorCode::kUsernameTaken) << created.ToString();
    EXPECT_OK(client->Login(name, kPassword).status());
    return client;
  }
  std::unique_ptr<Client> GrpcLoggedIn(const std::string& name, PushHandler handler = {}) {
    return LoggedIn(MakeGrpcClient(GrpcOpts(), std::move(handler)), name);
  }
  std::unique_ptr<Client> WireLoggedIn(const std::string& name, PushHandler handler = {}) {
    return LoggedIn(MakeWireClient(WireOpts(), std::move(handler)), name);
  }

  // Sends from `sender` to `recipient` and waits until `log` has the delivery: proves that the
  // recipient's push stream is open (the server holds pushes until it is).
  static void ProveStreamOpen(Client& sender, const std::string& recipient, PushLog& log) {
    const std::size_t before = log.Count<Deliver>();
    ASSERT_OK(sender.Send(recipient, "are you there?").status());
    ASSERT_TRUE(log.WaitFor<Deliver>(before + 1));
  }

  PlainHasher hasher_;
  std::unique_ptr<Store> store_;
  Messenger messenger_;
  // Declared after messenger_: destroyed before it.
  std::unique_ptr<TcpFrontDoor> tcp_door_;
  std::unique_ptr<GrpcFrontDoor> grpc_door_;
  std::uint16_t grpc_port_ = 0;
};

TEST_F(GrpcClientTest, ConnectReadsTheServerInfoWithoutAPreloginLimit) {
  std::unique_ptr<Client> client = GrpcConnected();
  const HelloOk info = client->server_info();
  EXPECT_EQ(info.protocol_version, kProtocolVersion);
  EXPECT_EQ(info.max_frame_size, GrpcOptions{}.max_frame_size);
  EXPECT_EQ(info.max_prelogin_frame_size, 0u);
  EXPECT_EQ(info.max_text_bytes, kMaxTextBytes);
  EXPECT_EQ(info.max_queued_per_user, 10000u);
  EXPECT_EQ(info.server_name, GrpcOptions{}.server_name);
  EXPECT_OK(client->Connect());  // Already connected: nothing to do.
  EXPECT_OK(client->Ping());     // Without a session: answered through GetServerInfo.
}

TEST_F(GrpcClientTest, RequestsFailWithDisconnectedBeforeConnectAndAfterClose) {
  PushLog log;
  std::unique_ptr<Client> client = MakeGrpcClient(GrpcOpts(), log.Handler());
  EXPECT_EQ(client->Ping().code(), ErrorCode::kDisconnected);
  EXPECT_EQ(client->CreateAccount("alice", kPassword).code(), ErrorCode::kDisconnected);
  ASSERT_OK(client->Connect());
  EXPECT_OK(client->Ping());
  client->Close();
  EXPECT_EQ(client->Ping().code(), ErrorCode::kDisconnected);
  client->Close();  // Idempotent.
  EXPECT_EQ(log.Count<Disconnected>(), 0u);
  ASSERT_OK(client->Connect());  // A closed client can connect again.
  EXPECT_OK(client->Ping());
}

TEST_F(GrpcClientTest, AccountOperationsRoundTripWithTheProtocolsErrorCodes) {
  std::unique_ptr<Client> client = GrpcConnected();
  EXPECT_OK(client->CreateAccount("alice", kPassword));
  EXPECT_EQ(client->CreateAccount("Alice", kPassword).code(), ErrorCode::kUsernameTaken);
  EXPECT_EQ(client->CreateAccount("-alice", kPassword).code(), ErrorCode::kInvalidUsername);
  EXPECT_EQ(client->CreateAccount("bob", "short").code(), ErrorCode::kInvalidPassword);
  EXPECT_EQ(client->ListAccounts("", "", 10).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(client->Logout().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(client->FetchUndelivered(10).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(client->Login("alice", "wrong password").status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ(client->Login("nobody", kPassword).status().code(), ErrorCode::kAuthFailed);

  Result<LoginOk> login = client->Login("ALICE", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 0u);
  EXPECT_EQ(client->Login("alice", kPassword).status().code(), ErrorCode::kAlreadyLoggedIn);
  for (const char* name : {"dave", "Bob", "carol"}) {
    EXPECT_OK(client->CreateAccount(name, kPassword));  // Allowed while logged in.
  }

  // Pages of two, sorted by canonical name, shown as registered; the cursor leads to the end.
  std::vector<std::string> names;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    Result<AccountList> list = client->ListAccounts("", cursor, 2);
    ASSERT_OK(list.status());
    EXPECT_LE(list->usernames.size(), 2u);
    names.insert(names.end(), list->usernames.begin(), list->usernames.end());
    cursor = list->next_cursor;
    if (cursor.empty()) break;
  }
  EXPECT_TRUE(cursor.empty());
  EXPECT_EQ(names, (std::vector<std::string>{"alice", "Bob", "carol", "dave"}));
  Result<AccountList> filtered = client->ListAccounts("[!ab]*", "", 10);
  ASSERT_OK(filtered.status());
  EXPECT_EQ(filtered->usernames, (std::vector<std::string>{"carol", "dave"}));
  EXPECT_EQ(client->ListAccounts("[a-", "", 10).status().code(), ErrorCode::kInvalidPattern);
  EXPECT_EQ(client->ListAccounts("", "", 0).status().code(), ErrorCode::kInvalidArgument);

  EXPECT_OK(client->Ping());  // With the session: gRPC's Ping.
  EXPECT_OK(client->Logout());
  EXPECT_EQ(client->Logout().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(client->ListAccounts("", "", 10).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_OK(client->Ping());                              // Logged out, still connected.
  EXPECT_OK(client->Login("alice", kPassword).status());  // And a new session may start.
  EXPECT_OK(client->ListAccounts("", "", 10).status());
}

TEST_F(GrpcClientTest, MessagesAreSentFetchedAndAcked) {
  std::unique_ptr<Client> alice = GrpcLoggedIn("alice");
  ASSERT_OK(alice->CreateAccount("Bob", "hunter2hunter2"));

  Result<SendOk> first = alice->Send("bob", "hi");
  ASSERT_OK(first.status());
  EXPECT_EQ(first->delivery, Delivery::kQueued);
  Result<SendOk> second = alice->Send("BOB", "Grüße aus Köln 👋");
  ASSERT_OK(second.status());
  EXPECT_GT(second->message_id, first->message_id);
  EXPECT_EQ(alice->Send("nobody", "hi").status().code(), ErrorCode::kUnknownRecipient);
  EXPECT_EQ(alice->Send("alice", "hi").status().code(), ErrorCode::kSelfSend);
  EXPECT_EQ(alice->Send("bob", "").status().code(), ErrorCode::kInvalidText);
  EXPECT_EQ(alice->Send("bob", std::string(kMaxTextBytes + 1, 'x')).status().code(),
            ErrorCode::kInvalidText);

  std::unique_ptr<Client> bob = GrpcConnected();
  Result<LoginOk> login = bob->Login("bob", "hunter2hunter2");
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 2u);
  EXPECT_EQ(bob->FetchUndelivered(0).status().code(), ErrorCode::kInvalidArgument);
  Result<MessageBatch> batch = bob->FetchUndelivered(1);
  ASSERT_OK(batch.status());
  ASSERT_EQ(batch->messages.size(), 1u);
  EXPECT_EQ(batch->remaining, 1u);
  EXPECT_EQ(batch->messages[0],
            (StoredMessage{first->message_id, "alice", first->timestamp_ms, "hi"}));
  Result<MessageBatch> rest = bob->FetchUndelivered(50);
  ASSERT_OK(rest.status());
  ASSERT_EQ(rest->messages.size(), 1u);
  EXPECT_EQ(rest->remaining, 0u);
  EXPECT_EQ(rest->messages[0].message_id, second->message_id);
  EXPECT_EQ(rest->messages[0].text, "Grüße aus Köln 👋");

  const std::vector<std::uint64_t> ids = {first->message_id, second->message_id};
  EXPECT_OK(bob->Ack(ids));
  EXPECT_OK(bob->Ack(ids));  // ACK is idempotent.
  EXPECT_EQ(bob->Ack(std::vector<std::uint64_t>(kMaxAckIds + 1, 1)).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_OK(bob->Logout());
  login = bob->Login("bob", "hunter2hunter2");
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 0u);
}

TEST_F(GrpcClientTest, ErrorsCarryTheSameCodeAndTextAsOverTheWire) {
  std::unique_ptr<Client> grpc_alice = GrpcLoggedIn("alice");
  std::unique_ptr<Client> wire_bob = WireLoggedIn("bob");
  const auto same = [](const Status& over_grpc, const Status& over_wire) {
    EXPECT_FALSE(over_grpc.ok());
    EXPECT_EQ(over_grpc, over_wire) << over_grpc.ToString() << " vs " << over_wire.ToString();
  };
  same(grpc_alice->Send("nobody", "hi").status(), wire_bob->Send("nobody", "hi").status());
  same(grpc_alice->Send("alice", "hi").status(), wire_bob->Send("bob", "hi").status());
  same(grpc_alice->CreateAccount("alice", kPassword), wire_bob->CreateAccount("alice", kPassword));
  same(grpc_alice->CreateAccount("a b", kPassword), wire_bob->CreateAccount("a b", kPassword));
  same(grpc_alice->ListAccounts("[x", "", 5).status(),
       wire_bob->ListAccounts("[x", "", 5).status());
  same(grpc_alice->FetchUndelivered(0).status(), wire_bob->FetchUndelivered(0).status());
  ASSERT_OK(grpc_alice->SendWithId("bob", "one text", 42).status());
  ASSERT_OK(wire_bob->SendWithId("alice", "one text", 42).status());
  same(grpc_alice->SendWithId("bob", "another text", 42).status(),
       wire_bob->SendWithId("alice", "another text", 42).status());
  EXPECT_EQ(grpc_alice->SendWithId("bob", "another text", 42).status().code(),
            ErrorCode::kClientIdReused);
  std::unique_ptr<Client> grpc_carol = GrpcConnected();
  std::unique_ptr<Client> wire_carol = Connected(MakeWireClient(WireOpts(), {}));
  same(grpc_carol->Login("alice", "wrong password").status(),
       wire_carol->Login("bob", "wrong password").status());
}

TEST_F(GrpcClientTest, StringsThatAreNotUtf8AreRefusedBeforeSending) {
  std::unique_ptr<Client> alice = GrpcLoggedIn("alice");
  ASSERT_OK(alice->CreateAccount("bob", kPassword));
  EXPECT_EQ(alice->Send("bob", "caf\xc3").status().code(), ErrorCode::kInvalidUtf8);
  EXPECT_EQ(alice->CreateAccount("b\xff", kPassword).code(), ErrorCode::kInvalidUtf8);
  EXPECT_OK(alice->Send("bob", "café").status());  // Nothing was lost.
}

TEST_F(GrpcClientTest, SendWithIdIsIdempotentAndFreshIdsDifferBetweenClientObjects) {
  std::unique_ptr<Client> alice = GrpcLoggedIn("alice");
  ASSERT_OK(alice->CreateAccount("bob", kPassword));
  Result<SendOk> original = alice->SendWithId("bob", "retried", 777);
  Result<SendOk> retry = alice->SendWithId("bob", "retried", 777);
  ASSERT_OK(original.status());
  ASSERT_OK(retry.status());
  EXPECT_EQ(retry->message_id, original->message_id);

  std::set<std::uint64_t> message_ids;
  for (int i = 0; i < 2; ++i) {
    Result<SendOk> sent = alice->Send("bob", "same text");
    ASSERT_OK(sent.status());
    message_ids.insert(sent->message_id);
  }
  alice.reset();
  std::unique_ptr<Client> alice_again = GrpcLoggedIn("alice");
  Result<SendOk> sent = alice_again->Send("bob", "same text");
  ASSERT_OK(sent.status());
  message_ids.insert(sent->message_id);
  EXPECT_EQ(message_ids.size(), 3u);
}

TEST_F(GrpcClientTest, DeleteAccountAsksForConfirmationThenDeletesQuietly) {
  PushLog log;
  std::unique_ptr<Client> bob = GrpcLoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  ASSERT_OK(bob->Logout());  // Offline: the message waits.
  ASSERT_OK(alice->Send("bob", "unread").status());
  ASSERT_OK(bob->Login("bob", kPassword).status());

  Result<std::uint32_t> ask = bob->DeleteAccount(false);
  ASSERT_OK(ask.status());
  EXPECT_EQ(*ask, 1u);
  Result<std::uint32_t> done = bob->DeleteAccount(true);
  ASSERT_OK(done.status());
  EXPECT_EQ(*done, 0u);
  EXPECT_EQ(bob->ListAccounts("", "", 10).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(bob->Login("bob", kPassword).status().code(), ErrorCode::kAuthFailed);
  EXPECT_EQ(alice->Send("bob", "hello?").status().code(), ErrorCode::kUnknownRecipient);
  EXPECT_OK(bob->Ping());  // Still connected, logged out.
  std::this_thread::sleep_for(100ms);
  // The stream ended with LOGGED_OUT, which this client caused: not news for the application.
  EXPECT_EQ(log.Kinds(), std::vector<std::size_t>{});
}

TEST_F(GrpcClientTest, LogoutEndsTheStreamQuietlyAndANewLoginOpensAnother) {
  PushLog log;
  std::unique_ptr<Client> bob = GrpcLoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  ProveStreamOpen(*alice, "bob", log);
  ASSERT_OK(bob->Logout());
  Result<SendOk> offline = alice->Send("bob", "while away");
  ASSERT_OK(offline.status());
  EXPECT_EQ(offline->delivery, Delivery::kQueued);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(log.Kinds(), std::vector<std::size_t>{kDeliverKind});

  Result<LoginOk> login = bob->Login("bob", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 1u);
  Result<SendOk> online = alice->Send("bob", "welcome back");
  ASSERT_OK(online.status());
  EXPECT_EQ(online->delivery, Delivery::kDelivered);
  ASSERT_TRUE(log.WaitFor<Deliver>(2));
  EXPECT_EQ(log.All<Deliver>()[1].message.text, "welcome back");
}

TEST_F(GrpcClientTest, LiveDeliveryFromGrpcToWireAndBackIsAckedAutomatically) {
  PushLog grpc_log;
  PushLog wire_log;
  std::unique_ptr<Client> alice = GrpcLoggedIn("alice", grpc_log.Handler());
  std::unique_ptr<Client> bob = WireLoggedIn("bob", wire_log.Handler());

  Result<SendOk> to_wire = alice->Send("bob", "from grpc");
  ASSERT_OK(to_wire.status());
  EXPECT_EQ(to_wire->delivery, Delivery::kDelivered);
  ASSERT_TRUE(wire_log.WaitFor<Deliver>(1));
  EXPECT_EQ(wire_log.All<Deliver>()[0].message,
            (StoredMessage{to_wire->message_id, "alice", to_wire->timestamp_ms, "from grpc"}));

  Result<SendOk> to_grpc = bob->Send("alice", "from wire");
  ASSERT_OK(to_grpc.status());
  EXPECT_EQ(to_grpc->delivery, Delivery::kDelivered);
  ASSERT_TRUE(grpc_log.WaitFor<Deliver>(1));
  EXPECT_EQ(grpc_log.All<Deliver>()[0].message,
            (StoredMessage{to_grpc->message_id, "bob", to_grpc->timestamp_ms, "from wire"}));

  // Accepted, hence ACKed by the client: nothing stays stored for either.
  EXPECT_TRUE(Eventually([&] {
    Result<std::uint32_t> unread = alice->DeleteAccount(false);
    return unread.ok() && *unread == 0;
  }));
  EXPECT_TRUE(Eventually([&] {
    Result<std::uint32_t> unread = bob->DeleteAccount(false);
    return unread.ok() && *unread == 0;
  }));
  alice.reset();
  std::unique_ptr<Client> alice_again = GrpcConnected();
  Result<LoginOk> login = alice_again->Login("alice", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 0u);
}

TEST_F(GrpcClientTest, DeliveriesArriveInOrderWhileRequestsAreInFlight) {
  constexpr int kMessages = 30;
  PushLog log;
  std::unique_ptr<Client> bob = GrpcLoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  std::atomic<bool> pinging{true};
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> pingers;
    for (int t = 0; t < 4; ++t) {
      pingers.emplace_back([&] {
        while (pinging.load()) {
          if (!bob->Ping().ok()) ++failures;
        }
      });
    }
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_OK(alice->Send("bob", "m" + std::to_string(i)).status());
    }
    EXPECT_TRUE(log.WaitFor<Deliver>(kMessages));
    pinging = false;
  }
  EXPECT_EQ(failures.load(), 0);
  const std::vector<Deliver> delivers = log.All<Deliver>();
  ASSERT_EQ(delivers.size(), static_cast<std::size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(delivers[i].message.text, "m" + std::to_string(i));
    if (i > 0) {
      EXPECT_GT(delivers[i].message.message_id, delivers[i - 1].message.message_id);
    }
  }
}

TEST_F(GrpcClientTest, ConcurrentSendsFromManyThreadsAllSucceed) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::unique_ptr<Client> alice = GrpcLoggedIn("alice");
  ASSERT_OK(alice->CreateAccount("bob", kPassword));
  std::mutex mu;
  std::set<std::uint64_t> ids;
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Result<SendOk> sent = alice->Send("bob", std::to_string(t) + "/" + std::to_string(i));
          if (!sent.ok()) {
            ++failures;
            continue;
          }
          std::lock_guard lock(mu);
          ids.insert(sent->message_id);
        }
      });
    }
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST_F(GrpcClientTest, QueuedMessagesCrossTransports) {
  std::unique_ptr<Client> wire_alice = WireLoggedIn("alice");
  ASSERT_OK(wire_alice->CreateAccount("bob", kPassword));
  ASSERT_OK(wire_alice->CreateAccount("carol", kPassword));
  Result<SendOk> to_bob = wire_alice->Send("bob", "queued over the wire");
  ASSERT_OK(to_bob.status());
  EXPECT_EQ(to_bob->delivery, Delivery::kQueued);

  std::unique_ptr<Client> grpc_bob = GrpcConnected();
  Result<LoginOk> login = grpc_bob->Login("bob", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 1u);
  Result<MessageBatch> batch = grpc_bob->FetchUndelivered(50);
  ASSERT_OK(batch.status());
  ASSERT_EQ(batch->messages.size(), 1u);
  EXPECT_EQ(batch->messages[0], (StoredMessage{to_bob->message_id, "alice", to_bob->timestamp_ms,
                                               "queued over the wire"}));
  ASSERT_OK(grpc_bob->Ack(Ids(batch->messages)));

  Result<SendOk> to_carol = grpc_bob->Send("carol", "queued over gRPC");
  ASSERT_OK(to_carol.status());
  EXPECT_EQ(to_carol->delivery, Delivery::kQueued);
  std::unique_ptr<Client> wire_carol = Connected(MakeWireClient(WireOpts(), {}));
  login = wire_carol->Login("carol", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 1u);
  batch = wire_carol->FetchUndelivered(50);
  ASSERT_OK(batch.status());
  ASSERT_EQ(batch->messages.size(), 1u);
  EXPECT_EQ(batch->messages[0].sender, "bob");
  EXPECT_EQ(batch->messages[0].text, "queued over gRPC");
}

TEST_F(GrpcClientTest, WireLoginTakesOverTheGrpcSessionWithoutReconnecting) {
  PushLog log;
  ClientOptions options = GrpcOpts();
  options.auto_reconnect = true;
  options.reconnect_max_backoff = 100ms;
  std::unique_ptr<Client> bob = LoggedIn(MakeGrpcClient(options, log.Handler()), "bob");
  PushLog wire_log;
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  ProveStreamOpen(*alice, "bob", log);

  std::unique_ptr<Client> bob_on_wire = WireLoggedIn("bob", wire_log.Handler());
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  const std::vector<SessionEnded> ended = log.All<SessionEnded>();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].reason, EndReason::kTakeover);
  EXPECT_EQ(log.Kinds(),
            (std::vector<std::size_t>{kDeliverKind, kSessionEndedKind, kDisconnectedKind}));
  EXPECT_EQ(log.All<Disconnected>()[0].reason.code(), ErrorCode::kDisconnected);
  EXPECT_NE(log.All<Disconnected>()[0].reason.message().find("TAKEOVER"), std::string::npos);
  // Several backoff periods later: still no new session (it would take the session back).
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(bob->Ping().code(), ErrorCode::kDisconnected);
  Result<SendOk> sent = alice->Send("bob", "to the wire now");
  ASSERT_OK(sent.status());
  EXPECT_EQ(sent->delivery, Delivery::kDelivered);
  ASSERT_TRUE(wire_log.WaitFor<Deliver>(1));
  EXPECT_EQ(wire_log.All<Deliver>().back().message.text, "to the wire now");
  EXPECT_EQ(log.Count<Deliver>(), 1u);
  EXPECT_EQ(log.Count<Disconnected>(), 1u);
}

TEST_F(GrpcClientTest, GrpcLoginTakesOverTheWireSession) {
  PushLog wire_log;
  std::unique_ptr<Client> bob_on_wire = WireLoggedIn("bob", wire_log.Handler());
  PushLog grpc_log;
  std::unique_ptr<Client> bob = GrpcLoggedIn("bob", grpc_log.Handler());
  ASSERT_TRUE(wire_log.WaitFor<Disconnected>(1));
  const std::vector<SessionEnded> ended = wire_log.All<SessionEnded>();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].reason, EndReason::kTakeover);
  EXPECT_EQ(bob_on_wire->Ping().code(), ErrorCode::kDisconnected);

  // And a second gRPC login takes over the first.
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  ProveStreamOpen(*alice, "bob", grpc_log);
  std::unique_ptr<Client> bob_again = GrpcLoggedIn("bob");
  ASSERT_TRUE(grpc_log.WaitFor<Disconnected>(1));
  ASSERT_EQ(grpc_log.All<SessionEnded>().size(), 1u);
  EXPECT_EQ(grpc_log.All<SessionEnded>()[0].reason, EndReason::kTakeover);
  EXPECT_OK(bob_again->Ping());
}

TEST_F(GrpcClientTest, RefusedDeliveriesComeBackAfterTheClientIsClosed) {
  PushLog log;
  log.set_accept(false);
  std::unique_ptr<Client> bob = GrpcLoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  Result<SendOk> first = alice->Send("bob", "one");
  Result<SendOk> second = alice->Send("bob", "two");
  ASSERT_OK(first.status());
  ASSERT_OK(second.status());
  EXPECT_EQ(first->delivery, Delivery::kDelivered);
  ASSERT_TRUE(log.WaitFor<Deliver>(2));
  EXPECT_EQ(Ids(log.All<Deliver>()),
            (std::vector<std::uint64_t>{first->message_id, second->message_id}));
  std::this_thread::sleep_for(100ms);  // An ACK, had one been sent, would have arrived.
  Result<std::uint32_t> unread = bob->DeleteAccount(false);
  ASSERT_OK(unread.status());
  EXPECT_EQ(*unread, 2u);
  // Pushed to this session, so not handed out again while it lives.
  Result<MessageBatch> none = bob->FetchUndelivered(50);
  ASSERT_OK(none.status());
  EXPECT_TRUE(none->messages.empty());

  bob->Close();  // The session ends with both messages unacknowledged.
  EXPECT_EQ(log.Count<Disconnected>(), 0u);
  std::unique_ptr<Client> bob_again = GrpcConnected();
  Result<LoginOk> login = bob_again->Login("bob", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 2u);
  Result<MessageBatch> batch = bob_again->FetchUndelivered(50);
  ASSERT_OK(batch.status());
  EXPECT_EQ(Ids(batch->messages),
            (std::vector<std::uint64_t>{first->message_id, second->message_id}));
}

TEST_F(GrpcClientTest, CloseWithTheStreamOpenEndsTheSessionPromptlyAndSilently) {
  PushLog log;
  std::unique_ptr<Client> bob = GrpcLoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  ProveStreamOpen(*alice, "bob", log);

  const auto start = SteadyClock::now();
  bob->Close();
  EXPECT_LT(SteadyClock::now() - start, 1500ms);
  EXPECT_EQ(bob->Ping().code(), ErrorCode::kDisconnected);
  EXPECT_EQ(bob->Send("alice", "hi").status().code(), ErrorCode::kDisconnected);
  // The server sees the stream cancelled and ends the session: bob is offline.
  EXPECT_TRUE(Eventually([&] {
    Result<SendOk> sent = alice->Send("bob", "are you gone?");
    return sent.ok() && sent->delivery == Delivery::kQueued;
  }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(log.Kinds(), std::vector<std::size_t>{kDeliverKind});

  ASSERT_OK(bob->Connect());
  Result<LoginOk> login = bob->Login("bob", kPassword);
  ASSERT_OK(login.status());
  EXPECT_GE(login->unread_count, 1u);  // The message sent while away; the first was ACKed.
  Result<MessageBatch> batch = bob->FetchUndelivered(50);
  ASSERT_OK(batch.status());
  for (const StoredMessage& message : batch->messages) EXPECT_EQ(message.text, "are you gone?");
}

TEST_F(GrpcClientTest, ServerShutdownEndsTheSessionAndIsReportedOnce) {
  PushLog log;
  std::unique_ptr<Client> bob = GrpcLoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = GrpcLoggedIn("alice");
  ProveStreamOpen(*alice, "bob", log);
  messenger_.Shutdown();
  StopGrpc(5s);
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  const std::vector<SessionEnded> ended = log.All<SessionEnded>();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].reason, EndReason::kServerShutdown);
  EXPECT_EQ(log.Kinds(),
            (std::vector<std::size_t>{kDeliverKind, kSessionEndedKind, kDisconnectedKind}));
  EXPECT_EQ(bob->Ping().code(), ErrorCode::kDisconnected);
  EXPECT_EQ(bob->Connect().code(), ErrorCode::kConnectionFailed);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(log.Count<Disconnected>(), 1u);
}

TEST_F(GrpcClientTest, LostStreamIsReportedAndAutoReconnectLogsInAgain) {
  PushLog log;
  ClientOptions options = GrpcOpts();
  options.auto_reconnect = true;
  options.reconnect_max_backoff = 200ms;
  std::unique_ptr<Client> bob = LoggedIn(MakeGrpcClient(options, log.Handler()), "bob");
  std::unique_ptr<Client> alice = WireLoggedIn("alice");
  ProveStreamOpen(*alice, "bob", log);
  const std::uint16_t port = grpc_port_;

  StopGrpc(100ms);  // No SESSION_ENDED: the stream is cut.
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  EXPECT_EQ(log.Count<SessionEnded>(), 0u);
  EXPECT_EQ(log.All<Disconnected>()[0].reason.code(), ErrorCode::kDisconnected);
  std::this_thread::sleep_for(300ms);  // A few refused attempts while the server is down.
  ASSERT_OK(StartGrpc(port));

  // The channel is installed only once logged in again, so a Ping means a full session.
  ASSERT_TRUE(Eventually([&] { return bob->Ping().ok(); }));
  Result<SendOk> sent = alice->Send("bob", "welcome back");
  ASSERT_OK(sent.status());
  EXPECT_EQ(sent->delivery, Delivery::kDelivered);
  ASSERT_TRUE(log.WaitFor<Deliver>(2));
  EXPECT_EQ(log.All<Deliver>().back().message.text, "welcome back");
  EXPECT_EQ(log.Count<Disconnected>(), 1u);
}

TEST_F(GrpcClientTest, SessionLimitIsReportedAsServerBusy) {
  StopGrpc();
  ASSERT_OK(StartGrpc(0, /*max_sessions=*/1));
  std::unique_ptr<Client> alice = GrpcLoggedIn("alice");
  std::unique_ptr<Client> bob = GrpcConnected();
  ASSERT_OK(bob->CreateAccount("bob", kPassword));
  const Status busy = bob->Login("bob", kPassword).status();
  EXPECT_EQ(busy.code(), ErrorCode::kServerBusy) << busy.ToString();
  ASSERT_OK(alice->Logout());
  EXPECT_TRUE(Eventually([&] { return bob->Login("bob", kPassword).ok(); }));
}

// ---- Without a gRPC server ----

TEST(GrpcClientConnectTest, ClosedPortFailsWithConnectionFailed) {
  // A port that was just free: bound, then closed.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  ::close(fd);

  ClientOptions options;
  options.port = ntohs(address.sin_port);
  options.connect_timeout = 2s;
  std::unique_ptr<Client> client = MakeGrpcClient(options, {});
  const auto start = SteadyClock::now();
  const Status status = client->Connect();
  EXPECT_EQ(status.code(), ErrorCode::kConnectionFailed) << status.ToString();
  EXPECT_LT(SteadyClock::now() - start, 1500ms);  // Refused at once, not timed out.
  EXPECT_EQ(client->Ping().code(), ErrorCode::kDisconnected);
}

TEST(GrpcClientConnectTest, ConnectTimesOutWhenNothingAnswers) {
  // A listener that never speaks HTTP/2: the kernel accepts, nobody answers.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);

  ClientOptions options;
  options.port = ntohs(address.sin_port);
  options.connect_timeout = 300ms;
  std::unique_ptr<Client> client = MakeGrpcClient(options, {});
  const auto start = SteadyClock::now();
  const Status status = client->Connect();
  EXPECT_EQ(status.code(), ErrorCode::kTimeout) << status.ToString();
  EXPECT_GE(SteadyClock::now() - start, 250ms);
  EXPECT_LT(SteadyClock::now() - start, 3s);
  ::close(fd);
}

}  // namespace
}  // namespace messenger

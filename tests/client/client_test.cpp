// Tests of the wire client over loopback: against the real TCP front door started in-process,
// and against scripted fake servers for what the real one does not do on demand (never answer,
// drop a connection with requests in flight, redeliver, send garbage). Every wait is bounded.

#include "messenger/client/client.h"

#include <Poco/Exception.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/Socket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
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

milliseconds Since(SteadyClock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start);
}

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

  // The index of each push's alternative, in arrival order.
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

// ---- The real server, in-process ----

class ClientTest : public ::testing::Test {
 protected:
  ClientTest()
      : store_(MakeMemoryStore()), messenger_(*store_, hasher_, SystemClock(), Options()) {}

  void SetUp() override { ASSERT_OK(StartServer(0)); }
  void TearDown() override { StopServer(); }

  static MessengerOptions Options() {
    MessengerOptions options;
    options.send_rate_per_second = 0;  // The pipelining test sends hundreds at once.
    return options;
  }

  Status StartServer(std::uint16_t port, int max_connections = 64) {
    TcpOptions options;
    options.host = "127.0.0.1";
    options.port = port;
    options.max_connections = max_connections;
    Result<std::unique_ptr<TcpFrontDoor>> door = TcpFrontDoor::Start(messenger_, options);
    if (!door.ok()) return door.status();
    door_ = std::move(door).value();
    port_ = door_->port();
    return Status::Ok();
  }

  // Every connection gets SESSION_ENDED(SERVER_SHUTDOWN); the Messenger stays usable.
  void StopServer() {
    if (!door_) return;
    door_->StopAccepting();
    EXPECT_TRUE(door_->Shutdown(2s));
    door_.reset();
  }

  ClientOptions ClientOpts() const {
    ClientOptions options;
    options.host = "127.0.0.1";
    options.port = port_;
    options.connect_timeout = 2s;
    options.request_timeout = kWait;
    return options;
  }

  std::unique_ptr<Client> Connected(PushHandler handler = {}) {
    return Connected(ClientOpts(), std::move(handler));
  }
  std::unique_ptr<Client> Connected(ClientOptions options, PushHandler handler) {
    std::unique_ptr<Client> client = MakeWireClient(std::move(options), std::move(handler));
    EXPECT_OK(client->Connect());
    return client;
  }

  // Registers `name` (if not yet registered) and returns a client logged in as it.
  std::unique_ptr<Client> LoggedIn(const std::string& name, PushHandler handler = {}) {
    return LoggedIn(name, ClientOpts(), std::move(handler));
  }
  std::unique_ptr<Client> LoggedIn(const std::string& name, ClientOptions options,
                                   PushHandler handler) {
    std::unique_ptr<Client> client = Connected(std::move(options), std::move(handler));
    const Status created = client->CreateAccount(name, kPassword);
    EXPECT_TRUE(created.ok() || created.code() == ErrorCode::kUsernameTaken) << created.ToString();
    EXPECT_OK(client->Login(name, kPassword).status());
    return client;
  }

  PlainHasher hasher_;
  std::unique_ptr<Store> store_;
  Messenger messenger_;
  std::unique_ptr<TcpFrontDoor> door_;  // Declared after messenger_: destroyed before it.
  std::uint16_t port_ = 0;
};

TEST_F(ClientTest, ConnectAnnouncesTheServersLimits) {
  std::unique_ptr<Client> client = Connected();
  const HelloOk info = client->server_info();
  EXPECT_EQ(info.protocol_version, kProtocolVersion);
  EXPECT_EQ(info.max_frame_size, kDefaultMaxFrameSize);
  EXPECT_EQ(info.max_prelogin_frame_size, kMaxPreloginFrameSize);
  EXPECT_EQ(info.max_text_bytes, kMaxTextBytes);
  EXPECT_EQ(info.max_queued_per_user, 10000u);
  EXPECT_EQ(info.server_name, WireOptions{}.server_name);
  EXPECT_OK(client->Connect());  // Already connected: nothing to do.
  EXPECT_OK(client->Ping());
}

TEST_F(ClientTest, RequestsFailWithDisconnectedBeforeConnectAndAfterClose) {
  PushLog log;
  std::unique_ptr<Client> client = MakeWireClient(ClientOpts(), log.Handler());
  EXPECT_EQ(client->Ping().code(), ErrorCode::kDisconnected);
  ASSERT_OK(client->Connect());
  EXPECT_OK(client->Ping());
  client->Close();
  EXPECT_EQ(client->Ping().code(), ErrorCode::kDisconnected);
  client->Close();                           // Idempotent.
  EXPECT_EQ(log.Count<Disconnected>(), 0u);  // The application closed it: nothing to report.
  ASSERT_OK(client->Connect());              // A closed client can connect again.
  EXPECT_OK(client->Ping());
}

TEST_F(ClientTest, AccountOperationsRoundTrip) {
  std::unique_ptr<Client> client = Connected();
  EXPECT_OK(client->CreateAccount("alice", kPassword));
  EXPECT_EQ(client->CreateAccount("Alice", kPassword).code(), ErrorCode::kUsernameTaken);
  EXPECT_EQ(client->CreateAccount("-alice", kPassword).code(), ErrorCode::kInvalidUsername);
  EXPECT_EQ(client->CreateAccount("bob", "short").code(), ErrorCode::kInvalidPassword);
  EXPECT_EQ(client->ListAccounts("", "", 10).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(client->Login("alice", "wrong password").status().code(), ErrorCode::kAuthFailed);

  Result<LoginOk> login = client->Login("ALICE", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 0u);
  EXPECT_EQ(client->Login("alice", kPassword).status().code(), ErrorCode::kAlreadyLoggedIn);
  for (const char* name : {"dave", "Bob", "carol"})
    EXPECT_OK(client->CreateAccount(name, kPassword));

  // Pages of two, sorted by canonical name, shown as registered; the cursor leads to the end.
  std::vector<std::string> names;
  std::string cursor;
  Result<AccountList> first = client->ListAccounts("", "", 2);
  ASSERT_OK(first.status());
  EXPECT_EQ(first->usernames, (std::vector<std::string>{"alice", "Bob"}));
  names = first->usernames;
  cursor = first->next_cursor;
  for (int page = 0; page < 5 && !cursor.empty(); ++page) {
    Result<AccountList> next = client->ListAccounts("", cursor, 2);
    ASSERT_OK(next.status());
    names.insert(names.end(), next->usernames.begin(), next->usernames.end());
    cursor = next->next_cursor;
  }
  EXPECT_TRUE(cursor.empty());
  EXPECT_EQ(names, (std::vector<std::string>{"alice", "Bob", "carol", "dave"}));
  Result<AccountList> filtered = client->ListAccounts("[!ab]*", "", 10);
  ASSERT_OK(filtered.status());
  EXPECT_EQ(filtered->usernames, (std::vector<std::string>{"carol", "dave"}));
  EXPECT_EQ(client->ListAccounts("[a-", "", 10).status().code(), ErrorCode::kInvalidPattern);
  EXPECT_EQ(client->ListAccounts("", "", 0).status().code(), ErrorCode::kInvalidArgument);

  EXPECT_OK(client->Ping());
  EXPECT_OK(client->Logout());
  EXPECT_EQ(client->Logout().code(), ErrorCode::kNotLoggedIn);
  EXPECT_OK(client->Ping());  // Logged out, still connected.
}

TEST_F(ClientTest, SentMessagesAreFetchedAndAckedByTheirRecipient) {
  std::unique_ptr<Client> alice = LoggedIn("alice");
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

  std::unique_ptr<Client> bob = Connected();
  Result<LoginOk> login = bob->Login("bob", "hunter2hunter2");
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 2u);
  Result<MessageBatch> batch = bob->FetchUndelivered(50);
  ASSERT_OK(batch.status());
  ASSERT_EQ(batch->messages.size(), 2u);
  EXPECT_EQ(batch->remaining, 0u);
  EXPECT_EQ(batch->messages[0],
            (StoredMessage{first->message_id, "alice", first->timestamp_ms, "hi"}));
  EXPECT_EQ(batch->messages[1].message_id, second->message_id);
  EXPECT_EQ(batch->messages[1].text, "Grüße aus Köln 👋");
  EXPECT_EQ(bob->FetchUndelivered(0).status().code(), ErrorCode::kInvalidArgument);

  const std::vector<std::uint64_t> ids = Ids(batch->messages);
  EXPECT_OK(bob->Ack(ids));
  EXPECT_OK(bob->Ack(ids));  // ACK is idempotent.
  EXPECT_OK(bob->Logout());
  login = bob->Login("bob", "hunter2hunter2");
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 0u);
}

TEST_F(ClientTest, DeleteAccountAsksForConfirmationThenDeletes) {
  std::unique_ptr<Client> alice = LoggedIn("alice");
  std::unique_ptr<Client> bob = LoggedIn("bob");
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
}

TEST_F(ClientTest, SendWithIdIsIdempotentAndFreshIdsDifferBetweenClientObjects) {
  std::unique_ptr<Client> alice = LoggedIn("alice");
  ASSERT_OK(alice->CreateAccount("bob", kPassword));

  Result<SendOk> original = alice->SendWithId("bob", "retried", 777);
  Result<SendOk> retry = alice->SendWithId("bob", "retried", 777);
  ASSERT_OK(original.status());
  ASSERT_OK(retry.status());
  EXPECT_EQ(retry->message_id, original->message_id);
  EXPECT_EQ(alice->SendWithId("bob", "other text", 777).status().code(),
            ErrorCode::kClientIdReused);

  // The same text twice, from one client object and then from another: if fresh client message
  // ids repeated, the server would take a later SEND for a retry and store nothing new.
  std::set<std::uint64_t> message_ids;
  for (int i = 0; i < 2; ++i) {
    Result<SendOk> sent = alice->Send("bob", "same text");
    ASSERT_OK(sent.status());
    message_ids.insert(sent->message_id);
  }
  alice.reset();
  std::unique_ptr<Client> alice_again = LoggedIn("alice");
  Result<SendOk> sent = alice_again->Send("bob", "same text");
  ASSERT_OK(sent.status());
  message_ids.insert(sent->message_id);
  EXPECT_EQ(message_ids.size(), 3u);
}

TEST_F(ClientTest, OversizedRequestBeforeLoginIsRefusedLocallyAndTheConnectionSurvives) {
  std::unique_ptr<Client> client = Connected();
  ASSERT_OK(client->CreateAccount("alice", kPassword));
  ASSERT_OK(client->CreateAccount("bob", kPassword));
  const std::string text(kMaxTextBytes, 'x');  // Fits after login, not before.
  EXPECT_EQ(client->Send("bob", text).status().code(), ErrorCode::kNotLoggedIn);
  EXPECT_EQ(client->CreateAccount(std::string(1100, 'a'), kPassword).code(),
            ErrorCode::kFrameTooLarge);
  EXPECT_OK(client->Ping());  // Sent anyway, either would have cost the connection.
  ASSERT_OK(client->Login("alice", kPassword).status());
  EXPECT_OK(client->Send("bob", text).status());
}

TEST_F(ClientTest, PipelinedRequestsFromManyThreadsAreMatchedToTheirCallers) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::unique_ptr<Client> alice = LoggedIn("alice");
  ASSERT_OK(alice->CreateAccount("bob", kPassword));

  std::mutex mu;
  std::map<std::uint64_t, std::string> sent;  // message id -> the text its caller sent.
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          if (i % 2 == 0) {
            // PONG must carry this caller's nonce; the client checks it.
            if (!alice->Ping().ok()) ++failures;
            continue;
          }
          const std::string text = "thread " + std::to_string(t) + " message " + std::to_string(i);
          Result<SendOk> result = alice->Send("bob", text);
          if (!result.ok()) {
            ++failures;
            continue;
          }
          std::lock_guard lock(mu);
          if (!sent.emplace(result->message_id, text).second) ++failures;
        }
      });
    }
  }
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(sent.size(), static_cast<std::size_t>(kThreads * kPerThread / 2));

  // Each caller got the SEND_OK of its own message: the stored text under each id is its text.
  std::unique_ptr<Client> bob = LoggedIn("bob");
  std::map<std::uint64_t, std::string> stored;
  for (int page = 0; page < 20; ++page) {
    Result<MessageBatch> batch = bob->FetchUndelivered(kMaxFetchLimit);
    ASSERT_OK(batch.status());
    for (const StoredMessage& message : batch->messages) stored[message.message_id] = message.text;
    if (batch->remaining == 0) break;
  }
  EXPECT_EQ(stored, sent);
}

TEST_F(ClientTest, DeliveriesInterleaveWithResponsesInFlight) {
  constexpr int kMessages = 30;
  PushLog log;
  std::unique_ptr<Client> bob = LoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = LoggedIn("alice");

  std::atomic<bool> sending{true};
  std::atomic<int> pings{0};
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> pingers;
    for (int t = 0; t < 4; ++t) {
      pingers.emplace_back([&] {
        while (sending.load()) {
          if (bob->Ping().ok()) {
            ++pings;
          } else {
            ++failures;
          }
        }
      });
    }
    ASSERT_TRUE(Eventually([&] { return pings.load() >= 20; }));
    for (int i = 0; i < kMessages; ++i) {
      Result<SendOk> result = alice->Send("bob", "m" + std::to_string(i));
      ASSERT_OK(result.status());
      EXPECT_EQ(result->delivery, Delivery::kDelivered);
    }
    EXPECT_TRUE(log.WaitFor<Deliver>(kMessages));
    sending = false;
  }
  EXPECT_EQ(failures.load(), 0);
  const std::vector<Deliver> delivers = log.All<Deliver>();
  ASSERT_EQ(delivers.size(), static_cast<std::size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(delivers[i].message.text, "m" + std::to_string(i));
    EXPECT_EQ(delivers[i].message.sender, "alice");
    if (i > 0) {
      EXPECT_GT(delivers[i].message.message_id, delivers[i - 1].message.message_id);
    }
  }
}

TEST_F(ClientTest, AcceptedDeliveryIsAckedAutomatically) {
  PushLog log;
  std::unique_ptr<Client> bob = LoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = LoggedIn("alice");
  ASSERT_OK(alice->Send("bob", "pushed").status());
  ASSERT_TRUE(log.WaitFor<Deliver>(1));
  // The ACK is sent without waiting for its answer; the server sees it shortly.
  EXPECT_TRUE(Eventually([&] {
    Result<std::uint32_t> unread = bob->DeleteAccount(false);
    return unread.ok() && *unread == 0;
  }));
  bob.reset();
  std::unique_ptr<Client> bob_again = Connected();
  Result<LoginOk> login = bob_again->Login("bob", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 0u);
}

TEST_F(ClientTest, RefusedDeliveryStaysStoredAndComesBackWithTheSameId) {
  PushLog log;
  log.set_accept(false);
  std::unique_ptr<Client> bob = LoggedIn("bob", log.Handler());
  std::unique_ptr<Client> alice = LoggedIn("alice");
  Result<SendOk> first = alice->Send("bob", "one");
  Result<SendOk> second = alice->Send("bob", "two");
  ASSERT_OK(first.status());
  ASSERT_OK(second.status());
  ASSERT_TRUE(log.WaitFor<Deliver>(2));
  // Had the first been ACKed, that ACK would have been queued before this PING, and the server
  // answers in order.
  ASSERT_OK(bob->Ping());
  Result<std::uint32_t> unread = bob->DeleteAccount(false);
  ASSERT_OK(unread.status());
  EXPECT_EQ(*unread, 2u);

  bob.reset();  // The connection ends with both messages unacknowledged.
  std::unique_ptr<Client> bob_again = Connected();
  Result<LoginOk> login = bob_again->Login("bob", kPassword);
  ASSERT_OK(login.status());
  EXPECT_EQ(login->unread_count, 2u);
  Result<MessageBatch> batch = bob_again->FetchUndelivered(50);
  ASSERT_OK(batch.status());
  EXPECT_EQ(Ids(batch->messages),
            (std::vector<std::uint64_t>{first->message_id, second->message_id}));
}

TEST_F(ClientTest, ServerBusyIsReportedByConnect) {
  StopServer();
  ASSERT_OK(StartServer(0, /*max_connections=*/1));
  std::unique_ptr<Client> first = Connected();
  std::unique_ptr<Client> second = MakeWireClient(ClientOpts(), {});
  const Status busy = second->Connect();
  EXPECT_EQ(busy.code(), ErrorCode::kServerBusy) << busy.ToString();
  EXPECT_EQ(HumanMessage(busy), "The server is full right now; try again later.");

  first->Close();
  ASSERT_TRUE(Eventually([&] { return door_->live_connections() == 0; }));
  EXPECT_OK(second->Connect());
  EXPECT_OK(second->Ping());
}

TEST_F(ClientTest, ServerShutdownEndsTheSessionAndIsReportedOnce) {
  PushLog log;
  std::unique_ptr<Client> bob = LoggedIn("bob", log.Handler());
  StopServer();
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  const std::vector<SessionEnded> ended = log.All<SessionEnded>();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].reason, EndReason::kServerShutdown);
  // SESSION_ENDED first, then the end of the connection.
  EXPECT_EQ(log.Kinds(), (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(log.All<Disconnected>()[0].reason.code(), ErrorCode::kDisconnected);
  EXPECT_EQ(bob->Ping().code(), ErrorCode::kDisconnected);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(log.Count<Disconnected>(), 1u);
}

TEST_F(ClientTest, TakeoverEndsTheSessionWithoutReconnecting) {
  PushLog log;
  ClientOptions options = ClientOpts();
  options.auto_reconnect = true;
  options.reconnect_max_backoff = 100ms;
  std::unique_ptr<Client> bob = LoggedIn("bob", options, log.Handler());
  std::unique_ptr<Client> bob_elsewhere = LoggedIn("bob");

  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  const std::vector<SessionEnded> ended = log.All<SessionEnded>();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].reason, EndReason::kTakeover);
  // Several backoff periods later: still no new connection (it would take the session back).
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(bob->Ping().code(), ErrorCode::kDisconnected);
  EXPECT_EQ(door_->live_connections(), 1);
  EXPECT_OK(bob_elsewhere->Ping());
}

TEST_F(ClientTest, AutoReconnectLogsInAgainAfterTheServerRestarts) {
  PushLog log;
  ClientOptions options = ClientOpts();
  options.auto_reconnect = true;
  options.reconnect_max_backoff = 200ms;
  std::unique_ptr<Client> bob = LoggedIn("bob", options, log.Handler());
  const std::uint16_t port = port_;

  StopServer();
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  std::this_thread::sleep_for(300ms);  // A few refused attempts while the server is down.
  ASSERT_OK(StartServer(port));

  // The connection is installed only once logged in again, so a PONG means a full session.
  ASSERT_TRUE(Eventually([&] { return bob->Ping().ok(); }));
  EXPECT_OK(bob->FetchUndelivered(1).status());
  std::unique_ptr<Client> alice = LoggedIn("alice");
  Result<SendOk> sent = alice->Send("bob", "welcome back");
  ASSERT_OK(sent.status());
  EXPECT_EQ(sent->delivery, Delivery::kDelivered);
  ASSERT_TRUE(log.WaitFor<Deliver>(1));
  EXPECT_EQ(log.All<Deliver>()[0].message.text, "welcome back");
  EXPECT_EQ(log.Count<Disconnected>(), 1u);
}

TEST_F(ClientTest, HumanMessageQuotesTheServersUsernameRule) {
  std::unique_ptr<Client> client = Connected();
  const Status status = client->CreateAccount("-alice", kPassword);
  ASSERT_EQ(status.code(), ErrorCode::kInvalidUsername);
  const std::string sentence = HumanMessage(status);
  EXPECT_EQ(sentence.rfind("That username is not allowed", 0), 0u) << sentence;
  EXPECT_NE(sentence.find("letter or digit"), std::string::npos) << sentence;
}

// ---- Connection failures without a server ----

TEST(ClientConnectTest, ClosedPortFailsWithConnectionFailed) {
  std::uint16_t port = 0;
  {
    Poco::Net::ServerSocket probe(Poco::Net::SocketAddress("127.0.0.1", 0));
    port = probe.address().port();
  }  // Closed again: nobody listens there now.
  ClientOptions options;
  options.port = port;
  std::unique_ptr<Client> client = MakeWireClient(options, {});
  const Status status = client->Connect();
  EXPECT_EQ(status.code(), ErrorCode::kConnectionFailed) << status.ToString();
  EXPECT_NE(status.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << status.ToString();
}

TEST(ClientConnectTest, UnresolvableHostFailsWithConnectionFailed) {
  ClientOptions options;
  options.host = "no-such-host.invalid";  // RFC 2606: never resolves.
  std::unique_ptr<Client> client = MakeWireClient(options, {});
  const Status status = client->Connect();
  EXPECT_EQ(status.code(), ErrorCode::kConnectionFailed) << status.ToString();
  EXPECT_NE(status.message().find("no-such-host.invalid"), std::string::npos) << status.ToString();
}

// ---- Scripted fake servers ----

HelloOk TestHelloOk() {
  return HelloOk{
      kProtocolVersion, kDefaultMaxFrameSize, kMaxPreloginFrameSize, kMaxTextBytes, 10000, "fake"};
}

// One accepted connection, read and written frame by frame with the codec.
class RawPeer {
 public:
  explicit RawPeer(const Poco::Net::StreamSocket& socket) : socket_(socket) {
    socket_.setReceiveTimeout(Poco::Timespan(5, 0));
  }

  // The next frame from the client; nullopt once it closed, broke the framing or went quiet.
  std::optional<Frame> Read() {
    for (;;) {
      if (std::optional<DecodeResult> decoded = decoder_.Next()) {
        if (!decoded->status.ok()) return std::nullopt;
        return Frame{decoded->request_id, std::move(decoded->message)};
      }
      std::uint8_t buffer[4096];
      int n = 0;
      try {
        n = socket_.receiveBytes(buffer, sizeof buffer);
      } catch (const Poco::Exception&) {
        return std::nullopt;
      }
      if (n <= 0) return std::nullopt;
      decoder_.Feed(std::span<const std::uint8_t>(buffer, static_cast<std::size_t>(n)));
    }
  }

  // The next frame if it holds a T, with its request id.
  template <typename T>
  std::optional<std::pair<std::uint32_t, T>> Expect() {
    std::optional<Frame> frame = Read();
    if (!frame) return std::nullopt;
    const T* message = std::get_if<T>(&frame->message);
    EXPECT_NE(message, nullptr) << "got " << Describe(*frame);
    if (message == nullptr) return std::nullopt;
    return std::make_pair(frame->request_id, *message);
  }

  void Write(const Frame& frame) {
    Bytes bytes;
    ASSERT_OK(EncodeFrame(frame, bytes));
    WriteBytes(bytes);
  }

  void WriteBytes(const Bytes& bytes) {
    try {
      socket_.sendBytes(bytes.data(), static_cast<int>(bytes.size()), MSG_NOSIGNAL);
    } catch (const Poco::Exception&) {
      // The client has gone; the test's own checks notice.
    }
  }

  // Answers the client's HELLO with HELLO_OK; false if the first frame was something else.
  bool Handshake() {
    std::optional<std::pair<std::uint32_t, Hello>> hello = Expect<Hello>();
    if (!hello) return false;
    Write(Frame{hello->first, TestHelloOk()});
    return true;
  }

  // Reads until the client closes (or 5 s of silence); returns the frames it sent meanwhile.
  std::vector<Frame> DrainUntilClosed() {
    std::vector<Frame> frames;
    while (std::optional<Frame> frame = Read()) frames.push_back(std::move(*frame));
    return frames;
  }

  void Close() {
    try {
      socket_.shutdown();
    } catch (const Poco::Exception&) {
    }
    socket_.close();
  }

 private:
  Poco::Net::StreamSocket socket_;
  FrameDecoder decoder_{kMaxMaxFrameSize};
};

class FakeServer {
 public:
  FakeServer() : listener_(Poco::Net::SocketAddress("127.0.0.1", 0)) {}

  std::uint16_t port() const { return listener_.address().port(); }

  // The next connection, or nullptr if none arrives within 5 s.
  std::unique_ptr<RawPeer> Accept() {
    if (!listener_.poll(Poco::Timespan(5, 0), Poco::Net::Socket::SELECT_READ)) return nullptr;
    return std::make_unique<RawPeer>(listener_.acceptConnection());
  }

 private:
  Poco::Net::ServerSocket listener_;
};

ClientOptions FakeOptions(const FakeServer& server) {
  ClientOptions options;
  options.host = "127.0.0.1";
  options.port = server.port();
  options.connect_timeout = 2s;
  options.request_timeout = kWait;
  return options;
}

TEST(ClientFakeServerTest, RequestTimesOutWhenTheServerNeverAnswers) {
  FakeServer server;
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    ASSERT_TRUE(peer->Handshake());
    peer->DrainUntilClosed();  // Reads every request, answers none.
  });
  ClientOptions options = FakeOptions(server);
  options.request_timeout = 300ms;
  PushLog log;
  std::unique_ptr<Client> client = MakeWireClient(options, log.Handler());
  ASSERT_OK(client->Connect());
  const auto start = SteadyClock::now();
  const Status status = client->Ping();
  const milliseconds took = Since(start);
  EXPECT_EQ(status.code(), ErrorCode::kTimeout) << status.ToString();
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2000ms);
  EXPECT_EQ(log.Count<Disconnected>(), 0u);  // A slow answer does not end the connection.
}

TEST(ClientFakeServerTest, ConnectTimesOutWhenTheHandshakeIsNotAnswered) {
  FakeServer server;
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    peer->DrainUntilClosed();
  });
  ClientOptions options = FakeOptions(server);
  options.connect_timeout = 300ms;
  std::unique_ptr<Client> client = MakeWireClient(options, {});
  const auto start = SteadyClock::now();
  const Status status = client->Connect();
  EXPECT_EQ(status.code(), ErrorCode::kTimeout) << status.ToString();
  EXPECT_LT(Since(start), 2000ms);
}

TEST(ClientFakeServerTest, UnsupportedVersionIsReportedByConnect) {
  FakeServer server;
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    std::optional<std::pair<std::uint32_t, Hello>> hello = peer->Expect<Hello>();
    ASSERT_TRUE(hello.has_value());
    peer->Write(Frame{hello->first, Error{ErrorCode::kUnsupportedVersion, "speaks v2 only"}});
    peer->Close();
  });
  std::unique_ptr<Client> client = MakeWireClient(FakeOptions(server), {});
  EXPECT_EQ(client->Connect().code(), ErrorCode::kUnsupportedVersion);
}

TEST(ClientFakeServerTest, DroppedConnectionFailsEveryPendingRequestAndIsReportedOnce) {
  constexpr int kCallers = 4;
  FakeServer server;
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    ASSERT_TRUE(peer->Handshake());
    for (int i = 0; i < kCallers; ++i) ASSERT_TRUE(peer->Expect<Ping>().has_value());
    peer->Close();  // All four are in flight: none is answered.
  });
  PushLog log;
  std::unique_ptr<Client> client = MakeWireClient(FakeOptions(server), log.Handler());
  ASSERT_OK(client->Connect());
  std::vector<Status> results(kCallers);
  const auto start = SteadyClock::now();
  {
    std::vector<std::jthread> callers;
    for (int i = 0; i < kCallers; ++i) {
      callers.emplace_back([&, i] { results[i] = client->Ping(); });
    }
  }
  EXPECT_LT(Since(start), 2000ms);  // At once, not after the request timeout.
  for (const Status& status : results) {
    EXPECT_EQ(status.code(), ErrorCode::kDisconnected) << status.ToString();
    EXPECT_NE(status.message().find("closed the connection"), std::string::npos)
        << status.ToString();
  }
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  EXPECT_EQ(client->Ping().code(), ErrorCode::kDisconnected);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(log.Count<Disconnected>(), 1u);
}

TEST(ClientFakeServerTest, ConnectionLevelErrorFailsPendingRequestsAndEndsTheConnection) {
  FakeServer server;
  std::atomic<bool> client_closed{false};
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    ASSERT_TRUE(peer->Handshake());
    ASSERT_TRUE(peer->Expect<Ping>().has_value());
    peer->Write(Frame{0, Error{ErrorCode::kFrameTooLarge, "frame length exceeds the limit"}});
    // The server keeps its end open: the client must end the connection by itself.
    peer->DrainUntilClosed();
    client_closed = true;
  });
  PushLog log;
  std::unique_ptr<Client> client = MakeWireClient(FakeOptions(server), log.Handler());
  ASSERT_OK(client->Connect());
  const Status status = client->Ping();
  EXPECT_EQ(status.code(), ErrorCode::kDisconnected) << status.ToString();
  EXPECT_NE(status.message().find("FRAME_TOO_LARGE"), std::string::npos) << status.ToString();
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  EXPECT_TRUE(Eventually([&] { return client_closed.load(); }, 3000ms));
}

TEST(ClientFakeServerTest, UndecodableFrameFromTheServerEndsTheConnection) {
  FakeServer server;
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    ASSERT_TRUE(peer->Handshake());
    std::optional<std::pair<std::uint32_t, Ping>> ping = peer->Expect<Ping>();
    ASSERT_TRUE(ping.has_value());
    // Type 0x0B is not assigned.
    peer->WriteBytes(Bytes{0, 0, 0, 5, 0x0b, 0, 0, 0, static_cast<std::uint8_t>(ping->first)});
    peer->DrainUntilClosed();
  });
  PushLog log;
  std::unique_ptr<Client> client = MakeWireClient(FakeOptions(server), log.Handler());
  ASSERT_OK(client->Connect());
  const Status status = client->Ping();
  EXPECT_EQ(status.code(), ErrorCode::kDisconnected) << status.ToString();
  EXPECT_NE(status.message().find("UNKNOWN_TYPE"), std::string::npos) << status.ToString();
  EXPECT_TRUE(log.WaitFor<Disconnected>(1));
}

TEST(ClientFakeServerTest, ResponseOfTheWrongTypeEndsTheConnection) {
  FakeServer server;
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    ASSERT_TRUE(peer->Handshake());
    std::optional<std::pair<std::uint32_t, Ping>> ping = peer->Expect<Ping>();
    ASSERT_TRUE(ping.has_value());
    peer->Write(Frame{ping->first, Ok{}});
    peer->DrainUntilClosed();
  });
  std::unique_ptr<Client> client = MakeWireClient(FakeOptions(server), {});
  ASSERT_OK(client->Connect());
  const Status status = client->Ping();
  EXPECT_EQ(status.code(), ErrorCode::kDisconnected) << status.ToString();
}

TEST(ClientFakeServerTest, CloseFailsPendingRequestsWithoutReportingADisconnect) {
  FakeServer server;
  std::atomic<bool> ping_received{false};
  std::jthread script([&] {
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    ASSERT_TRUE(peer->Handshake());
    ASSERT_TRUE(peer->Expect<Ping>().has_value());
    ping_received = true;
    peer->DrainUntilClosed();
  });
  PushLog log;
  std::unique_ptr<Client> client = MakeWireClient(FakeOptions(server), log.Handler());
  ASSERT_OK(client->Connect());
  Status result;
  std::jthread caller([&] { result = client->Ping(); });
  ASSERT_TRUE(Eventually([&] { return ping_received.load(); }));
  const auto start = SteadyClock::now();
  client->Close();
  caller.join();
  EXPECT_LT(Since(start), 2000ms);
  EXPECT_EQ(result.code(), ErrorCode::kDisconnected) << result.ToString();
  EXPECT_EQ(log.Count<Disconnected>(), 0u);
}

TEST(ClientFakeServerTest, RedeliveryAfterReconnectIsHandedOverOnceAndAckedAgain) {
  FakeServer server;
  const StoredMessage first{77, "alice", 1735732800000, "first"};
  const StoredMessage second{78, "alice", 1735732900000, "second"};
  const StoredMessage fetched{79, "alice", 1735733000000, "fetched"};
  std::vector<Login> logins;
  std::vector<std::vector<std::uint64_t>> acks_before_drop;
  std::vector<std::vector<std::uint64_t>> acks_after_reconnect;
  std::jthread script([&] {
    // First connection: deliver 77, see its ACK, then drop as if that ACK had been lost.
    {
      std::unique_ptr<RawPeer> peer = server.Accept();
      ASSERT_NE(peer, nullptr);
      ASSERT_TRUE(peer->Handshake());
      std::optional<std::pair<std::uint32_t, Login>> login = peer->Expect<Login>();
      ASSERT_TRUE(login.has_value());
      logins.push_back(login->second);
      peer->Write(Frame{login->first, LoginOk{1}});
      peer->Write(Frame{0, Deliver{first}});
      std::optional<std::pair<std::uint32_t, Ack>> ack = peer->Expect<Ack>();
      ASSERT_TRUE(ack.has_value());
      acks_before_drop.push_back(ack->second.message_ids);
      peer->Close();
    }
    // The reconnection: 77 again, then 78; FETCH returns 77 once more and 79.
    std::unique_ptr<RawPeer> peer = server.Accept();
    ASSERT_NE(peer, nullptr);
    ASSERT_TRUE(peer->Handshake());
    std::optional<std::pair<std::uint32_t, Login>> login = peer->Expect<Login>();
    ASSERT_TRUE(login.has_value());
    logins.push_back(login->second);
    peer->Write(Frame{login->first, LoginOk{2}});
    peer->Write(Frame{0, Deliver{first}});
    peer->Write(Frame{0, Deliver{second}});
    while (std::optional<Frame> frame = peer->Read()) {
      if (const auto* ack = std::get_if<Ack>(&frame->message)) {
        acks_after_reconnect.push_back(ack->message_ids);
        peer->Write(Frame{frame->request_id, Ok{}});
      } else if (std::holds_alternative<FetchUndelivered>(frame->message)) {
        peer->Write(Frame{frame->request_id, MessageBatch{{first, fetched}, 0}});
      } else {
        ADD_FAILURE() << "unexpected " << Describe(*frame);
      }
    }
  });

  PushLog log;
  ClientOptions options = FakeOptions(server);
  options.auto_reconnect = true;
  options.reconnect_max_backoff = 200ms;
  std::unique_ptr<Client> client = MakeWireClient(options, log.Handler());
  ASSERT_OK(client->Connect());
  ASSERT_OK(client->Login("bob", "hunter2hunter2").status());
  ASSERT_TRUE(log.WaitFor<Disconnected>(1));
  ASSERT_TRUE(log.WaitFor<Deliver>(2));
  EXPECT_EQ(Ids(log.All<Deliver>()), (std::vector<std::uint64_t>{77, 78}));

  // Until the reconnection is installed, requests fail at once without reaching the server.
  Result<MessageBatch> batch = Status(ErrorCode::kDisconnected, "not yet");
  ASSERT_TRUE(Eventually([&] {
    batch = client->FetchUndelivered(50);
    return batch.ok();
  }));
  EXPECT_EQ(batch->messages, (std::vector<StoredMessage>{fetched}));

  client.reset();  // Ends the script's read loop.
  script.join();
  EXPECT_EQ(Ids(log.All<Deliver>()), (std::vector<std::uint64_t>{77, 78}));
  ASSERT_EQ(logins.size(), 2u);
  EXPECT_EQ(logins[1], (Login{"bob", "hunter2hunter2"}));
  EXPECT_EQ(acks_before_drop, (std::vector<std::vector<std::uint64_t>>{{77}}));
  std::sort(acks_after_reconnect.begin(), acks_after_reconnect.end());
  EXPECT_EQ(acks_after_reconnect, (std::vector<std::vector<std::uint64_t>>{{77}, {77}, {78}}));
}

// ---- HumanMessage ----

TEST(HumanMessageTest, EveryCodeHasItsOwnPlainSentence) {
  std::set<std::string> sentences;
  int codes = 0;
  for (int value = 0; value <= 1100; ++value) {
    const auto code = static_cast<ErrorCode>(value);
    const std::string_view name = ErrorCodeName(code);
    if (name == "UNKNOWN") continue;
    ++codes;
    const std::string sentence = HumanMessage(Status(code, ""));
    EXPECT_FALSE(sentence.empty()) << name;
    EXPECT_EQ(sentence.find(name), std::string::npos) << name << ": " << sentence;
    EXPECT_TRUE(std::isupper(static_cast<unsigned char>(sentence.front()))) << sentence;
    EXPECT_EQ(sentence.back(), '.') << sentence;
    sentences.insert(sentence);
  }
  EXPECT_EQ(codes, 30);  // OK, the 25 wire codes and the 4 local ones.
  EXPECT_EQ(sentences.size(), static_cast<std::size_t>(codes));
}

TEST(HumanMessageTest, SaysWhatHappenedInPlainWords) {
  EXPECT_EQ(HumanMessage(Status(ErrorCode::kUnknownRecipient, "no such account")),
            "There is no user with that name.");
  EXPECT_EQ(HumanMessage(Status(ErrorCode::kAuthFailed, "")), "Wrong username or password.");
  EXPECT_EQ(HumanMessage(Status(ErrorCode::kDisconnected, "peer reset")),
            "Lost the connection to the server.");
  EXPECT_EQ(HumanMessage(Status(ErrorCode::kTimeout, "no answer")),
            "The server did not answer in time.");
}

TEST(HumanMessageTest, SaysWhyASecureConnectionFailed) {
  EXPECT_EQ(
      HumanMessage(Status(ErrorCode::kTlsFailed,
                          "TLS handshake with 10.0.0.5:5050 failed: certificate has expired")),
      "No secure connection to the server: TLS handshake with 10.0.0.5:5050 failed: "
      "certificate has expired.");
  EXPECT_EQ(HumanMessage(Status(ErrorCode::kTlsFailed, "")),
            "Could not set up a secure connection to the server.");
}

TEST(HumanMessageTest, QuotesAServerRuleOnlyWhenItIsPlainText) {
  EXPECT_EQ(HumanMessage(Status(ErrorCode::kInvalidUsername, "a username has 1 to 32 characters")),
            "That username is not allowed: a username has 1 to 32 characters.");
  // Text from the network with control bytes is not shown; the built-in rule is.
  const std::string sentence = HumanMessage(Status(ErrorCode::kInvalidUsername, "bad\x1b[2Jname"));
  EXPECT_EQ(sentence.find('\x1b'), std::string::npos);
  EXPECT_EQ(sentence.rfind("That username is not allowed: use 1 to 32", 0), 0u) << sentence;
}

}  // namespace
}  // namespace messenger

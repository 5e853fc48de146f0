// The wire protocol over TLS, end to end over loopback: the TCP front door with TLS in-process,
// wire clients trusting the test CA, and everything that must fail doing so quickly and saying
// why (wrong CA, wrong name, expired certificate, plain against TLS either way, TLS 1.1, a silent
// connection). Also `poco_messenger client`'s TLS options, parsed and run. Every wait is bounded.

#include <Poco/Exception.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "commands.h"
#include "messenger/client/client.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "messenger/server/clock.h"
#include "messenger/server/messenger.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/store.h"
#include "messenger/tls/tls_context.h"
#include "tcp_front_door.h"
#include "test_pki.h"
#include "test_support.h"

namespace messenger {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
using testing::Eventually;
using testing::Pki;
using testing::PlainHasher;

constexpr milliseconds kWait{10000};
// What "fails quickly" means: far below any timeout involved, far above loopback latency.
constexpr milliseconds kQuickly{3000};
constexpr std::string_view kPassword = "correct horse";

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Collects deliveries; the handler can be held shut (the client's reader then stops reading).
class Inbox {
 public:
  PushHandler Handler() {
    return [this](const Push& push) {
      std::unique_lock lock(mu_);
      changed_.wait_for(lock, kWait, [this] { return open_; });
      if (const auto* deliver = std::get_if<Deliver>(&push)) delivers_.push_back(*deliver);
      changed_.notify_all();
      return true;
    };
  }
  void set_open(bool open) {
    std::lock_guard lock(mu_);
    open_ = open;
    changed_.notify_all();
  }
  bool WaitFor(std::size_t count, milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return delivers_.size() >= count; });
  }
  std::vector<Deliver> delivers() const {
    std::lock_guard lock(mu_);
    return delivers_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Deliver> delivers_;
  bool open_ = true;
};

class TlsWireTest : public ::testing::Test {
 protected:
  TlsWireTest()
      : store_(MakeMemoryStore()), messenger_(*store_, hasher_, SystemClock(), Options()) {}

  void SetUp() override { ASSERT_TRUE(Pki().ok()) << "make-test-certs failed"; }
  void TearDown() override { StopServer(); }

  static MessengerOptions Options() {
    MessengerOptions options;
    options.send_rate_per_second = 0;  // The burst test sends thousands at once.
    return options;
  }

  struct ServerConfig {
    std::string certificate = "server";  // <name>.pem and <name>.key; empty: plain TCP.
    std::uint16_t port = 0;
    int max_connections = 64;
    std::uint64_t login_timeout_ms = 30000;
  };

  Status StartServer(const ServerConfig& config) {
    TcpOptions options;
    options.host = "127.0.0.1";
    options.port = config.port;
    options.max_connections = config.max_connections;
    options.wire.login_timeout_ms = config.login_timeout_ms;
    if (!config.certificate.empty()) {
      Result<std::shared_ptr<const TlsServerContext>> tls = TlsServerContext::Load(
          Pki().File(config.certificate + ".pem"), Pki().File(config.certificate + ".key"));
      if (!tls.ok()) return tls.status();
      options.tls = tls.value();
    }
    Result<std::unique_ptr<TcpFrontDoor>> door = TcpFrontDoor::Start(messenger_, options);
    if (!door.ok()) return door.status();
    door_ = std::move(door).value();
    port_ = door_->port();
    return Status::Ok();
  }
  Status StartServer() { return StartServer(ServerConfig{}); }

  void StopServer() {
    if (!door_) return;
    door_->StopAccepting();
    EXPECT_TRUE(door_->Shutdown(2s));
    door_.reset();
  }

  ClientOptions TlsOptions() const {
    ClientOptions options;
    options.host = "127.0.0.1";
    options.port = port_;
    options.connect_timeout = 5s;
    options.request_timeout = kWait;
    options.tls.enabled = true;
    options.tls.ca_file = Pki().File("ca.pem");
    return options;
  }

  // Connect() with `options`; returns its status and how long it took.
  static std::pair<Status, milliseconds> TimedConnect(ClientOptions options) {
    std::unique_ptr<Client> client = MakeWireClient(std::move(options), {});
    const auto start = SteadyClock::now();
    Status status = client->Connect();
    return {status, std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start)};
  }

  std::unique_ptr<Client> LoggedIn(const std::string& name, ClientOptions options,
                                   PushHandler handler = {}) {
    std::unique_ptr<Client> client = MakeWireClient(std::move(options), std::move(handler));
    const Status connected = client->Connect();
    EXPECT_OK(connected);
    const Status created = client->CreateAccount(name, kPassword);
    EXPECT_TRUE(created.ok() || created.code() == ErrorCode::kUsernameTaken) << created.ToString();
    const Status login = client->Login(name, kPassword).status();
    EXPECT_OK(login);
    return client;
  }

  PlainHasher hasher_;
  std::unique_ptr<Store> store_;
  Messenger messenger_;
  std::unique_ptr<TcpFrontDoor> door_;
  std::uint16_t port_ = 0;
};

// ---- Working TLS ----

TEST_F(TlsWireTest, TwoTlsClientsChatLiveAndThroughTheQueue) {
  ASSERT_OK(StartServer());
  EXPECT_TRUE(door_->tls());
  Inbox bob_inbox;
  std::unique_ptr<Client> alice = LoggedIn("alice", TlsOptions());
  std::unique_ptr<Client> bob = LoggedIn("bob", TlsOptions(), bob_inbox.Handler());

  Result<SendOk> live = alice->Send("bob", "hello over TLS");
  ASSERT_OK(live.status());
  EXPECT_EQ(live->delivery, Delivery::kDelivered);
  ASSERT_TRUE(bob_inbox.WaitFor(1));
  EXPECT_EQ(bob_inbox.delivers()[0].message.text, "hello over TLS");
  EXPECT_EQ(bob_inbox.delivers()[0].message.sender, "alice");

  ASSERT_OK(bob->Logout());
  Result<SendOk> queued = alice->Send("bob", "while you were away");
  ASSERT_OK(queued.status());
  EXPECT_EQ(queued->delivery, Delivery::kQueued);
  ASSERT_OK(bob->Login("bob", kPassword).status());
  Result<MessageBatch> batch = bob->FetchUndelivered(10);
  ASSERT_OK(batch.status());
  ASSERT_EQ(batch->messages.size(), 1u);
  EXPECT_EQ(batch->messages[0].text, "while you were away");
}

TEST_F(TlsWireTest, BurstOfPushesToAClientThatReadsLateArrivesCompleteAndInOrder) {
  ASSERT_OK(StartServer());
  Inbox bob_inbox;
  std::unique_ptr<Client> alice = LoggedIn("alice", TlsOptions());
  std::unique_ptr<Client> bob = LoggedIn("bob", TlsOptions(), bob_inbox.Handler());
  // Bob's reader stops at the first push, so the server's writes back up (TLS want-write) and
  // ~2 MB wait in its outbound buffer until he reads again.
  bob_inbox.set_open(false);
  constexpr int kCount = 2000;
  const auto text = [](int i) {
    std::string t = std::to_string(i) + ":";
    t.resize(1000, 'x');
    return t;
  };
  for (int i = 0; i < kCount; ++i) {
    Result<SendOk> sent = alice->Send("bob", text(i));
    ASSERT_OK(sent.status());
    ASSERT_EQ(sent->delivery, Delivery::kDelivered) << i;
  }
  bob_inbox.set_open(true);
  ASSERT_TRUE(bob_inbox.WaitFor(kCount, 30s)) << bob_inbox.delivers().size();
  const std::vector<Deliver> got = bob_inbox.delivers();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(got[i].message.text, text(i)) << i;
    if (i > 0) {
      ASSERT_GT(got[i].message.message_id, got[i - 1].message.message_id);
    }
  }
  EXPECT_TRUE(bob->Ping().ok());
}

TEST_F(TlsWireTest, ClientReconnectsAndLogsInAgainOverTls) {
  ASSERT_OK(StartServer());
  Inbox inbox;
  ClientOptions options = TlsOptions();
  options.auto_reconnect = true;
  options.reconnect_max_backoff = 200ms;
  std::unique_ptr<Client> bob = LoggedIn("bob", options, inbox.Handler());
  const std::uint16_t port = port_;
  StopServer();
  std::this_thread::sleep_for(300ms);
  ServerConfig config;
  config.port = port;
  ASSERT_OK(StartServer(config));
  ASSERT_TRUE(Eventually([&] { return bob->Ping().ok(); }, kWait));
  std::unique_ptr<Client> alice = LoggedIn("alice", TlsOptions());
  Result<SendOk> sent = alice->Send("bob", "welcome back");
  ASSERT_OK(sent.status());
  EXPECT_EQ(sent->delivery, Delivery::kDelivered);  // Bob is logged in again.
  ASSERT_TRUE(inbox.WaitFor(1));
}

TEST_F(TlsWireTest, InsecureClientConnectsToAServerItCannotVerify) {
  ASSERT_OK(StartServer());
  ClientOptions options = TlsOptions();
  options.tls.ca_file.clear();  // The system trust store does not know the test CA...
  const auto [verified, verified_took] = TimedConnect(options);
  EXPECT_EQ(verified.code(), ErrorCode::kTlsFailed) << verified.ToString();
  EXPECT_TRUE(Contains(verified.message(), "unable to get local issuer certificate"))
      << verified.ToString();
  options.tls.insecure = true;  // ...so only a client that verifies nothing gets through.
  std::unique_ptr<Client> client = MakeWireClient(options, {});
  ASSERT_OK(client->Connect());
  EXPECT_TRUE(client->Ping().ok());
}

TEST_F(TlsWireTest, ServerOverItsLimitAnswersServerBusyOverTls) {
  ServerConfig config;
  config.max_connections = 1;
  ASSERT_OK(StartServer(config));
  std::unique_ptr<Client> first = LoggedIn("alice", TlsOptions());
  const auto [status, took] = TimedConnect(TlsOptions());
  EXPECT_EQ(status.code(), ErrorCode::kServerBusy) << status.ToString();
  EXPECT_LT(took, kQuickly);
  EXPECT_TRUE(first->Ping().ok());
}

// ---- Verification failures ----

TEST_F(TlsWireTest, ServerCertificateFromAnUntrustedCaIsRefused) {
  ASSERT_OK(StartServer());
  ClientOptions options = TlsOptions();
  options.tls.ca_file = Pki().File("other-ca.pem");
  const auto [status, took] = TimedConnect(options);
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "certificate")) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "127.0.0.1:" + std::to_string(port_)))
      << status.ToString();
  EXPECT_LT(took, kQuickly);
}

TEST_F(TlsWireTest, CertificateForAnotherHostIsRefusedNamingTheName) {
  ServerConfig config;
  config.certificate = "wrong-host";
  ASSERT_OK(StartServer(config));
  // Connected by address: the certificate's IP addresses are checked.
  const auto [by_address, took] = TimedConnect(TlsOptions());
  EXPECT_EQ(by_address.code(), ErrorCode::kTlsFailed) << by_address.ToString();
  EXPECT_TRUE(Contains(by_address.message(), "IP address mismatch")) << by_address.ToString();
  EXPECT_LT(took, kQuickly);
  // With a name to check instead: its DNS names are.
  ClientOptions options = TlsOptions();
  options.tls.server_name = "localhost";
  const Status by_name = TimedConnect(options).first;
  EXPECT_EQ(by_name.code(), ErrorCode::kTlsFailed) << by_name.ToString();
  EXPECT_TRUE(Contains(by_name.message(), "host name 'localhost'")) << by_name.ToString();
  EXPECT_TRUE(Contains(by_name.message(), "hostname mismatch")) << by_name.ToString();
  // The name the certificate does carry passes: only the name was wrong.
  options.tls.server_name = "wrong-host.invalid";
  std::unique_ptr<Client> client = MakeWireClient(options, {});
  ASSERT_OK(client->Connect());
}

TEST_F(TlsWireTest, ExpiredCertificateIsRefusedSayingSo) {
  ServerConfig config;
  config.certificate = "expired";
  ASSERT_OK(StartServer(config));
  const auto [status, took] = TimedConnect(TlsOptions());
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "certificate has expired")) << status.ToString();
  EXPECT_LT(took, kQuickly);
}

// ---- Plain against TLS, old TLS, silence ----

TEST_F(TlsWireTest, PlainClientToTheTlsServerFailsQuicklyAndOthersAreUnaffected) {
  ASSERT_OK(StartServer());
  ClientOptions plain = TlsOptions();
  plain.tls = TlsClientOptions{};
  const auto [status, took] = TimedConnect(plain);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(status.code() == ErrorCode::kConnectionFailed ||
              status.code() == ErrorCode::kDisconnected)
      << status.ToString();
  EXPECT_LT(took, kQuickly);
  std::unique_ptr<Client> client = LoggedIn("alice", TlsOptions());
  EXPECT_TRUE(client->Ping().ok());
}

TEST_F(TlsWireTest, TlsClientToAPlainServerFailsQuicklySayingItIsNotTls) {
  ServerConfig config;
  config.certificate.clear();
  ASSERT_OK(StartServer(config));
  EXPECT_FALSE(door_->tls());
  const auto [status, took] = TimedConnect(TlsOptions());
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "does not speak TLS")) << status.ToString();
  EXPECT_LT(took, kQuickly);
}

TEST_F(TlsWireTest, ClientLimitedToTls11IsRefusedByTheServer) {
  ASSERT_OK(StartServer());
  std::signal(SIGPIPE, SIG_IGN);  // OpenSSL's own socket BIO writes with write().
  Poco::Net::StreamSocket socket(Poco::Net::SocketAddress("127.0.0.1", port_));
  socket.setReceiveTimeout(Poco::Timespan(5, 0));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(ctx, nullptr);
  // Old enough to be refused by the server, not by this client's own library first.
  SSL_CTX_set_security_level(ctx, 0);
  ASSERT_EQ(SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0"), 1);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, socket.impl()->sockfd());
  ERR_clear_error();
  EXPECT_NE(SSL_connect(ssl), 1);
  const unsigned long error = ERR_get_error();
  const char* reason = ERR_reason_error_string(error);
  EXPECT_EQ(ERR_GET_REASON(error), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
      << (reason != nullptr ? reason : "no error");
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  std::unique_ptr<Client> client = LoggedIn("alice", TlsOptions());
  EXPECT_TRUE(client->Ping().ok());
}

TEST_F(TlsWireTest, CloseNotifyRightBehindARequestEndsTheConnectionAtOnce) {
  ASSERT_OK(StartServer());  // Login timeout 30 s: only the close_notify can end it sooner.
  Poco::Net::StreamSocket socket(Poco::Net::SocketAddress("127.0.0.1", port_));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(ctx, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, socket.impl()->sockfd());
  ASSERT_EQ(SSL_connect(ssl), 1);
  // HELLO and close_notify leave together, so the server decrypts both in one read; the TCP
  // connection stays open, as a client waiting for the server's close_notify keeps it.
  Bytes hello;
  ASSERT_OK(EncodeFrame(Frame{1, Hello{kProtocolVersion}}, hello));
  ASSERT_EQ(SSL_write(ssl, hello.data(), static_cast<int>(hello.size())),
            static_cast<int>(hello.size()));
  EXPECT_EQ(SSL_shutdown(ssl), 0);  // Sent ours; the server's not yet received.
  const auto start = SteadyClock::now();
  socket.setReceiveTimeout(Poco::Timespan(10, 0));
  std::uint8_t buffer[4096];
  int n = 1;
  try {
    while (n > 0) n = socket.receiveBytes(buffer, sizeof buffer);  // HELLO_OK, then the end.
  } catch (const Poco::TimeoutException&) {
    ADD_FAILURE() << "the server kept the connection open after the client's close_notify";
  } catch (const Poco::Exception&) {
    n = 0;  // A reset ends it as well.
  }
  EXPECT_LT(SteadyClock::now() - start, kQuickly);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}

TEST_F(TlsWireTest, ConnectionsThatNeverFinishTheHandshakeCloseAtTheLoginTimeout) {
  ServerConfig config;
  config.login_timeout_ms = 1000;
  ASSERT_OK(StartServer(config));
  // One says nothing at all; one stops inside its first TLS record.
  Poco::Net::StreamSocket silent(Poco::Net::SocketAddress("127.0.0.1", port_));
  Poco::Net::StreamSocket stalled(Poco::Net::SocketAddress("127.0.0.1", port_));
  const std::uint8_t partial_record[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
  stalled.sendBytes(partial_record, sizeof partial_record);
  const auto start = SteadyClock::now();
  for (Poco::Net::StreamSocket* socket : {&silent, &stalled}) {
    socket->setReceiveTimeout(Poco::Timespan(5, 0));
    std::uint8_t buffer[64];
    int n = -1;
    try {
      n = socket->receiveBytes(buffer, sizeof buffer);
    } catch (const Poco::TimeoutException&) {
      FAIL() << "still open after 5 s";
    } catch (const Poco::Exception&) {
      n = 0;  // Reset: closed as well.
    }
    EXPECT_EQ(n, 0);
  }
  const auto took = SteadyClock::now() - start;
  EXPECT_GE(took, 800ms);
  EXPECT_LT(took, 4s);
  EXPECT_TRUE(Eventually([&] { return door_->live_connections() == 0; }, kWait));
}

// ---- poco_messenger client ----

TEST(TlsClientOptionsTest, TlsFlagsFillTheClientsTlsOptions) {
  using terminal::ParseOptions;
  const auto parse = [](std::vector<std::string> args) { return ParseOptions(args); };
  terminal::OptionsResult parsed = parse({});
  EXPECT_FALSE(parsed.options.tls.enabled);

  parsed = parse({"--tls"});
  ASSERT_EQ(parsed.error, "");
  EXPECT_TRUE(parsed.options.tls.enabled);
  EXPECT_FALSE(parsed.options.tls.insecure);
  EXPECT_EQ(parsed.options.tls.ca_file, "");

  parsed = parse({"--ca-file", "ca.pem", "--tls-server-name=chat.example.org", "inbox"});
  ASSERT_EQ(parsed.error, "");
  EXPECT_TRUE(parsed.options.tls.enabled);  // Implied.
  EXPECT_EQ(parsed.options.tls.ca_file, "ca.pem");
  EXPECT_EQ(parsed.options.tls.server_name, "chat.example.org");
  EXPECT_EQ(parsed.options.command, std::vector<std::string>{"inbox"});

  parsed = parse({"--transport", "grpc", "--tls-insecure"});
  ASSERT_EQ(parsed.error, "");
  EXPECT_TRUE(parsed.options.tls.enabled);  // Implied.
  EXPECT_TRUE(parsed.options.tls.insecure);

  EXPECT_NE(parse({"--tls-insecure", "--ca-file", "ca.pem"}).error, "");
  EXPECT_NE(parse({"--tls=yes"}).error, "");
  EXPECT_NE(parse({"--ca-file"}).error, "");
  EXPECT_NE(parse({"--ca-file="}).error, "");
  EXPECT_NE(parse({"--tls-server-name", ""}).error, "");
  const std::string usage = terminal::UsageText();
  for (const char* option : {"--tls", "--ca-file", "--tls-server-name", "--tls-insecure"}) {
    EXPECT_TRUE(Contains(usage, option)) << option;
  }
}

struct ClientRun {
  int exit_status = -1;
  std::string output;  // stdout and stderr.
};

ClientRun RunClient(const std::string& arguments) {
  ClientRun run;
  const std::string command =
      std::string(MESSENGER_CLIENT_BINARY) + " client " + arguments + " </dev/null 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  std::array<char, 4096> buffer{};
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    run.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  run.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST_F(TlsWireTest, TerminalClientSpeaksTlsAndWarnsWhenItVerifiesNothing) {
  ASSERT_OK(StartServer());
  ::setenv("MESSENGER_PASSWORD", std::string(kPassword).c_str(), 1);
  const std::string server = "--host 127.0.0.1 --port " + std::to_string(port_) + " ";

  const ClientRun insecure = RunClient(server + "--tls-insecure --user carol register");
  EXPECT_EQ(insecure.exit_status, 0) << insecure.output;
  EXPECT_TRUE(Contains(insecure.output, "WARNING")) << insecure.output;
  EXPECT_TRUE(Contains(insecure.output, "NOT verified")) << insecure.output;

  const ClientRun verified =
      RunClient(server + "--ca-file '" + Pki().File("ca.pem") + "' --user carol list");
  EXPECT_EQ(verified.exit_status, 0) << verified.output;
  EXPECT_TRUE(Contains(verified.output, "carol")) << verified.output;
  EXPECT_FALSE(Contains(verified.output, "WARNING")) << verified.output;

  // The system trust store does not know the test CA: a connection failure (exit status 4).
  const ClientRun untrusted = RunClient(server + "--tls --user carol list");
  EXPECT_EQ(untrusted.exit_status, 4) << untrusted.output;
  ::unsetenv("MESSENGER_PASSWORD");
}

}  // namespace
}  // namespace messenger

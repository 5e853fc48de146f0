// Both front doors over TLS with the same certificate, in-process: a wire client and a gRPC client
// (the client library) chat through verified TLS, and the gRPC client refuses what it cannot
// verify, quickly and saying why. Loopback only; every wait is bounded.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "grpc_front_door.h"
#include "messenger/client/client.h"
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
using testing::Pki;
using testing::PlainHasher;

constexpr milliseconds kWait{10000};
// What "fails quickly" means: far below the connect timeout, far above loopback latency.
constexpr milliseconds kQuickly{4000};
constexpr std::string_view kPassword = "correct horse";
// Short, so that a stalled handshake is seen to end; a logged-in client subscribes at once.
constexpr milliseconds kLoginTimeout{1500};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The texts delivered to one client, in arrival order.
class Inbox {
 public:
  PushHandler Handler() {
    return [this](const Push& push) {
      if (const auto* deliver = std::get_if<Deliver>(&push)) {
        std::lock_guard lock(mu_);
        texts_.push_back(deliver->message.sender + ": " + deliver->message.text);
        changed_.notify_all();
      }
      return true;
    };
  }
  std::vector<std::string> WaitFor(std::size_t count) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, kWait, [&] { return texts_.size() >= count; });
    return texts_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::string> texts_;
};

class TlsBothDoorsTest : public ::testing::Test {
 protected:
  TlsBothDoorsTest() : store_(MakeMemoryStore()), messenger_(*store_, hasher_, SystemClock(), {}) {}

  void SetUp() override {
    ASSERT_TRUE(Pki().ok()) << "make-test-certs failed";
    Result<std::shared_ptr<const TlsServerContext>> tls =
        TlsServerContext::Load(Pki().File("server.pem"), Pki().File("server.key"));
    ASSERT_OK(tls.status());
    TcpOptions wire;
    wire.host = "127.0.0.1";
    wire.port = 0;
    wire.tls = *tls;
    Result<std::unique_ptr<TcpFrontDoor>> wire_door = TcpFrontDoor::Start(messenger_, wire);
    ASSERT_OK(wire_door.status());
    wire_door_ = std::move(wire_door).value();

    GrpcOptions grpc;
    grpc.host = "127.0.0.1";
    grpc.port = 0;
    grpc.login_timeout_ms = kLoginTimeout.count();
    grpc.tls_cert_pem = ReadAll(Pki().File("server.pem"));
    grpc.tls_key_pem = ReadAll(Pki().File("server.key"));
    Result<std::unique_ptr<GrpcFrontDoor>> grpc_door = GrpcFrontDoor::Start(messenger_, grpc);
    ASSERT_OK(grpc_door.status());
    grpc_door_ = std::move(grpc_door).value();
  }

  void TearDown() override {
    if (wire_door_) wire_door_->StopAccepting();
    messenger_.Shutdown();
    if (grpc_door_) grpc_door_->Shutdown(2s);
    if (wire_door_) {
      EXPECT_TRUE(wire_door_->Shutdown(2s));
    }
  }

  // Verifying the test CA, to 127.0.0.1 (an address the certificate carries).
  ClientOptions Verified(std::uint16_t port) const {
    ClientOptions options;
    options.host = "127.0.0.1";
    options.port = port;
    options.connect_timeout = kWait;
    options.request_timeout = kWait;
    options.tls.enabled = true;
    options.tls.ca_file = Pki().File("ca.pem");
    return options;
  }
  ClientOptions GrpcVerified() const { return Verified(grpc_door_->port()); }

  // Connect() of a gRPC client with `options`: its status and how long it took.
  static std::pair<Status, milliseconds> TimedGrpcConnect(ClientOptions options) {
    std::unique_ptr<Client> client = MakeGrpcClient(std::move(options), {});
    const auto start = SteadyClock::now();
    Status status = client->Connect();
    return {status, std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start)};
  }

  static void Join(Client& client, const std::string& name) {
    ASSERT_OK(client.Connect());
    ASSERT_OK(client.CreateAccount(name, kPassword));
    ASSERT_OK(client.Login(name, kPassword).status());
  }

  PlainHasher hasher_;
  std::unique_ptr<Store> store_;
  Messenger messenger_;
  std::unique_ptr<TcpFrontDoor> wire_door_;
  std::unique_ptr<GrpcFrontDoor> grpc_door_;
};

TEST_F(TlsBothDoorsTest, WireAndGrpcClientsChatOverVerifiedTls) {
  Inbox alice_inbox;
  Inbox bob_inbox;
  // alice checks the certificate against the name "localhost" (and sends it as SNI), bob against
  // the address 127.0.0.1: the certificate carries both. (alice connects to 127.0.0.1 too:
  // resolving "localhost" needs an /etc/hosts that not every build machine has.)
  ClientOptions alice_options = Verified(wire_door_->port());
  alice_options.tls.server_name = "localhost";
  std::unique_ptr<Client> alice = MakeWireClient(alice_options, alice_inbox.Handler());
  std::unique_ptr<Client> bob = MakeGrpcClient(GrpcVerified(), bob_inbox.Handler());
  Join(*alice, "alice");
  Join(*bob, "bob");

  Result<SendOk> to_bob = alice->Send("bob", "hello gRPC, over TLS");
  ASSERT_OK(to_bob.status());
  EXPECT_EQ(to_bob->delivery, Delivery::kDelivered);
  EXPECT_EQ(bob_inbox.WaitFor(1), std::vector<std::string>{"alice: hello gRPC, over TLS"});

  ASSERT_OK(bob->Send("alice", "hello wire").status());
  EXPECT_EQ(alice_inbox.WaitFor(1), std::vector<std::string>{"bob: hello wire"});
}

TEST_F(TlsBothDoorsTest, GrpcClientRefusesACertificateFromAnUntrustedCa) {
  ClientOptions options = GrpcVerified();
  options.tls.ca_file = Pki().File("other-ca.pem");
  const auto [status, took] = TimedGrpcConnect(options);
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed) << status.ToString();
  EXPECT_NE(status.message().find("certificate could not be verified"), std::string::npos)
      << status.message();
  EXPECT_LT(took, kQuickly);
}

TEST_F(TlsBothDoorsTest, GrpcClientRefusesACertificateForAnotherName) {
  ClientOptions options = GrpcVerified();
  options.tls.server_name = "wrong-host.invalid";
  const auto [status, took] = TimedGrpcConnect(options);
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed) << status.ToString();
  EXPECT_NE(status.message().find("not valid for wrong-host.invalid"), std::string::npos)
      << status.message();
  EXPECT_LT(took, kQuickly);
}

TEST_F(TlsBothDoorsTest, GrpcClientCannotReadAMissingCaFile) {
  ClientOptions options = GrpcVerified();
  options.tls.ca_file = Pki().File("no-such-ca.pem");
  const Status status = TimedGrpcConnect(options).first;
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed) << status.ToString();
  EXPECT_NE(status.message().find("no-such-ca.pem"), std::string::npos) << status.message();
}

TEST_F(TlsBothDoorsTest, InsecureGrpcClientConnectsWithoutVerifying) {
  ClientOptions options = GrpcVerified();
  options.tls.ca_file.clear();
  options.tls.insecure = true;
  std::unique_ptr<Client> client = MakeGrpcClient(options, {});
  Join(*client, "carol");
}

TEST_F(TlsBothDoorsTest, AConnectionThatNeverStartsTheHandshakeIsClosedAtTheLoginTimeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(grpc_door_->port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  const auto start = SteadyClock::now();
  // Silent: the server must close the connection (end of stream), not wait forever.
  pollfd readable = {fd, POLLIN, 0};
  char byte = 0;
  const bool closed =
      ::poll(&readable, 1, static_cast<int>(kWait.count())) == 1 && ::recv(fd, &byte, 1, 0) <= 0;
  const auto took = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start);
  ::close(fd);
  EXPECT_TRUE(closed);
  EXPECT_GE(took, kLoginTimeout - 500ms);
  EXPECT_LT(took, kLoginTimeout + kQuickly);
}

TEST_F(TlsBothDoorsTest, PlaintextGrpcClientIsNotServedByTheTlsDoor) {
  ClientOptions options = GrpcVerified();
  options.tls = TlsClientOptions{};
  const auto [status, took] = TimedGrpcConnect(options);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kConnectionFailed) << status.ToString();
  EXPECT_LT(took, kQuickly);
}

}  // namespace
}  // namespace messenger

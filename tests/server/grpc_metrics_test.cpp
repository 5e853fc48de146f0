// The gRPC front door's metrics (transport grpc) and its TLS server credentials, in-process over
// loopback. TLS keys are made fresh by tests/support/make-test-certs. Every wait is bounded.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "fakes.h"
#include "grpc_front_door.h"
#include "grpc_session.h"
#include "messenger/server/clock.h"
#include "messenger/server/metrics.h"
#include "messenger/server/store.h"
#include "messenger/v1/messenger.grpc.pb.h"
#include "prometheus_text.h"
#include "test_support.h"

#ifndef MESSENGER_MAKE_TEST_CERTS
#error "MESSENGER_MAKE_TEST_CERTS must name tests/support/make-test-certs"
#endif

namespace messenger {
namespace {

using namespace std::chrono_literals;
using test::ParsePrometheusText;
using test::PromExposition;

constexpr char kPassword[] = "correct horse";

std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + 10s);
  context->set_wait_for_ready(true);
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

PromExposition Scrape(const Metrics& metrics) {
  const std::string text = metrics.RenderPrometheus();
  PromExposition parsed;
  const std::optional<std::string> problem = ParsePrometheusText(text, parsed);
  EXPECT_FALSE(problem.has_value()) << *problem << "\n--- scrape ---\n" << text;
  return parsed;
}

double Grpc(const PromExposition& scrape, const std::string& name,
            std::map<std::string, std::string> labels = {}) {
  labels["transport"] = "grpc";
  const std::optional<double> value = scrape.Value(name, labels);
  EXPECT_TRUE(value.has_value()) << name;
  return value.value_or(-1);
}

double Error(const PromExposition& scrape, const std::string& transport, const std::string& code) {
  return scrape.Value("messenger_errors_total", {{"transport", transport}, {"code", code}})
      .value_or(-1);
}

class GrpcMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GrpcOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.max_sessions = 2;
    Result<std::unique_ptr<GrpcFrontDoor>> door = GrpcFrontDoor::Start(messenger_, options);
    ASSERT_OK(door.status());
    door_ = std::move(door).value();
    stub_ = v1::Messenger::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(door_->port()),
                                                       grpc::InsecureChannelCredentials()));
  }

  grpc::Status CreateAccount(const std::string& name) {
    v1::CreateAccountRequest request;
    request.set_username(name);
    request.set_password(kPassword);
    v1::CreateAccountResponse response;
    return stub_->CreateAccount(Context().get(), request, &response);
  }

  // The session token, or "" with `status` set.
  std::string Login(const std::string& name, grpc::Status* status = nullptr) {
    v1::LoginRequest request;
    request.set_username(name);
    request.set_password(kPassword);
    v1::LoginResponse response;
    const grpc::Status result = stub_->Login(Context().get(), request, &response);
    if (status != nullptr) *status = result;
    return result.ok() ? response.session_token() : "";
  }

  Metrics metrics_;
  testing::FakeHasher hasher_;
  std::unique_ptr<Store> store_ = MakeMemoryStore(&metrics_);
  Messenger messenger_{*store_, hasher_, SystemClock(), MessengerOptions{}, &metrics_};
  std::unique_ptr<GrpcFrontDoor> door_;  // After messenger_: destroyed before it.
  std::unique_ptr<v1::Messenger::Stub> stub_;
};

TEST_F(GrpcMetricsTest, SessionsErrorsAndRefusalsAreCountedUnderTransportGrpc) {
  ASSERT_TRUE(CreateAccount("alice").ok());
  ASSERT_TRUE(CreateAccount("bob").ok());
  ASSERT_TRUE(CreateAccount("carol").ok());
  const PromExposition before = Scrape(metrics_);

  const std::string alice = Login("alice");
  ASSERT_FALSE(alice.empty());
  const std::string bob = Login("bob");
  ASSERT_FALSE(bob.empty());
  grpc::Status refused;
  EXPECT_EQ(Login("carol", &refused), "");  // max_sessions is 2.
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);

  v1::SendRequest send;
  send.set_recipient("nobody");
  send.set_client_message_id(1);
  send.set_text("hello?");
  v1::SendResponse sent;
  EXPECT_EQ(stub_->Send(Context(alice).get(), send, &sent).error_code(),
            grpc::StatusCode::NOT_FOUND);
  send.set_recipient("bob");
  send.set_client_message_id(2);
  ASSERT_TRUE(stub_->Send(Context(alice).get(), send, &sent).ok());
  v1::PingResponse pong;
  EXPECT_EQ(stub_->Ping(Context("not-a-token").get(), v1::PingRequest(), &pong).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  const PromExposition during = Scrape(metrics_);
  EXPECT_EQ(
      Grpc(during, "messenger_sessions_logged_in") - Grpc(before, "messenger_sessions_logged_in"),
      2);
  EXPECT_EQ(Grpc(during, "messenger_connections_open") - Grpc(before, "messenger_connections_open"),
            2);
  EXPECT_EQ(Grpc(during, "messenger_connections_accepted_total") -
                Grpc(before, "messenger_connections_accepted_total"),
            2);
  EXPECT_EQ(Grpc(during, "messenger_connections_refused_total", {{"reason", "server_busy"}}) -
                Grpc(before, "messenger_connections_refused_total", {{"reason", "server_busy"}}),
            1);
  for (const char* code : {"SERVER_BUSY", "UNKNOWN_RECIPIENT", "NOT_LOGGED_IN"}) {
    EXPECT_EQ(Error(during, "grpc", code) - Error(before, "grpc", code), 1) << code;
    EXPECT_EQ(Error(during, "wire", code), Error(before, "wire", code)) << code;
  }
  // Bob is logged in: his session holds the push until he subscribes.
  EXPECT_EQ(*during.Value("messenger_messages_delivered_live_total") -
                *before.Value("messenger_messages_delivered_live_total"),
            1);
  EXPECT_EQ(*during.Value("messenger_messages_queued_total"),
            *before.Value("messenger_messages_queued_total"));
  EXPECT_EQ(*during.Value("messenger_stored_messages") - *before.Value("messenger_stored_messages"),
            1);
  // Logged in over gRPC is not logged in over the wire.
  EXPECT_EQ(during.Value("messenger_sessions_logged_in", {{"transport", "wire"}}),
            before.Value("messenger_sessions_logged_in", {{"transport", "wire"}}));

  v1::LogoutResponse logged_out;
  ASSERT_TRUE(stub_->Logout(Context(alice).get(), v1::LogoutRequest(), &logged_out).ok());
  const PromExposition after = Scrape(metrics_);
  EXPECT_EQ(
      Grpc(after, "messenger_sessions_logged_in") - Grpc(before, "messenger_sessions_logged_in"),
      1);
  EXPECT_EQ(Grpc(after, "messenger_connections_open") - Grpc(before, "messenger_connections_open"),
            1);

  door_->Shutdown(1s);  // Retires bob's session too.
  const PromExposition stopped = Scrape(metrics_);
  EXPECT_EQ(Grpc(stopped, "messenger_sessions_logged_in"),
            Grpc(before, "messenger_sessions_logged_in"));
  EXPECT_EQ(Grpc(stopped, "messenger_connections_open"),
            Grpc(before, "messenger_connections_open"));
}

TEST(GrpcSessionMetricsTest, ASlowConsumerIsCountedOnce) {
  Metrics metrics;
  GrpcSession session("token", 0, &metrics);
  for (std::size_t i = 0; i <= kMaxHeldPushes + 5; ++i) {
    session.Deliver({i + 1, "alice", 0, "push"});
  }
  EXPECT_TRUE(session.ended());
  EXPECT_EQ(metrics.slow_consumer_disconnects(Transport::kGrpc).value(), 1u);
  EXPECT_EQ(metrics.slow_consumer_disconnects(Transport::kWire).value(), 0u);
}

// ---- TLS server credentials ----

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class GrpcTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    static std::atomic<int> next{0};
    dir_ = new std::filesystem::path(
        std::filesystem::temp_directory_path() /
        ("messenger_grpc_tls_" + std::to_string(::getpid()) + "_" + std::to_string(next++)));
    const std::string command =
        std::string(MESSENGER_MAKE_TEST_CERTS) + " '" + dir_->string() + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static std::string Pem(const std::string& name) { return ReadFile(*dir_ / name); }

  void Start(const std::string& cert, const std::string& key) {
    GrpcOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.tls_cert_pem = cert;
    options.tls_key_pem = key;
    Result<std::unique_ptr<GrpcFrontDoor>> door = GrpcFrontDoor::Start(messenger_, options);
    ASSERT_OK(door.status());
    door_ = std::move(door).value();
  }

  std::string Target() const { return "127.0.0.1:" + std::to_string(door_->port()); }

  // GetServerInfo over `channel`, with a short deadline (a failed handshake is retried until it).
  static grpc::Status Info(const std::shared_ptr<grpc::Channel>& channel) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 3s);
    v1::ServerInfo info;
    return v1::Messenger::NewStub(channel)->GetServerInfo(&context, v1::GetServerInfoRequest(),
                                                          &info);
  }

  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& ca) const {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca;
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");  // A name the test certificate carries.
    return grpc::CreateCustomChannel(Target(), grpc::SslCredentials(ssl), args);
  }

  static std::filesystem::path* dir_;
  testing::FakeHasher hasher_;
  std::unique_ptr<Store> store_ = MakeMemoryStore();
  Messenger messenger_{*store_, hasher_, SystemClock(), MessengerOptions{}};
  std::unique_ptr<GrpcFrontDoor> door_;
};

std::filesystem::path* GrpcTlsTest::dir_ = nullptr;

TEST_F(GrpcTlsTest, ServesClientsThatTrustItsCertificate) {
  Start(Pem("server.pem"), Pem("server.key"));
  const grpc::Status status = Info(TlsChannel(Pem("ca.pem")));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(GrpcTlsTest, RefusesPlaintextAndClientsThatDoNotTrustIt) {
  Start(Pem("server.pem"), Pem("server.key"));
  EXPECT_EQ(Info(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials())).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Info(TlsChannel(Pem("other-ca.pem"))).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsTest, PlaintextStaysTheDefault) {
  Start("", "");
  EXPECT_TRUE(Info(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials())).ok());
}

TEST_F(GrpcTlsTest, StartRefusesHalfAPairAndAnUnusablePair) {
  GrpcOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.tls_cert_pem = Pem("server.pem");
  EXPECT_EQ(GrpcFrontDoor::Start(messenger_, options).status().code(), ErrorCode::kInvalidArgument);
  options.tls_cert_pem.clear();
  options.tls_key_pem = Pem("server.key");
  EXPECT_EQ(GrpcFrontDoor::Start(messenger_, options).status().code(), ErrorCode::kInvalidArgument);
  options.tls_cert_pem = "not a certificate";
  options.tls_key_pem = "not a key";
  const Result<std::unique_ptr<GrpcFrontDoor>> garbage = GrpcFrontDoor::Start(messenger_, options);
  EXPECT_EQ(garbage.status().code(), ErrorCode::kInternal);
}

}  // namespace
}  // namespace messenger

// The real poco_messenger binary with both front doors: a wire client and a gRPC client share
// one server; SIGTERM ends gRPC streams cleanly; a SEND answered over gRPC survives kill -9.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "messenger/codec/messages.h"
#include "messenger/v1/messenger.grpc.pb.h"
#include "server_harness.h"

namespace messenger::test {
namespace {

using std::chrono::seconds;

// A gRPC client of one server: just enough of messenger.v1 for these tests.
class GrpcClient {
 public:
  explicit GrpcClient(std::uint16_t port)
      : stub_(v1::Messenger::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                         grpc::InsecureChannelCredentials()))) {}

  bool Login(const std::string& name) {
    v1::LoginRequest request;
    request.set_username(name);
    request.set_password(kPassword);
    v1::LoginResponse response;
    if (!stub_->Login(Context().get(), request, &response).ok()) return false;
    token_ = response.session_token();
    return true;
  }

  grpc::Status Send(const std::string& to, const std::string& text, std::uint64_t client_id) {
    v1::SendRequest request;
    request.set_recipient(to);
    request.set_client_message_id(client_id);
    request.set_text(text);
    v1::SendResponse response;
    return stub_->Send(Context().get(), request, &response);
  }

  void Subscribe() {
    stream_context_ = Context();
    stream_ = stub_->Subscribe(stream_context_.get(), v1::SubscribeRequest());
  }

  // The next push on the stream; nullopt once it ended.
  std::optional<v1::ServerPush> NextPush() {
    v1::ServerPush push;
    if (!stream_->Read(&push)) return std::nullopt;
    return push;
  }

  grpc::Status FinishStream() { return stream_->Finish(); }

 private:
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + seconds(10));
    // Wait for the channel to connect rather than fail on a first attempt that did not.
    context->set_wait_for_ready(true);
    if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
    return context;
  }

  std::unique_ptr<v1::Messenger::Stub> stub_;
  std::string token_;
  std::unique_ptr<grpc::ClientContext> stream_context_;
  std::unique_ptr<grpc::ClientReader<v1::ServerPush>> stream_;
};

class GrpcBinaryTest : public ServerTest {
 protected:
  ServerProcess& StartServer() {
    ServerProcess& server = NewServer();
    EXPECT_TRUE(server.Start({{"grpc-port", "auto"}}));
    EXPECT_NE(server.grpc_port(), 0);
    return server;
  }
};

TEST_F(GrpcBinaryTest, WireAndGrpcClientsMessageEachOtherLive) {
  ServerProcess& server = StartServer();
  TestClient wire;
  ASSERT_TRUE(wire.Connect(server.port()));
  ASSERT_TRUE(wire.Hello());
  ASSERT_TRUE(wire.Create("alice"));
  ASSERT_TRUE(wire.Create("bob"));
  ASSERT_TRUE(wire.Login("alice"));

  GrpcClient bob(server.grpc_port());
  ASSERT_TRUE(bob.Login("bob"));
  bob.Subscribe();
  const std::optional<Frame> sent = wire.Call(Send{"bob", 1, "hello from the wire"});
  ASSERT_TRUE(Is<SendOk>(sent)) << Show(sent);
  const std::optional<v1::ServerPush> push = bob.NextPush();
  ASSERT_TRUE(push);
  EXPECT_EQ(push->deliver().text(), "hello from the wire");
  EXPECT_EQ(push->deliver().sender(), "alice");

  ASSERT_TRUE(bob.Send("alice", "hello from gRPC", 1).ok());
  const std::optional<Frame> delivered = wire.WaitPush();
  ASSERT_TRUE(Is<Deliver>(delivered)) << Show(delivered);
  EXPECT_EQ(Get<Deliver>(delivered).message.text, "hello from gRPC");
}

TEST_F(GrpcBinaryTest, SigtermEndsGrpcStreamsWithServerShutdownAndExitsZero) {
  ServerProcess& server = StartServer();
  TestClient wire;
  ASSERT_TRUE(wire.Connect(server.port()));
  ASSERT_TRUE(wire.Hello());
  ASSERT_TRUE(wire.Create("alice"));
  ASSERT_TRUE(wire.Create("bob"));
  ASSERT_TRUE(wire.Login("alice"));
  GrpcClient bob(server.grpc_port());
  ASSERT_TRUE(bob.Login("bob"));
  bob.Subscribe();
  ASSERT_TRUE(Is<SendOk>(wire.Call(Send{"bob", 1, "the stream is open"})));
  ASSERT_TRUE(bob.NextPush());

  // Read as a client does, on its own thread, while the server stops.
  std::optional<v1::ServerPush> push;
  std::thread reader([&] { push = bob.NextPush(); });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(server.Terminate(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  reader.join();
  ASSERT_TRUE(push);
  EXPECT_EQ(push->session_ended().reason(), v1::END_REASON_SERVER_SHUTDOWN);
  EXPECT_TRUE(bob.FinishStream().ok());
}

TEST_F(GrpcBinaryTest, ASendAnsweredOverGrpcSurvivesKillDashNine) {
  ServerProcess& server = StartServer();
  {
    TestClient wire;
    ASSERT_TRUE(wire.Connect(server.port()));
    ASSERT_TRUE(wire.Hello());
    ASSERT_TRUE(wire.Create("alice"));
    ASSERT_TRUE(wire.Create("bob"));
  }
  GrpcClient alice(server.grpc_port());
  ASSERT_TRUE(alice.Login("alice"));
  ASSERT_TRUE(alice.Send("bob", "durable", 7).ok());
  server.Kill();

  ASSERT_TRUE(server.Start({{"grpc-port", "auto"}}));
  TestClient bob;
  ASSERT_TRUE(bob.Connect(server.port()));
  ASSERT_TRUE(bob.Hello());
  const std::optional<Frame> login = bob.Call(messenger::Login{"bob", kPassword});
  ASSERT_TRUE(Is<LoginOk>(login)) << Show(login);
  EXPECT_EQ(Get<LoginOk>(login).unread_count, 1u);
  const std::optional<Frame> batch = bob.Call(FetchUndelivered{10});
  ASSERT_TRUE(Is<MessageBatch>(batch)) << Show(batch);
  ASSERT_EQ(Get<MessageBatch>(batch).messages.size(), 1u);
  EXPECT_EQ(Get<MessageBatch>(batch).messages[0].text, "durable");
}

}  // namespace
}  // namespace messenger::test

// The gRPC front door in-process against the generated stub (docs/PROTOCOL.md, section 15):
// sessions and tokens, the Subscribe stream, error mapping, and sessions ending for every reason.
#include "grpc_front_door.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "fakes.h"
#include "grpc_session.h"
#include "messenger/server/clock.h"
#include "messenger/server/store.h"
#include "messenger/v1/messenger.grpc.pb.h"

namespace messenger {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kPassword[] = "correct horse";

// The protocol error a failed call carries in its trailer, or nullopt.
std::optional<ErrorCode> ProtocolError(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto it = trailers.find("messenger-error-bin");
  if (it == trailers.end()) return std::nullopt;
  v1::ErrorDetail detail;
  if (!detail.ParseFromArray(it->second.data(), static_cast<int>(it->second.size()))) {
    return std::nullopt;
  }
  return static_cast<ErrorCode>(detail.code());
}

class GrpcFrontDoorTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }

  void Start(GrpcOptions options) {
    options.host = "127.0.0.1";
    options.port = 0;
    Result<std::unique_ptr<GrpcFrontDoor>> door = GrpcFrontDoor::Start(messenger_, options);
    ASSERT_TRUE(door.ok()) << door.status().ToString();
    door_ = std::move(door).value();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(door_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Messenger::NewStub(channel_);
  }

  // A client context with a deadline and, if given, the session token.
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + seconds(10));
    // Wait for the channel to connect rather than fail on a first attempt that did not.
    context->set_wait_for_ready(true);
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  void CreateAccount(const std::string& name) {
    v1::CreateAccountRequest request;
    request.set_username(name);
    request.set_password(kPassword);
    v1::CreateAccountResponse response;
    ASSERT_TRUE(stub_->CreateAccount(Context().get(), request, &response).ok());
  }

  // Logs `name` in; returns the token ("" on failure) and the unread count.
  std::string Login(const std::string& name, std::uint32_t* unread = nullptr) {
    v1::LoginRequest request;
    request.set_username(name);
    request.set_password(kPassword);
    v1::LoginResponse response;
    const grpc::Status status = stub_->Login(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (unread != nullptr) *unread = response.unread_count();
    return response.session_token();
  }

  grpc::Status Send(const std::string& token, const std::string& to, const std::string& text,
                    v1::SendResponse* response = nullptr, grpc::ClientContext* context = nullptr) {
    static std::uint64_t next_id = 1;
    v1::SendRequest request;
    request.set_recipient(to);
    request.set_client_message_id(next_id++);
    request.set_text(text);
    v1::SendResponse ignored;
    std::unique_ptr<grpc::ClientContext> own = Context(token);
    return stub_->Send(context != nullptr ? context : own.get(), request,
                       response != nullptr ? response : &ignored);
  }

  // An open Subscribe stream.
  struct Stream {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<v1::ServerPush>> reader;
    // The next push; nullopt when the stream ended.
    std::optional<v1::ServerPush> Next() {
      v1::ServerPush push;
      if (!reader->Read(&push)) return std::nullopt;
      return push;
    }
  };
  Stream Subscribe(const std::string& token) {
    Stream stream{Context(token), nullptr};
    stream.reader = stub_->Subscribe(stream.context.get(), v1::SubscribeRequest());
    return stream;
  }

  // Subscribes for `name` and waits until the server has attached the stream (a Subscribe call
  // returns before the server has seen it): a probe message must come through it.
  Stream Subscribed(const std::string& token, const std::string& name) {
    if (probe_token_.empty()) {
      CreateAccount("probe");
      probe_token_ = Login("probe");
    }
    Stream stream = Subscribe(token);
    EXPECT_TRUE(Send(probe_token_, name, "probe").ok());
    const std::optional<v1::ServerPush> push = stream.Next();
    EXPECT_TRUE(push && push->deliver().text() == "probe");
    return stream;
  }

  std::string probe_token_;
  testing::FakeHasher hasher_;
  std::unique_ptr<Store> store_ = MakeMemoryStore();
  Messenger messenger_{*store_, hasher_, SystemClock(), MessengerOptions{}};
  std::unique_ptr<GrpcFrontDoor> door_;  // After messenger_: destroyed before it.
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Messenger::Stub> stub_;
};

TEST_F(GrpcFrontDoorTest, ServerInfoReportsTheLimits) {
  v1::ServerInfo info;
  ASSERT_TRUE(stub_->GetServerInfo(Context().get(), v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.protocol_version(), kProtocolVersion);
  EXPECT_EQ(info.max_frame_size(), kDefaultMaxFrameSize);
  EXPECT_EQ(info.max_text_bytes(), kMaxTextBytes);
  EXPECT_EQ(info.max_queued_per_user(), MessengerOptions{}.max_queued_per_user);
}

TEST_F(GrpcFrontDoorTest, CallsWithoutAValidTokenFailWithNotLoggedIn) {
  for (const std::string token : {"", "not-a-token"}) {
    auto context = Context(token);
    v1::PingResponse response;
    const grpc::Status status = stub_->Ping(context.get(), v1::PingRequest(), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(ProtocolError(*context), ErrorCode::kNotLoggedIn);
  }
}

TEST_F(GrpcFrontDoorTest, ProtocolErrorsMapToStatusCodesWithTheCodeInTheTrailer) {
  CreateAccount("alice");
  {
    auto context = Context();
    v1::CreateAccountRequest request;
    request.set_username("ALICE");
    request.set_password(kPassword);
    v1::CreateAccountResponse response;
    EXPECT_EQ(stub_->CreateAccount(context.get(), request, &response).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_EQ(ProtocolError(*context), ErrorCode::kUsernameTaken);
  }
  {
    auto context = Context();
    v1::LoginRequest request;
    request.set_username("alice");
    request.set_password("wrong password");
    v1::LoginResponse response;
    EXPECT_EQ(stub_->Login(context.get(), request, &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(ProtocolError(*context), ErrorCode::kAuthFailed);
  }
  const std::string token = Login("alice");
  {
    auto context = Context(token);
    EXPECT_EQ(Send(token, "nobody", "hi", nullptr, context.get()).error_code(),
              grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(ProtocolError(*context), ErrorCode::kUnknownRecipient);
  }
  {
    auto context = Context(token);
    EXPECT_EQ(Send(token, "alice", "hi", nullptr, context.get()).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(ProtocolError(*context), ErrorCode::kSelfSend);
  }
  {
    auto context = Context(token);
    v1::FetchUndeliveredResponse response;
    EXPECT_EQ(stub_->FetchUndelivered(context.get(), v1::FetchUndeliveredRequest(), &response)
                  .error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << "limit 0";
    EXPECT_EQ(ProtocolError(*context), ErrorCode::kInvalidArgument);
  }
}

TEST_F(GrpcFrontDoorTest, PushesHeldBeforeSubscribeThenLiveOnesArriveInOrder) {
  CreateAccount("alice");
  CreateAccount("bob");
  const std::string alice = Login("alice");
  const std::string bob = Login("bob");
  v1::SendResponse first;
  ASSERT_TRUE(Send(alice, "bob", "before the stream", &first).ok());
  EXPECT_EQ(first.delivery(), v1::DELIVERY_DELIVERED) << "bob is logged in";
  Stream stream = Subscribe(bob);
  ASSERT_TRUE(Send(alice, "bob", "while streaming").ok());
  const std::optional<v1::ServerPush> one = stream.Next();
  const std::optional<v1::ServerPush> two = stream.Next();
  ASSERT_TRUE(one && two);
  EXPECT_EQ(one->deliver().text(), "before the stream");
  EXPECT_EQ(one->deliver().message_id(), first.message_id());
  EXPECT_EQ(one->deliver().sender(), "alice");
  EXPECT_EQ(two->deliver().text(), "while streaming");
  stream.context->TryCancel();
}

TEST_F(GrpcFrontDoorTest, ASecondSubscribeIsRefusedAndTheFirstKeepsWorking) {
  CreateAccount("alice");
  CreateAccount("bob");
  const std::string alice = Login("alice");
  const std::string bob = Login("bob");
  Stream first = Subscribed(bob, "bob");
  Stream second = Subscribe(bob);
  EXPECT_FALSE(second.Next().has_value());
  const grpc::Status refused = second.reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ProtocolError(*second.context), ErrorCode::kUnexpectedMessage);
  ASSERT_TRUE(Send(alice, "bob", "still here").ok());
  const std::optional<v1::ServerPush> push = first.Next();
  ASSERT_TRUE(push);
  EXPECT_EQ(push->deliver().text(), "still here");
  first.context->TryCancel();
}

TEST_F(GrpcFrontDoorTest, LogoutEndsTheStreamAndTheToken) {
  CreateAccount("alice");
  const std::string alice = Login("alice");
  Stream stream = Subscribed(alice, "alice");
  v1::LogoutResponse response;
  ASSERT_TRUE(stub_->Logout(Context(alice).get(), v1::LogoutRequest(), &response).ok());
  const std::optional<v1::ServerPush> push = stream.Next();
  ASSERT_TRUE(push);
  EXPECT_EQ(push->session_ended().reason(), v1::END_REASON_LOGGED_OUT);
  EXPECT_FALSE(stream.Next().has_value());
  EXPECT_TRUE(stream.reader->Finish().ok());
  v1::PingResponse pong;
  EXPECT_EQ(stub_->Ping(Context(alice).get(), v1::PingRequest(), &pong).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GrpcFrontDoorTest, SubscribeSendsHeadersOnceTheStreamIsAttached) {
  CreateAccount("alice");
  const std::string alice = Login("alice");
  Stream stream = Subscribe(alice);
  // Once the headers are in, nothing the session sends can miss the stream, not even its end.
  stream.reader->WaitForInitialMetadata();
  v1::LogoutResponse response;
  ASSERT_TRUE(stub_->Logout(Context(alice).get(), v1::LogoutRequest(), &response).ok());
  const std::optional<v1::ServerPush> push = stream.Next();
  ASSERT_TRUE(push);
  EXPECT_EQ(push->session_ended().reason(), v1::END_REASON_LOGGED_OUT);
}

TEST_F(GrpcFrontDoorTest, ANewLoginTakesOverTheOldSession) {
  CreateAccount("alice");
  const std::string old_token = Login("alice");
  Stream stream = Subscribed(old_token, "alice");
  const std::string new_token = Login("alice");
  EXPECT_NE(new_token, old_token);
  const std::optional<v1::ServerPush> push = stream.Next();
  ASSERT_TRUE(push);
  EXPECT_EQ(push->session_ended().reason(), v1::END_REASON_TAKEOVER);
  EXPECT_FALSE(stream.Next().has_value());
  v1::PingResponse pong;
  EXPECT_EQ(stub_->Ping(Context(old_token).get(), v1::PingRequest(), &pong).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(stub_->Ping(Context(new_token).get(), v1::PingRequest(), &pong).ok());
}

TEST_F(GrpcFrontDoorTest, UnackedMessagesReturnWhenTheStreamIsCancelled) {
  CreateAccount("alice");
  CreateAccount("bob");
  const std::string alice = Login("alice");
  std::string bob = Login("bob");
  Stream stream = Subscribe(bob);
  ASSERT_TRUE(Send(alice, "bob", "unacked").ok());
  ASSERT_TRUE(stream.Next().has_value());
  stream.context->TryCancel();  // The client vanishes without ACK.
  stream.reader->Finish();

  // The session ends (its token stops working) once the server notices.
  const auto deadline = std::chrono::steady_clock::now() + seconds(5);
  v1::PingResponse pong;
  bool ended = false;
  while (!ended && std::chrono::steady_clock::now() < deadline) {
    ended = !stub_->Ping(Context(bob).get(), v1::PingRequest(), &pong).ok();
    if (!ended) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(ended) << "the session outlived its cancelled stream";
  std::uint32_t unread = 0;
  bob = Login("bob", &unread);
  EXPECT_EQ(unread, 1u);
  v1::FetchUndeliveredRequest request;
  request.set_limit(10);
  v1::FetchUndeliveredResponse batch;
  ASSERT_TRUE(stub_->FetchUndelivered(Context(bob).get(), request, &batch).ok());
  ASSERT_EQ(batch.messages_size(), 1);
  EXPECT_EQ(batch.messages(0).text(), "unacked");
}

TEST_F(GrpcFrontDoorTest, ASessionThatNeverSubscribesEndsAtTheLoginTimeout) {
  door_.reset();
  GrpcOptions options;
  options.login_timeout_ms = 200;
  Start(options);
  CreateAccount("alice");
  const std::string token = Login("alice");
  std::this_thread::sleep_for(milliseconds(600));
  v1::PingResponse pong;
  EXPECT_EQ(stub_->Ping(Context(token).get(), v1::PingRequest(), &pong).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GrpcFrontDoorTest, LoginBeyondTheSessionLimitIsServerBusy) {
  door_.reset();
  GrpcOptions options;
  options.max_sessions = 1;
  Start(options);
  CreateAccount("alice");
  CreateAccount("bob");
  Login("alice");
  auto context = Context();
  v1::LoginRequest request;
  request.set_username("bob");
  request.set_password(kPassword);
  v1::LoginResponse response;
  EXPECT_EQ(stub_->Login(context.get(), request, &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ProtocolError(*context), ErrorCode::kServerBusy);
}

TEST_F(GrpcFrontDoorTest, ShutdownEndsStreamsWithServerShutdown) {
  CreateAccount("alice");
  Stream stream = Subscribed(Login("alice"), "alice");
  messenger_.Shutdown();
  door_->Shutdown(seconds(5));
  const std::optional<v1::ServerPush> push = stream.Next();
  ASSERT_TRUE(push);
  EXPECT_EQ(push->session_ended().reason(), v1::END_REASON_SERVER_SHUTDOWN);
}

TEST(GrpcSessionTest, MoreHeldPushesThanTheLimitEndTheSessionAsASlowConsumer) {
  GrpcSession session("token", 0);
  for (std::size_t i = 0; i < kMaxHeldPushes; ++i) {
    session.Deliver({i + 1, "alice", 0, "hi"});
  }
  EXPECT_FALSE(session.ended());
  session.Deliver({kMaxHeldPushes + 1, "alice", 0, "one too many"});
  EXPECT_TRUE(session.ended());
}

}  // namespace
}  // namespace messenger

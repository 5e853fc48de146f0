// Drives the real poco_messenger binary over loopback TCP: it is started on port 0, announces the
// bound port on its readiness line, and is stopped with SIGTERM (SIGKILL after a timeout). Every
// wait is bounded; a failing test prints the frames it got, decoded, and the server's log.
#include <Poco/Exception.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

extern char** environ;

namespace messenger {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr seconds kStartTimeout{10};
constexpr seconds kStopTimeout{10};
constexpr seconds kReplyTimeout{5};
constexpr char kPassword[] = "correct horse battery";

SteadyTime Now() { return std::chrono::steady_clock::now(); }

int RemainingMs(SteadyTime deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- The server process ----

class ServerProcess {
 public:
  ServerProcess(std::filesystem::path dir, std::string name)
      : dir_(std::move(dir)), name_(std::move(name)) {}
  ~ServerProcess() { Kill(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `poco_messenger server` on 127.0.0.1, port 0, with this test's database (unless
  // overridden) and waits for the readiness line.
  ::testing::AssertionResult Start(const std::map<std::string, std::string>& overrides = {}) {
    std::map<std::string, std::string> options = {{"host", "127.0.0.1"},
                                                  {"port", "0"},
                                                  {"db", (dir_ / "messenger.db").string()},
                                                  {"password-cost", "test"}};
    for (const auto& [key, value] : overrides) options[key] = value;
    std::vector<std::string> args = {MESSENGER_SERVER_BINARY, "server"};
    for (const auto& [key, value] : options) {
      args.push_back("--" + key);
      args.push_back(value);
    }
    if (!Spawn(args)) return ::testing::AssertionFailure() << "cannot start the server";

    std::string line;
    const SteadyTime deadline = Now() + kStartTimeout;
    while (line.empty() || line.back() != '\n') {
      pollfd fd = {stdout_fd_, POLLIN, 0};
      if (::poll(&fd, 1, RemainingMs(deadline)) <= 0) {
        return ::testing::AssertionFailure() << "no readiness line within " << kStartTimeout.count()
                                             << " s; got '" << line << "'";
      }
      char c;
      if (::read(stdout_fd_, &c, 1) != 1) {
        return ::testing::AssertionFailure()
               << "the server exited before it was ready; exit code " << Wait(seconds(2));
      }
      line.push_back(c);
    }
    const std::string prefix = "poco_messenger listening on 127.0.0.1:";
    if (line.rfind(prefix, 0) != 0) {
      return ::testing::AssertionFailure() << "unexpected readiness line '" << line << "'";
    }
    port_ = static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
    if (port_ == 0) return ::testing::AssertionFailure() << "readiness line shows port 0";
    return ::testing::AssertionSuccess();
  }

  // Runs the binary with `args` after `server` and returns its exit code; stderr goes to
  // log().
  int RunToExit(const std::vector<std::string>& args) {
    std::vector<std::string> all = {MESSENGER_SERVER_BINARY, "server"};
    all.insert(all.end(), args.begin(), args.end());
    if (!Spawn(all)) return -1;
    return Wait(kStopTimeout);
  }

  // SIGTERM, then SIGKILL if it has not exited within kStopTimeout. Returns the exit code, or
  // 128 + the signal that ended it.
  int Terminate() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    return Wait(kStopTimeout);
  }

  // SIGKILL: the process gets no chance to clean up.
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    Wait(kStopTimeout);
  }

  std::uint16_t port() const { return port_; }
  std::string log() const { return ReadFile(LogPath()); }
  std::string name() const { return name_; }

 private:
  std::filesystem::path LogPath() const { return dir_ / (name_ + ".log"); }

  bool Spawn(const std::vector<std::string>& args) {
    ++starts_;
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, LogPath().c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> argv;
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    stdout_fd_ = pipe_fds[0];
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  int Wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return -1;
    const SteadyTime deadline = Now() + timeout;
    int status = 0;
    pid_t done = 0;
    while ((done = ::waitpid(pid_, &status, WNOHANG)) == 0 && Now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (done == 0) {
      ADD_FAILURE() << name_ << " did not exit within " << timeout.count() << " ms; killing it";
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    if (stdout_fd_ >= 0) {
      ::close(stdout_fd_);
      stdout_fd_ = -1;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }

  std::filesystem::path dir_;
  std::string name_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int starts_ = 0;
  std::uint16_t port_ = 0;
};

// ---- A raw protocol client ----

std::string Show(const std::optional<Frame>& frame) {
  return frame ? Describe(*frame) : std::string("(nothing within the timeout)");
}

template <typename T>
bool Is(const std::optional<Frame>& frame) {
  return frame && std::holds_alternative<T>(frame->message);
}

template <typename T>
const T& Get(const std::optional<Frame>& frame) {
  return std::get<T>(frame->message);
}

// True iff `frame` is an ERROR with `code`.
bool IsError(const std::optional<Frame>& frame, ErrorCode code) {
  return Is<Error>(frame) && Get<Error>(frame).code == code;
}

class TestClient {
 public:
  // Connects to 127.0.0.1:port. With `receive_buffer` > 0 the socket's receive buffer is made
  // that small before connecting (a client that stops reading then stalls the server quickly).
  ::testing::AssertionResult Connect(std::uint16_t port, int receive_buffer = 0) {
    try {
      socket_ = Poco::Net::StreamSocket(Poco::Net::SocketAddress::IPv4);
      if (receive_buffer > 0) socket_.setReceiveBufferSize(receive_buffer);
      socket_.connect(Poco::Net::SocketAddress("127.0.0.1", port), Poco::Timespan(5, 0));
      socket_.setSendTimeout(Poco::Timespan(5, 0));
      socket_.setNoDelay(true);
    } catch (const Poco::Exception& e) {
      return ::testing::AssertionFailure() << "connect: " << e.displayText();
    }
    return ::testing::AssertionSuccess();
  }

  void SendRaw(const Bytes& bytes) {
    std::size_t sent = 0;
    try {
      while (sent < bytes.size()) {
        const int n = socket_.sendBytes(bytes.data() + sent, static_cast<int>(bytes.size() - sent),
                                        MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
      }
    } catch (const Poco::Exception& e) {
      send_error_ = e.displayText();
    }
  }

  // Sends `message` as a request with a fresh id; returns the id.
  std::uint32_t Send(Message message) {
    const std::uint32_t id = next_id_++;
    Bytes bytes;
    const Status status = EncodeFrame({id, std::move(message)}, bytes);
    EXPECT_TRUE(status.ok()) << status.ToString();
    SendRaw(bytes);
    return id;
  }

  // The response with `request_id` (pushes that arrive meanwhile are kept for WaitPush).
  std::optional<Frame> WaitResponse(std::uint32_t request_id,
                                    std::chrono::milliseconds timeout = kReplyTimeout) {
    const SteadyTime deadline = Now() + timeout;
    for (;;) {
      for (auto it = responses_.begin(); it != responses_.end(); ++it) {
        if (it->request_id == request_id) {
          Frame frame = std::move(*it);
          responses_.erase(it);
          return frame;
        }
      }
      if (!ReadMore(deadline)) return std::nullopt;
    }
  }

  // Sends a request and waits for its response.
  std::optional<Frame> Call(Message message) { return WaitResponse(Send(std::move(message))); }

  std::optional<Frame> WaitPush(std::chrono::milliseconds timeout = kReplyTimeout) {
    const SteadyTime deadline = Now() + timeout;
    while (pushes_.empty()) {
      if (!ReadMore(deadline)) return std::nullopt;
    }
    Frame frame = std::move(pushes_.front());
    pushes_.pop_front();
    return frame;
  }

  // Reads until the server closes the connection; true iff it did within `timeout`.
  bool WaitClosed(std::chrono::milliseconds timeout = kReplyTimeout) {
    const SteadyTime deadline = Now() + timeout;
    while (!closed_) {
      if (!ReadMore(deadline) && !closed_) return false;
    }
    return true;
  }

  // Convenience: HELLO, CREATE_ACCOUNT and LOGIN, each expected to succeed.
  ::testing::AssertionResult Hello() {
    const std::optional<Frame> reply = Call(messenger::Hello{kProtocolVersion});
    if (!Is<HelloOk>(reply)) return ::testing::AssertionFailure() << "HELLO: " << Show(reply);
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult Create(const std::string& name) {
    const std::optional<Frame> reply = Call(CreateAccount{name, kPassword});
    if (!Is<Ok>(reply))
      return ::testing::AssertionFailure() << "CREATE " << name << ": " << Show(reply);
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult Login(const std::string& name, std::uint32_t* unread = nullptr) {
    const std::optional<Frame> reply = Call(messenger::Login{name, kPassword});
    if (!Is<LoginOk>(reply))
      return ::testing::AssertionFailure() << "LOGIN " << name << ": " << Show(reply);
    if (unread != nullptr) *unread = Get<LoginOk>(reply).unread_count;
    return ::testing::AssertionSuccess();
  }

  int fd() const { return socket_.impl()->sockfd(); }
  bool closed() const { return closed_; }
  std::deque<Frame>& pushes() { return pushes_; }

 private:
  // Reads what arrives before `deadline`; false on timeout or once the connection is closed.
  bool ReadMore(SteadyTime deadline) {
    if (closed_) return false;
    pollfd fd = {socket_.impl()->sockfd(), POLLIN, 0};
    if (::poll(&fd, 1, RemainingMs(deadline)) <= 0) return false;
    std::uint8_t buffer[64 * 1024];
    const ssize_t n = ::recv(fd.fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) return true;
      closed_ = true;  // EOF, or a reset (ECONNRESET) after the server's hard close.
      return false;
    }
    decoder_.Feed(std::span<const std::uint8_t>(buffer, static_cast<std::size_t>(n)));
    while (std::optional<DecodeResult> result = decoder_.Next()) {
      if (!result->status.ok()) {
        ADD_FAILURE() << "the server sent an undecodable frame: " << result->status.ToString();
        closed_ = true;
        return false;
      }
      Frame frame{result->request_id, std::move(result->message)};
      if (IsPush(TypeOf(frame.message))) {
        pushes_.push_back(std::move(frame));
      } else {
        responses_.push_back(std::move(frame));
      }
    }
    return true;
  }

  Poco::Net::StreamSocket socket_;
  FrameDecoder decoder_{kMaxMaxFrameSize};
  std::uint32_t next_id_ = 1;
  std::deque<Frame> responses_;
  std::deque<Frame> pushes_;
  bool closed_ = false;
  std::string send_error_;
};

Bytes RawFrame(std::uint8_t type, std::uint32_t request_id, const Bytes& body) {
  const auto size = static_cast<std::uint32_t>(kFrameHeaderSize + body.size());
  Bytes bytes;
  for (int shift = 24; shift >= 0; shift -= 8)
    bytes.push_back(static_cast<std::uint8_t>(size >> shift));
  bytes.push_back(type);
  for (int shift = 24; shift >= 0; shift -= 8) {
    bytes.push_back(static_cast<std::uint8_t>(request_id >> shift));
  }
  for (const std::uint8_t byte : body) bytes.push_back(byte);
  return bytes;
}

// ---- Fixture ----

class ServerIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);  // Writing to a connection the server closed must not kill us.
    std::string pattern = (std::filesystem::temp_directory_path() / "messenger-it-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }

  void TearDown() override {
    for (auto& server : servers_) server->Kill();
    // MESSENGER_TEST_SERVER_LOGS=1 shows the server logs of passing tests too.
    if (HasFailure() || std::getenv("MESSENGER_TEST_SERVER_LOGS") != nullptr) {
      for (auto& server : servers_) {
        std::cerr << "---- log of " << server->name() << " ----\n" << server->log();
      }
    }
    servers_.clear();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // A server process on this test's database; started by the caller.
  ServerProcess& NewServer() {
    servers_.push_back(
        std::make_unique<ServerProcess>(dir_, "server-" + std::to_string(servers_.size() + 1)));
    return *servers_.back();
  }

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
};

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
}  // namespace messenger

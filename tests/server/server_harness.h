// A harness for tests that drive the real poco_messenger binary over loopback TCP.
//
// ServerProcess starts `poco_messenger server` on port 0, learns the bound port from its readiness
// line and stops it with SIGTERM (SIGKILL after a timeout). TestClient speaks the wire protocol
// through the codec and keeps pushes apart from responses. ServerTest is a fixture that gives each
// test its own directory (database, logs) and prints the server logs of a failing test. Every wait
// is bounded.
//
// The including target defines MESSENGER_SERVER_BINARY, the path of the binary under test.
// Thread-safety: one TestClient per thread; ServerProcess and the fixture on the test's thread.
#ifndef MESSENGER_TESTS_SERVER_SERVER_HARNESS_H_
#define MESSENGER_TESTS_SERVER_SERVER_HARNESS_H_

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
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

#ifndef MESSENGER_SERVER_BINARY
#error "MESSENGER_SERVER_BINARY must name the poco_messenger binary under test"
#endif

extern char** environ;

namespace messenger::test {

using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyTime = std::chrono::steady_clock::time_point;

inline constexpr seconds kStartTimeout{10};
inline constexpr seconds kStopTimeout{10};
inline constexpr seconds kReplyTimeout{5};
inline constexpr char kPassword[] = "correct horse battery";

inline SteadyTime Now() { return std::chrono::steady_clock::now(); }

inline int RemainingMs(SteadyTime deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

inline std::string ReadFile(const std::filesystem::path& path) {
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

  // From the next Start on, the server runs with RLIMIT_NOFILE (soft and hard) set to `limit`,
  // as `ulimit -n` would, so it cannot raise it again.
  void set_descriptor_limit(int limit) { descriptor_limit_ = limit; }

  // Starts `poco_messenger server` on 127.0.0.1, port 0, with this test's database (unless
  // overridden) and waits for the readiness line.
  ::testing::AssertionResult Start(const std::map<std::string, std::string>& overrides = {}) {
    std::map<std::string, std::string> options = {{"host", "127.0.0.1"},
                                                  {"port", "0"},
                                                  {"grpc-port", "0"},
                                                  {"db", (dir_ / "messenger.db").string()},
                                                  {"password-cost", "test"}};
    for (const auto& [key, value] : overrides) options[key] = value;
    std::vector<std::string> args = {MESSENGER_SERVER_BINARY, "server"};
    for (const auto& [key, value] : options) {
      args.push_back("--" + key);
      args.push_back(value);
    }
    if (descriptor_limit_ > 0) {
      // The shell sets the limit and then becomes the server (exec), so pid() stays the server's.
      args.insert(args.begin(),
                  {"/bin/sh", "-c",
                   "ulimit -n " + std::to_string(descriptor_limit_) + " && exec \"$0\" \"$@\""});
    }
    if (!Spawn(args)) return ::testing::AssertionFailure() << "cannot start the server";

    const SteadyTime deadline = Now() + kStartTimeout;
    ::testing::AssertionResult ready =
        ReadPort(deadline, "poco_messenger listening on 127.0.0.1:", port_);
    if (!ready || options["grpc-port"] == "0") return ready;
    return ReadPort(deadline, "poco_messenger grpc listening on 127.0.0.1:", grpc_port_);
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

  // The running server's process id; -1 when it is not running.
  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }
  // The gRPC port; 0 unless started with a --grpc-port other than 0.
  std::uint16_t grpc_port() const { return grpc_port_; }
  std::string log() const { return ReadFile(LogPath()); }
  std::string name() const { return name_; }

 private:
  std::filesystem::path LogPath() const { return dir_ / (name_ + ".log"); }

  // Reads one readiness line from the server's stdout, which must be `prefix` then a port.
  ::testing::AssertionResult ReadPort(SteadyTime deadline, const std::string& prefix,
                                      std::uint16_t& port) {
    std::string line;
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
    if (line.rfind(prefix, 0) != 0) {
      return ::testing::AssertionFailure()
             << "unexpected readiness line '" << line << "', expected '" << prefix << "PORT'";
    }
    port = static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
    if (port == 0) return ::testing::AssertionFailure() << "readiness line shows port 0";
    return ::testing::AssertionSuccess();
  }

  bool Spawn(const std::vector<std::string>& args) {
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
  int descriptor_limit_ = 0;
  std::uint16_t port_ = 0;
  std::uint16_t grpc_port_ = 0;
};

// ---- A raw protocol client ----

inline std::string Show(const std::optional<Frame>& frame) {
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
inline bool IsError(const std::optional<Frame>& frame, ErrorCode code) {
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
  std::optional<Frame> Call(Message message, std::chrono::milliseconds timeout = kReplyTimeout) {
    return WaitResponse(Send(std::move(message)), timeout);
  }

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

// One frame as raw bytes, whatever its type and body (for frames the codec would not encode).
inline Bytes RawFrame(std::uint8_t type, std::uint32_t request_id, const Bytes& body) {
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

// Each test gets a fresh directory for its database and server logs, removed afterwards.
class ServerTest : public ::testing::Test {
 protected:
  static constexpr std::size_t kMaxLogShown = 256 * 1024;

  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);  // Writing to a connection the server closed must not kill us.
    std::string pattern =
        (std::filesystem::temp_directory_path() / "messenger-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }

  void TearDown() override {
    // A server still running must stop cleanly on SIGTERM: a test that leaves it wedged fails.
    for (auto& server : servers_) {
      if (server->pid() > 0) {
        EXPECT_EQ(server->Terminate(), 0) << server->name() << " did not exit cleanly on SIGTERM";
      }
    }
    // MESSENGER_TEST_SERVER_LOGS=1 shows the server logs of passing tests too.
    if (HasFailure() || std::getenv("MESSENGER_TEST_SERVER_LOGS") != nullptr) {
      for (auto& server : servers_) {
        std::string log = server->log();
        std::cerr << "---- log of " << server->name() << " ----\n";
        // The end of a long log (a flood logs every connection) is where the failure is.
        if (log.size() > kMaxLogShown) {
          std::cerr << "(" << log.size() - kMaxLogShown << " earlier bytes left out)\n";
          log.erase(0, log.size() - kMaxLogShown);
        }
        std::cerr << log;
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

}  // namespace messenger::test

#endif  // MESSENGER_TESTS_SERVER_SERVER_HARNESS_H_

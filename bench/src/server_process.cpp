#include "server_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace messenger::bench {
namespace {

// How long a server gets to print its readiness lines or accept connections.
constexpr std::chrono::seconds kStartTimeout{20};
// How long a server gets to exit after SIGTERM: it ends every session and flushes first.
constexpr std::chrono::seconds kStopTimeout{10};
constexpr char kReadinessPrefix[] = "poco_messenger listening on ";
constexpr char kGrpcReadinessPrefix[] = "poco_messenger grpc listening on ";

Status Failure(std::string message) { return Status(ErrorCode::kInternal, std::move(message)); }

std::string ShellQuote(const std::string& arg) {
  std::string out = "'";
  for (const char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// A port that was free a moment ago.
std::uint16_t PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

bool Accepts(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return ok;
}

std::uint16_t ReadinessPort(const std::string& line, const std::string& prefix) {
  const std::size_t colon = line.rfind(':');
  if (line.rfind(prefix, 0) != 0 || colon == std::string::npos) return 0;
  const std::string digits = line.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return 0;
  }
  const unsigned long value = std::stoul(digits);
  return value > 65535 ? 0 : static_cast<std::uint16_t>(value);
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The process whose memory is the server's: `pid`, or while it has exactly one child and is a
// shell, that child.
pid_t ServerPid(pid_t pid) {
  for (int depth = 0; depth < 4; ++depth) {
    const std::string comm = ReadFirstLine("/proc/" + std::to_string(pid) + "/comm");
    if (comm != "sh" && comm != "bash" && comm != "dash") break;
    std::istringstream children(ReadFirstLine("/proc/" + std::to_string(pid) + "/task/" +
                                              std::to_string(pid) + "/children"));
    pid_t child = 0;
    pid_t extra = 0;
    if (!(children >> child) || (children >> extra)) break;
    pid = child;
  }
  return pid;
}

}  // namespace

ServerProcess::~ServerProcess() { (void)Stop(); }

Status ServerProcess::StartBinary(const std::string& binary, const std::vector<std::string>& args,
                                  const std::filesystem::path& dir) {
  log_ = dir / "server.log";
  std::vector<std::string> argv = {
      binary, "server",      "--host", "127.0.0.1", "--port",
      "0",    "--grpc-port", "auto",   "--db",      (dir / "bench.db").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  if (Status s = Spawn(argv, /*stdout_to_pipe=*/true); !s.ok()) return s;
  return WaitForReadiness();
}

Status ServerProcess::StartCommand(const std::string& command, const std::vector<std::string>& args,
                                   const std::filesystem::path& dir) {
  log_ = dir / "server.log";
  port_ = PickFreePort();
  grpc_port_ = PickFreePort();
  if (port_ == 0 || grpc_port_ == 0 || port_ == grpc_port_) {
    return Failure("cannot find two free ports");
  }
  std::string joined;
  for (const std::string& arg : args) joined += (joined.empty() ? "" : " ") + ShellQuote(arg);
  std::string line = ReplaceAll(command, "{port}", std::to_string(port_));
  line = ReplaceAll(line, "{grpc_port}", std::to_string(grpc_port_));
  line = ReplaceAll(line, "{db}", ShellQuote((dir / "bench.db").string()));
  line = ReplaceAll(line, "{args}", joined);
  if (Status s = Spawn({"/bin/sh", "-c", line}, /*stdout_to_pipe=*/false); !s.ok()) return s;
  if (Status s = WaitUntilAccepting(port_); !s.ok()) return s;
  return WaitUntilAccepting(grpc_port_);
}

Status ServerProcess::Spawn(const std::vector<std::string>& args, bool stdout_to_pipe) {
  int pipe_fds[2] = {-1, -1};
  if (stdout_to_pipe && ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return Failure(std::string("pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (stdout_to_pipe) {
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  } else {
    posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  }
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // A process group of its own, so that Stop() reaches a shell's children too, and default
  // signal handling (the benchmark ignores SIGPIPE).
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const int rc = ::posix_spawn(&pid_, args[0].c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (stdout_to_pipe) {
    ::close(pipe_fds[1]);
    stdout_fd_ = pipe_fds[0];
  }
  if (rc != 0) {
    pid_ = -1;
    return Failure("cannot start " + args[0] + ": " + std::strerror(rc));
  }
  return Status::Ok();
}

Status ServerProcess::WaitForReadiness() {
  const auto deadline = SteadyClock::now() + kStartTimeout;
  std::vector<std::string> lines(1);
  Status result;
  // The wire line, then the gRPC line.
  while (lines.size() <= 2) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    pollfd p = {stdout_fd_, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      result = Failure("no readiness lines within " + std::to_string(kStartTimeout.count()) + " s");
      break;
    }
    char c = 0;
    if (::read(stdout_fd_, &c, 1) != 1) {
      result = Failure("the server exited before it was ready");
      break;
    }
    if (c == '\n') {
      lines.emplace_back();
    } else {
      lines.back() += c;
    }
  }
  ::close(stdout_fd_);
  stdout_fd_ = -1;
  if (!result.ok()) return Failure(result.message() + "\n" + LogTail(20));
  port_ = ReadinessPort(lines[0], kReadinessPrefix);
  grpc_port_ = ReadinessPort(lines[1], kGrpcReadinessPrefix);
  if (port_ == 0 || grpc_port_ == 0) {
    return Failure("unexpected readiness lines '" + lines[0] + "' and '" + lines[1] + "'");
  }
  return Status::Ok();
}

Status ServerProcess::WaitUntilAccepting(std::uint16_t port) {
  const auto deadline = SteadyClock::now() + kStartTimeout;
  while (SteadyClock::now() < deadline) {
    if (Reap(std::chrono::milliseconds(0))) {
      return Failure("the server exited before it accepted connections\n" + LogTail(20));
    }
    if (Accepts(port)) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Failure("nothing accepts connections on port " + std::to_string(port) + "\n" +
                 LogTail(20));
}

bool ServerProcess::Reap(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return true;
  const auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status ServerProcess::Stop() {
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  stdout_fd_ = -1;
  if (pid_ <= 0) return Status::Ok();
  const pid_t group = pid_;
  ::kill(-group, SIGTERM);
  if (Reap(kStopTimeout)) {
    ::kill(-group, SIGKILL);  // A shell's children that outlived it.
    return Status::Ok();
  }
  ::kill(-group, SIGKILL);
  Reap(kStopTimeout);
  return Failure("the server did not exit within " + std::to_string(kStopTimeout.count()) +
                 " s of SIGTERM and was killed");
}

std::optional<std::uint64_t> ServerProcess::RssBytes() const {
  if (pid_ <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(ServerPid(pid_)) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      std::uint64_t kib = 0;
      if (fields >> kib) return kib * 1024;
    }
  }
  return std::nullopt;
}

std::string ServerProcess::LogTail(std::size_t lines) const {
  std::ifstream in(log_);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const std::string& l : tail) out += "    | " + l + "\n";
  return out.empty() ? "    | (the server's log is empty)\n" : out;
}

std::optional<std::uint64_t> LoopbackBytes() {
  std::ifstream in("/proc/net/dev");
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != "lo") continue;
    std::istringstream fields(line.substr(colon + 1));
    std::uint64_t received = 0;
    if (fields >> received) return received;
  }
  return std::nullopt;
}

}  // namespace messenger::bench

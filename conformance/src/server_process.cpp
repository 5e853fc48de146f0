#include "server_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "connection.h"

extern char** environ;

namespace messenger::conformance {
namespace {

// How long a server gets to print its readiness line or start accepting connections.
constexpr std::chrono::seconds kStartTimeout{10};
// How long a server gets to exit after SIGTERM before it is killed. Its sessions have been told
// (SESSION_ENDED) long before; this only bounds how long a hung exit can delay the suite.
constexpr std::chrono::seconds kStopTimeout{5};
// How long a killed process gets to be reaped.
constexpr std::chrono::seconds kKillTimeout{10};
constexpr char kReadinessPrefix[] = "poco_messenger listening on ";
constexpr char kGrpcReadinessPrefix[] = "poco_messenger grpc listening on ";

// The process group of the running server, for the signal handler; 0 when none runs.
std::atomic<pid_t> g_server_group{0};

void KillServerAndExit(int signal_number) {
  const pid_t group = g_server_group.load();
  if (group > 0) ::kill(-group, SIGKILL);
  // Default action, so the runner's exit status tells what ended it.
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

Status Failure(const std::string& message) { return Status(ErrorCode::kInternal, message); }

// Quotes `arg` for /bin/sh.
std::string ShellQuote(const std::string& arg) {
  std::string out = "'";
  for (const char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size()) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

// A port that was free a moment ago: bound with port 0, then released.
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

}  // namespace

void KillServerOnExit() {
  // A server that a shell started outlives the shell as the runner's child, so it is reaped here
  // rather than by init, and its exit is seen at once.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction action {};
  action.sa_handler = KillServerAndExit;
  sigemptyset(&action.sa_mask);
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
    ::sigaction(signal_number, &action, nullptr);
  }
}

ServerProcess::ServerProcess(ServerSpec spec, std::filesystem::path dir,
                             std::vector<std::string> args, bool grpc)
    : spec_(std::move(spec)), dir_(std::move(dir)), args_(std::move(args)), grpc_(grpc) {}

ServerProcess::~ServerProcess() { Kill(); }

Status ServerProcess::Start() {
  const std::string db = (dir_ / "messenger.db").string();
  switch (spec_.kind) {
    case ServerSpec::Kind::kExternal:
      port_ = spec_.port;
      grpc_port_ = grpc_ ? spec_.grpc_port : 0;
      if (Status s = WaitUntilAccepting(spec_.host, port_); !s.ok() || !grpc_) return s;
      return WaitUntilAccepting(spec_.grpc_host, grpc_port_);
    case ServerSpec::Kind::kBinary: {
      // gRPC stays off unless needed, so that parallel servers never compete for its port.
      std::vector<std::string> argv = {
          spec_.binary,         "server", "--host", spec_.host,        "--port", "0", "--grpc-port",
          grpc_ ? "auto" : "0", "--db",   db,       "--password-cost", "test"};
      argv.insert(argv.end(), args_.begin(), args_.end());
      if (Status s = Spawn(argv, /*stdout_to_pipe=*/true); !s.ok()) return s;
      return WaitForReadinessLines();
    }
    case ServerSpec::Kind::kCommand: {
      if (port_ == 0) port_ = PickFreePort();
      if (grpc_ && grpc_port_ == 0) grpc_port_ = PickFreePort();
      if (port_ == 0 || (grpc_ && grpc_port_ == 0)) return Failure("cannot find a free port");
      std::string args;
      for (const std::string& arg : args_) args += (args.empty() ? "" : " ") + ShellQuote(arg);
      std::string command = ReplaceAll(spec_.command, "{host}", spec_.host);
      command = ReplaceAll(command, "{port}", std::to_string(port_));
      command = ReplaceAll(command, "{grpc_port}", std::to_string(grpc_port_));
      command = ReplaceAll(command, "{db}", ShellQuote(db));
      command = ReplaceAll(command, "{args}", args);
      if (Status s = Spawn({"/bin/sh", "-c", command}, /*stdout_to_pipe=*/false); !s.ok()) {
        return s;
      }
      if (Status s = WaitUntilAccepting(spec_.host, port_); !s.ok() || !grpc_) return s;
      return WaitUntilAccepting(spec_.grpc_host, grpc_port_);
    }
  }
  return Failure("unknown server kind");
}

Status ServerProcess::Spawn(const std::vector<std::string>& args, bool stdout_to_pipe) {
  std::error_code ignored;
  std::filesystem::create_directories(dir_, ignored);
  int pipe_fds[2] = {-1, -1};
  if (stdout_to_pipe && ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return Failure(std::string("pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, LogPath().c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (stdout_to_pipe) {
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  } else {
    posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  }
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // A process group of its own, and the default signal handling the runner changed.
  sigset_t defaults;
  sigemptyset(&defaults);
  for (const int signal_number : {SIGPIPE, SIGINT, SIGTERM, SIGHUP}) {
    sigaddset(&defaults, signal_number);
  }
  sigset_t no_signals;
  sigemptyset(&no_signals);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setsigmask(&attributes, &no_signals);

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
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    stdout_fd_ = -1;
    return Failure("cannot start " + args[0] + ": " + std::strerror(rc));
  }
  g_server_group = pid_;
  leader_reaped_ = false;
  exit_description_.clear();
  return Status::Ok();
}

namespace {

// The port of a readiness line `<prefix>HOST:PORT`, or 0.
std::uint16_t ReadinessPort(const std::string& line, const std::string& prefix) {
  const std::size_t colon = line.rfind(':');
  if (line.rfind(prefix, 0) != 0 || colon == std::string::npos) return 0;
  const std::string port = line.substr(colon + 1);
  const unsigned long value =
      port.find_first_not_of("0123456789") == std::string::npos && !port.empty() && port.size() <= 5
          ? std::stoul(port)
          : 0;
  return value > 65535 ? 0 : static_cast<std::uint16_t>(value);
}

}  // namespace

Status ServerProcess::WaitForReadinessLines() {
  const Clock::time_point deadline = Clock::now() + kStartTimeout;
  // The wire line, then (with gRPC on) the gRPC line.
  const std::size_t wanted = grpc_ ? 2 : 1;
  std::vector<std::string> lines(1);
  Status result = Status::Ok();
  while (lines.size() <= wanted) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p = {stdout_fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
      result = Failure("no readiness line within " + std::to_string(kStartTimeout.count()) +
                       " s; stdout so far: '" + lines.front() + "'");
      break;
    }
    char c;
    if (::read(stdout_fd_, &c, 1) != 1) {
      Reap(std::chrono::seconds(2));
      result = Failure("the server exited before it was ready (" + exit_description_ + ")");
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
  if (!result.ok()) return Status(result.code(), result.message() + "\n" + LogTail(20));
  port_ = ReadinessPort(lines[0], kReadinessPrefix);
  if (port_ == 0) {
    return Failure("unexpected readiness line '" + lines[0] + "'; expected '" + kReadinessPrefix +
                   "HOST:PORT'");
  }
  grpc_port_ = 0;
  if (grpc_) {
    grpc_port_ = ReadinessPort(lines[1], kGrpcReadinessPrefix);
    if (grpc_port_ == 0) {
      return Failure("unexpected second readiness line '" + lines[1] + "'; expected '" +
                     kGrpcReadinessPrefix + "HOST:PORT'");
    }
  }
  return Status::Ok();
}

Status ServerProcess::WaitUntilAccepting(const std::string& host, std::uint16_t port) {
  const Clock::time_point deadline = Clock::now() + kStartTimeout;
  Status last;
  while (Clock::now() < deadline) {
    if (spec_.kind != ServerSpec::Kind::kExternal && Reap(std::chrono::milliseconds(0))) {
      return Failure("the server exited before it accepted connections (" + exit_description_ +
                     ")\n" + LogTail(20));
    }
    Connection probe;
    last = probe.Open(host, port, std::chrono::milliseconds(1000));
    if (last.ok()) return Status::Ok();
    if (spec_.kind == ServerSpec::Kind::kExternal) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Failure("nothing accepts connections at " + host + ":" + std::to_string(port) + ": " +
                 last.message() +
                 (spec_.kind == ServerSpec::Kind::kExternal ? "" : "\n" + LogTail(20)));
}

Status ServerProcess::Stop() {
  if (pid_ <= 0) return Status::Ok();
  ::kill(-pid_, SIGTERM);
  if (Reap(kStopTimeout)) return Status::Ok();
  Kill();
  return Failure("the server did not exit within " + std::to_string(kStopTimeout.count()) +
                 " s of SIGTERM and was killed (its log may say why)");
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  Reap(kKillTimeout);
}

Status ServerProcess::CheckAlive() {
  if (spec_.kind == ServerSpec::Kind::kExternal) return Status::Ok();
  if (pid_ > 0 && !Reap(std::chrono::milliseconds(0))) return Status::Ok();
  return Failure("the server is not running: it " + exit_description_);
}

bool ServerProcess::ReapLeader() {
  if (leader_reaped_) return true;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done != pid_) return false;
  leader_reaped_ = true;
  if (WIFEXITED(status)) {
    exit_description_ = "exited with status " + std::to_string(WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    exit_description_ = "was ended by signal " + std::to_string(WTERMSIG(status)) + " (" +
                        ::strsignal(WTERMSIG(status)) + ")";
  } else {
    exit_description_ = "ended";
  }
  return true;
}

bool ServerProcess::Reap(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return true;
  const Clock::time_point deadline = Clock::now() + timeout;
  // The group outlives its leader when the leader is a shell that started the server as a child:
  // done once the leader is reaped and no process is left in the group.
  for (;;) {
    if (ReapLeader()) {
      // Members orphaned by the leader are the runner's children (a subreaper): reap them too,
      // or as zombies they would keep the group alive.
      while (::waitpid(-pid_, nullptr, WNOHANG) > 0) {
      }
      if (::kill(-pid_, 0) != 0) break;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  g_server_group = 0;
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  stdout_fd_ = -1;
  return true;
}

std::string ServerProcess::LogTail(std::size_t lines) const {
  std::ifstream in(LogPath());
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

}  // namespace messenger::conformance

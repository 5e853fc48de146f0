// A server the benchmark starts and stops: the poco_messenger binary on free ports (found from its
// readiness lines), or a shell command with placeholders. Also reads process and interface
// counters from /proc. Not thread-safe; owned by the main thread.
#ifndef MESSENGER_BENCH_SERVER_PROCESS_H_
#define MESSENGER_BENCH_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bench.h"
#include "messenger/codec/status.h"

namespace messenger::bench {

class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess();  // Stops the server if it runs.

  // Runs `binary server --host 127.0.0.1 --port 0 --grpc-port auto --db <dir>/bench.db ...` with
  // `args` appended and waits for both readiness lines. Its log goes to <dir>/server.log.
  Status StartBinary(const std::string& binary, const std::vector<std::string>& args,
                     const std::filesystem::path& dir);

  // Runs `/bin/sh -c command` after replacing {port}, {grpc_port} (free ports picked here), {db}
  // and {args}, then waits until both ports accept connections. RSS is read from the deepest
  // single child of the shell, so `exec` in the command is not required.
  Status StartCommand(const std::string& command, const std::vector<std::string>& args,
                      const std::filesystem::path& dir);

  // SIGTERM, then SIGKILL after a timeout. Returns a failure if it had to kill.
  Status Stop();

  Endpoint wire() const { return {"127.0.0.1", port_}; }
  Endpoint grpc() const { return {"127.0.0.1", grpc_port_}; }

  // The server's resident set size in bytes, if it runs.
  std::optional<std::uint64_t> RssBytes() const;

  // The last lines of the server's log, indented, for failure messages.
  std::string LogTail(std::size_t lines) const;

 private:
  Status Spawn(const std::vector<std::string>& argv, bool stdout_to_pipe);
  Status WaitForReadiness();
  Status WaitUntilAccepting(std::uint16_t port);
  bool Reap(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::filesystem::path log_;
  std::uint16_t port_ = 0;
  std::uint16_t grpc_port_ = 0;
};

// Bytes received on the loopback interface since boot (/proc/net/dev), or nullopt. On loopback
// every byte sent is received once, so the difference over a phase is the traffic of that phase,
// TCP/IP headers included.
std::optional<std::uint64_t> LoopbackBytes();

}  // namespace messenger::bench

#endif  // MESSENGER_BENCH_SERVER_PROCESS_H_

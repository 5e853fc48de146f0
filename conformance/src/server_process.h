// The server under test: the built poco_messenger binary, any command line that starts an
// implementation, or one that is already running elsewhere.
//
// A started server runs in a process group of its own, so that a command run through the shell
// is signalled as a whole. It is always reaped, and killed if the runner exits first (see
// KillServerOnExit). Not thread-safe.
#ifndef MESSENGER_CONFORMANCE_SERVER_PROCESS_H_
#define MESSENGER_CONFORMANCE_SERVER_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "messenger/codec/status.h"

namespace messenger::conformance {

struct ServerSpec {
  enum class Kind {
    kBinary,    // `binary server --host 127.0.0.1 --port 0 --grpc-port auto|0 --db DB
                // --password-cost test ARGS`; the bound ports are read from its readiness lines.
    kCommand,   // `/bin/sh -c command` with {host} {port} {grpc_port} {db} {args} filled in; the
                // ports are chosen free by the runner and the server is ready once they accept.
    kExternal,  // Already running at host:port (and grpc_host:grpc_port); never started,
                // stopped or restarted.
  };
  Kind kind = Kind::kBinary;
  std::string binary;
  std::string command;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string grpc_host = "127.0.0.1";
  std::uint16_t grpc_port = 0;  // kExternal: 0 when no gRPC address was given.
};

class ServerProcess {
 public:
  // `dir` holds the database and the server's log. `args` are the scenario's extra options.
  // With `grpc` the server must serve gRPC too; otherwise it is started with gRPC off.
  ServerProcess(ServerSpec spec, std::filesystem::path dir, std::vector<std::string> args,
                bool grpc);
  ~ServerProcess();  // Kills a server still running.
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the server (on the same database as before, if restarted) and waits until it serves.
  // For kExternal only checks that host:port accepts. Errors: kInternal saying why, with the end
  // of the server's log.
  Status Start();

  // SIGTERM to the server's process group, then waits; SIGKILL after the stop timeout, which
  // gives an error (the server is stopped either way). OK at once for kExternal.
  Status Stop();

  // SIGKILL to the server's process group, then reaps it: a crash, with no chance to clean up.
  void Kill();

  // OK while the started server runs; otherwise how it ended (it died during the scenario).
  Status CheckAlive();

  const std::string& host() const { return spec_.host; }
  std::uint16_t port() const { return port_; }
  // Where the gRPC front door listens; port 0 when it is off.
  const std::string& grpc_host() const { return spec_.grpc_host; }
  std::uint16_t grpc_port() const { return grpc_port_; }

  // The last `lines` lines of the server's stderr (and stdout for kCommand).
  std::string LogTail(std::size_t lines) const;

 private:
  Status Spawn(const std::vector<std::string>& argv, bool stdout_to_pipe);
  Status WaitForReadinessLines();
  Status WaitUntilAccepting(const std::string& host, std::uint16_t port);
  // Waits up to `timeout` until every process of the server's group has exited, reaping the
  // leader; true if they have.
  bool Reap(std::chrono::milliseconds timeout);
  // Reaps the group's leader if it has exited, recording how; true if it has.
  bool ReapLeader();
  std::filesystem::path LogPath() const { return dir_ / "server.log"; }

  ServerSpec spec_;
  std::filesystem::path dir_;
  std::vector<std::string> args_;
  bool grpc_ = false;
  pid_t pid_ = -1;  // The leader of the server's process group; -1 when none runs.
  bool leader_reaped_ = false;
  int stdout_fd_ = -1;
  std::uint16_t port_ = 0;
  std::uint16_t grpc_port_ = 0;
  std::string exit_description_;
};

// Installs handlers so that SIGINT, SIGTERM and SIGHUP to the runner kill a running server before
// the runner exits, ignores SIGPIPE, and makes the runner the reaper of the servers' orphaned
// processes. Call once, before starting servers.
void KillServerOnExit();

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_SERVER_PROCESS_H_

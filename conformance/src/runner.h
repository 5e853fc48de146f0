// Runs one scenario against a server: starts it (unless it is external), plays the steps in order,
// and reports the first step whose expectation is not met, with both frames decoded.
#ifndef MESSENGER_CONFORMANCE_RUNNER_H_
#define MESSENGER_CONFORMANCE_RUNNER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "scenario.h"
#include "scenario_client.h"
#include "server_process.h"

namespace messenger::conformance {

struct RunOptions {
  ServerSpec server;
  // The transport of clients that do not name theirs (scenarios are parsed for it).
  Transport transport = Transport::kWire;
  // How long an expectation waits for its frame (or for the close it expects).
  std::chrono::milliseconds timeout{5000};
  bool verbose = false;  // Print every step and every frame as it happens.
  bool keep = false;     // Keep each scenario's directory (database, server log).
  // With TLS: a directory as tests/support/make-test-certs makes it. Clients trust its ca.pem;
  // a server the runner starts gets --tls-cert server.pem --tls-key server.key. Empty: plain.
  std::string tls_dir;
};

struct Outcome {
  enum class Result { kPassed, kFailed, kSkipped };
  Result result = Result::kPassed;
  std::string detail;  // Why it failed or was skipped; empty when it passed.
  // Observations outside the protocol, e.g. a server that had to be killed after SIGTERM. They
  // do not fail the scenario: the suite judges the wire protocol, not process management.
  std::vector<std::string> notes;
  double seconds = 0;
};

// Runs `scenario`. Never throws; a server that cannot be started fails the scenario.
Outcome RunScenario(const Scenario& scenario, const RunOptions& options);

// The reason `scenario` cannot run with `options`, or empty if it can (a scenario that restarts
// the server or needs server options cannot run against an external server, one with gRPC
// clients not against a server whose gRPC address is unknown).
std::string WhyNotRunnable(const Scenario& scenario, const RunOptions& options);

// A record of what the clients sent and received, printed with a failure.
class Transcript {
 public:
  explicit Transcript(bool echo) : echo_(echo) {}
  // Later entries come from this line of the scenario.
  void SetLine(int line) { line_ = line; }
  void Add(const std::string& entry);
  // The last `lines` entries, indented.
  std::string Tail(std::size_t lines) const;

 private:
  bool echo_;
  int line_ = 0;
  std::vector<std::string> lines_;
};

// The swarm step: `clients` clients connect, register and log in at once, then each sends
// `messages` messages to the others concurrently. Checks that every SEND is answered SEND_OK
// DELIVERED in request order, that every message is pushed to its recipient exactly once with the
// id, sender, timestamp and text of its SEND_OK, in the order each sender sent them, and that
// after ACKing everything nothing is left to fetch. With `acceptance_order`, also that each
// recipient's pushes arrive in acceptance order (increasing message ids), across senders.
// Returns the first violation, or empty.
// `connect` opens one client of the swarm.
using ClientFactory = std::function<Result<std::unique_ptr<ScenarioClient>>()>;
std::string RunSwarm(int clients, int messages, bool acceptance_order, const ClientFactory& connect,
                     std::chrono::milliseconds timeout, Transcript& transcript);

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_RUNNER_H_

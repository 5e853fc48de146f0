// The benchmark's shared vocabulary: run phases, per-worker counters, the roles a worker plays and
// the Transport interface that the wire and gRPC clients implement.
//
// Threading: one thread per worker (a logged-in connection). A worker owns its WorkerStats and
// writes them without locks; the main thread reads them only after joining the worker. RunControl
// is shared and lock-free on the hot path (one relaxed atomic load per message).
#ifndef MESSENGER_BENCH_BENCH_H_
#define MESSENGER_BENCH_BENCH_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "histogram.h"
#include "messenger/codec/status.h"

namespace messenger::bench {

using SteadyClock = std::chrono::steady_clock;

inline std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch())
      .count();
}

// Where a front door listens.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};

enum class Phase : int {
  kSetup = 0,    // Workers connect and log in; nothing is sent yet.
  kWarmup = 1,   // Load runs, nothing is counted.
  kMeasure = 2,  // Load runs and is counted.
  kStop = 3,     // Workers finish and return.
};

// The run's shared state: its phase, how many workers are ready, and the first failure.
class RunControl {
 public:
  Phase phase() const { return phase_.load(std::memory_order_relaxed); }
  bool measuring() const { return phase() == Phase::kMeasure; }
  bool stopping() const { return phase() == Phase::kStop; }
  void SetPhase(Phase phase) { phase_.store(phase, std::memory_order_relaxed); }

  // A worker calls this once it is logged in (and subscribed), then blocks until the setup phase
  // is over. Returns false if the run was stopped meanwhile.
  bool ReadyAndWait();
  int ready() const { return ready_.load(); }

  // Records the first failure and stops the run.
  void Fail(const Status& status);
  bool failed() const { return failed_.load(); }
  Status first_failure() const;

 private:
  std::atomic<Phase> phase_{Phase::kSetup};
  std::atomic<int> ready_{0};
  std::atomic<bool> failed_{false};
  mutable std::mutex mutex_;
  Status first_failure_;
};

// One worker's counters, written only by that worker. Aligned so that workers on different
// cores never share a cache line.
struct alignas(64) WorkerStats {
  std::uint64_t replies = 0;    // SEND_OK received while measuring.
  std::uint64_t delivered = 0;  // DELIVER (or fetched and acknowledged) while measuring.
  std::uint64_t app_bytes = 0;  // Protocol bytes sent and received while measuring (wire only).
  Histogram latency;            // Nanoseconds: SEND->SEND_OK or SEND->DELIVER, see the role.
};

// A logged-in user that sends to one recipient.
struct SenderSpec {
  std::string user;
  std::string password;
  std::string recipient;
  int depth = 1;            // Requests in flight.
  double rate = 0;          // Messages per second for this sender; 0 = as fast as possible.
  std::uint64_t limit = 0;  // Stop after this many accepted messages; 0 = run until stopped.
  bool record_reply_latency = false;  // Record SEND->SEND_OK in WorkerStats::latency.
  // With a rate: the fraction of one interval to wait before the first message. Paced senders
  // spread over the interval offer a steady load; all starting at once, they would send in bursts.
  double phase = 0;
};

// A logged-in user that receives pushes, acknowledges them and records SEND->DELIVER latency.
struct ReceiverSpec {
  std::string user;
  std::string password;
};

// A user with queued messages that fetches them page by page and acknowledges every page.
struct DrainSpec {
  std::string user;
  std::string password;
  int depth = 16;  // FETCH requests in flight.
};

struct DrainResult {
  std::uint64_t unread_at_login = 0;
  std::uint64_t acknowledged = 0;
  std::int64_t elapsed_ns = 0;  // From the first FETCH sent to the last ACK answered.
  std::uint64_t app_bytes = 0;  // Protocol bytes sent and received meanwhile (wire only).
  // Every id acknowledged, in arrival order (reserved up front: no allocation per message), so
  // that a message handed out twice in one session shows up as a duplicate.
  std::vector<std::uint64_t> ids;
};

// Size of a timestamp embedded at the start of every message text: 16 hexadecimal digits of the
// sender's steady clock in nanoseconds. Sender and receiver share the process, hence the clock.
inline constexpr std::size_t kStampBytes = 16;

// Writes the stamp for `nanoseconds` into text[0..16).
void WriteStamp(char* text, std::int64_t nanoseconds);
// Reads a stamp; returns -1 if `text` does not start with one.
std::int64_t ReadStamp(const char* text, std::size_t size);

// Makes a text of `bytes` ASCII bytes with room for a stamp at the front.
std::string MakeText(std::size_t bytes);

// Sessions to log in and then hold open without traffic (idle-scale).
struct IdleSpec {
  std::vector<std::string> users;
  std::string password;
  int parallelism = 16;  // Logins in progress at once.
  // Wire, loopback IPv4 targets: connections made from one local address before the next ones
  // come from 127.0.0.2, 127.0.0.3, ... (each local address has its own ephemeral ports towards
  // the server's port). 0: all from the default address.
  int per_source_address = 0;
};

// Logged-in sessions held open without traffic. Destroying the object ends them (closes their
// connections or cancels their streams). Used by the main thread only.
class IdleSessions {
 public:
  virtual ~IdleSessions() = default;
  // Sessions that have ended since they were opened, or received anything (an idle session gets
  // nothing but SESSION_ENDED), as far as can be seen now.
  virtual int CountLost() = 0;
  // Local addresses the connections come from.
  virtual int source_addresses() const = 0;
};

// A client of one front door. Each Run* method runs one worker on the calling thread until the run
// stops (or its own job is done) and reports a failure both by its result and by
// RunControl::Fail. All methods may be called from many threads at once.
class Transport {
 public:
  virtual ~Transport() = default;

  // Creates the accounts (all with `password`), sequentially over one connection.
  virtual Status CreateAccounts(const std::vector<std::string>& names,
                                const std::string& password) = 0;

  virtual Status RunSender(const SenderSpec& spec, RunControl& control, WorkerStats& stats) = 0;
  virtual Status RunReceiver(const ReceiverSpec& spec, RunControl& control, WorkerStats& stats) = 0;
  // Drains until a page reports nothing remaining; `control` is only consulted for failures.
  virtual Status RunDrainer(const DrainSpec& spec, RunControl& control, DrainResult& result) = 0;
  // Logs in every user of `spec` and returns the sessions once all are established (on gRPC:
  // subscribed). Fails if any login fails.
  virtual Result<std::unique_ptr<IdleSessions>> OpenIdleSessions(const IdleSpec& spec) = 0;
};

// `text_bytes` is the size of every message text (>= kStampBytes).
std::unique_ptr<Transport> MakeWireTransport(Endpoint endpoint, std::size_t text_bytes);
std::unique_ptr<Transport> MakeGrpcTransport(Endpoint endpoint, std::size_t text_bytes);

}  // namespace messenger::bench

#endif  // MESSENGER_BENCH_BENCH_H_

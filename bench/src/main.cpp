// messenger_bench: load generator for poco_messenger over the wire protocol or gRPC. See
// docs/PERFORMANCE.md for the method and `messenger_bench --help` for the options.
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench.h"
#include "messenger/codec/limits.h"
#include "server_process.h"

#ifndef MESSENGER_SERVER_BINARY
#define MESSENGER_SERVER_BINARY "poco_messenger"
#endif

namespace messenger::bench {
namespace {

// Every benchmark account has this password; the server hashes it at `--password-cost test`.
constexpr char kPassword[] = "bench-password";
// Most messages the server may hold per recipient (its --max-queued ceiling): durable-send and
// drain queue everything they send.
constexpr std::uint64_t kMaxQueued = 10'000'000;
// Senders that fill the drain user's queue, each with this many SENDs in flight.
constexpr int kDrainFillers = 50;
constexpr int kDrainFillDepth = 4;
// How long workers get to connect and log in.
constexpr auto kSetupTimeout = std::chrono::seconds(60);
// poco_messenger's ceiling for --max-connections; gRPC sessions have the same limit.
constexpr int kServerMaxConnections = 10'000;
// What a started poco_messenger needs of the descriptor limit it inherits: two per wire
// connection (its socket and a wakeup eventfd) and a reserve; it serves no more than that allows.
constexpr rlim_t kServerDescriptorsPerConnection = 2;
constexpr rlim_t kServerReservedDescriptors = 64;
// idle-scale: connections creating accounts at once, and idle sessions logging in at once. The
// server hashes passwords on at most one thread per core, so more would only queue there.
constexpr int kSetupParallelism = 16;
// idle-scale: the offered rate of the live load unless --rate is given.
constexpr double kIdleScaleDefaultRate = 500;
// idle-scale: the started server's idle timeout (its maximum), so that no idle session is closed
// during a run however long the logins take.
constexpr char kIdleScaleIdleTimeout[] = "86400";
// Descriptors the tool keeps beyond one per connection (standard streams, gRPC, pipes).
constexpr rlim_t kSpareDescriptors = 256;

enum class Workload { kDurableSend, kLive, kPipelined, kDrain, kIdleScale };

struct Options {
  std::string transport = "wire";
  Workload workload = Workload::kDurableSend;
  std::string workload_name = "durable-send";
  int connections = 50;
  int depth = 16;
  double duration_s = 10;
  double warmup_s = 2;
  double rate = 0;
  bool rate_given = false;
  std::uint64_t messages = 20'000;
  int idle = 10'000;
  bool idle_given = false;
  int idle_per_address = 0;  // 0: half the ephemeral port range (see IdleSpec).
  std::size_t text_bytes = 64;
  std::optional<Endpoint> connect;
  std::optional<Endpoint> grpc_connect;
  std::string server_binary = MESSENGER_SERVER_BINARY;
  std::string server_command;
  std::vector<std::string> server_args;
  std::string dir;
};

const char kUsage[] =
    R"(Usage: messenger_bench [options]

Drives poco_messenger with one workload and prints a table and one JSON line.

Workloads (--workload):
  durable-send  C users, each sending to its own offline recipient, one SEND in flight each:
                accepted (durably stored) SENDs per second; latency is SEND -> SEND_OK.
  live          C/2 sender -> receiver pairs, all online; receivers ACK what they get:
                delivered messages per second; latency is SEND -> DELIVER. With --rate R the
                senders offer R messages per second in all instead of as many as they can.
  pipelined     like live with --depth SENDs in flight per sender.
  drain         --messages N queued for one user (filled by up to 50 senders), then fetched
                in pages of 50 and ACKed with --depth FETCHes in flight: messages per second of
                the drain alone.
  idle-scale    --idle N logged-in sessions held without traffic (gRPC: each with its Subscribe
                stream open) plus a live load of C/2 pairs at --rate (default 500) messages per
                second in all: server RSS per idle session and SEND -> DELIVER latency while
                they are held. A started server serves at most 10000 connections in all, so
                without --idle N is lowered to 10000 - C.

Options:
  --transport wire|grpc      protocol to speak [wire]
  --workload NAME            see above [durable-send]
  --connections C            connections (users) generating load [50]
  --depth D                  requests in flight per connection: pipelined, drain [16]
  --duration S               measured seconds [10]
  --warmup S                 seconds of load before measuring [2]
  --rate R                   live/pipelined/idle-scale: offered messages per second in all;
                             0 = saturate [0; idle-scale 500]
  --messages N               drain: messages to queue and drain [20000]
  --idle N                   idle-scale: idle sessions [10000]
  --idle-per-address K       idle-scale, wire: idle connections per local address; beyond it
                             they come from 127.0.0.2, 127.0.0.3, ... [half the ephemeral ports]
  --text-bytes B             bytes per message text, 16..4096 (a timestamp fills the first 16) [64]
  --connect HOST:PORT        use a running server's wire port instead of starting one
  --grpc-connect HOST:PORT   use a running server's gRPC port instead of starting one
  --server-binary PATH       the poco_messenger to start [the one built with this tool]
  --server-cmd COMMAND       start the server with /bin/sh -c COMMAND instead; {port},
                             {grpc_port}, {db} and {args} (the --server-arg values) are replaced
  --server-arg ARG           extra server argument, repeatable (e.g. --server-arg=--sync
                             --server-arg=normal)
  --dir PATH                 where the started server's database goes [$TMPDIR or /tmp]
  --help                     show this help

A started server runs with --password-cost test --send-rate 0 --max-queued 10000000
--log-level warning and enough --max-connections (idle-scale: also --idle-timeout 86400); a
running one needs --send-rate 0 and a --max-queued large enough for the run. The tool raises its
descriptor limit to the hard limit (and the hard limit too when it may, for idle-scale), which a
started server inherits. Bytes per message are the loopback interface's bytes
(TCP/IP headers included) over the measured phase divided by the messages counted, so run
nothing else on loopback meanwhile; app_bytes_per_message counts protocol bytes (wire only).
)";

Status UsageError(const std::string& message) {
  return Status(ErrorCode::kInvalidArgument, message);
}

template <typename T>
bool ParseNumber(const std::string& text, T& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

bool ParseSeconds(const std::string& text, double& out) {
  try {
    std::size_t used = 0;
    out = std::stod(text, &used);
    return used == text.size() && out >= 0 && std::isfinite(out);
  } catch (...) {
    return false;
  }
}

std::optional<Endpoint> ParseEndpoint(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  Endpoint endpoint;
  endpoint.host = text.substr(0, colon);
  if (!ParseNumber(text.substr(colon + 1), endpoint.port) || endpoint.port == 0) {
    return std::nullopt;
  }
  return endpoint;
}

Result<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string name = argv[i];
    std::string value;
    bool has_value = false;
    if (const std::size_t eq = name.find('=');
        name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "--help" || name == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (!has_value) {
      if (i + 1 >= argc) return UsageError(name + ": needs a value (see --help)");
      value = argv[++i];
    }
    const auto bad = [&name, &value](const std::string& expected) {
      return UsageError(name + ": expected " + expected + ", got '" + value + "'");
    };
    if (name == "--transport") {
      if (value != "wire" && value != "grpc") return bad("wire or grpc");
      options.transport = value;
    } else if (name == "--workload") {
      options.workload_name = value;
      if (value == "durable-send") {
        options.workload = Workload::kDurableSend;
      } else if (value == "live") {
        options.workload = Workload::kLive;
      } else if (value == "pipelined") {
        options.workload = Workload::kPipelined;
      } else if (value == "drain") {
        options.workload = Workload::kDrain;
      } else if (value == "idle-scale") {
        options.workload = Workload::kIdleScale;
      } else {
        return bad("durable-send, live, pipelined, drain or idle-scale");
      }
    } else if (name == "--connections") {
      if (!ParseNumber(value, options.connections) || options.connections < 1 ||
          options.connections > 4000) {
        return bad("a number in 1..4000");
      }
    } else if (name == "--depth") {
      if (!ParseNumber(value, options.depth) || options.depth < 1 || options.depth > 4096) {
        return bad("a number in 1..4096");
      }
    } else if (name == "--duration") {
      if (!ParseSeconds(value, options.duration_s) || options.duration_s <= 0) {
        return bad("seconds > 0");
      }
    } else if (name == "--warmup") {
      if (!ParseSeconds(value, options.warmup_s)) return bad("seconds >= 0");
    } else if (name == "--rate") {
      if (!ParseSeconds(value, options.rate)) return bad("messages per second >= 0");
      options.rate_given = true;
    } else if (name == "--messages") {
      if (!ParseNumber(value, options.messages) || options.messages < 1 ||
          options.messages > kMaxQueued) {
        return bad("a number in 1..10000000");
      }
    } else if (name == "--idle") {
      if (!ParseNumber(value, options.idle) || options.idle < 1 || options.idle > 1'000'000) {
        return bad("a number in 1..1000000");
      }
      options.idle_given = true;
    } else if (name == "--idle-per-address") {
      if (!ParseNumber(value, options.idle_per_address) || options.idle_per_address < 1) {
        return bad("a number >= 1");
      }
    } else if (name == "--text-bytes") {
      if (!ParseNumber(value, options.text_bytes) || options.text_bytes < kStampBytes ||
          options.text_bytes > kMaxTextBytes) {
        return bad("a number in 16..4096");
      }
    } else if (name == "--connect") {
      options.connect = ParseEndpoint(value);
      if (!options.connect) return bad("HOST:PORT");
    } else if (name == "--grpc-connect") {
      options.grpc_connect = ParseEndpoint(value);
      if (!options.grpc_connect) return bad("HOST:PORT");
    } else if (name == "--server-binary") {
      options.server_binary = value;
    } else if (name == "--server-cmd") {
      options.server_command = value;
    } else if (name == "--server-arg") {
      options.server_args.push_back(value);
    } else if (name == "--dir") {
      options.dir = value;
    } else {
      return UsageError("unknown option " + name + " (see --help)");
    }
  }
  if (options.workload == Workload::kIdleScale && !options.rate_given) {
    options.rate = kIdleScaleDefaultRate;
  }
  return options;
}

// The run's measured figures.
struct Report {
  int connections = 0;
  int depth = 1;
  double seconds = 0;
  std::uint64_t messages = 0;
  Histogram latency;
  bool has_latency = false;
  std::optional<std::uint64_t> loopback_bytes;
  std::optional<std::uint64_t> app_bytes;
  std::optional<std::uint64_t> server_rss;
  std::optional<int> idle_sessions;                  // idle-scale only.
  std::optional<double> rss_per_idle_session_bytes;  // idle-scale with a started server.
  std::string note;                                  // One extra line for the table.
};

// Account names unique to this run, so a long-running server can be reused.
class Names {
 public:
  Names() {
    std::random_device random;
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "b%06x", random() & 0xFFFFFFu);
    prefix_ = prefix;
  }
  std::string Make(const char* role, int index) const {
    return prefix_ + "-" + role + std::to_string(index);
  }

 private:
  std::string prefix_;
};

std::string Fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

void Progress(const std::string& message) { std::cerr << "messenger_bench: " << message << "\n"; }

// Sleeps `seconds` in small steps; returns false early if the run failed.
bool SleepUnlessFailed(const RunControl& control, double seconds) {
  const auto until = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                              std::chrono::duration<double>(seconds));
  while (SteadyClock::now() < until) {
    if (control.failed()) return false;
    std::this_thread::sleep_for(
        std::min<SteadyClock::duration>(std::chrono::milliseconds(20), until - SteadyClock::now()));
  }
  return !control.failed();
}

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

bool WaitReady(const RunControl& control, int workers) {
  const auto deadline = SteadyClock::now() + kSetupTimeout;
  while (control.ready() < workers) {
    if (control.failed() || SteadyClock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::optional<std::uint64_t> Minus(std::optional<std::uint64_t> after,
                                   std::optional<std::uint64_t> before) {
  if (!after || !before || *after < *before) return std::nullopt;
  return *after - *before;
}

class Bench {
 public:
  Bench(Options options, Transport& transport, ServerProcess* server, bool loopback)
      : options_(std::move(options)), transport_(transport), server_(server), loopback_(loopback) {}

  Result<Report> Run() {
    switch (options_.workload) {
      case Workload::kDurableSend:
        return RunDurableSend();
      case Workload::kLive:
        return RunLive(1);
      case Workload::kPipelined:
        return RunLive(options_.depth);
      case Workload::kDrain:
        return RunDrain();
      case Workload::kIdleScale:
        return RunIdleScale();
    }
    return UsageError("unknown workload");
  }

 private:
  std::optional<std::uint64_t> Rss() const {
    return server_ != nullptr ? server_->RssBytes() : std::nullopt;
  }
  std::optional<std::uint64_t> Loopback() const {
    return loopback_ ? LoopbackBytes() : std::nullopt;
  }

  // Starts `workers` threads running `body(i)`, runs warm-up and measurement, stops and joins.
  template <typename Body>
  Status RunTimed(int workers, Body body, Report& report) {
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(workers));
    for (int i = 0; i < workers; ++i) threads.emplace_back([&body, i] { body(i); });
    Status status;
    if (!WaitReady(control_, workers)) {
      control_.Fail(Status(ErrorCode::kTimeout, "workers did not log in in time"));
    } else {
      Progress("warming up for " + Fixed(options_.warmup_s, 1) + " s");
      control_.SetPhase(Phase::kWarmup);
      if (SleepUnlessFailed(control_, options_.warmup_s)) {
        Progress("measuring for " + Fixed(options_.duration_s, 1) + " s");
        const auto loopback_before = Loopback();
        const auto start = SteadyClock::now();
        control_.SetPhase(Phase::kMeasure);
        SleepUnlessFailed(control_, options_.duration_s);
        report.server_rss = Rss();
        control_.SetPhase(Phase::kStop);
        report.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
        report.loopback_bytes = Minus(Loopback(), loopback_before);
      }
    }
    control_.SetPhase(Phase::kStop);
    for (std::thread& t : threads) t.join();
    if (control_.failed()) return control_.first_failure();
    return Status::Ok();
  }

  Result<Report> RunDurableSend() {
    const int c = options_.connections;
    std::vector<std::string> accounts;
    for (int i = 0; i < c; ++i) {
      accounts.push_back(names_.Make("s", i));
      accounts.push_back(names_.Make("r", i));
    }
    Progress("creating " + std::to_string(accounts.size()) + " accounts");
    if (Status s = transport_.CreateAccounts(accounts, kPassword); !s.ok()) return s;
    std::vector<WorkerStats> stats(static_cast<std::size_t>(c));
    Report report;
    report.connections = c;
    const double per_sender = options_.rate / c;
    Status s = RunTimed(
        c,
        [&](int i) {
          SenderSpec spec{
              names_.Make("s", i),          kPassword, names_.Make("r", i), 1, per_sender, 0,
              /*record_reply_latency=*/true};
          spec.phase = static_cast<double>(i) / c;
          (void)transport_.RunSender(spec, control_, stats[static_cast<std::size_t>(i)]);
        },
        report);
    if (!s.ok()) return s;
    std::uint64_t app = 0;
    for (const WorkerStats& w : stats) {
      report.messages += w.replies;
      report.latency.Merge(w.latency);
      app += w.app_bytes;
    }
    report.has_latency = true;
    if (options_.transport == "wire") report.app_bytes = app;
    report.note = "latency: SEND -> SEND_OK (each reply follows a durable commit)";
    return report;
  }

  int Pairs() const { return std::max(1, options_.connections / 2); }

  // The accounts of the live pairs: senders s<i>, receivers r<i>.
  std::vector<std::string> PairAccounts() const {
    std::vector<std::string> accounts;
    for (int i = 0; i < Pairs(); ++i) {
      accounts.push_back(names_.Make("s", i));
      accounts.push_back(names_.Make("r", i));
    }
    return accounts;
  }

  // Creates `accounts` over up to `connections` connections at once (each creates a contiguous
  // share in order), so that their commits can share the store's group commits.
  Status CreateAccountsInParallel(const std::vector<std::string>& accounts, int connections) {
    const std::size_t parallel =
        std::clamp<std::size_t>(static_cast<std::size_t>(connections), 1, accounts.size());
    const std::size_t share = (accounts.size() + parallel - 1) / parallel;
    std::vector<Status> results(parallel);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < parallel; ++t) {
      threads.emplace_back([this, t, share, &accounts, &results] {
        const std::size_t begin = std::min(accounts.size(), t * share);
        const std::size_t end = std::min(accounts.size(), begin + share);
        const std::vector<std::string> mine(accounts.begin() + static_cast<std::ptrdiff_t>(begin),
                                            accounts.begin() + static_cast<std::ptrdiff_t>(end));
        if (!mine.empty()) results[t] = transport_.CreateAccounts(mine, kPassword);
      });
    }
    for (std::thread& t : threads) t.join();
    for (const Status& s : results) {
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Result<Report> RunLive(int depth) {
    const std::vector<std::string> accounts = PairAccounts();
    Progress("creating " + std::to_string(accounts.size()) + " accounts");
    if (Status s = transport_.CreateAccounts(accounts, kPassword); !s.ok()) return s;
    Report report;
    if (Status s = RunPairs(depth, report); !s.ok()) return s;
    return report;
  }

  // Runs the live pairs (their accounts exist) and fills `report` with what they measured.
  Status RunPairs(int depth, Report& report) {
    const int pairs = Pairs();
    // Receivers first in the list, so that they are logged in before any SEND leaves.
    std::vector<WorkerStats> stats(static_cast<std::size_t>(2 * pairs));
    report.connections = 2 * pairs;
    report.depth = depth;
    const double per_sender = options_.rate / pairs;
    Status s = RunTimed(
        2 * pairs,
        [&](int i) {
          WorkerStats& mine = stats[static_cast<std::size_t>(i)];
          if (i < pairs) {
            (void)transport_.RunReceiver({names_.Make("r", i), kPassword}, control_, mine);
          } else {
            const int k = i - pairs;
            SenderSpec spec{
                names_.Make("s", k), kPassword, names_.Make("r", k), depth, per_sender, 0, false};
            spec.phase = static_cast<double>(k) / pairs;
            (void)transport_.RunSender(spec, control_, mine);
          }
        },
        report);
    if (!s.ok()) return s;
    std::uint64_t app = 0;
    std::uint64_t accepted = 0;
    for (const WorkerStats& w : stats) {
      report.messages += w.delivered;
      accepted += w.replies;
      report.latency.Merge(w.latency);
      app += w.app_bytes;
    }
    report.has_latency = true;
    if (options_.transport == "wire") report.app_bytes = app;
    report.note =
        "latency: SEND -> DELIVER; SEND_OK received while measuring: " + std::to_string(accepted);
    return Status::Ok();
  }

  Result<Report> RunIdleScale() {
    const int idle = options_.idle;
    std::vector<std::string> accounts = PairAccounts();
    IdleSpec spec;
    spec.password = kPassword;
    spec.parallelism = kSetupParallelism;
    spec.per_source_address = options_.idle_per_address;
    for (int i = 0; i < idle; ++i) spec.users.push_back(names_.Make("i", i));
    accounts.insert(accounts.end(), spec.users.begin(), spec.users.end());
    Progress("creating " + std::to_string(accounts.size()) + " accounts, " +
             std::to_string(kSetupParallelism) + " connections at once");
    const auto create_start = SteadyClock::now();
    if (Status s = CreateAccountsInParallel(accounts, kSetupParallelism); !s.ok()) return s;
    const double create_seconds = SecondsSince(create_start);

    // The server's memory with every account stored but no session yet.
    const auto rss_before = Rss();
    Progress("logging in " + std::to_string(idle) + " idle sessions, " +
             std::to_string(kSetupParallelism) + " at once");
    const auto login_start = SteadyClock::now();
    Result<std::unique_ptr<IdleSessions>> held = transport_.OpenIdleSessions(spec);
    if (!held.ok()) return held.status();
    const double login_seconds = SecondsSince(login_start);
    const auto rss_after = Rss();

    Report report;
    report.idle_sessions = idle;
    Status s = RunPairs(1, report);
    const int lost = (*held)->CountLost();
    const int addresses = (*held)->source_addresses();
    held->reset();  // Ends the idle sessions before the server is stopped.
    if (!s.ok()) return s;
    if (lost > 0) {
      return Status(ErrorCode::kInternal, std::to_string(lost) + " of " + std::to_string(idle) +
                                              " idle sessions ended or got a push during the run");
    }
    if (const auto grown = Minus(rss_after, rss_before)) {
      report.rss_per_idle_session_bytes = static_cast<double>(*grown) / idle;
    }
    const auto mib = [](std::optional<std::uint64_t> bytes) {
      return bytes ? Fixed(static_cast<double>(*bytes) / (1024.0 * 1024.0), 1) + " MiB"
                   : std::string("-");
    };
    report.note += "; accounts created in " + Fixed(create_seconds, 1) + " s; " +
                   std::to_string(idle) + " idle sessions (from " + std::to_string(addresses) +
                   " local address" + (addresses == 1 ? "" : "es") + ") logged in in " +
                   Fixed(login_seconds, 1) + " s (" + Fixed(idle / login_seconds, 0) +
                   "/s); server RSS " + mib(rss_before) + " before them, " + mib(rss_after) +
                   " after";
    return report;
  }

  Result<Report> RunDrain() {
    const std::string target = names_.Make("d", 0);
    const int fillers = std::min(kDrainFillers, options_.connections);
    std::vector<std::string> accounts = {target};
    for (int i = 0; i < fillers; ++i) accounts.push_back(names_.Make("f", i));
    Progress("creating " + std::to_string(accounts.size()) + " accounts");
    if (Status s = transport_.CreateAccounts(accounts, kPassword); !s.ok()) return s;

    Progress("queueing " + std::to_string(options_.messages) + " messages");
    std::vector<WorkerStats> fill_stats(static_cast<std::size_t>(fillers));
    std::vector<std::thread> threads;
    const std::uint64_t share = options_.messages / static_cast<std::uint64_t>(fillers);
    const std::uint64_t extra = options_.messages % static_cast<std::uint64_t>(fillers);
    for (int i = 0; i < fillers; ++i) {
      const std::uint64_t limit = share + (static_cast<std::uint64_t>(i) < extra ? 1 : 0);
      if (limit == 0) continue;
      threads.emplace_back([this, i, limit, &target, &fill_stats] {
        SenderSpec spec{names_.Make("f", i), kPassword, target, kDrainFillDepth, 0, limit, false};
        (void)transport_.RunSender(spec, control_, fill_stats[static_cast<std::size_t>(i)]);
      });
    }
    const int workers = static_cast<int>(threads.size());
    const auto fill_start = SteadyClock::now();
    if (WaitReady(control_, workers)) {
      control_.SetPhase(Phase::kMeasure);
    } else {
      control_.Fail(Status(ErrorCode::kTimeout, "fillers did not log in in time"));
    }
    for (std::thread& t : threads) t.join();
    if (control_.failed()) return control_.first_failure();
    const double fill_seconds =
        std::chrono::duration<double>(SteadyClock::now() - fill_start).count();

    Progress("draining");
    DrainResult drained;
    const auto loopback_before = Loopback();
    Status s = transport_.RunDrainer({target, kPassword, options_.depth}, control_, drained);
    Report report;
    report.loopback_bytes = Minus(Loopback(), loopback_before);
    report.server_rss = Rss();
    if (!s.ok()) return s;
    report.connections = 1;
    report.depth = options_.depth;
    std::sort(drained.ids.begin(), drained.ids.end());
    const auto distinct = static_cast<std::uint64_t>(
        std::unique(drained.ids.begin(), drained.ids.end()) - drained.ids.begin());
    // Only distinct messages count; one handed out twice in a session is reported below.
    report.messages = distinct;
    report.seconds = static_cast<double>(drained.elapsed_ns) / 1e9;
    if (options_.transport == "wire") report.app_bytes = drained.app_bytes;
    char note[256];
    std::snprintf(note, sizeof note,
                  "unread at login %llu; handed out twice %llu; queued by %d senders in %.1f s "
                  "(%.0f msgs/s)",
                  static_cast<unsigned long long>(drained.unread_at_login),
                  static_cast<unsigned long long>(drained.acknowledged - distinct), workers,
                  fill_seconds, static_cast<double>(options_.messages) / fill_seconds);
    report.note = note;
    if (drained.unread_at_login != options_.messages) {
      return Status(ErrorCode::kInternal,
                    "the drain user had " + std::to_string(drained.unread_at_login) +
                        " unread messages at login, expected " + std::to_string(options_.messages));
    }
    return report;
  }

  Options options_;
  Transport& transport_;
  ServerProcess* server_;
  bool loopback_;
  RunControl control_;
  Names names_;
};

std::string JsonNumberOrNull(std::optional<double> value, int digits) {
  return value ? Fixed(*value, digits) : "null";
}

void PrintReport(const Options& options, const Report& report) {
  const double rate =
      report.seconds > 0 ? static_cast<double>(report.messages) / report.seconds : 0;
  std::optional<double> p50, p99, p999, per_message, app_per_message, rss;
  if (report.has_latency && report.latency.count() > 0) {
    p50 = static_cast<double>(report.latency.Quantile(0.50)) / 1000;
    p99 = static_cast<double>(report.latency.Quantile(0.99)) / 1000;
    p999 = static_cast<double>(report.latency.Quantile(0.999)) / 1000;
  }
  if (report.messages > 0 && report.loopback_bytes) {
    per_message =
        static_cast<double>(*report.loopback_bytes) / static_cast<double>(report.messages);
  }
  if (report.messages > 0 && report.app_bytes) {
    app_per_message = static_cast<double>(*report.app_bytes) / static_cast<double>(report.messages);
  }
  if (report.server_rss) rss = static_cast<double>(*report.server_rss);

  const auto row = [](const std::string& name, const std::string& value) {
    std::printf("  %-22s %s\n", name.c_str(), value.c_str());
  };
  const auto or_dash = [](std::optional<double> v, int digits, const std::string& unit) {
    return v ? Fixed(*v, digits) + unit : std::string("-");
  };
  std::printf("messenger_bench\n");
  row("workload", options.workload_name);
  row("transport", options.transport);
  row("connections", std::to_string(report.connections));
  row("depth", std::to_string(report.depth));
  if (options.workload == Workload::kLive || options.workload == Workload::kPipelined ||
      options.workload == Workload::kDurableSend || options.workload == Workload::kIdleScale) {
    row("offered rate", options.rate > 0 ? Fixed(options.rate, 0) + " msgs/s" : "saturating");
  }
  row("text bytes", std::to_string(options.text_bytes));
  row("measured", Fixed(report.seconds, 2) + " s");
  row("messages", std::to_string(report.messages));
  row("msgs/s", Fixed(rate, 0));
  row("latency p50", or_dash(p50, 1, " us"));
  row("latency p99", or_dash(p99, 1, " us"));
  row("latency p99.9", or_dash(p999, 1, " us"));
  row("bytes/msg (loopback)", or_dash(per_message, 1, ""));
  row("bytes/msg (protocol)", or_dash(app_per_message, 1, ""));
  row("server RSS", rss ? Fixed(*rss / (1024.0 * 1024.0), 1) + " MiB" : "-");
  if (report.idle_sessions) {
    row("idle sessions", std::to_string(*report.idle_sessions));
    row("RSS per idle session", or_dash(report.rss_per_idle_session_bytes, 0, " bytes"));
  }
  if (!report.note.empty()) row("note", report.note);
  std::fflush(stdout);

  std::ostringstream json;
  json << "{\"workload\":\"" << options.workload_name << "\",\"transport\":\"" << options.transport
       << "\",\"connections\":" << report.connections << ",\"depth\":" << report.depth
       << ",\"rate\":" << Fixed(options.rate, 0) << ",\"text_bytes\":" << options.text_bytes
       << ",\"seconds\":" << Fixed(report.seconds, 3) << ",\"messages\":" << report.messages
       << ",\"msgs_per_s\":" << Fixed(rate, 1) << ",\"latency_p50_us\":" << JsonNumberOrNull(p50, 1)
       << ",\"latency_p99_us\":" << JsonNumberOrNull(p99, 1)
       << ",\"latency_p999_us\":" << JsonNumberOrNull(p999, 1)
       << ",\"bytes_per_message\":" << JsonNumberOrNull(per_message, 1)
       << ",\"app_bytes_per_message\":" << JsonNumberOrNull(app_per_message, 1)
       << ",\"server_rss_bytes\":"
       << (report.server_rss ? std::to_string(*report.server_rss) : std::string("null"))
       << ",\"idle_sessions\":"
       << (report.idle_sessions ? std::to_string(*report.idle_sessions) : std::string("null"))
       << ",\"rss_per_idle_session_bytes\":"
       << JsonNumberOrNull(report.rss_per_idle_session_bytes, 0) << "}";
  std::printf("%s\n", json.str().c_str());
  std::fflush(stdout);
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Raises this process's descriptor limit to `needed` (the hard limit too, if privileged), or at
// least its soft limit to the hard one. A server started afterwards inherits the limit. Returns
// the soft limit now in force.
rlim_t RaiseDescriptorLimit(rlim_t needed) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed) {
    const rlimit raised{needed, needed};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return needed;
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) (void)::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

// Half the ephemeral port range: the idle connections from one local address leave the other
// half to everything else that connects meanwhile.
int HalfTheEphemeralPorts() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  int high = 0;
  if (!(in >> low >> high) || high <= low) return 10'000;
  return (high - low + 1) / 2;
}

// A private directory for the started server's database and log.
Result<std::filesystem::path> MakeRunDirectory(const std::string& parent) {
  std::string base = parent;
  if (base.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  std::string pattern = base + "/messenger-bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Status(ErrorCode::kInternal, "cannot create a directory under " + base);
  }
  return std::filesystem::path(pattern);
}

int Main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  Result<Options> parsed = ParseOptions(argc, argv);
  if (!parsed.ok()) {
    std::cerr << "messenger_bench: " << parsed.status().message() << "\n";
    return 2;
  }
  Options options = std::move(*parsed);
  const bool grpc = options.transport == "grpc";
  std::optional<Endpoint> target = grpc ? options.grpc_connect : options.connect;
  const bool idle_scale = options.workload == Workload::kIdleScale;
  const int live_connections = 2 * std::max(1, options.connections / 2);
  // Each wire session holds a descriptor here and, in a started server, two there.
  const auto connections = static_cast<rlim_t>((idle_scale ? options.idle : 0) +
                                               2 * options.connections + kDrainFillers);
  const rlim_t descriptors =
      RaiseDescriptorLimit(kServerDescriptorsPerConnection * connections + kSpareDescriptors);
  if (idle_scale && !target) {
    // Sessions a started server can hold at once.
    int capacity = kServerMaxConnections;
    if (!grpc && descriptors < kServerReservedDescriptors +
                                   kServerDescriptorsPerConnection * kServerMaxConnections) {
      capacity = descriptors > kServerReservedDescriptors
                     ? static_cast<int>((descriptors - kServerReservedDescriptors) /
                                        kServerDescriptorsPerConnection)
                     : 0;
    }
    if (options.idle + live_connections > capacity) {
      const std::string why = std::to_string(capacity) + " sessions at most" +
                              (capacity < kServerMaxConnections
                                   ? " (descriptor limit " + std::to_string(descriptors) + ")"
                                   : std::string());
      if (options.idle_given) {
        std::cerr << "messenger_bench: " << options.idle << " idle + " << live_connections
                  << " live sessions exceed what a started server can serve: " << why
                  << "; use --idle " << capacity - live_connections << " or fewer\n";
        return 2;
      }
      options.idle = capacity - live_connections;
      Progress("idle sessions lowered to " + std::to_string(options.idle) + ": the server serves " +
               why);
    }
  }
  if (idle_scale && !grpc && descriptors < connections + kSpareDescriptors) {
    std::cerr << "messenger_bench: " << connections << " connections need about "
              << connections + kSpareDescriptors << " descriptors but the limit is " << descriptors
              << " (ulimit -n)\n";
    return 2;
  }
  if (idle_scale && options.idle_per_address == 0) {
    options.idle_per_address = HalfTheEphemeralPorts();
  }

  ServerProcess server;
  bool started = false;
  std::filesystem::path dir;
  if (!target) {
    Result<std::filesystem::path> made = MakeRunDirectory(options.dir);
    if (!made.ok()) {
      std::cerr << "messenger_bench: " << made.status().message() << "\n";
      return 1;
    }
    dir = *made;
    const int wanted = idle_scale ? options.idle + live_connections + kSetupParallelism
                                  : 2 * options.connections + kDrainFillers + 16;
    const int max_connections = std::clamp(wanted, 64, kServerMaxConnections);
    std::vector<std::string> args = {"--password-cost",   "test",
                                     "--send-rate",       "0",
                                     "--max-queued",      std::to_string(kMaxQueued),
                                     "--max-connections", std::to_string(max_connections),
                                     "--log-level",       "warning"};
    const bool idle_timeout_given =
        std::any_of(options.server_args.begin(), options.server_args.end(),
                    [](const std::string& arg) { return arg.rfind("--idle-timeout", 0) == 0; });
    if (idle_scale && !idle_timeout_given) {
      args.insert(args.end(), {"--idle-timeout", kIdleScaleIdleTimeout});
    }
    args.insert(args.end(), options.server_args.begin(), options.server_args.end());
    Progress("starting the server (database in " + dir.string() + ")");
    const Status s = options.server_command.empty()
                         ? server.StartBinary(options.server_binary, args, dir)
                         : server.StartCommand(options.server_command, args, dir);
    if (!s.ok()) {
      std::cerr << "messenger_bench: cannot start the server: " << s.message() << "\n";
      std::filesystem::remove_all(dir);
      return 1;
    }
    started = true;
    target = grpc ? server.grpc() : server.wire();
  }

  std::unique_ptr<Transport> transport = grpc ? MakeGrpcTransport(*target, options.text_bytes)
                                              : MakeWireTransport(*target, options.text_bytes);
  Bench bench(options, *transport, started ? &server : nullptr, IsLoopback(target->host));
  Result<Report> report = bench.Run();
  int exit_code = 0;
  if (report.ok()) {
    PrintReport(options, *report);
    if (report->messages == 0) {
      std::cerr << "messenger_bench: no message was counted\n";
      exit_code = 1;
    }
  } else {
    std::cerr << "messenger_bench: the run failed: " << report.status().message() << "\n";
    if (started) std::cerr << "server log (last lines):\n" << server.LogTail(15);
    exit_code = 1;
  }
  transport.reset();
  if (started) {
    if (Status s = server.Stop(); !s.ok()) {
      std::cerr << "messenger_bench: " << s.message() << "\n";
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return exit_code;
}

}  // namespace
}  // namespace messenger::bench

int main(int argc, char** argv) { return messenger::bench::Main(argc, argv); }

// messenger_bench: load generator for poco_messenger over the wire protocol or gRPC. See
// docs/PERFORMANCE.md for the method and `messenger_bench --help` for the options.
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
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

enum class Workload { kDurableSend, kLive, kPipelined, kDrain };

struct Options {
  std::string transport = "wire";
  Workload workload = Workload::kDurableSend;
  std::string workload_name = "durable-send";
  int connections = 50;
  int depth = 16;
  double duration_s = 10;
  double warmup_s = 2;
  double rate = 0;
  std::uint64_t messages = 20'000;
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

Options:
  --transport wire|grpc      protocol to speak [wire]
  --workload NAME            see above [durable-send]
  --connections C            connections (users) generating load [50]
  --depth D                  requests in flight per connection: pipelined, drain [16]
  --duration S               measured seconds [10]
  --warmup S                 seconds of load before measuring [2]
  --rate R                   live/pipelined: offered messages per second in all; 0 = saturate [0]
  --messages N               drain: messages to queue and drain [20000]
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
--log-level warning and enough --max-connections; a running one needs --send-rate 0 and a
--max-queued large enough for the run. Bytes per message are the loopback interface's bytes
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
      } else {
        return bad("durable-send, live, pipelined or drain");
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
    } else if (name == "--messages") {
      if (!ParseNumber(value, options.messages) || options.messages < 1 ||
          options.messages > kMaxQueued) {
        return bad("a number in 1..10000000");
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
  std::string note;  // One extra line for the table.
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

  Result<Report> RunLive(int depth) {
    const int pairs = std::max(1, options_.connections / 2);
    std::vector<std::string> accounts;
    for (int i = 0; i < pairs; ++i) {
      accounts.push_back(names_.Make("s", i));
      accounts.push_back(names_.Make("r", i));
    }
    Progress("creating " + std::to_string(accounts.size()) + " accounts");
    if (Status s = transport_.CreateAccounts(accounts, kPassword); !s.ok()) return s;
    // Receivers first in the list, so that they are logged in before any SEND leaves.
    std::vector<WorkerStats> stats(static_cast<std::size_t>(2 * pairs));
    Report report;
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
      options.workload == Workload::kDurableSend) {
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
       << (report.server_rss ? std::to_string(*report.server_rss) : std::string("null")) << "}";
  std::printf("%s\n", json.str().c_str());
  std::fflush(stdout);
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
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
    const int max_connections = std::clamp(2 * options.connections + kDrainFillers + 16, 64, 10000);
    std::vector<std::string> args = {"--password-cost",   "test",
                                     "--send-rate",       "0",
                                     "--max-queued",      std::to_string(kMaxQueued),
                                     "--max-connections", std::to_string(max_connections),
                                     "--log-level",       "warning"};
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

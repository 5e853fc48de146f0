#include "server_app.h"

#include <Poco/AutoPtr.h>
#include <Poco/ConsoleChannel.h>
#include <Poco/ErrorHandler.h>
#include <Poco/Exception.h>
#include <Poco/FormattingChannel.h>
#include <Poco/Logger.h>
#include <Poco/Path.h>
#include <Poco/PatternFormatter.h>
#include <Poco/String.h>
#include <Poco/Util/AbstractConfiguration.h>
#include <Poco/Util/IniFileConfiguration.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionException.h>
#include <Poco/Util/OptionSet.h>
#include <Poco/Util/PropertyFileConfiguration.h>
#include <Poco/Util/ServerApplication.h>
#include <pthread.h>
#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "admin_server.h"
#include "grpc_front_door.h"
#include "messenger/codec/limits.h"
#include "messenger/server/clock.h"
#include "messenger/server/messenger.h"
#include "messenger/server/metrics.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/sqlite_store.h"
#include "messenger/server/store.h"
#include "messenger/tls/tls_context.h"
#include "tcp_front_door.h"

namespace messenger {
namespace {

// The line a supervisor (or a test) waits for on stdout; the bound port follows the colon.
constexpr std::string_view kReadinessPrefix = "poco_messenger listening on ";
// The second line, when gRPC is on.
constexpr std::string_view kGrpcReadinessPrefix = "poco_messenger grpc listening on ";
// The last line, when the admin port is on.
constexpr std::string_view kAdminReadinessPrefix = "poco_messenger admin listening on ";
// How long connections get to write their last frames when the server stops.
constexpr std::chrono::seconds kFlushTimeout{5};
// File descriptors a connection needs (its socket and its wakeup eventfd), and those the rest
// of the process needs (database, WAL, listening socket, standard streams, ...).
constexpr std::uint64_t kFdsPerConnection = 2;
constexpr std::uint64_t kFdsReserved = 64;

struct OptionSpec {
  const char* name;
  const char* argument;
  const char* default_value;  // Empty: computed at startup.
  const char* help;
};

// Every setting, readable from the command line (--name VALUE) or the configuration file
// (name = VALUE); the command line wins.
constexpr OptionSpec kSettings[] = {
    {"host", "ADDRESS", "0.0.0.0",
     "address to listen on; without --tls-cert the protocol is plain TCP, so then prefer "
     "127.0.0.1 or a private network"},
    {"port", "PORT", "5050", "TCP port of the wire protocol; 0 picks a free port (see READINESS)"},
    {"grpc-port", "PORT|auto", "5051",
     "TCP port of the gRPC front door (docs/PROTOCOL.md, section 15), on the same address; 0 "
     "turns it off; auto picks a free port"},
    {"tls-cert", "FILE", "",
     "PEM certificate chain (the server's first): both front doors then speak TLS 1.2+ only "
     "(docs/OPERATIONS.md); needs --tls-key [none: plain TCP]"},
    {"tls-key", "FILE", "", "PEM private key of --tls-cert (unencrypted; keep it mode 600)"},
    {"admin-port", "PORT|auto", "0",
     "HTTP port for operators: /healthz, /readyz and Prometheus /metrics (docs/OPERATIONS.md); "
     "0 turns it off; auto picks a free port"},
    {"admin-host", "ADDRESS", "127.0.0.1",
     "address of the admin port, whatever --host is: metrics describe the server to anyone who "
     "can read them, so keep it on loopback or a private network"},
    {"db", "FILE", "messenger.db",
     "SQLite database, created if absent; :memory: keeps everything in memory (lost at exit)"},
    {"sync", "full|normal", "full",
     "full: fsync at every commit, an answered SEND survives power loss; normal: survives a crash "
     "of the process but may lose the last commits on power loss"},
    {"max-connections", "N", "1000",
     "connections served at once, one thread each (1..10000); one more is refused with "
     "SERVER_BUSY"},
    {"max-frame-size", "BYTES", "262144", "largest frame accepted after login (8192..16777216)"},
    {"max-queued", "N", "10000",
     "most messages stored for one recipient (1..10000000); SEND beyond it gets QUEUE_FULL"},
    {"send-rate", "N", "50", "SENDs per second per user (0 = unlimited)"},
    {"send-burst", "N", "100", "SENDs a user may make at once above the rate (1..1000000)"},
    {"idle-timeout", "SECONDS", "300", "close connections that send nothing this long (1..86400)"},
    {"login-timeout", "SECONDS", "30", "close connections not logged in this long (1..3600)"},
    {"send-timeout", "SECONDS", "10",
     "disconnect a client that takes nothing of what is queued for it this long (1..3600); its "
     "messages stay stored"},
    {"password-cost", "interactive|test", "interactive",
     "Argon2id cost; test is the minimum, for tests only, never for real accounts"},
    {"max-concurrent-hashes", "N", "",
     "password hashes computed at once, bounding CPU and memory (1..1024; default: hardware "
     "threads)"},
    {"log-level", "LEVEL", "information", "error, warning, information or debug"},
};

struct ServerSettings {
  TcpOptions tcp;
  bool grpc_enabled = true;
  GrpcOptions grpc;
  std::string tls_cert;  // Both empty: plain TCP on both front doors.
  std::string tls_key;
  bool admin_enabled = false;
  AdminOptions admin;
  MessengerOptions messenger;
  std::string db;
  SyncMode sync = SyncMode::kFull;
  PasswordCost password_cost = PasswordCost::kInteractive;
  int max_concurrent_hashes = 1;
  int log_level = Poco::Message::PRIO_INFORMATION;
};

// Prints `left` padded to the option column, then `text` word-wrapped beside it.
void PrintOption(std::ostream& out, const std::string& left, const std::string& text) {
  constexpr std::size_t kColumn = 36;
  constexpr std::size_t kWidth = 100;
  std::string line = left;
  if (line.size() >= kColumn - 1) {
    out << line << "\n";
    line.clear();
  }
  line.resize(kColumn, ' ');
  std::istringstream words(text);
  std::string word;
  bool first = true;
  while (words >> word) {
    if (!first && line.size() + 1 + word.size() > kWidth) {
      out << line << "\n";
      line.assign(kColumn, ' ');
      first = true;
    }
    if (!first) line += ' ';
    line += word;
    first = false;
  }
  out << line << "\n";
}

void PrintHelp(std::ostream& out) {
  out << "Usage: poco_messenger server [--config FILE] [options]\n"
         "\n"
         "Runs the messenger server: the wire protocol (docs/PROTOCOL.md) over TCP, and the same\n"
         "operations over gRPC (messenger.v1, section 15) on a second port.\n"
         "\n"
         "Options (each may also be set in the configuration file under the same name):\n";
  for (const OptionSpec& spec : kSettings) {
    std::string text = spec.help;
    if (*spec.default_value != '\0') text += std::string(" [") + spec.default_value + "]";
    PrintOption(out, std::string("  --") + spec.name + " " + spec.argument, text);
  }
  PrintOption(out, "  --config FILE",
              "read settings from FILE: Java-properties style (name = value), or INI if FILE "
              "ends in .ini (keys before any [section]); the command line wins");
  PrintOption(out, "  --help", "show this help");
  out << "\n"
         "READINESS: once both front doors listen, one line is printed to stdout (and flushed):\n"
         "  poco_messenger listening on HOST:PORT\n"
         "with the wire port actually bound, so --port 0 can be used by supervisors and tests;\n"
         "then, when gRPC is on, a second line:\n"
         "  poco_messenger grpc listening on HOST:PORT\n"
         "and last, when the admin port is on:\n"
         "  poco_messenger admin listening on HOST:PORT\n"
         "Logs go to stderr.\n"
         "\n"
         "SIGINT or SIGTERM stops the server gracefully: it stops accepting, ends every session\n"
         "with SESSION_ENDED(SERVER_SHUTDOWN), lets connections flush (up to 5 s), closes the\n"
         "database, and exits 0.\n"
         "\n"
         "Exit codes: 0 stopped by a signal; 1 could not start (database, address) or stop\n"
         "cleanly; 2 bad command line or configuration.\n";
}
// Parses a whole decimal number in [min, max]; the error names the option.
Result<std::uint64_t> ParseNumber(const std::string& name, const std::string& text,
                                  std::uint64_t min, std::uint64_t max) {
  const std::string range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
  const auto bad = [&] {
    return Status(ErrorCode::kInvalidArgument,
                  "--" + name + ": expected a whole number in " + range + ", got '" + text + "'");
  };
  if (text.empty() || text.size() > 19) return bad();
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return bad();
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (value < min || value > max) return bad();
  return value;
}

Result<ServerSettings> BuildSettings(const std::map<std::string, std::string>& values) {
  ServerSettings settings;
  const auto get = [&](const std::string& name) -> std::string {
    const auto it = values.find(name);
    if (it != values.end()) return it->second;
    for (const OptionSpec& spec : kSettings) {
      if (name == spec.name) return spec.default_value;
    }
    return "";
  };
  std::optional<Status> failure;
  const auto number = [&](const std::string& name, std::uint64_t min,
                          std::uint64_t max) -> std::uint64_t {
    Result<std::uint64_t> parsed = ParseNumber(name, get(name), min, max);
    if (!parsed.ok()) {
      if (!failure) failure = parsed.status();
      return min;
    }
    return *parsed;
  };
  const auto choice = [&](const std::string& name, const std::vector<std::string>& allowed) {
    const std::string value = get(name);
    for (std::size_t i = 0; i < allowed.size(); ++i) {
      if (value == allowed[i]) return i;
    }
    std::string list;
    for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
    if (!failure) {
      failure = Status(ErrorCode::kInvalidArgument,
                       "--" + name + ": expected one of " + list + ", got '" + value + "'");
    }
    return std::size_t{0};
  };

  settings.tcp.host = get("host");
  if (settings.tcp.host.empty()) {
    failure = Status(ErrorCode::kInvalidArgument, "--host: must not be empty");
  }
  settings.tcp.port = static_cast<std::uint16_t>(number("port", 0, 65535));
  if (get("grpc-port") == "auto") {
    settings.grpc.port = 0;
  } else {
    settings.grpc.port = static_cast<std::uint16_t>(number("grpc-port", 0, 65535));
    settings.grpc_enabled = settings.grpc.port != 0;
  }
  if (get("admin-port") == "auto") {
    settings.admin_enabled = true;
    settings.admin.port = 0;
  } else {
    settings.admin.port = static_cast<std::uint16_t>(number("admin-port", 0, 65535));
    settings.admin_enabled = settings.admin.port != 0;
  }
  settings.admin.host = get("admin-host");
  if (settings.admin.host.empty()) {
    failure = Status(ErrorCode::kInvalidArgument, "--admin-host: must not be empty");
  }
  settings.tls_cert = get("tls-cert");
  settings.tls_key = get("tls-key");
  if (settings.tls_cert.empty() != settings.tls_key.empty()) {
    failure = Status(ErrorCode::kInvalidArgument,
                     "--tls-cert and --tls-key go together: give both or neither");
  }
  settings.db = get("db");
  if (settings.db.empty()) failure = Status(ErrorCode::kInvalidArgument, "--db: must not be empty");
  settings.sync = choice("sync", {"full", "normal"}) == 0 ? SyncMode::kFull : SyncMode::kNormal;
  settings.tcp.max_connections = static_cast<int>(number("max-connections", 1, 10000));
  settings.tcp.wire.max_frame_size =
      static_cast<std::uint32_t>(number("max-frame-size", kMinMaxFrameSize, kMaxMaxFrameSize));
  settings.messenger.max_queued_per_user =
      static_cast<std::uint32_t>(number("max-queued", 1, 10000000));
  settings.messenger.send_rate_per_second =
      static_cast<std::uint32_t>(number("send-rate", 0, 1000000));
  settings.messenger.send_burst = static_cast<std::uint32_t>(number("send-burst", 1, 1000000));
  settings.tcp.wire.idle_timeout_ms = number("idle-timeout", 1, 86400) * 1000;
  settings.tcp.wire.login_timeout_ms = number("login-timeout", 1, 3600) * 1000;
  settings.tcp.wire.server_name = "poco_messenger/" + std::string(kVersion);
  settings.tcp.send_timeout_ms = number("send-timeout", 1, 3600) * 1000;
  settings.grpc.host = settings.tcp.host;
  settings.grpc.max_frame_size = settings.tcp.wire.max_frame_size;
  settings.grpc.max_sessions = settings.tcp.max_connections;
  settings.grpc.login_timeout_ms = settings.tcp.wire.login_timeout_ms;
  settings.grpc.server_name = settings.tcp.wire.server_name;
  settings.password_cost = choice("password-cost", {"interactive", "test"}) == 0
                               ? PasswordCost::kInteractive
                               : PasswordCost::kTest;
  if (values.count("max-concurrent-hashes") != 0) {
    settings.max_concurrent_hashes = static_cast<int>(number("max-concurrent-hashes", 1, 1024));
  } else {
    settings.max_concurrent_hashes =
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  static const int kLevels[] = {Poco::Message::PRIO_ERROR, Poco::Message::PRIO_WARNING,
                                Poco::Message::PRIO_INFORMATION, Poco::Message::PRIO_DEBUG};
  settings.log_level = kLevels[choice("log-level", {"error", "warning", "information", "debug"})];
  if (failure) return *failure;
  return settings;
}

// The whole of the file at `path`; false when it cannot be read.
bool ReadFile(const std::string& path, std::string& contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  contents.assign(std::istreambuf_iterator<char>(in), {});
  return !in.bad();
}

// Reads the configuration file into `values` (without overriding what is already there, which
// came from the command line). Errors: kInvalidArgument (unreadable, unparsable, unknown key).
Status LoadConfigFile(const std::string& path, std::map<std::string, std::string>& values) {
  Poco::AutoPtr<Poco::Util::AbstractConfiguration> config;
  try {
    if (Poco::icompare(Poco::Path(path).getExtension(), "ini") == 0) {
      config = new Poco::Util::IniFileConfiguration(path);
    } else {
      config = new Poco::Util::PropertyFileConfiguration(path);
    }
  } catch (const Poco::Exception& e) {
    return Status(ErrorCode::kInvalidArgument,
                  "--config: cannot read '" + path + "': " + e.displayText());
  }
  Poco::Util::AbstractConfiguration::Keys keys;
  config->keys(keys);
  for (const std::string& key : keys) {
    bool known = false;
    for (const OptionSpec& spec : kSettings) known = known || key == spec.name;
    if (!known) {
      return Status(ErrorCode::kInvalidArgument,
                    "--config: '" + path + "' sets unknown setting '" + key + "'");
    }
    if (values.count(key) == 0) values[key] = Poco::trim(config->getString(key, ""));
  }
  return Status::Ok();
}

void SetUpLogging(int level) {
  Poco::AutoPtr<Poco::PatternFormatter> formatter(
      new Poco::PatternFormatter("%Y-%m-%d %H:%M:%S.%i [%p] %s: %t"));
  Poco::AutoPtr<Poco::ConsoleChannel> console(new Poco::ConsoleChannel(std::cerr));
  Poco::AutoPtr<Poco::FormattingChannel> channel(new Poco::FormattingChannel(formatter, console));
  Poco::Logger::root().setChannel(channel);
  Poco::Logger::root().setLevel(level);
  // Loggers created before this point (POCO's own) follow too.
  Poco::Logger::setChannel("", channel);
  Poco::Logger::setLevel("", level);
}

// Exceptions that escape a POCO thread (the accepting thread, a connection) end up here instead
// of vanishing.
class LoggingErrorHandler final : public Poco::ErrorHandler {
 public:
  void exception(const Poco::Exception& e) override { Log(e.displayText()); }
  void exception(const std::exception& e) override { Log(e.what()); }
  void exception() override { Log("unknown exception"); }

 private:
  static void Log(const std::string& what) {
    Poco::Logger::get("messenger.server").error("unhandled exception in a server thread: " + what);
  }
};

// Each connection costs two descriptors; the common soft limit of 1024 would otherwise cap the
// server near 500 connections with accept() failing silently in the logs.
void RaiseDescriptorLimit(int max_connections, Poco::Logger& logger) {
  const std::uint64_t needed =
      kFdsPerConnection * static_cast<std::uint64_t>(max_connections) + kFdsReserved;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    limit.rlim_cur = (limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= needed)
                         ? static_cast<rlim_t>(needed)
                         : limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    logger.warning("--max-connections " + std::to_string(max_connections) + " needs about " +
                   std::to_string(needed) + " file descriptors but the limit is " +
                   std::to_string(limit.rlim_cur) + "; raise it (ulimit -n) or lower the option");
  }
}

class ServerApp final : public Poco::Util::ServerApplication {
 public:
  ServerApp() { setUnixOptions(true); }

  int Serve();  // The server proper, once the options are known.
  // Application::run() is public; ServerApplication hides it as protected.
  int Run() { return static_cast<Poco::Util::Application&>(*this).run(); }

 protected:
  void defineOptions(Poco::Util::OptionSet& options) override {
    // Application's, not ServerApplication's: --daemon and friends are not supported; run the
    // server under a supervisor (systemd, a container) instead.
    Poco::Util::Application::defineOptions(options);
    options.addOption(Poco::Util::Option("help", "h", "show help").required(false));
    options.addOption(Poco::Util::Option("config", "", "configuration file")
                          .required(false)
                          .repeatable(false)
                          .argument("FILE"));
    for (const OptionSpec& spec : kSettings) {
      options.addOption(Poco::Util::Option(spec.name, "", spec.help)
                            .required(false)
                            .repeatable(false)
                            .argument(spec.argument));
    }
  }

  void handleOption(const std::string& name, const std::string& value) override {
    Poco::Util::ServerApplication::handleOption(name, value);
    if (name == "help") {
      help_ = true;
      stopOptionsProcessing();
    } else {
      values_[name] = value;
    }
  }

  int main(const std::vector<std::string>& args) override {
    if (help_) {
      PrintHelp(std::cout);
      return kExitOk;
    }
    if (!args.empty()) {
      std::cerr << "poco_messenger server: unexpected argument '" << args.front()
                << "'\nTry 'poco_messenger server --help'.\n";
      return kExitUsage;
    }
    const auto config = values_.find("config");
    if (config != values_.end()) {
      const std::string path = config->second;
      values_.erase(config);
      if (const Status status = LoadConfigFile(path, values_); !status.ok()) {
        std::cerr << "poco_messenger server: " << status.message() << "\n";
        return kExitUsage;
      }
    }
    Result<ServerSettings> settings = BuildSettings(values_);
    if (!settings.ok()) {
      std::cerr << "poco_messenger server: " << settings.status().message()
                << "\nTry 'poco_messenger server --help'.\n";
      return kExitUsage;
    }
    settings_ = std::move(settings).value();
    return Serve();
  }

 private:
  bool help_ = false;
  std::map<std::string, std::string> values_;
  ServerSettings settings_;
};

int ServerApp::Serve() {
  SetUpLogging(settings_.log_level);
  static LoggingErrorHandler error_handler;
  Poco::ErrorHandler::set(&error_handler);
  Poco::Logger& logger = Poco::Logger::get("messenger.server");
  RaiseDescriptorLimit(settings_.tcp.max_connections, logger);

  // Declared in dependency order so they are destroyed in reverse: connections first, the
  // store last (its destructor drains the pending group commit), the metrics after everything
  // that records to them.
  Metrics metrics;
  std::unique_ptr<Store> store;
  if (settings_.db == ":memory:") {
    logger.warning(
        "--db :memory: keeps accounts and messages in memory only; they are lost "
        "when the server stops");
    store = MakeMemoryStore(&metrics);
  } else {
    Result<std::unique_ptr<Store>> opened =
        OpenSqliteStore({settings_.db, settings_.sync, &metrics});
    if (!opened.ok()) {
      std::cerr << "poco_messenger server: cannot open the database: " << opened.status().message()
                << "\n";
      return kExitFailure;
    }
    store = std::move(opened).value();
  }
  if (settings_.password_cost == PasswordCost::kTest) {
    logger.warning("--password-cost test: minimal password hashing, for tests only");
  }
  Result<std::unique_ptr<PasswordHasher>> hasher =
      MakeArgon2Hasher(settings_.password_cost, settings_.max_concurrent_hashes, &metrics);
  if (!hasher.ok()) {
    std::cerr << "poco_messenger server: " << hasher.status().message() << "\n";
    return kExitFailure;
  }
  Messenger messenger(*store, **hasher, SystemClock(), settings_.messenger, &metrics);

  if (!settings_.tls_cert.empty()) {
    Result<std::shared_ptr<const TlsServerContext>> tls =
        TlsServerContext::Load(settings_.tls_cert, settings_.tls_key);
    if (!tls.ok()) {
      std::cerr << "poco_messenger server: TLS: " << tls.status().message() << "\n";
      return kExitFailure;
    }
    settings_.tcp.tls = *tls;
    // gRPC takes the same files as PEM text; Load has just checked that they are readable.
    if (!ReadFile(settings_.tls_cert, settings_.grpc.tls_cert_pem) ||
        !ReadFile(settings_.tls_key, settings_.grpc.tls_key_pem)) {
      std::cerr << "poco_messenger server: TLS: cannot read " << settings_.tls_cert << " or "
                << settings_.tls_key << "\n";
      return kExitFailure;
    }
    logger.information("TLS on both front doors: " + (*tls)->summary());
  }

  Result<std::unique_ptr<TcpFrontDoor>> started = TcpFrontDoor::Start(messenger, settings_.tcp);
  if (!started.ok()) {
    std::cerr << "poco_messenger server: " << started.status().message() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<TcpFrontDoor> door = std::move(started).value();
  if (!door->loopback() && !door->tls()) {
    logger.warning("listening on " + settings_.tcp.host +
                   ", which is not a loopback address, without TLS: passwords and messages "
                   "travel unencrypted; give --tls-cert and --tls-key, or keep it on a private "
                   "network");
  }
  std::unique_ptr<GrpcFrontDoor> grpc_door;
  if (settings_.grpc_enabled) {
    Result<std::unique_ptr<GrpcFrontDoor>> grpc_started =
        GrpcFrontDoor::Start(messenger, settings_.grpc);
    if (!grpc_started.ok()) {
      std::cerr << "poco_messenger server: " << grpc_started.status().message() << "\n";
      door->StopAccepting();
      messenger.Shutdown();
      door->Shutdown(kFlushTimeout);
      return kExitFailure;
    }
    grpc_door = std::move(grpc_started).value();
  }
  // /readyz: ready while the front doors accept and the core and its store answer.
  std::atomic<bool> accepting{true};
  std::unique_ptr<AdminServer> admin;
  if (settings_.admin_enabled) {
    Result<std::unique_ptr<AdminServer>> admin_started = AdminServer::Start(
        metrics,
        [&accepting, &messenger]() -> Status {
          if (!accepting.load()) {
            return Status(ErrorCode::kInternal, "the server is stopping; not accepting");
          }
          return messenger.CheckReady();
        },
        settings_.admin);
    if (!admin_started.ok()) {
      std::cerr << "poco_messenger server: " << admin_started.status().message() << "\n";
      door->StopAccepting();
      messenger.Shutdown();
      if (grpc_door) grpc_door->Shutdown(kFlushTimeout);
      door->Shutdown(kFlushTimeout);
      return kExitFailure;
    }
    admin = std::move(admin_started).value();
    if (!admin->loopback()) {
      logger.warning("admin port on " + settings_.admin.host +
                     ", which is not a loopback address: anyone who can reach it reads the "
                     "server's metrics; restrict it to operators");
    }
  }
  logger.information("listening on " + settings_.tcp.host + ":" + std::to_string(door->port()) +
                     " (database " + settings_.db + ", up to " +
                     std::to_string(settings_.tcp.max_connections) + " connections)");
  if (grpc_door) {
    logger.information("gRPC (messenger.v1) on " + settings_.grpc.host + ":" +
                       std::to_string(grpc_door->port()) + ", up to " +
                       std::to_string(settings_.grpc.max_sessions) + " sessions");
  } else {
    logger.information("gRPC is off (--grpc-port 0)");
  }
  if (admin) {
    logger.information("admin HTTP (/healthz, /readyz, /metrics) on " + settings_.admin.host + ":" +
                       std::to_string(admin->port()));
  }
  std::cout << kReadinessPrefix << settings_.tcp.host << ":" << door->port() << std::endl;
  if (grpc_door) {
    std::cout << kGrpcReadinessPrefix << settings_.grpc.host << ":" << grpc_door->port()
              << std::endl;
  }
  if (admin) {
    std::cout << kAdminReadinessPrefix << settings_.admin.host << ":" << admin->port() << std::endl;
  }

  waitForTerminationRequest();

  logger.information("stopping: no new connections; ending sessions");
  // /readyz answers 503 from here on, while the front doors drain; /healthz stays 200.
  accepting = false;
  door->StopAccepting();
  messenger.Shutdown();
  // Both front doors flush their SESSION_ENDED pushes within the one timeout.
  if (grpc_door) {
    grpc_door->Shutdown(kFlushTimeout);
    logger.information("gRPC front door stopped");
  }
  if (!door->Shutdown(kFlushTimeout)) {
    // Connection threads still use the core and the store: destroying them now would be unsafe.
    // Every answered SEND is already durable, so leaving without cleanup loses nothing.
    logger.critical("connection threads did not stop; exiting without cleanup");
    std::cerr.flush();
    std::_Exit(kExitFailure);
  }
  door.reset();
  if (admin) {
    admin->Shutdown();
    logger.information("admin HTTP stopped");
  }
  logger.information("stopped");
  return kExitOk;
}

}  // namespace

int RunServer(int argc, char** argv) {
  // Every thread inherits this mask, so SIGINT and SIGTERM reach only the main thread's
  // sigwait() in waitForTerminationRequest(). (POCO's own threads block SIGTERM but not SIGINT;
  // without this a Ctrl-C landing on one of them would kill the process without a clean stop.)
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGQUIT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  ServerApp app;
  try {
    app.init(argc, argv);
  } catch (const Poco::Exception& e) {
    std::cerr << "poco_messenger server: " << e.displayText()
              << "\nTry 'poco_messenger server --help'.\n";
    return kExitUsage;
  }
  try {
    return app.Run();
  } catch (const Poco::Exception& e) {
    std::cerr << "poco_messenger server: " << e.displayText() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "poco_messenger server: " << e.what() << "\n";
  }
  return kExitFailure;
}

}  // namespace messenger

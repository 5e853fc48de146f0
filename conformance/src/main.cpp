// messenger_conformance: runs the conformance scenarios (conformance/scenarios/*.scn) against a
// server and reports each as passed, failed or skipped. See conformance/README.md.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "runner.h"
#include "scenario.h"
#include "server_process.h"

namespace messenger::conformance {
namespace {

// Scenarios with this tag record where the server departs from the spec; they run only when
// asked for by name. `known-gap-grpc` and `known-gap-wire` do the same for one transport.
constexpr char kKnownGapTag[] = "known-gap";

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Options {
  RunOptions run;
  std::vector<std::string> paths;
  std::vector<std::string> only;
  std::vector<std::string> skip;
  std::string junit;
  bool list = false;
  int skip_exit_code = kExitOk;
};

void PrintUsage(std::ostream& out) {
  out << "Usage: messenger_conformance [options] [SCENARIO.scn | DIRECTORY]...\n"
         "\n"
         "Runs conformance scenarios against a server of the poco_messenger protocol\n"
         "(docs/PROTOCOL.md). Without arguments: every scenario in\n"
         "  " MESSENGER_SCENARIO_DIR
         "\n"
         "\n"
         "The server (default: start the built poco_messenger for each scenario, on a free port\n"
         "and a fresh database):\n"
         "  --server PATH        the poco_messenger binary to start\n"
         "  --server-cmd 'CMD'   start CMD with /bin/sh for each scenario instead; {host}, "
         "{port},\n"
         "                       {grpc_port}, {db} and {args} are replaced by 127.0.0.1, free\n"
         "                       ports, a fresh database path and the scenario's server-args\n"
         "  --connect HOST:PORT  test a server that is already running (scenarios that restart\n"
         "                       the server or need server options are skipped)\n"
         "  --grpc-connect HOST:PORT\n"
         "                       with --connect: where that server serves gRPC\n"
         "Transport:\n"
         "  --transport wire|grpc\n"
         "                       how clients that do not name their transport reach the server\n"
         "                       [wire]; with grpc, scenarios tagged wire-only are skipped, and\n"
         "                       the server is started with gRPC on ({grpc_port} in --server-cmd)\n"
         "  --tls-dir DIR        clients use TLS and trust DIR/ca.pem; a server the runner\n"
         "                       starts gets --tls-cert DIR/server.pem --tls-key\n"
         "                       DIR/server.key (make DIR with tests/support/make-test-certs);\n"
         "                       runs the tls-only scenarios too\n"
         "Selection:\n"
         "  --only TAG           run only scenarios with this tag (repeatable: any of them)\n"
         "  --skip TAG           skip scenarios with this tag (repeatable)\n"
         "                       Scenarios tagged known-gap run only with --only known-gap.\n"
         "  --list               list the scenarios, their tags and titles, and exit\n"
         "Output:\n"
         "  --junit FILE         also write the results as JUnit XML\n"
         "  --verbose, -v        print every step and every frame as it happens\n"
         "  --keep               keep each scenario's directory (database, server log)\n"
         "  --timeout MS         how long an expectation waits for its frame [5000]\n"
         "  --skip-exit-code N   exit status when scenarios were skipped and none ran [0]\n"
         "\n"
         "Exit status: 0 when no selected scenario failed, 1 when one did, 2 for bad usage.\n";
}

bool ParseOptions(int argc, char** argv, Options& options) {
  options.run.server.kind = ServerSpec::Kind::kBinary;
  options.run.server.binary = MESSENGER_SERVER_BINARY;
  const auto value = [&](int& i, std::string& out) {
    if (i + 1 >= argc) {
      std::cerr << "messenger_conformance: " << argv[i] << " needs a value\n";
      return false;
    }
    out = argv[++i];
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    std::string text;
    if (arg == "--help" || arg == "-h") {
      PrintUsage(std::cout);
      std::exit(kExitOk);
    } else if (arg == "--server") {
      if (!value(i, options.run.server.binary)) return false;
    } else if (arg == "--server-cmd") {
      if (!value(i, options.run.server.command)) return false;
      options.run.server.kind = ServerSpec::Kind::kCommand;
    } else if (arg == "--connect" || arg == "--grpc-connect") {
      if (!value(i, text)) return false;
      const std::size_t colon = text.rfind(':');
      const std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
      if (colon == 0 || port.empty() || port.size() > 5 ||
          port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) == 0 ||
          std::stoi(port) > 65535) {
        std::cerr << "messenger_conformance: " << arg << " wants HOST:PORT, got '" << text << "'\n";
        return false;
      }
      if (arg == "--connect") {
        options.run.server.kind = ServerSpec::Kind::kExternal;
        options.run.server.host = text.substr(0, colon);
        options.run.server.port = static_cast<std::uint16_t>(std::stoi(port));
      } else {
        options.run.server.grpc_host = text.substr(0, colon);
        options.run.server.grpc_port = static_cast<std::uint16_t>(std::stoi(port));
      }
    } else if (arg == "--transport") {
      if (!value(i, text)) return false;
      const std::optional<Transport> transport = ParseTransport(text);
      if (!transport) {
        std::cerr << "messenger_conformance: --transport wants wire or grpc, got '" << text
                  << "'\n";
        return false;
      }
      options.run.transport = *transport;
    } else if (arg == "--tls-dir") {
      if (!value(i, options.run.tls_dir)) return false;
    } else if (arg == "--only" || arg == "--skip") {
      if (!value(i, text)) return false;
      (arg == "--only" ? options.only : options.skip).push_back(text);
    } else if (arg == "--junit") {
      if (!value(i, options.junit)) return false;
    } else if (arg == "--timeout" || arg == "--skip-exit-code") {
      if (!value(i, text)) return false;
      if (text.empty() || text.size() > 6 ||
          text.find_first_not_of("0123456789") != std::string::npos) {
        std::cerr << "messenger_conformance: " << arg << " wants a number, got '" << text << "'\n";
        return false;
      }
      if (arg == "--timeout") {
        options.run.timeout = std::chrono::milliseconds(std::stoi(text));
      } else {
        options.skip_exit_code = std::stoi(text);
      }
    } else if (arg == "--verbose" || arg == "-v") {
      options.run.verbose = true;
    } else if (arg == "--keep") {
      options.run.keep = true;
    } else if (arg == "--list") {
      options.list = true;
    } else if (arg.rfind("-", 0) == 0) {
      std::cerr << "messenger_conformance: unknown option '" << arg << "'\n";
      return false;
    } else {
      options.paths.emplace_back(arg);
    }
  }
  if (options.paths.empty()) options.paths.emplace_back(MESSENGER_SCENARIO_DIR);
  if (options.run.server.grpc_port != 0 && options.run.server.kind != ServerSpec::Kind::kExternal) {
    std::cerr << "messenger_conformance: --grpc-connect goes with --connect\n";
    return false;
  }
  return true;
}

// The scenario files named by `paths`: files as given, directories' *.scn sorted by name.
std::vector<std::filesystem::path> ScenarioFiles(const std::vector<std::string>& paths,
                                                 std::string& error) {
  std::vector<std::filesystem::path> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      std::vector<std::filesystem::path> found;
      for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (entry.path().extension() == ".scn") found.push_back(entry.path());
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (std::filesystem::exists(path, ec)) {
      files.emplace_back(path);
    } else {
      error = "no such scenario file or directory: " + path;
      return {};
    }
  }
  return files;
}

bool HasTag(const Scenario& scenario, const std::string& tag) {
  return std::find(scenario.tags.begin(), scenario.tags.end(), tag) != scenario.tags.end();
}

// True iff --only and --skip select `scenario`.
bool Selected(const Scenario& scenario, const Options& options) {
  const auto tagged = [&](const std::string& tag) { return HasTag(scenario, tag); };
  if (std::any_of(options.skip.begin(), options.skip.end(), tagged)) return false;
  return options.only.empty() || std::any_of(options.only.begin(), options.only.end(), tagged);
}

// Why a selected `scenario` is skipped all the same, or empty if it runs.
std::string SkipReason(const Scenario& scenario, const Options& options) {
  const Transport transport = options.run.transport;
  if (transport == Transport::kGrpc && HasTag(scenario, kWireOnlyTag)) {
    return "skipped: tagged wire-only, it has no gRPC counterpart (its file says why)";
  }
  if (transport == Transport::kWire && HasTag(scenario, kGrpcOnlyTag)) {
    return "skipped: tagged grpc-only, it has no wire counterpart (its file says why)";
  }
  const std::string transport_gap =
      std::string(kKnownGapTag) + "-" + std::string(TransportName(transport));
  for (const std::string& gap : {std::string(kKnownGapTag), transport_gap}) {
    const bool asked =
        std::find(options.only.begin(), options.only.end(), gap) != options.only.end();
    if (HasTag(scenario, gap) && !asked) {
      return "skipped: tagged " + gap + ", where the server is known to depart from the spec " +
             "(--only " + gap + " runs it)";
    }
  }
  return "";
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        // XML 1.0 allows no control characters but tab and line breaks.
        if (byte < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

struct Entry {
  std::string name;
  std::string title;
  std::vector<std::string> tags;
  Outcome outcome;
};

bool WriteJunit(const std::string& path, const std::vector<Entry>& entries, double seconds,
                Transport transport) {
  int failures = 0;
  int skipped = 0;
  for (const Entry& e : entries) {
    failures += e.outcome.result == Outcome::Result::kFailed;
    skipped += e.outcome.result == Outcome::Result::kSkipped;
  }
  std::ofstream out(path);
  out << std::fixed << std::setprecision(3);
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<testsuite name=\"messenger_conformance\" tests=\"" << entries.size() << "\" failures=\""
      << failures << "\" errors=\"0\" skipped=\"" << skipped << "\" time=\"" << seconds << "\">\n";
  for (const Entry& e : entries) {
    std::string tags;
    for (const std::string& tag : e.tags) tags += (tags.empty() ? "" : ",") + tag;
    out << "  <testcase classname=\"conformance." << TransportName(transport) << "\" name=\""
        << XmlEscape(e.name) << "\" time=\"" << e.outcome.seconds << "\">\n"
        << "    <properties><property name=\"title\" value=\"" << XmlEscape(e.title)
        << "\"/><property name=\"tags\" value=\"" << XmlEscape(tags) << "\"/></properties>\n";
    const std::string first_line = e.outcome.detail.substr(0, e.outcome.detail.find('\n'));
    if (e.outcome.result == Outcome::Result::kFailed) {
      out << "    <failure message=\"" << XmlEscape(first_line) << "\">"
          << XmlEscape(e.outcome.detail) << "</failure>\n";
    } else if (e.outcome.result == Outcome::Result::kSkipped) {
      out << "    <skipped message=\"" << XmlEscape(first_line) << "\"/>\n";
    }
    if (!e.outcome.notes.empty()) {
      out << "    <system-out>";
      for (const std::string& note : e.outcome.notes) out << "note: " << XmlEscape(note) << "\n";
      out << "</system-out>\n";
    }
    out << "  </testcase>\n";
  }
  out << "</testsuite>\n";
  return static_cast<bool>(out);
}

int Main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, options)) {
    std::cerr << "Try 'messenger_conformance --help'.\n";
    return kExitUsage;
  }
  std::string error;
  const std::vector<std::filesystem::path> files = ScenarioFiles(options.paths, error);
  if (!error.empty()) {
    std::cerr << "messenger_conformance: " << error << "\n";
    return kExitUsage;
  }
  if (files.empty()) {
    std::cerr << "messenger_conformance: no scenarios (*.scn) found\n";
    return kExitUsage;
  }
  KillServerOnExit();
  if (options.run.server.kind == ServerSpec::Kind::kExternal && files.size() > 1) {
    std::cout << "note: with --connect every scenario runs against the same server and creates "
                 "the accounts it uses; on a server that has them already they fail "
                 "(USERNAME_TAKEN). Give each scenario a fresh server, or let the runner start "
                 "one per scenario with --server-cmd.\n\n";
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<Entry> entries;
  int counts[3] = {0, 0, 0};  // Indexed by Outcome::Result.
  int not_selected = 0;
  for (const std::filesystem::path& file : files) {
    Entry entry;
    entry.name = file.stem().string();
    Result<Scenario> scenario = LoadScenario(file, options.run.transport);
    if (!scenario.ok()) {
      entry.outcome.result = Outcome::Result::kFailed;
      entry.outcome.detail = "the scenario cannot be read: " + scenario.status().message() + "\n";
    } else {
      entry.title = scenario->title;
      entry.tags = scenario->tags;
      if (options.list) {
        std::string tags;
        for (const std::string& tag : entry.tags) tags += (tags.empty() ? "" : ", ") + tag;
        std::cout << std::left << std::setw(36) << entry.name << " " << entry.title << "\n"
                  << std::setw(36) << ""
                  << " tags: " << tags << "\n";
        continue;
      }
      if (!Selected(*scenario, options)) {
        ++not_selected;
        continue;
      }
      if (std::string why = SkipReason(*scenario, options); !why.empty()) {
        entry.outcome.result = Outcome::Result::kSkipped;
        entry.outcome.detail = why;
      } else {
        if (options.run.verbose) std::cout << "RUN   " << entry.name << "\n";
        entry.outcome = RunScenario(*scenario, options.run);
      }
    }
    const Outcome& outcome = entry.outcome;
    ++counts[static_cast<int>(outcome.result)];
    static constexpr const char* kLabels[] = {"PASS", "FAIL", "SKIP"};
    std::cout << kLabels[static_cast<int>(outcome.result)] << "  " << entry.name;
    if (options.run.transport == Transport::kGrpc) std::cout << " [grpc]";
    if (outcome.result == Outcome::Result::kSkipped) {
      std::cout << ": " << outcome.detail << "\n";
    } else {
      std::cout << "  (" << std::fixed << std::setprecision(2) << outcome.seconds << " s)  "
                << entry.title << "\n";
      if (outcome.result == Outcome::Result::kFailed) std::cout << outcome.detail;
    }
    for (const std::string& note : outcome.notes) std::cout << "  note: " << note << "\n";
    std::cout.flush();
    entries.push_back(std::move(entry));
  }
  if (options.list) return kExitOk;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "\n"
            << counts[0] << " passed, " << counts[1] << " failed, " << counts[2] << " skipped";
  if (not_selected > 0) std::cout << ", " << not_selected << " not selected by --only/--skip";
  std::cout << " (" << std::fixed << std::setprecision(1) << seconds << " s)\n";
  if (!options.junit.empty() &&
      !WriteJunit(options.junit, entries, seconds, options.run.transport)) {
    std::cerr << "messenger_conformance: cannot write " << options.junit << "\n";
    return kExitUsage;
  }
  if (counts[1] > 0) return kExitFailed;
  if (counts[0] == 0 && counts[2] > 0) return options.skip_exit_code;
  return kExitOk;
}

}  // namespace
}  // namespace messenger::conformance

int main(int argc, char** argv) { return messenger::conformance::Main(argc, argv); }

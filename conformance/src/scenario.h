// Scenario files: the conformance suite's line-oriented language (conformance/README.md).
//
// A scenario is parsed and checked completely before it runs: every frame line is checked
// against the message types' field lists, every client is connected before it is used, every
// `$capture` is taken before a request uses it. Macros (`hello`, `login`, `accounts`) are
// expanded here into the core steps they stand for.
//
// A scenario is parsed for one default transport: clients declared without `over wire|grpc` use
// it, and steps marked `wire:` or `grpc:` are kept only where their client uses that transport.
// Plain values; thread-compatible.
#ifndef MESSENGER_CONFORMANCE_SCENARIO_H_
#define MESSENGER_CONFORMANCE_SCENARIO_H_

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/status.h"
#include "scenario_client.h"

namespace messenger::conformance {

// The password the `login` and `accounts` macros use.
inline constexpr char kMacroPassword[] = "correct horse battery staple";

// Tags that bind a scenario to one transport, and the tag of scenarios whose clients name theirs.
inline constexpr char kWireOnlyTag[] = "wire-only";
inline constexpr char kGrpcOnlyTag[] = "grpc-only";
inline constexpr char kMixedTag[] = "mixed";
// The tag of scenarios about TLS itself: they run only when clients use TLS (--tls-dir).
inline constexpr char kTlsOnlyTag[] = "tls-only";

// How a tls-refused client deviates from a client the server should accept.
enum class TlsRefusal {
  kUntrustedCa,  // It trusts another CA than the one that signed the server's certificate.
  kWrongName,    // It expects the certificate to name another host.
  kPlaintext,    // It does not speak TLS at all.
};

struct Step {
  enum class Kind {
    kConnect,         // connect NAME
    kClose,           // close NAME
    kSend,            // NAME > FRAME
    kSendRaw,         // NAME > raw HEX...
    kExpect,          // NAME < FRAME: the next frame on NAME matches
    kExpectAnyOrder,  // NAME <~ FRAME: some frame not yet matched on NAME matches
    kExpectClosed,    // NAME < closed
    kExpectSilence,   // NAME !< DURATION
    kRestart,         // restart: SIGTERM, then start again on the same database
    kCrash,           // crash: SIGKILL, then start again on the same database
    kSwarm,           // swarm N clients M messages [in acceptance order]
    kTlsRefused,      // tls-refused NAME untrusted-ca|wrong-name|plaintext
  };
  Kind kind = Kind::kConnect;
  int line = 0;           // 1-based line in the scenario file.
  std::string source;     // That line as written.
  std::string expansion;  // For a step a macro produced: the step in the core language.
  std::string client;
  Transport transport = Transport::kWire;  // The client's (kSwarm: the swarm's clients').
  std::string text;  // kSend, kExpect, kExpectAnyOrder: the frame's one-line form.
  Bytes bytes;       // kSendRaw
  std::chrono::milliseconds duration{0};        // kExpectSilence
  int clients = 0;                              // kSwarm
  int messages = 0;                             // kSwarm: per client
  bool acceptance_order = false;                // kSwarm: check pushes across senders too
  TlsRefusal refusal = TlsRefusal::kPlaintext;  // kTlsRefused
};

struct Scenario {
  std::filesystem::path path;
  std::string name;   // The file stem.
  std::string title;  // The first comment line.
  std::vector<std::string> tags;
  std::vector<std::string> server_args;  // server-args: extra options for the server.
  std::vector<Step> steps;
  bool restarts_server = false;  // Has restart or crash.
  // The transport of clients declared without one: the one asked for, unless a wire-only or
  // grpc-only tag fixes it.
  Transport default_transport = Transport::kWire;
  bool uses_grpc = false;  // Some client (or the swarm) uses gRPC: the server must serve it.
};

// Parses a scenario for `transport` (the default transport of its clients). Errors:
// kInvalidArgument, "<path>:<line>: <problem>".
Result<Scenario> ParseScenario(std::string_view text, const std::filesystem::path& path,
                               Transport transport = Transport::kWire);

// Reads and parses the file at `path`.
Result<Scenario> LoadScenario(const std::filesystem::path& path,
                              Transport transport = Transport::kWire);

// The step as one line of the core language (the expansion of a macro step, else its source).
std::string ShowStep(const Step& step);

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_SCENARIO_H_

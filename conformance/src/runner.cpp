#include "runner.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "connection.h"
#include "frame_template.h"
#include "grpc_client.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"

namespace messenger::conformance {
namespace {

// Lines of the transcript and of the server's log shown with a failure.
constexpr std::size_t kTranscriptLines = 25;
constexpr std::size_t kLogLines = 25;

std::string JoinArgs(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& arg : args) out += (out.empty() ? "" : " ") + arg;
  return out;
}

// Where a step comes from, for messages: the file relative to the working directory when that
// is shorter, and the line.
std::string Where(const Scenario& scenario, const Step& step) {
  std::error_code error;
  std::filesystem::path shown = scenario.path;
  const std::filesystem::path relative =
      scenario.path.lexically_proximate(std::filesystem::current_path(error));
  if (!error && relative.string().size() < shown.string().size()) shown = relative;
  return shown.string() + ":" + std::to_string(step.line);
}

std::string Indent(const std::string& text, const std::string& prefix) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    out += prefix + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

class ScenarioRun {
 public:
  ScenarioRun(const Scenario& scenario, const RunOptions& options, ServerProcess& server,
              Transcript& transcript, std::vector<std::string>& notes)
      : scenario_(scenario),
        options_(options),
        server_(server),
        transcript_(transcript),
        notes_(notes) {}

  // Plays every step; returns the first failure, or empty.
  std::string Run() {
    for (const Step& step : scenario_.steps) {
      if (std::string failure = Execute(step); !failure.empty()) return Report(step, failure);
    }
    if (const Status alive = server_.CheckAlive(); !alive.ok()) {
      return "after the last step: " + alive.message() + "\n";
    }
    for (auto& [name, client] : clients_) {
      if (seen_closed_.count(name) != 0) continue;
      client->Drain();
      if (!client->inbox().empty()) {
        return "after the last step, " + name + " received frames the scenario does not " +
               "expect:\n" + Unmatched(*client) + "\n";
      }
      if (client->closed()) {
        return "after the last step: the server closed the connection of " + name + " (" +
               client->close_detail() + "), which the scenario does not expect\n";
      }
    }
    return "";
  }

 private:
  // How the scenario's clients secure their connections (--tls-dir).
  ClientTls DefaultTls() const {
    if (options_.tls_dir.empty()) return {};
    return ClientTls{true, options_.tls_dir + "/ca.pem", ""};
  }

  // Opens a client over `transport` to the server under test.
  Result<std::unique_ptr<ScenarioClient>> OpenClient(Transport transport, const ClientTls& tls) {
    if (transport == Transport::kGrpc) {
      auto client = std::make_unique<GrpcClient>(options_.timeout);
      if (server_.grpc_port() == 0) {
        return Status(ErrorCode::kConnectionFailed, "the server under test serves no gRPC");
      }
      if (Status s = client->Open(server_.grpc_host(), server_.grpc_port(), options_.timeout, tls);
          !s.ok()) {
        return s;
      }
      return std::unique_ptr<ScenarioClient>(std::move(client));
    }
    auto client = std::make_unique<Connection>();
    if (Status s = client->Open(server_.host(), server_.port(), options_.timeout, tls); !s.ok()) {
      return s;
    }
    return std::unique_ptr<ScenarioClient>(std::move(client));
  }

  // tls-refused: a client set up to fail the server's TLS in one way must not get through.
  std::string TlsRefused(const Step& step) {
    ClientTls tls = DefaultTls();
    std::string how;
    switch (step.refusal) {
      case TlsRefusal::kUntrustedCa:
        tls.ca_file = options_.tls_dir + "/other-ca.pem";
        how = "trusting another CA";
        break;
      case TlsRefusal::kWrongName:
        tls.server_name = "wrong-host.invalid";
        how = "expecting the certificate to name wrong-host.invalid";
        break;
      case TlsRefusal::kPlaintext:
        tls = ClientTls{};
        how = "without TLS";
        break;
    }
    transcript_.Add("tls-refused " + step.client + " (a client " + how + ")");
    Result<std::unique_ptr<ScenarioClient>> client = OpenClient(step.transport, tls);
    if (step.refusal != TlsRefusal::kPlaintext) {
      if (client.ok()) return "a client " + how + " connected; its handshake should have failed";
      if (client.status().code() != ErrorCode::kTlsFailed) {
        return "a client " + how + " failed, but not in TLS: " + client.status().ToString();
      }
      transcript_.Add("  (" + client.status().message() + ")");
      return "";
    }
    // The TCP connection itself succeeds; what the client says must get no protocol answer.
    if (!client.ok()) return "a plain TCP connection failed: " + client.status().ToString();
    ScenarioClient& plain = **client;
    Frame hello{1, Hello{kProtocolVersion}};
    (void)plain.SendRequest(hello, options_.timeout);
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    while (!plain.closed() && plain.inbox().empty()) {
      if (!plain.Receive(deadline) && Clock::now() >= deadline) {
        return "a client without TLS sent HELLO and the server neither answered nor closed "
               "within " +
               std::to_string(options_.timeout.count()) + " ms";
      }
    }
    for (const Arrival& arrival : plain.inbox()) {
      if (arrival.frame && std::holds_alternative<HelloOk>(arrival.frame->message)) {
        return "the server answered HELLO of a client without TLS: " + arrival.text;
      }
      transcript_.Add("  " + step.client + " < " + arrival.text);
    }
    if (plain.closed()) transcript_.Add("  " + step.client + " < closed");
    plain.Close();
    return "";
  }

  std::string Execute(const Step& step) {
    transcript_.SetLine(step.line);
    switch (step.kind) {
      case Step::Kind::kConnect: {
        Result<std::unique_ptr<ScenarioClient>> client = OpenClient(step.transport, DefaultTls());
        if (!client.ok()) return client.status().message();
        transcript_.Add("connect " + step.client +
                        (step.transport == Transport::kGrpc ? " over grpc" : ""));
        clients_[step.client] = std::move(client).value();
        seen_closed_.erase(step.client);
        return "";
      }
      case Step::Kind::kClose: {
        ScenarioClient& client = *clients_.at(step.client);
        client.Drain();
        if (!client.inbox().empty()) {
          return step.client + " received frames the scenario does not expect:\n" +
                 Unmatched(client);
        }
        client.Close();
        clients_.erase(step.client);
        transcript_.Add("close " + step.client);
        return "";
      }
      case Step::Kind::kSend:
        return Send(step);
      case Step::Kind::kSendRaw: {
        ScenarioClient& client = *clients_.at(step.client);
        transcript_.Add(step.client + " > raw " + Hex(step.bytes));
        if (!client.SendRaw(step.bytes, options_.timeout).ok()) {
          transcript_.Add("  (" + client.write_error() + ")");
        }
        return "";
      }
      case Step::Kind::kExpect:
        return ExpectNext(step);
      case Step::Kind::kExpectAnyOrder:
        return ExpectAnyOrder(step);
      case Step::Kind::kExpectClosed:
        return ExpectClosed(step);
      case Step::Kind::kExpectSilence:
        return ExpectSilence(step);
      case Step::Kind::kRestart:
      case Step::Kind::kCrash: {
        const bool crash = step.kind == Step::Kind::kCrash;
        if (crash) {
          server_.Kill();
        } else if (const Status s = server_.Stop(); !s.ok()) {
          // What clients can observe of the stop is up to the following expectations.
          notes_.push_back(Where(scenario_, step) + ": restart: " + s.message());
          transcript_.Add("(" + s.message() + ")");
        }
        if (const Status s = server_.Start(); !s.ok()) return "starting again: " + s.message();
        transcript_.Add(std::string(crash ? "crash" : "restart") + ": the server runs again at " +
                        server_.host() + ":" + std::to_string(server_.port()));
        return "";
      }
      case Step::Kind::kSwarm:
        return RunSwarm(
            step.clients, step.messages, step.acceptance_order,
            [this, &step] { return OpenClient(step.transport, DefaultTls()); }, options_.timeout,
            transcript_);
      case Step::Kind::kTlsRefused:
        return TlsRefused(step);
    }
    return "unknown step";
  }

  std::string Send(const Step& step) {
    ScenarioClient& client = *clients_.at(step.client);
    const std::string text = Substitute(step.text, bindings_);
    const Result<Frame> frame = ParseDescription(text);
    if (!frame.ok()) return "cannot send '" + text + "': " + frame.status().message();
    Bytes bytes;
    if (const Status s = EncodeFrame(*frame, bytes); !s.ok()) {
      return "cannot encode '" + text + "': " + s.ToString();
    }
    transcript_.Add(step.client + " > " + text);
    if (const Status s = client.SendRequest(*frame, options_.timeout); !s.ok()) {
      // A request the transport cannot carry is the scenario's mistake; a failed write is what
      // the following expectations judge.
      if (s.code() == ErrorCode::kInvalidArgument)
        return "cannot send '" + text + "': " + s.message();
      transcript_.Add("  (" + client.write_error() + ")");
    }
    return "";
  }

  // Parses the expectation after filling in the captures taken so far.
  std::string Expected(const Step& step, std::string& text, FrameTemplate& out) {
    text = Substitute(step.text, bindings_);
    Result<FrameTemplate> parsed = ParseTemplate(text, /*holes=*/true);
    if (!parsed.ok()) return "cannot read '" + text + "': " + parsed.status().message();
    out = std::move(parsed).value();
    return "";
  }

  // Compares one arrival with the expectation; empty on a match (captures then taken).
  std::string Compare(const FrameTemplate& expected, const std::string& expected_text,
                      const Arrival& arrival) {
    if (!arrival.matchable) return "what arrived is no frame an expectation can match";
    const Result<FrameTemplate> actual = ParseTemplate(arrival.text, /*holes=*/false);
    if (!actual.ok())
      return "cannot read the description of the frame: " + actual.status().message();
    const std::optional<std::string> difference =
        Match(expected, expected_text, *actual, arrival.text, bindings_);
    return difference ? *difference : "";
  }

  std::string ExpectNext(const Step& step) {
    ScenarioClient& client = *clients_.at(step.client);
    std::string text;
    FrameTemplate expected;
    if (std::string error = Expected(step, text, expected); !error.empty()) return error;
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    while (client.inbox().empty()) {
      if (client.closed()) return Missing(text, client, "the connection was closed");
      if (!client.Receive(deadline) && Clock::now() >= deadline) {
        return Missing(
            text, client,
            "nothing arrived within " + std::to_string(options_.timeout.count()) + " ms");
      }
    }
    const Arrival arrival = std::move(client.inbox().front());
    client.inbox().pop_front();
    const std::string difference = Compare(expected, text, arrival);
    if (!difference.empty()) {
      return "expected: " + text + "\narrived:  " + arrival.text + "\ndiffers:  " + difference;
    }
    transcript_.Add(step.client + " < " + arrival.text);
    return "";
  }

  std::string ExpectAnyOrder(const Step& step) {
    ScenarioClient& client = *clients_.at(step.client);
    std::string text;
    FrameTemplate expected;
    if (std::string error = Expected(step, text, expected); !error.empty()) return error;
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    std::size_t checked = 0;
    for (;;) {
      auto& inbox = client.inbox();
      for (; checked < inbox.size(); ++checked) {
        if (Compare(expected, text, inbox[checked]).empty()) {
          transcript_.Add(step.client + " <~ " + inbox[checked].text);
          inbox.erase(inbox.begin() + static_cast<std::ptrdiff_t>(checked));
          return "";
        }
      }
      if (client.closed()) {
        return Missing(text, client, "the connection was closed and no frame matched");
      }
      if (!client.Receive(deadline) && Clock::now() >= deadline) {
        return Missing(
            text, client,
            "no frame matched within " + std::to_string(options_.timeout.count()) + " ms");
      }
    }
  }

  std::string ExpectClosed(const Step& step) {
    ScenarioClient& client = *clients_.at(step.client);
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    while (!client.closed() && client.inbox().empty()) {
      if (!client.Receive(deadline) && Clock::now() >= deadline) {
        return "expected the server to close the connection; it is still open after " +
               std::to_string(options_.timeout.count()) + " ms";
      }
    }
    if (!client.inbox().empty()) {
      return "expected the server to close the connection, but first came:\n" + Unmatched(client);
    }
    transcript_.Add(step.client + ": closed by the server (" + client.close_detail() + ")");
    client.Close();
    seen_closed_.insert(step.client);
    return "";
  }

  std::string ExpectSilence(const Step& step) {
    ScenarioClient& client = *clients_.at(step.client);
    const Clock::time_point deadline = Clock::now() + step.duration;
    while (Clock::now() < deadline && client.inbox().empty() && !client.closed()) {
      client.Receive(deadline);
    }
    if (!client.inbox().empty()) {
      return "expected nothing within " + std::to_string(step.duration.count()) +
             " ms, but this arrived:\n" + Unmatched(client);
    }
    if (client.closed()) {
      return "expected nothing within " + std::to_string(step.duration.count()) +
             " ms, but the server closed the connection (" + client.close_detail() + ")";
    }
    transcript_.Add(step.client + ": nothing within " + std::to_string(step.duration.count()) +
                    " ms");
    return "";
  }

  std::string Missing(const std::string& expected, ScenarioClient& client, const std::string& why) {
    std::string out = "expected: " + expected + "\narrived:  " + why;
    if (client.closed()) out += " (" + client.close_detail() + ")";
    if (!client.inbox().empty()) out += "; frames not matched:\n" + Unmatched(client);
    if (!client.write_error().empty())
      out += "\n(an earlier write failed: " + client.write_error() + ")";
    return out;
  }

  static std::string Unmatched(ScenarioClient& client) {
    std::string out;
    for (const Arrival& arrival : client.inbox()) out += "  " + arrival.text + "\n";
    if (!out.empty()) out.pop_back();
    return out;
  }

  std::string Report(const Step& step, const std::string& failure) {
    std::string out = Where(scenario_, step) + ": " + step.source + "\n";
    if (!step.expansion.empty()) out += "  in the step: " + step.expansion + "\n";
    out += Indent(failure, "  ");
    return out;
  }

  const Scenario& scenario_;
  const RunOptions& options_;
  ServerProcess& server_;
  Transcript& transcript_;
  std::vector<std::string>& notes_;
  std::map<std::string, std::unique_ptr<ScenarioClient>> clients_;
  std::set<std::string> seen_closed_;  // Clients whose close an expectation has seen.
  Bindings bindings_;
};

// A fresh directory for one scenario's database and log.
std::filesystem::path MakeScenarioDir(const std::string& name) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / ("messenger-conformance-" + name + "-XXXXXX"))
          .string();
  if (::mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

}  // namespace

void Transcript::Add(const std::string& entry) {
  std::string line = std::to_string(line_);
  line.insert(0, line.size() < 4 ? 4 - line.size() : 0, ' ');
  line += ": " + entry;
  if (echo_) std::cout << "  " << line << "\n";
  lines_.push_back(std::move(line));
}

std::string Transcript::Tail(std::size_t lines) const {
  std::string out;
  const std::size_t first = lines_.size() > lines ? lines_.size() - lines : 0;
  if (first > 0) out += "    ... (" + std::to_string(first) + " earlier)\n";
  for (std::size_t i = first; i < lines_.size(); ++i) out += "    " + lines_[i] + "\n";
  return out.empty() ? "    (nothing was exchanged)\n" : out;
}

std::string WhyNotRunnable(const Scenario& scenario, const RunOptions& options) {
  if (scenario.uses_grpc && options.server.kind == ServerSpec::Kind::kExternal &&
      options.server.grpc_port == 0) {
    return "it has gRPC clients; give the server's gRPC address with --grpc-connect HOST:PORT";
  }
  if (scenario.uses_grpc && options.server.kind == ServerSpec::Kind::kCommand &&
      options.server.command.find("{grpc_port}") == std::string::npos) {
    return "it has gRPC clients; put {grpc_port} in --server-cmd where the server takes its gRPC "
           "port";
  }
  if (options.server.kind == ServerSpec::Kind::kExternal) {
    if (scenario.restarts_server) {
      return "it restarts the server, which a runner connected to a running server (--connect) "
             "cannot do";
    }
    if (!scenario.server_args.empty()) {
      return "it needs the server options '" + JoinArgs(scenario.server_args) +
             "', which --connect cannot give";
    }
  }
  if (std::find(scenario.tags.begin(), scenario.tags.end(), kTlsOnlyTag) != scenario.tags.end() &&
      options.tls_dir.empty()) {
    return "it is about TLS; run it with --tls-dir";
  }
  if (options.server.kind == ServerSpec::Kind::kCommand && !options.tls_dir.empty() &&
      options.server.command.find("{args}") == std::string::npos) {
    return "its clients use TLS; put {args} in --server-cmd where the server takes "
           "--tls-cert FILE --tls-key FILE";
  }
  if (options.server.kind == ServerSpec::Kind::kCommand && !scenario.server_args.empty() &&
      options.server.command.find("{args}") == std::string::npos) {
    return "it needs the server options '" + JoinArgs(scenario.server_args) +
           "'; put {args} in --server-cmd where the server takes them";
  }
  return "";
}

Outcome RunScenario(const Scenario& scenario, const RunOptions& options) {
  const Clock::time_point start = Clock::now();
  Outcome outcome;
  const auto finish = [&](Outcome::Result result, std::string detail) {
    outcome.result = result;
    outcome.detail = std::move(detail);
    outcome.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return outcome;
  };
  if (std::string why = WhyNotRunnable(scenario, options); !why.empty()) {
    return finish(Outcome::Result::kSkipped, "skipped: " + why);
  }
  const std::filesystem::path dir = MakeScenarioDir(scenario.name);
  if (dir.empty()) return finish(Outcome::Result::kFailed, "cannot create a temporary directory");

  std::string failure;
  std::string log;
  Transcript transcript(options.verbose);
  {
    std::vector<std::string> args = scenario.server_args;
    if (!options.tls_dir.empty()) {
      args.insert(args.end(), {"--tls-cert", options.tls_dir + "/server.pem", "--tls-key",
                               options.tls_dir + "/server.key"});
    }
    ServerProcess server(options.server, dir, args, scenario.uses_grpc);
    if (const Status started = server.Start(); !started.ok()) {
      failure = "cannot start the server: " + started.message() + "\n";
    } else {
      failure = ScenarioRun(scenario, options, server, transcript, outcome.notes).Run();
      // Stopped here rather than by the destructor, so that a server that hangs on SIGTERM is
      // noted.
      if (const Status stopped = server.Stop(); !stopped.ok()) {
        outcome.notes.push_back("after the scenario: " + stopped.message());
      }
    }
    if (!failure.empty() && options.server.kind != ServerSpec::Kind::kExternal) {
      log = server.LogTail(kLogLines);
    }
  }
  if (options.keep) {
    std::cout << "  kept " << dir.string() << "\n";
  } else {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  if (failure.empty()) return finish(Outcome::Result::kPassed, "");
  std::string detail = failure;
  detail += "  transcript (what the clients sent and received, in order):\n" +
            transcript.Tail(kTranscriptLines);
  if (!log.empty()) detail += "  the server's log (last lines):\n" + log;
  return finish(Outcome::Result::kFailed, detail);
}

}  // namespace messenger::conformance

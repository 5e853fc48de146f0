#include "scenario.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frame_template.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"

namespace messenger::conformance {
namespace {

// Words with a meaning of their own where a client name could stand.
const std::set<std::string, std::less<>> kKeywords = {
    "accounts", "close", "closed", "connect", "crash", "hello",
    "login",    "over",  "raw",    "restart", "swarm", "tls-refused"};
// The end reasons only gRPC has (messenger.v1.EndReason), as the scenario language names them.
const std::set<std::string, std::less<>> kGrpcOnlyEndReasons = {"LOGGED_OUT", "SLOW_CONSUMER"};
// Bounds of the swarm step: enough for a real crowd, small enough to finish in seconds.
constexpr int kMaxSwarmClients = 500;
constexpr int kMaxSwarmMessages = 1000;
// Most repetitions of one byte in raw (HH*N): a frame at the largest limit a server may set.
constexpr int kMaxRawRepeat = 16 * 1024 * 1024;
// The connection the `accounts` macro uses; a keyword, so no scenario client can have its name.
constexpr char kAccountsClient[] = "accounts";

std::string_view Trim(std::string_view s) {
  const std::size_t begin = s.find_first_not_of(" \t\r");
  if (begin == std::string_view::npos) return {};
  const std::size_t end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> words;
  std::istringstream in{std::string(s)};
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

bool IsClientName(std::string_view s) {
  if (s.empty() || kKeywords.count(s) != 0) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

bool ParseCount(const std::string& text, int min, int max, int& out) {
  if (text.empty() || text.size() > 8 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  out = std::stoi(text);
  return out >= min && out <= max;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool HasAny(const Value& value) {
  if (value.kind == Value::Kind::kAny) return true;
  return std::any_of(value.items.begin(), value.items.end(), HasAny);
}

bool IsRequestName(std::string_view type) {
  for (int value = 0x01; value < 0x40; ++value) {
    const auto request = static_cast<MessageType>(value);
    if (IsRequest(request) && MessageTypeName(request) == type) return true;
  }
  return false;
}

class ScenarioParser {
 public:
  ScenarioParser(const std::filesystem::path& path, Transport transport)
      : default_transport_(transport) {
    scenario_.path = path;
    scenario_.name = path.stem().string();
  }

  Result<Scenario> Parse(std::string_view text) {
    std::size_t start = 0;
    int number = 0;
    while (start <= text.size()) {
      const std::size_t end = std::min(text.find('\n', start), text.size());
      line_number_ = ++number;
      source_ = std::string(Trim(text.substr(start, end - start)));
      if (Status s = Line(); !s.ok()) return s;
      start = end + 1;
    }
    if (scenario_.steps.empty()) return Error("the scenario has no steps");
    if (scenario_.title.empty()) scenario_.title = scenario_.name;
    scenario_.default_transport = default_transport_;
    return std::move(scenario_);
  }

 private:
  Status Line() {
    if (source_.empty()) return Status::Ok();
    if (source_[0] == '#') {
      if (scenario_.title.empty()) scenario_.title = std::string(Trim(source_.substr(1)));
      return Status::Ok();
    }
    if (source_.rfind("tags:", 0) == 0) {
      if (!scenario_.steps.empty()) return Error("tags: must come before the first step");
      std::string list = source_.substr(5);
      std::replace(list.begin(), list.end(), ',', ' ');
      for (std::string& tag : Words(list)) {
        // A scenario bound to one transport is read for that one, whatever was asked for.
        if (tag == kWireOnlyTag) default_transport_ = Transport::kWire;
        if (tag == kGrpcOnlyTag) default_transport_ = Transport::kGrpc;
        scenario_.tags.push_back(std::move(tag));
      }
      return Status::Ok();
    }
    if (source_.rfind("server-args:", 0) == 0) {
      if (!scenario_.steps.empty()) return Error("server-args: must come before the first step");
      for (std::string& arg : Words(source_.substr(12))) {
        scenario_.server_args.push_back(std::move(arg));
      }
      return Status::Ok();
    }
    line_ = source_;
    // wire: STEP, grpc: STEP -- the step applies only where its client uses that transport.
    for (const Transport transport : {Transport::kWire, Transport::kGrpc}) {
      const std::string prefix = std::string(TransportName(transport)) + ":";
      if (source_.rfind(prefix, 0) != 0) continue;
      line_ = std::string(Trim(source_.substr(prefix.size())));
      if (line_.empty()) return Error("expected a step after '" + prefix + "'");
      if (LineTransport(Words(line_)) != transport) return Status::Ok();
    }
    const std::vector<std::string> words = Words(line_);
    const std::string& first = words[0];
    if (first == "connect" || first == "hello") {
      Transport transport = default_transport_;
      if (words.size() == 4 && words[2] == "over") {
        if (Status s = TransportWord(words[3], transport); !s.ok()) return s;
      } else if (words.size() != 2) {
        return Error("usage: " + first + " CLIENT [over wire|grpc]");
      }
      return first == "connect" ? Connect(words[1], transport) : Hello(words[1], transport);
    }
    if (first == "close") {
      if (words.size() != 2) return Error("close takes one client name");
      return Close(words[1]);
    }
    if (first == "restart" || first == "crash") {
      if (words.size() != 1) return Error(first + " takes no arguments");
      Step step;
      step.kind = first == "restart" ? Step::Kind::kRestart : Step::Kind::kCrash;
      scenario_.restarts_server = true;
      return Emit(std::move(step));
    }
    if (first == "login") return Login(words);
    if (first == "accounts") return Accounts(words);
    if (first == "swarm") return Swarm(words);
    if (first == "tls-refused") return TlsRefused(words);
    if (words.size() < 2) return Error("expected a step such as 'alice > PING #1 nonce=7'");
    return ClientLine(first, words[1]);
  }

  // The transport a step (split into `words`) would use: its client's, else the default.
  Transport LineTransport(const std::vector<std::string>& words) const {
    if (words.empty()) return default_transport_;
    const std::string& first = words[0];
    if (first == "connect" || first == "hello" || first == "login") {
      for (std::size_t i = 2; i + 1 < words.size(); ++i) {
        if (words[i] == "over") {
          if (const auto transport = ParseTransport(words[i + 1])) return *transport;
        }
      }
      return default_transport_;
    }
    const std::string& client = first == "close" && words.size() > 1 ? words[1] : first;
    const auto it = transport_.find(client);
    return it == transport_.end() ? default_transport_ : it->second;
  }

  Status TransportWord(const std::string& word, Transport& out) {
    const auto transport = ParseTransport(word);
    if (!transport)
      return Error("'" + word + "' is not a transport: write 'over wire' or 'over grpc'");
    out = *transport;
    return Status::Ok();
  }

  Transport ClientTransport(const std::string& client) const {
    const auto it = transport_.find(client);
    return it == transport_.end() ? default_transport_ : it->second;
  }

  // NAME > ..., NAME < ..., NAME <~ ..., NAME !< ...
  Status ClientLine(const std::string& client, const std::string& op) {
    if (!IsClientName(client)) return Error("'" + client + "' is not a step or a client name");
    const std::size_t rest_at = line_.find(op, client.size()) + op.size();
    const std::string rest(Trim(line_.substr(rest_at)));
    if (op == ">") {
      if (rest == "raw" || rest.rfind("raw ", 0) == 0) return SendRaw(client, rest.substr(3));
      return Send(client, rest);
    }
    if (op == "<" && rest == "closed") {
      if (Status s = RequireOpen(client); !s.ok()) return s;
      Step step;
      step.kind = Step::Kind::kExpectClosed;
      step.client = client;
      open_.erase(client);
      return Emit(std::move(step));
    }
    if (op == "<" || op == "<~") {
      return Expect(client, rest, op == "<" ? Step::Kind::kExpect : Step::Kind::kExpectAnyOrder);
    }
    if (op == "!<") return Silence(client, rest);
    return Error("expected '>', '<', '<~' or '!<' after the client name, got '" + op + "'");
  }

  Status Connect(const std::string& client, Transport transport) {
    if (!IsClientName(client) && client != kAccountsClient) {
      return Error("'" + client + "' cannot name a client: use letters, digits, '.', '_', '-' " +
                   "and not a step keyword");
    }
    if (open_.count(client) != 0) {
      return Error(client + " is already connected (close it first, or expect it closed)");
    }
    open_.insert(client);
    transport_[client] = transport;
    next_id_[client] = 1;
    if (transport == Transport::kGrpc) scenario_.uses_grpc = true;
    Step step;
    step.kind = Step::Kind::kConnect;
    step.client = client;
    return Emit(std::move(step));
  }

  // tls-refused CLIENT untrusted-ca|wrong-name|plaintext: a client of the default transport
  // that the server's TLS must turn away; it is never open for later steps.
  Status TlsRefused(const std::vector<std::string>& words) {
    const std::string usage = "usage: tls-refused CLIENT untrusted-ca|wrong-name|plaintext";
    if (words.size() != 3) return Error(usage);
    if (!IsClientName(words[1])) return Error("'" + words[1] + "' cannot name a client");
    if (open_.count(words[1]) != 0) return Error(words[1] + " is already connected");
    Step step;
    step.kind = Step::Kind::kTlsRefused;
    step.client = words[1];
    step.transport = default_transport_;
    if (words[2] == "untrusted-ca") {
      step.refusal = TlsRefusal::kUntrustedCa;
    } else if (words[2] == "wrong-name") {
      step.refusal = TlsRefusal::kWrongName;
    } else if (words[2] == "plaintext") {
      step.refusal = TlsRefusal::kPlaintext;
    } else {
      return Error(usage);
    }
    if (default_transport_ == Transport::kGrpc) scenario_.uses_grpc = true;
    return Emit(std::move(step));
  }

  Status Close(const std::string& client) {
    if (Status s = RequireOpen(client); !s.ok()) return s;
    open_.erase(client);
    Step step;
    step.kind = Step::Kind::kClose;
    step.client = client;
    return Emit(std::move(step));
  }

  Status Send(const std::string& client, const std::string& text) {
    if (Status s = RequireOpen(client); !s.ok()) return s;
    for (const std::string& name : Variables(text)) {
      if (captured_.count(name) == 0) {
        return Error("$" + name + " is used before an expectation captures it");
      }
    }
    const Result<FrameTemplate> parsed = ParseTemplate(text, /*holes=*/true);
    if (!parsed.ok()) return Error(parsed.status().message());
    if (HasAny(parsed->request_id) ||
        std::any_of(parsed->values.begin(), parsed->values.end(), HasAny)) {
      return Error("'*' matches values in expectations; a request must say what it sends");
    }
    if (ClientTransport(client) == Transport::kGrpc) {
      if (!IsRequestName(parsed->type)) {
        return Error(parsed->type + " is not a request, and gRPC has no call for it: mark the " +
                     "step 'wire:' or tag the scenario wire-only");
      }
      if (parsed->type == "HELLO" && !parsed->values.empty() &&
          parsed->values[0].text != std::to_string(kProtocolVersion)) {
        return Error("a HELLO of another protocol version has no gRPC counterpart: mark the " +
                     std::string("step 'wire:' or tag the scenario wire-only"));
      }
    }
    if (Variables(text).empty()) {
      const Result<Frame> frame = ParseDescription(text);
      if (!frame.ok()) return Error(frame.status().message());
      Bytes bytes;
      if (const Status s = EncodeFrame(*frame, bytes); !s.ok()) {
        return Error("this frame cannot be encoded (" + s.ToString() +
                     "); send such bytes with 'raw'");
      }
    } else if (Status s = CheckTemplate(text, /*holes=*/true); !s.ok()) {
      return Error(s.message());
    }
    if (parsed->request_id.kind == Value::Kind::kAtom && parsed->request_id.text.size() <= 10) {
      const std::uint64_t id = std::stoull(parsed->request_id.text);
      next_id_[client] = std::max<std::uint64_t>(next_id_[client], id + 1);
    }
    Step step;
    step.kind = Step::Kind::kSend;
    step.client = client;
    step.text = text;
    return Emit(std::move(step));
  }

  Status SendRaw(const std::string& client, const std::string& hex) {
    if (Status s = RequireOpen(client); !s.ok()) return s;
    if (ClientTransport(client) == Transport::kGrpc) {
      return Error("raw bytes have no gRPC counterpart: mark the step 'wire:' or tag the " +
                   std::string("scenario wire-only"));
    }
    Step step;
    step.kind = Step::Kind::kSendRaw;
    step.client = client;
    for (const std::string& word : Words(hex)) {
      // HH*N: the byte HH, N times.
      const std::size_t star = word.find('*');
      const std::string digits = word.substr(0, star);
      int repeat = 1;
      if (star != std::string::npos &&
          (digits.size() != 2 || !ParseCount(word.substr(star + 1), 1, kMaxRawRepeat, repeat))) {
        return Error("'" + word + "': a repeated byte is written HH*N, N from 1 to " +
                     std::to_string(kMaxRawRepeat));
      }
      if (digits.size() % 2 != 0) return Error("'" + word + "' is not whole bytes of hex");
      for (std::size_t i = 0; i < digits.size(); i += 2) {
        const int high = HexDigit(digits[i]);
        const int low = HexDigit(digits[i + 1]);
        if (high < 0 || low < 0) return Error("'" + word + "' is not hex");
        step.bytes.insert(step.bytes.end(), static_cast<std::size_t>(repeat),
                          static_cast<std::uint8_t>(high * 16 + low));
      }
    }
    if (step.bytes.empty()) return Error("raw needs at least one byte, e.g. 'raw 00 00 00 05'");
    return Emit(std::move(step));
  }

  Status Expect(const std::string& client, const std::string& text, Step::Kind kind) {
    if (Status s = RequireOpen(client); !s.ok()) return s;
    if (Status s = CheckTemplate(text, /*holes=*/true); !s.ok()) return Error(s.message());
    if (ClientTransport(client) == Transport::kWire) {
      const Result<FrameTemplate> parsed = ParseTemplate(text, /*holes=*/true);
      if (parsed.ok() && parsed->type == "SESSION_ENDED" && !parsed->values.empty() &&
          kGrpcOnlyEndReasons.count(parsed->values[0].text) != 0) {
        return Error("reason=" + parsed->values[0].text + " is an end reason only gRPC has; " +
                     client + " is a wire client");
      }
    }
    for (const std::string& name : Variables(text)) captured_.insert(name);
    Step step;
    step.kind = kind;
    step.client = client;
    step.text = text;
    return Emit(std::move(step));
  }

  Status Silence(const std::string& client, const std::string& duration) {
    if (Status s = RequireOpen(client); !s.ok()) return s;
    std::size_t digits = duration.find_first_not_of("0123456789");
    const std::string unit = digits == std::string::npos ? "" : duration.substr(digits);
    int amount = 0;
    if (digits == 0 || !ParseCount(duration.substr(0, digits), 1, 600000, amount) ||
        (unit != "ms" && unit != "s")) {
      return Error("expected a duration such as 300ms or 2s after '!<'");
    }
    Step step;
    step.kind = Step::Kind::kExpectSilence;
    step.client = client;
    step.duration = std::chrono::milliseconds(unit == "s" ? amount * 1000 : amount);
    return Emit(std::move(step));
  }

  // hello NAME: connect NAME, then the handshake, with the limits every server announces
  // (over gRPC there is no pre-login limit: GetServerInfo does not carry one).
  Status Hello(const std::string& client, Transport transport) {
    if (Status s = Connect(client, transport); !s.ok()) return s;
    const std::string id = std::to_string(next_id_[client]);
    if (Status s = Send(client, "HELLO #" + id + " protocol_version=1"); !s.ok()) return s;
    const std::string prelogin = transport == Transport::kGrpc ? "*" : "1024";
    return Expect(client,
                  "HELLO_OK #" + id + " protocol_version=1 max_frame_size=* " +
                      "max_prelogin_frame_size=" + prelogin +
                      " max_text_bytes=4096 max_queued_per_user=* server_name=*",
                  Step::Kind::kExpect);
  }

  // login CLIENT [as ACCOUNT] [unread=N] [over wire|grpc]: hello CLIENT, then LOGIN with the
  // macro password.
  Status Login(const std::vector<std::string>& words) {
    const std::string usage = "usage: login CLIENT [as ACCOUNT] [unread=N] [over wire|grpc]";
    if (words.size() < 2) return Error(usage);
    const std::string& client = words[1];
    std::string account = client;
    std::string unread = "0";
    Transport transport = default_transport_;
    for (std::size_t i = 2; i < words.size(); ++i) {
      if (words[i] == "as" && i + 1 < words.size()) {
        account = words[++i];
      } else if (words[i] == "over" && i + 1 < words.size()) {
        if (Status s = TransportWord(words[++i], transport); !s.ok()) return s;
      } else if (words[i].rfind("unread=", 0) == 0) {
        unread = words[i].substr(7);
      } else {
        return Error(usage);
      }
    }
    if (!IsClientName(account)) return Error("'" + account + "' cannot be an account name here");
    if (Status s = Hello(client, transport); !s.ok()) return s;
    const std::string id = std::to_string(next_id_[client]);
    if (Status s = Send(client, "LOGIN #" + id + " username=\"" + account + "\" password=\"" +
                                    kMacroPassword + "\"");
        !s.ok()) {
      return s;
    }
    return Expect(client, "LOGIN_OK #" + id + " unread_count=" + unread, Step::Kind::kExpect);
  }

  // accounts NAME...: creates each account on a connection of its own, then closes it.
  Status Accounts(const std::vector<std::string>& words) {
    if (words.size() < 2) return Error("usage: accounts NAME...");
    if (Status s = Hello(kAccountsClient, default_transport_); !s.ok()) return s;
    for (std::size_t i = 1; i < words.size(); ++i) {
      if (!IsClientName(words[i]))
        return Error("'" + words[i] + "' cannot be an account name here");
      const std::string id = std::to_string(next_id_[kAccountsClient]);
      if (Status s = Send(kAccountsClient, "CREATE_ACCOUNT #" + id + " username=\"" + words[i] +
                                               "\" password=\"" + kMacroPassword + "\"");
          !s.ok()) {
        return s;
      }
      if (Status s = Expect(kAccountsClient, "OK #" + id, Step::Kind::kExpect); !s.ok()) return s;
    }
    return Close(kAccountsClient);
  }

  Status Swarm(const std::vector<std::string>& words) {
    Step step;
    step.kind = Step::Kind::kSwarm;
    step.acceptance_order =
        words.size() == 8 && words[5] == "in" && words[6] == "acceptance" && words[7] == "order";
    if ((words.size() != 5 && !step.acceptance_order) || words[2] != "clients" ||
        words[4] != "messages" || !ParseCount(words[1], 2, kMaxSwarmClients, step.clients) ||
        !ParseCount(words[3], 1, kMaxSwarmMessages, step.messages)) {
      return Error("usage: swarm N clients M messages [in acceptance order] (2 <= N <= " +
                   std::to_string(kMaxSwarmClients) +
                   ", 1 <= M <= " + std::to_string(kMaxSwarmMessages) + ")");
    }
    step.transport = default_transport_;
    if (step.transport == Transport::kGrpc) scenario_.uses_grpc = true;
    return Emit(std::move(step));
  }

  Status RequireOpen(const std::string& client) {
    if (!IsClientName(client) && client != kAccountsClient) {
      return Error("'" + client + "' cannot name a client");
    }
    if (open_.count(client) == 0) {
      return Error(client + " is not connected here (write 'connect " + client + "' first)");
    }
    return Status::Ok();
  }

  // Adds `step`, remembering the line it came from; a macro's steps also show what they are.
  Status Emit(Step step) {
    step.line = line_number_;
    step.source = source_;
    if (!step.client.empty()) step.transport = ClientTransport(step.client);
    const std::string first = Words(line_)[0];
    if (first == "hello" || first == "login" || first == "accounts") {
      step.expansion = Describe(step);
    }
    scenario_.steps.push_back(std::move(step));
    return Status::Ok();
  }

  static std::string Describe(const Step& step) {
    switch (step.kind) {
      case Step::Kind::kConnect:
        return "connect " + step.client;
      case Step::Kind::kClose:
        return "close " + step.client;
      case Step::Kind::kSend:
        return step.client + " > " + step.text;
      case Step::Kind::kExpect:
        return step.client + " < " + step.text;
      default:
        return step.client;
    }
  }

  Status Error(const std::string& message) const {
    return Status(ErrorCode::kInvalidArgument,
                  scenario_.path.string() + ":" + std::to_string(line_number_) + ": " + message);
  }

  Transport default_transport_;
  Scenario scenario_;
  int line_number_ = 0;
  std::string source_;                          // The line as written (trimmed).
  std::string line_;                            // The step in it: without a wire: or grpc: mark.
  std::map<std::string, Transport> transport_;  // Of each client connected so far.
  std::set<std::string> open_;
  std::set<std::string> captured_;
  std::map<std::string, std::uint64_t> next_id_;
};

}  // namespace

std::string_view TransportName(Transport transport) {
  return transport == Transport::kGrpc ? "grpc" : "wire";
}

std::optional<Transport> ParseTransport(std::string_view name) {
  if (name == "wire") return Transport::kWire;
  if (name == "grpc") return Transport::kGrpc;
  return std::nullopt;
}

Result<Scenario> ParseScenario(std::string_view text, const std::filesystem::path& path,
                               Transport transport) {
  return ScenarioParser(path, transport).Parse(text);
}

Result<Scenario> LoadScenario(const std::filesystem::path& path, Transport transport) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(ErrorCode::kInvalidArgument, path.string() + ": cannot read the scenario");
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseScenario(text.str(), path, transport);
}

std::string ShowStep(const Step& step) {
  return step.expansion.empty() ? step.source : step.expansion;
}

}  // namespace messenger::conformance

#include "commands.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "messenger/client/client.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger::terminal {
namespace {

// What a person types, one entry per command: the word, its arguments and what it does.
struct CommandInfo {
  CommandName name;
  std::string_view word;
  std::string_view usage;
  std::string_view summary;
  std::string_view details;
};

constexpr CommandInfo kCommands[] = {
    {CommandName::kHelp, "help", "help [command]", "show the commands, or one command in detail",
     "Without a command, lists every command. With one, explains it."},
    {CommandName::kRegister, "register", "register [name]",
     "create an account (and log in to it if nobody is logged in)",
     "Creates the account `name` (default: the --user name). The password is asked twice on the\n"
     "terminal, or taken from MESSENGER_PASSWORD or --password-file. Names are 1 to 32 letters,\n"
     "digits, '.', '_' or '-', starting with a letter or digit, unique regardless of letter case.\n"
     "Passwords are 8 to 256 bytes. When nobody is logged in, logs in to the new account."},
    {CommandName::kLogin, "login", "login [name]",
     "log in (default: the --user name) and say how many messages wait",
     "Logs in as `name` (default: the --user name), reading the password without echo unless\n"
     "MESSENGER_PASSWORD or --password-file gives it. Messages sent to you while you are logged\n"
     "in appear at once; those that arrived before are read with `inbox`. Logging in elsewhere\n"
     "ends this session."},
    {CommandName::kList, "list", "list [pattern]", "list accounts, optionally matching a pattern",
     "Lists the accounts whose names match `pattern` (default: all), ignoring letter case.\n"
     "`*` matches any run of characters, `?` one character, `[abc]` one of a set, `[!abc]` one\n"
     "not in it, `[a-f]` a range. Example: list a*   The names listed are offered by Tab\n"
     "completion after `send`."},
    {CommandName::kSend, "send", "send <user> <text>", "send a message",
     "Sends the rest of the line to `user`. If they are logged in it appears on their screen at\n"
     "once; otherwise it waits until they read their inbox."},
    {CommandName::kInbox, "inbox", "inbox", "show the messages that waited for you, oldest first",
     "Shows the messages that arrived while you were away, oldest first, and then tells the\n"
     "server they have been read, which removes them from it."},
    {CommandName::kDelete, "delete", "delete [--yes]", "delete your account (asks first)",
     "Deletes the account you are logged in to, with every message still waiting for it. The\n"
     "server first says how many unread messages would be lost; type your username or `yes` to\n"
     "go ahead. --yes skips the question. The name can never be registered again."},
    {CommandName::kLogout, "logout", "logout", "log out and disconnect",
     "Logs out. Messages sent to you from now on wait for your next login."},
    {CommandName::kQuit, "quit", "quit", "log out and leave (also: exit, Ctrl-D)",
     "Logs out and leaves the program. Ctrl-D on an empty line, or Ctrl-C on an empty line, does\n"
     "the same."},
};

const CommandInfo* FindCommand(std::string_view word) {
  std::string lower(word);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "exit") lower = "quit";
  if (lower == "?") lower = "help";
  for (const CommandInfo& info : kCommands) {
    if (info.word == lower) return &info;
  }
  return nullptr;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view text) {
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
  return text;
}

// Splits off the first word of `text` (which has no leading spaces); `rest` keeps what follows
// it, leading spaces removed.
std::string_view FirstWord(std::string_view text, std::string_view& rest) {
  std::size_t end = 0;
  while (end < text.size() && !IsSpace(text[end])) ++end;
  rest = text.substr(end);
  while (!rest.empty() && IsSpace(rest.front())) rest.remove_prefix(1);
  return text.substr(0, end);
}

std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  text = Trim(text);
  while (!text.empty()) {
    std::string_view rest;
    words.push_back(FirstWord(text, rest));
    text = rest;
  }
  return words;
}

ParseResult Error(std::string message) { return ParseResult{std::nullopt, std::move(message)}; }

ParseResult UsageError(const CommandInfo& info) {
  return Error("Usage: " + std::string(info.usage) + "  (type 'help " + std::string(info.word) +
               "' for more)");
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool StartsWithIgnoringCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && Lower(text.substr(0, prefix.size())) == Lower(prefix);
}

// ---- UTF-8 ----

// Decodes one well-formed UTF-8 sequence at the start of `bytes`; returns its length, or 0 when
// the bytes there are malformed (overlong, surrogate, above U+10FFFF, truncated).
std::size_t DecodeUtf8(std::string_view bytes, char32_t& code_point) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  char32_t value = 0;
  char32_t minimum = 0;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    value = lead & 0x1F;
    minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    value = lead & 0x0F;
    minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    value = lead & 0x07;
    minimum = 0x10000;
  } else {
    return 0;
  }
  if (bytes.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    value = (value << 6) | (byte(i) & 0x3F);
  }
  if (value < minimum || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  code_point = value;
  return length;
}

// Characters a terminal shows as nothing but which reorder or hide the text around them, so a
// message could look like something it is not.
bool IsInvisibleControl(char32_t c) {
  return c == 0x061C || c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) ||
         (c >= 0x2066 && c <= 0x2069) || c == 0x2028 || c == 0x2029 || c == 0xFEFF;
}

std::string CodePointName(char32_t c) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "<U+%04X>", static_cast<unsigned>(c));
  return buffer;
}

}  // namespace

int ExitStatusFor(const Status& status) {
  switch (status.code()) {
    case ErrorCode::kOk:
      return kExitOk;
    case ErrorCode::kAuthFailed:
    case ErrorCode::kLoginThrottled:
      return kExitAuth;
    case ErrorCode::kConnectionFailed:
    case ErrorCode::kDisconnected:
    case ErrorCode::kTimeout:
    case ErrorCode::kTlsFailed:
    case ErrorCode::kServerBusy:
    case ErrorCode::kUnsupportedVersion:
    case ErrorCode::kFrameTooLarge:
    case ErrorCode::kMalformedFrame:
    case ErrorCode::kHandshakeRequired:
      return kExitConnection;
    default:
      return kExitFailed;
  }
}

// ---- Options ----

OptionsResult ParseOptions(std::span<const std::string> args) {
  OptionsResult result;
  Options& options = result.options;
  bool yes = false;
  bool options_ended = false;
  bool port_given = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_ended || arg.size() < 2 || arg[0] != '-' || (arg[1] != '-' && arg != "-h")) {
      options.command.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_ended = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      options.help = true;
      continue;
    }
    if (arg == "--yes") {
      yes = true;
      continue;
    }
    if (arg == "--tls") {
      options.tls.enabled = true;
      continue;
    }
    if (arg == "--tls-insecure") {
      options.tls.enabled = true;
      options.tls.insecure = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (const std::size_t equals = arg.find('='); equals != std::string::npos) {
      name = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    }
    if (name == "--password") {
      result.error =
          "--password is not accepted: other users of this machine could read it. Set "
          "MESSENGER_PASSWORD or use --password-file FILE, or type it when asked.";
      return result;
    }
    if (name == "--tls" || name == "--tls-insecure") {
      result.error = name + " takes no value";
      return result;
    }
    if (name != "--host" && name != "--port" && name != "--transport" && name != "--user" &&
        name != "--password-file" && name != "--ca-file" && name != "--tls-server-name") {
      result.error = "unknown option '" + EscapeForTerminal(arg) + "'";
      return result;
    }
    if (!value) {
      if (i + 1 >= args.size()) {
        result.error = "option " + name + " needs a value";
        return result;
      }
      value = args[++i];
    }
    if (name == "--host") {
      if (value->empty()) {
        result.error = "--host needs a host name or address";
        return result;
      }
      options.host = *value;
    } else if (name == "--port") {
      unsigned port = 0;
      const char* begin = value->data();
      const char* end = begin + value->size();
      const auto [stop, error] = std::from_chars(begin, end, port);
      if (error != std::errc() || stop != end || port < 1 || port > 65535) {
        result.error =
            "--port needs a number from 1 to 65535, not '" + EscapeForTerminal(*value) + "'";
        return result;
      }
      options.port = static_cast<std::uint16_t>(port);
      port_given = true;
    } else if (name == "--transport") {
      if (*value == "wire") {
        options.transport = Transport::kWire;
      } else if (*value == "grpc") {
        options.transport = Transport::kGrpc;
      } else {
        result.error =
            "--transport needs 'wire' or 'grpc', not '" + EscapeForTerminal(*value) + "'";
        return result;
      }
    } else if (name == "--user") {
      options.user = *value;
    } else if (name == "--ca-file") {
      if (value->empty()) {
        result.error = "--ca-file needs a file name";
        return result;
      }
      options.tls.enabled = true;
      options.tls.ca_file = *value;
    } else if (name == "--tls-server-name") {
      if (value->empty()) {
        result.error = "--tls-server-name needs a host name or address";
        return result;
      }
      options.tls.enabled = true;
      options.tls.server_name = *value;
    } else {
      options.password_file = *value;
    }
  }
  if (!port_given) {
    options.port = options.transport == Transport::kGrpc ? kDefaultGrpcPort : kDefaultWirePort;
  }
  if (options.tls.insecure && !options.tls.ca_file.empty()) {
    result.error =
        "--tls-insecure and --ca-file contradict each other: --ca-file verifies the server, "
        "--tls-insecure verifies nothing";
    return result;
  }
  if (yes) {
    if (options.command.empty() || Lower(options.command.front()) != "delete") {
      result.error = "--yes goes with the one-shot command 'delete'";
      return result;
    }
    options.command.push_back("--yes");
  }
  return result;
}

std::string UsageText() {
  std::string text =
      "Usage: poco_messenger client [options]                 interactive, or commands on stdin\n"
      "       poco_messenger client [options] <command> [args]  one command, then exit\n"
      "\n"
      "The terminal client of poco_messenger. On a terminal it is interactive: type commands at\n"
      "the prompt, with line editing, history (Up/Down) and Tab completion of commands and of\n"
      "the names from your last `list`. Messages sent to you appear at once, above the line you\n"
      "are typing, which stays as it was. When stdin is not a terminal, commands are read from\n"
      "it one per line and the output is plain text, for scripts.\n"
      "\n"
      "Options:\n"
      "  --host H              server address (default 127.0.0.1)\n"
      "  --transport T         how to talk to the server: wire (the binary protocol, the\n"
      "                        default) or grpc; both give the same experience\n"
      "  --port P              server port (default 5050 for wire, 5051 for grpc)\n"
      "  --user NAME           your account: logged in at start on a terminal, and used by\n"
      "                        commands that need a login and by `register`/`login` without a "
      "name\n"
      "  --password-file FILE  read the password from the first line of FILE\n"
      "  --tls                 encrypt the connection with TLS, and verify the server's\n"
      "                        certificate against the system's trusted CAs and its name\n"
      "                        against --host\n"
      "  --ca-file FILE        trust the CA certificate(s) in FILE (PEM) instead of the\n"
      "                        system's, e.g. for a server with a private CA; implies --tls\n"
      "  --tls-server-name NAME\n"
      "                        the name the server's certificate must carry, when --host is\n"
      "                        an address or another name; implies --tls\n"
      "  --tls-insecure        TLS that does NOT verify the server: anyone on the network path\n"
      "                        can read and alter the session. For trying out a self-signed\n"
      "                        server only; implies --tls\n"
      "  --yes                 with `delete`: do not ask for confirmation\n"
      "  -h, --help            show this help\n"
      "  --                    end of options (for a message that starts with '-')\n"
      "\n"
      "Passwords are never taken from the command line. They come from --password-file, else\n"
      "from the environment variable MESSENGER_PASSWORD, else they are asked for on the terminal\n"
      "without echo.\n"
      "\n"
      "Commands (interactive, on stdin, or one-shot):\n";
  for (const CommandInfo& info : kCommands) {
    std::string line = "  " + std::string(info.usage);
    line.resize(std::max<std::size_t>(line.size() + 2, 24), ' ');
    text += line + std::string(info.summary) + "\n";
  }
  text +=
      "\n"
      "A command that needs a login logs in as --user first when nobody is logged in. Examples:\n"
      "  poco_messenger client --user alice                 interactive, logged in as alice\n"
      "  MESSENGER_PASSWORD=... poco_messenger client --user alice register\n"
      "  poco_messenger client --user alice send bob \"see you at 5\"\n"
      "  poco_messenger client --user alice inbox\n"
      "  poco_messenger client --user alice list 'b*'\n"
      "  poco_messenger client --user alice delete --yes\n"
      "  poco_messenger client --host chat.example.org --tls --user alice\n"
      "  poco_messenger client --host 10.0.0.5 --ca-file ca.pem --tls-server-name chat.lan\n"
      "  printf 'send bob hi\\ninbox\\n' | poco_messenger client --user alice --password-file pw\n"
      "\n"
      "On a terminal: Ctrl-C clears the line being typed, or leaves on an empty line; Ctrl-D on\n"
      "an empty line leaves. Text from other users is shown with control characters made\n"
      "visible (ESC as ^[), so a message can never move the cursor or change colours.\n"
      "\n"
      "Exit status (scripts and one-shot commands: that of the first command that failed):\n"
      "  0  every command succeeded\n"
      "  1  the server refused a request (e.g. no such user), or a deletion was not confirmed\n"
      "  2  usage: bad option or command, or no password available\n"
      "  3  wrong username or password, or too many failed logins\n"
      "  4  the server cannot be reached or verified (TLS), is busy, or the connection was\n"
      "     lost\n";
  return text;
}

// ---- Commands ----

ParseResult ParseCommandLine(std::string_view line) {
  line = Trim(line);
  if (line.empty()) return {};
  std::string_view rest;
  const std::string_view word = FirstWord(line, rest);
  const CommandInfo* info = FindCommand(word);
  if (info == nullptr) {
    return Error("Unknown command '" + EscapeForTerminal(word) +
                 "'. Type 'help' to see the commands.");
  }
  Command command;
  command.name = info->name;
  const std::vector<std::string_view> args = Words(rest);
  switch (info->name) {
    case CommandName::kHelp:
      if (args.size() > 1) return UsageError(*info);
      if (!args.empty()) command.text = std::string(args[0]);
      break;
    case CommandName::kRegister:
    case CommandName::kLogin:
      if (args.size() > 1) return UsageError(*info);
      if (!args.empty()) command.user = std::string(args[0]);
      break;
    case CommandName::kList:
      if (args.size() > 1) return UsageError(*info);
      if (!args.empty()) command.text = std::string(args[0]);
      break;
    case CommandName::kSend: {
      std::string_view text;
      const std::string_view user = FirstWord(rest, text);
      if (user.empty() || text.empty()) return UsageError(*info);
      command.user = std::string(user);
      command.text = std::string(text);
      break;
    }
    case CommandName::kDelete:
      if (args.size() > 1 || (args.size() == 1 && args[0] != "--yes")) return UsageError(*info);
      command.yes = args.size() == 1;
      break;
    case CommandName::kInbox:
    case CommandName::kLogout:
    case CommandName::kQuit:
      if (!args.empty()) return UsageError(*info);
      break;
  }
  return ParseResult{std::move(command), ""};
}

ParseResult ParseCommandArgs(std::span<const std::string> args) {
  if (args.empty()) return {};
  const CommandInfo* info = FindCommand(args[0]);
  if (info != nullptr && info->name == CommandName::kSend) {
    if (args.size() < 3 || args[1].empty()) return UsageError(*info);
    Command command;
    command.name = CommandName::kSend;
    command.user = args[1];
    for (std::size_t i = 2; i < args.size(); ++i) {
      if (i > 2) command.text += ' ';
      command.text += args[i];
    }
    if (command.text.empty()) return UsageError(*info);
    return ParseResult{std::move(command), ""};
  }
  std::string line;
  for (const std::string& arg : args) {
    if (arg.empty() || arg.find_first_of(" \t\r\n") != std::string::npos) {
      // A pattern or name never holds spaces; say so rather than split it silently.
      if (info != nullptr) return UsageError(*info);
    }
    line += arg;
    line += ' ';
  }
  return ParseCommandLine(line);
}

std::string CommandHelp(std::string_view topic) {
  topic = Trim(topic);
  if (topic.empty()) {
    std::string text = "Commands:\n";
    for (const CommandInfo& info : kCommands) {
      std::string line = "  " + std::string(info.usage);
      line.resize(std::max<std::size_t>(line.size() + 2, 24), ' ');
      text += line + std::string(info.summary) + "\n";
    }
    text +=
        "Tab completes commands and the names from your last `list`; Up and Down recall earlier\n"
        "lines. Type 'help <command>' for details.";
    return text;
  }
  const CommandInfo* info = FindCommand(topic);
  if (info == nullptr) {
    return "There is no command '" + EscapeForTerminal(topic) +
           "'. Type 'help' to see the commands.";
  }
  return "Usage: " + std::string(info->usage) + "\n" + std::string(info->details);
}

bool NeedsLogin(CommandName name) {
  switch (name) {
    case CommandName::kList:
    case CommandName::kSend:
    case CommandName::kInbox:
    case CommandName::kDelete:
      return true;
    default:
      return false;
  }
}

bool ConfirmsDeletion(std::string_view answer, std::string_view username) {
  const std::string given = Lower(Trim(answer));
  return !given.empty() && (given == "yes" || given == Lower(username));
}

std::vector<std::string> CompletionCandidates(std::string_view before_word, std::string_view word,
                                              const std::set<std::string>& users) {
  const std::vector<std::string_view> words = Words(before_word);
  std::set<std::string> found;
  if (words.empty() || (words.size() == 1 && FindCommand(words[0]) != nullptr &&
                        FindCommand(words[0])->name == CommandName::kHelp)) {
    for (const CommandInfo& info : kCommands) {
      if (StartsWithIgnoringCase(info.word, word)) found.insert(std::string(info.word));
    }
  } else if (words.size() == 1 && FindCommand(words[0]) != nullptr &&
             FindCommand(words[0])->name == CommandName::kSend) {
    for (const std::string& user : users) {
      if (StartsWithIgnoringCase(user, word)) found.insert(user);
    }
  }
  return std::vector<std::string>(found.begin(), found.end());
}

// ---- Text from the network ----

std::string EscapeForTerminal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    char32_t c = 0;
    const std::size_t length = DecodeUtf8(text, c);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER, for one malformed byte.
      text.remove_prefix(1);
      continue;
    }
    if (c == '\t') {
      out += ' ';
    } else if (c < 0x20) {
      out += '^';
      out += static_cast<char>(c + 0x40);
    } else if (c == 0x7F) {
      out += "^?";
    } else if ((c >= 0x80 && c <= 0x9F) || IsInvisibleControl(c)) {
      out += CodePointName(c);
    } else {
      out.append(text.substr(0, length));
    }
    text.remove_prefix(length);
  }
  return out;
}

std::string FormatTime(std::uint64_t timestamp_ms, std::time_t now) {
  const std::time_t when = static_cast<std::time_t>(timestamp_ms / 1000);
  std::tm local{};
  std::tm today{};
  localtime_r(&when, &local);
  localtime_r(&now, &today);
  const bool same_day = local.tm_year == today.tm_year && local.tm_yday == today.tm_yday;
  char buffer[32];
  std::strftime(buffer, sizeof buffer, same_day ? "%H:%M" : "%Y-%m-%d %H:%M", &local);
  return buffer;
}

std::string FormatMessage(const StoredMessage& message, std::time_t now) {
  const std::string prefix =
      "[" + FormatTime(message.timestamp_ms, now) + "] " + EscapeForTerminal(message.sender) + ": ";
  std::string out = prefix;
  std::string_view text = message.text;
  bool first = true;
  while (true) {
    const std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF is one line break.
    if (!first) out += "\n" + std::string(prefix.size(), ' ');
    out += EscapeForTerminal(line);
    first = false;
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return out;
}

std::string DescribeSessionEnd(EndReason reason) {
  switch (reason) {
    case EndReason::kTakeover:
      return "Your account logged in from somewhere else, so the server ended this session.";
    case EndReason::kServerShutdown:
      return "The server is shutting down and ended this session.";
    case EndReason::kIdleTimeout:
      return "The server ended this session after a long time without activity.";
    case EndReason::kLoginTimeout:
      return "The server closed the connection because no login happened in time.";
  }
  return "The server ended this session.";
}

std::string CountOf(std::uint64_t count, std::string_view singular, std::string_view plural) {
  return std::to_string(count) + " " + std::string(count == 1 ? singular : plural);
}

}  // namespace messenger::terminal

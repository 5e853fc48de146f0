// The terminal client's pure parts: its command line, the commands people type, and how what the
// server sends is turned into text that is safe to put on a terminal. No I/O, so every rule here
// is unit-tested; terminal_app.cpp and line_editor.cpp do the talking.
//
// Thread-safety: pure functions (FormatTime reads the process's time zone).
#ifndef MESSENGER_CLIENT_TERMINAL_COMMANDS_H_
#define MESSENGER_CLIENT_TERMINAL_COMMANDS_H_

#include <cstdint>
#include <ctime>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/client/client.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger::terminal {

// Exit statuses of `poco_messenger client` (documented in its --help). A script or a one-shot
// command exits with the status of its first failing command.
inline constexpr int kExitOk = 0;          // Every command succeeded.
inline constexpr int kExitFailed = 1;      // The server refused a request, or deletion unconfirmed.
inline constexpr int kExitUsage = 2;       // Bad option, unknown command, no password available.
inline constexpr int kExitAuth = 3;        // Wrong username or password, or logins throttled.
inline constexpr int kExitConnection = 4;  // Server unreachable, busy, or the connection was lost.

// Returns the exit status that a failed request with `status` stands for (kExitOk for OK).
int ExitStatusFor(const Status& status);

// ---- The command line of `poco_messenger client` ----

// How `poco_messenger client` talks to the server.
enum class Transport { kWire, kGrpc };

struct Options {
  std::string host = "127.0.0.1";
  Transport transport = Transport::kWire;  // --transport wire|grpc
  // --port; when not given, the transport's default (kDefaultWirePort or kDefaultGrpcPort).
  std::uint16_t port = kDefaultWirePort;
  std::string user;           // --user; empty when not given.
  std::string password_file;  // --password-file; empty when not given.
  // --tls, --ca-file FILE, --tls-server-name NAME, --tls-insecure; each of the last three
  // implies --tls. --ca-file and --tls-insecure contradict each other.
  TlsClientOptions tls;
  bool help = false;
  // A one-shot command and its arguments (`send bob hi`), empty for an interactive session or a
  // script on stdin. `--yes` is passed on as an argument of the command.
  std::vector<std::string> command;
};

struct OptionsResult {
  Options options;
  std::string error;  // For people; empty when the command line is valid.
};

// Parses the arguments that follow `client`. Options may come before or after the command;
// `--` ends the options, so a message text may start with a dash. --password is refused on
// purpose: a password on a command line is visible to every user of the machine.
OptionsResult ParseOptions(std::span<const std::string> args);

// The whole --help text.
std::string UsageText();

// ---- Commands ----

enum class CommandName { kHelp, kRegister, kLogin, kList, kSend, kInbox, kDelete, kLogout, kQuit };

struct Command {
  CommandName name = CommandName::kHelp;
  std::string user;  // register/login: the account (empty: --user); send: the recipient.
  std::string text;  // send: the message; list: the pattern; help: the command asked about.
  bool yes = false;  // delete --yes: do not ask for confirmation.
  friend bool operator==(const Command&, const Command&) = default;
};

struct ParseResult {
  std::optional<Command> command;  // Absent for a blank line or an error.
  std::string error;               // For people; empty unless the line is invalid.
};

// Parses one typed line: the command word (any letter case), then its arguments separated by
// spaces. For `send <user> <text>` the text is the rest of the line as typed, inner spaces kept.
ParseResult ParseCommandLine(std::string_view line);

// Parses a one-shot command given as separate arguments (`send`, `bob`, `hi`, `there`); the
// words of a message are joined with single spaces.
ParseResult ParseCommandArgs(std::span<const std::string> args);

// Text of `help` (no topic) or `help <command>`.
std::string CommandHelp(std::string_view topic);

// True iff the command needs a logged-in session.
bool NeedsLogin(CommandName name);

// True iff `answer` confirms deleting `username`'s account: "yes" or the username itself, in
// any letter case, surrounding spaces ignored.
bool ConfirmsDeletion(std::string_view answer, std::string_view username);

// Tab completion: the candidates for `word`, the word being typed, given the text of the line
// before it. The first word completes to command names; the word after `send` to `users`
// (case-insensitively). Sorted, without duplicates.
std::vector<std::string> CompletionCandidates(std::string_view before_word, std::string_view word,
                                              const std::set<std::string>& users);

// ---- Text from the network, made safe for a terminal ----

// Returns `text` with nothing left that a terminal would act on: C0 controls and DEL become
// caret notation (ESC -> "^["), C1 controls and invisible direction overrides become "<U+XXXX>",
// a tab becomes a space, malformed UTF-8 becomes U+FFFD. Line breaks are escaped too (as ^J);
// FormatMessage lays out multi-line texts itself.
std::string EscapeForTerminal(std::string_view text);

// The local time of `timestamp_ms` (ms since the Unix epoch): "14:03" on the day of `now`,
// "2024-05-01 14:03" on another day.
std::string FormatTime(std::uint64_t timestamp_ms, std::time_t now);

// One received message for the screen: "[14:03] bob: text". A text of several lines continues on
// indented lines, so that no line of it can pass for a message of its own.
std::string FormatMessage(const StoredMessage& message, std::time_t now);

// A sentence saying why the server ended the session.
std::string DescribeSessionEnd(EndReason reason);

// "1 message" / "3 messages".
std::string CountOf(std::uint64_t count, std::string_view singular, std::string_view plural);

}  // namespace messenger::terminal

#endif  // MESSENGER_CLIENT_TERMINAL_COMMANDS_H_

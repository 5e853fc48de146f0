// Tests of the terminal client, `poco_messenger client`: its pure parts (commands, options,
// escaping, formatting, the cursor arithmetic of the input line), and the real binary against the
// TCP front door started in-process on 127.0.0.1 — interactively in a pseudo-terminal whose output
// is interpreted by a small terminal model, as a script on stdin, and as one-shot commands.
// Every wait is bounded.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <clocale>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "commands.h"
#include "grpc_front_door.h"
#include "line_editor.h"
#include "messenger/client/client.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "messenger/server/clock.h"
#include "messenger/server/messenger.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/store.h"
#include "tcp_front_door.h"
#include "test_support.h"

extern char** environ;

namespace messenger::terminal {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
using testing::PlainHasher;

// Bound on waiting for anything that should happen promptly on loopback.
constexpr milliseconds kWait{10000};
constexpr char kPassword[] = "correct horse";

std::vector<std::string> Strings(std::initializer_list<const char*> items) {
  return std::vector<std::string>(items.begin(), items.end());
}

// ======================================================================================
// The pure parts
// ======================================================================================

TEST(CommandParseTest, SendKeepsTheRestOfTheLineAsTyped) {
  const ParseResult parsed = ParseCommandLine("  send bob   hello,   world  ");
  ASSERT_TRUE(parsed.command) << parsed.error;
  EXPECT_EQ(parsed.command->name, CommandName::kSend);
  EXPECT_EQ(parsed.command->user, "bob");
  EXPECT_EQ(parsed.command->text, "hello,   world");
}

TEST(CommandParseTest, CommandWordsIgnoreLetterCaseAndHaveAliases) {
  EXPECT_EQ(ParseCommandLine("INBOX").command->name, CommandName::kInbox);
  EXPECT_EQ(ParseCommandLine("exit").command->name, CommandName::kQuit);
  EXPECT_EQ(ParseCommandLine("?").command->name, CommandName::kHelp);
}

TEST(CommandParseTest, OptionalArgumentsAreTaken) {
  EXPECT_EQ(ParseCommandLine("list a*").command->text, "a*");
  EXPECT_EQ(ParseCommandLine("list").command->text, "");
  EXPECT_EQ(ParseCommandLine("login Alice").command->user, "Alice");
  EXPECT_EQ(ParseCommandLine("register").command->user, "");
  EXPECT_EQ(ParseCommandLine("help send").command->text, "send");
  EXPECT_TRUE(ParseCommandLine("delete --yes").command->yes);
  EXPECT_FALSE(ParseCommandLine("delete").command->yes);
}

TEST(CommandParseTest, BlankLineIsNeitherCommandNorError) {
  const ParseResult parsed = ParseCommandLine(" \t ");
  EXPECT_FALSE(parsed.command);
  EXPECT_EQ(parsed.error, "");
}

TEST(CommandParseTest, MistakesAreExplainedWithTheUsage) {
  EXPECT_EQ(ParseCommandLine("send bob").error,
            "Usage: send <user> <text>  (type 'help send' for more)");
  EXPECT_NE(ParseCommandLine("inbox now").error, "");
  EXPECT_NE(ParseCommandLine("delete please").error, "");
  EXPECT_NE(ParseCommandLine("login a b").error, "");
  EXPECT_EQ(ParseCommandLine("frobnicate").error,
            "Unknown command 'frobnicate'. Type 'help' to see the commands.");
}

TEST(CommandParseTest, UnknownCommandWordIsEscapedInTheError) {
  EXPECT_EQ(ParseCommandLine("\x1b[2J").error,
            "Unknown command '^[[2J'. Type 'help' to see the commands.");
}

TEST(CommandParseTest, OneShotSendJoinsTheWordsOfTheText) {
  const ParseResult parsed = ParseCommandArgs(Strings({"send", "bob", "see", "you"}));
  ASSERT_TRUE(parsed.command) << parsed.error;
  EXPECT_EQ(parsed.command->user, "bob");
  EXPECT_EQ(parsed.command->text, "see you");
  EXPECT_EQ(ParseCommandArgs(Strings({"send", "bob", "  spaced  "})).command->text, "  spaced  ");
  EXPECT_FALSE(ParseCommandArgs(Strings({"send", "bob"})).command);
  EXPECT_TRUE(ParseCommandArgs(Strings({"delete", "--yes"})).command->yes);
  EXPECT_FALSE(ParseCommandArgs(Strings({"list", "a b"})).command);
}

TEST(OptionsTest, ReadsEveryOptionInBothForms) {
  const OptionsResult parsed = ParseOptions(
      Strings({"--host", "10.0.0.1", "--port=6000", "--user", "alice", "--password-file=pw"}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.options.host, "10.0.0.1");
  EXPECT_EQ(parsed.options.port, 6000);
  EXPECT_EQ(parsed.options.user, "alice");
  EXPECT_EQ(parsed.options.password_file, "pw");
  EXPECT_TRUE(parsed.options.command.empty());
}

TEST(OptionsTest, TransportChoosesTheDefaultPortUnlessOneIsGiven) {
  OptionsResult parsed = ParseOptions(Strings({}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.options.transport, Transport::kWire);
  EXPECT_EQ(parsed.options.port, 5050);
  parsed = ParseOptions(Strings({"--transport", "grpc"}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.options.transport, Transport::kGrpc);
  EXPECT_EQ(parsed.options.port, 5051);
  parsed = ParseOptions(Strings({"--port", "6000", "--transport=grpc"}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.options.transport, Transport::kGrpc);
  EXPECT_EQ(parsed.options.port, 6000);
  parsed = ParseOptions(Strings({"--transport", "wire", "inbox"}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.options.transport, Transport::kWire);
  EXPECT_EQ(parsed.options.port, 5050);
}

TEST(OptionsTest, UnknownTransportIsAUsageError) {
  const OptionsResult parsed = ParseOptions(Strings({"--transport", "http"}));
  EXPECT_NE(parsed.error.find("--transport needs 'wire' or 'grpc'"), std::string::npos)
      << parsed.error;
  EXPECT_NE(ParseOptions(Strings({"--transport"})).error, "");
  EXPECT_NE(ParseOptions(Strings({"--transport=GRPC"})).error, "");
}

TEST(OptionsTest, OptionsMayFollowTheCommandAndDashesEndThem) {
  const OptionsResult parsed =
      ParseOptions(Strings({"send", "bob", "--user", "alice", "--", "-5", "--degrees"}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.options.user, "alice");
  EXPECT_EQ(parsed.options.command, Strings({"send", "bob", "-5", "--degrees"}));
}

TEST(OptionsTest, YesGoesWithDeleteOnly) {
  EXPECT_EQ(ParseOptions(Strings({"--yes", "delete"})).options.command,
            Strings({"delete", "--yes"}));
  EXPECT_NE(ParseOptions(Strings({"--yes"})).error, "");
  EXPECT_NE(ParseOptions(Strings({"send", "bob", "x", "--yes"})).error, "");
}

TEST(OptionsTest, RefusesPasswordOnTheCommandLine) {
  EXPECT_NE(ParseOptions(Strings({"--password", "hunter22"})).error.find("MESSENGER_PASSWORD"),
            std::string::npos);
  EXPECT_NE(ParseOptions(Strings({"--password=hunter22"})).error, "");
}

TEST(OptionsTest, RejectsBadValues) {
  EXPECT_NE(ParseOptions(Strings({"--port", "0"})).error, "");
  EXPECT_NE(ParseOptions(Strings({"--port", "65536"})).error, "");
  EXPECT_NE(ParseOptions(Strings({"--port", "12ab"})).error, "");
  EXPECT_NE(ParseOptions(Strings({"--user"})).error, "");
  EXPECT_NE(ParseOptions(Strings({"--colour"})).error, "");
}

TEST(UsageTextTest, DocumentsEveryCommandOptionAndExitStatus) {
  const std::string usage = UsageText();
  for (const char* word :
       {"register", "login", "list [pattern]", "send <user> <text>", "inbox", "delete", "logout",
        "quit", "help", "--host", "--port", "--user", "--transport", "grpc", "5051",
        "--password-file", "--yes", "MESSENGER_PASSWORD", "Exit status"}) {
    EXPECT_NE(usage.find(word), std::string::npos) << word;
  }
  for (const int status : {kExitOk, kExitFailed, kExitUsage, kExitAuth, kExitConnection}) {
    EXPECT_NE(usage.find("  " + std::to_string(status) + "  "), std::string::npos) << status;
  }
}

TEST(ExitStatusTest, SaysWhatKindOfFailureItWas) {
  EXPECT_EQ(ExitStatusFor(Status()), kExitOk);
  EXPECT_EQ(ExitStatusFor(Status(ErrorCode::kAuthFailed, "")), kExitAuth);
  EXPECT_EQ(ExitStatusFor(Status(ErrorCode::kLoginThrottled, "")), kExitAuth);
  EXPECT_EQ(ExitStatusFor(Status(ErrorCode::kConnectionFailed, "")), kExitConnection);
  EXPECT_EQ(ExitStatusFor(Status(ErrorCode::kDisconnected, "")), kExitConnection);
  EXPECT_EQ(ExitStatusFor(Status(ErrorCode::kServerBusy, "")), kExitConnection);
  EXPECT_EQ(ExitStatusFor(Status(ErrorCode::kUnknownRecipient, "")), kExitFailed);
  EXPECT_EQ(ExitStatusFor(Status(ErrorCode::kUsernameTaken, "")), kExitFailed);
}

TEST(ConfirmDeletionTest, AcceptsYesOrTheUsernameOnly) {
  EXPECT_TRUE(ConfirmsDeletion("yes", "Alice"));
  EXPECT_TRUE(ConfirmsDeletion(" YES ", "Alice"));
  EXPECT_TRUE(ConfirmsDeletion("alice", "Alice"));
  EXPECT_FALSE(ConfirmsDeletion("y", "Alice"));
  EXPECT_FALSE(ConfirmsDeletion("", "Alice"));
  EXPECT_FALSE(ConfirmsDeletion("alic", "Alice"));
}

TEST(CompletionTest, FirstWordCompletesCommands) {
  EXPECT_EQ(CompletionCandidates("", "l", {}), Strings({"list", "login", "logout"}));
  EXPECT_EQ(CompletionCandidates("", "SE", {}), Strings({"send"}));
  EXPECT_EQ(CompletionCandidates("help ", "in", {}), Strings({"inbox"}));
}

TEST(CompletionTest, WordAfterSendCompletesKnownUsers) {
  const std::set<std::string> users = {"Bob", "bobby", "carol"};
  EXPECT_EQ(CompletionCandidates("send ", "bo", users), Strings({"Bob", "bobby"}));
  EXPECT_EQ(CompletionCandidates("send ", "c", users), Strings({"carol"}));
  EXPECT_TRUE(CompletionCandidates("send bob ", "c", users).empty());  // The text: no completion.
  EXPECT_TRUE(CompletionCandidates("inbox ", "", users).empty());
}

TEST(EscapeTest, ControlCharactersBecomeVisible) {
  EXPECT_EQ(EscapeForTerminal("\x1b[31mred\x1b[0m"), "^[[31mred^[[0m");
  EXPECT_EQ(EscapeForTerminal("a\rb\nc\bd\x07\x7f"), "a^Mb^Jc^Hd^G^?");
  EXPECT_EQ(EscapeForTerminal(std::string_view("nul\0!", 5)), "nul^@!");
  EXPECT_EQ(EscapeForTerminal("tab\there"), "tab here");
}

TEST(EscapeTest, C1ControlsAndDirectionOverridesAreNamed) {
  EXPECT_EQ(EscapeForTerminal("\xc2\x9b"
                              "2J"),
            "<U+009B>2J");  // CSI as one character.
  EXPECT_EQ(EscapeForTerminal("abc\xe2\x80\xae"
                              "fed"),
            "abc<U+202E>fed");  // RIGHT-TO-LEFT OVERRIDE.
}

TEST(EscapeTest, PrintableTextIsKeptAndMalformedUtf8Replaced) {
  EXPECT_EQ(EscapeForTerminal("héllo wörld ✓ 日本"), "héllo wörld ✓ 日本");
  EXPECT_EQ(EscapeForTerminal("bad \xff byte"), "bad \xEF\xBF\xBD byte");
  EXPECT_EQ(EscapeForTerminal("\xe2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // Truncated.
  EXPECT_EQ(EscapeForTerminal("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // Overlong '/'.
}

class FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tz = std::getenv("TZ");
    saved_tz_ = tz == nullptr ? std::nullopt : std::optional<std::string>(tz);
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }
  void TearDown() override {
    if (saved_tz_) {
      ::setenv("TZ", saved_tz_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  // 2024-05-01 14:03:09 UTC.
  static constexpr std::uint64_t kMay1Ms = 1714572189000ull;
  static constexpr std::time_t kSameDay = 1714600000;  // 2024-05-01 21:46:40 UTC.
  static constexpr std::time_t kNextDay = 1714640000;  // 2024-05-02.

 private:
  std::optional<std::string> saved_tz_;
};

TEST_F(FormatTest, TimeIsShortOnTheSameDayAndDatedOtherwise) {
  EXPECT_EQ(FormatTime(kMay1Ms, kSameDay), "14:03");
  EXPECT_EQ(FormatTime(kMay1Ms, kNextDay), "2024-05-01 14:03");
}

TEST_F(FormatTest, MessageShowsTimeSenderAndEscapedText) {
  const StoredMessage message{7, "bob", kMay1Ms, "hi \x1b]0;pwned\x07 there"};
  EXPECT_EQ(FormatMessage(message, kSameDay), "[14:03] bob: hi ^[]0;pwned^G there");
}

TEST_F(FormatTest, MultiLineTextIsIndentedUnderItsFirstLine) {
  const StoredMessage message{7, "bob", kMay1Ms, "one\r\n[14:03] alice: fake\nthree"};
  EXPECT_EQ(FormatMessage(message, kSameDay),
            "[14:03] bob: one\n"
            "             [14:03] alice: fake\n"
            "             three");
}

TEST_F(FormatTest, SenderIsEscapedToo) {
  const StoredMessage message{7, "evil\x1b[8m", kMay1Ms, "x"};
  EXPECT_EQ(FormatMessage(message, kSameDay), "[14:03] evil^[[8m: x");
}

TEST(FormatWordsTest, CountsAgreeInNumber) {
  EXPECT_EQ(CountOf(1, "message", "messages"), "1 message");
  EXPECT_EQ(CountOf(0, "message", "messages"), "0 messages");
  EXPECT_EQ(CountOf(3, "message", "messages"), "3 messages");
  EXPECT_NE(DescribeSessionEnd(EndReason::kTakeover).find("somewhere else"), std::string::npos);
  EXPECT_NE(DescribeSessionEnd(EndReason::kServerShutdown).find("shutting down"),
            std::string::npos);
}

class CursorRowTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(std::setlocale(LC_CTYPE, "C.UTF-8"), nullptr); }
  void TearDown() override { std::setlocale(LC_CTYPE, "C"); }
};

TEST_F(CursorRowTest, CountsWrappedRows) {
  EXPECT_EQ(CursorRow(2, L"", 40), 0);
  EXPECT_EQ(CursorRow(2, std::wstring(37, L'x'), 40), 0);
  EXPECT_EQ(CursorRow(2, std::wstring(38, L'x'), 40), 1);  // Right after the last column.
  EXPECT_EQ(CursorRow(2, std::wstring(78, L'x'), 40), 2);
  EXPECT_EQ(CursorRow(45, L"", 40), 1);  // A prompt wider than the screen.
}

TEST_F(CursorRowTest, WideCharactersAreNotSplitAcrossRows) {
  // 7 columns of prompt and ASCII, then a two-column character that does not fit in the 8th.
  EXPECT_EQ(CursorRow(2, L"abcde\u65e5", 8), 1);
  EXPECT_EQ(CursorRow(2, L"abcd\u65e5", 8), 1);  // Fills the row exactly: next row.
  EXPECT_EQ(CursorRow(2, L"abc\u65e5", 8), 0);
}

TEST_F(CursorRowTest, ControlCharactersTakeTwoColumnsAndTabsAlign) {
  EXPECT_EQ(CursorRow(0, L"\x01\x02\x03", 6), 1);
  EXPECT_EQ(CursorRow(0, L"\x01\x02", 6), 0);
  EXPECT_EQ(CursorRow(0, L"a\t", 8), 1);  // The tab reaches column 8 = the margin.
  EXPECT_EQ(CursorRow(0, L"a\t", 16), 0);
}

// ======================================================================================
// The real binary against an in-process server
// ======================================================================================

// Messages a library client received, for the test to wait on. Thread-safe.
class Inbox {
 public:
  PushHandler Handler() {
    return [this](const Push& push) {
      std::lock_guard lock(mu_);
      if (const auto* deliver = std::get_if<Deliver>(&push)) texts_.push_back(deliver->message);
      changed_.notify_all();
      return true;
    };
  }
  // Waits until a message with `text` has arrived; returns it.
  std::optional<StoredMessage> WaitFor(const std::string& text, milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    std::optional<StoredMessage> found;
    changed_.wait_for(lock, timeout, [&] {
      for (const StoredMessage& message : texts_) {
        if (message.text == text) found = message;
      }
      return found.has_value();
    });
    return found;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<StoredMessage> texts_;
};

// ---- A tiny VT100: enough of a terminal to see what a person would see ----
// It understands what libedit (TERM=vt100) and the client emit; anything else is recorded in
// unknown(), so a sequence the model does not know fails the test instead of being misread.
class Screen {
 public:
  Screen(int rows, int columns)
      : rows_(rows), columns_(columns), cells_(rows, std::vector<std::string>(columns, " ")) {}

  void Feed(std::string_view bytes) {
    for (const char c : bytes) FeedByte(static_cast<unsigned char>(c));
  }

  // Row `r` as text, trailing spaces removed.
  std::string Row(int r) const {
    std::string text;
    for (const std::string& cell : cells_[r]) text += cell;
    return text.substr(0, text.find_last_not_of(' ') + 1);
  }
  std::string CursorLine() const { return Row(row_); }
  int row() const { return row_; }
  int column() const { return column_; }
  int rows() const { return rows_; }
  const std::vector<std::string>& unknown() const { return unknown_; }
  int colour_changes() const { return colour_changes_; }

  // Index of the last row containing `text`, or -1.
  int FindRow(std::string_view text) const {
    for (int r = rows_ - 1; r >= 0; --r) {
      if (Row(r).find(text) != std::string::npos) return r;
    }
    return -1;
  }
  // How many rows contain `text`.
  int CountRows(std::string_view text) const {
    int count = 0;
    for (int r = 0; r < rows_; ++r) count += Row(r).find(text) != std::string::npos ? 1 : 0;
    return count;
  }

  std::string Dump() const {
    std::string out;
    for (int r = 0; r < rows_; ++r) out += (r == row_ ? "> |" : "  |") + Row(r) + "\n";
    out += "cursor at row " + std::to_string(row_) + ", column " + std::to_string(column_) + "\n";
    for (const std::string& sequence : unknown_) out += "unknown sequence: " + sequence + "\n";
    return out;
  }

 private:
  enum class State { kText, kEscape, kCsi };

  void FeedByte(unsigned char c) {
    switch (state_) {
      case State::kEscape:
        if (c == '[') {
          state_ = State::kCsi;
          sequence_.clear();
        } else {
          state_ = State::kText;
          if (c == '7') {
            saved_ = {row_, column_};
          } else if (c == '8') {
            std::tie(row_, column_) = saved_;
          } else if (c != '=' && c != '>') {  // Keypad modes: nothing to show.
            unknown_.push_back(std::string("ESC ") + static_cast<char>(c));
          }
        }
        return;
      case State::kCsi:
        if (c >= 0x40 && c <= 0x7E) {
          state_ = State::kText;
          Csi(sequence_, static_cast<char>(c));
        } else {
          sequence_ += static_cast<char>(c);
        }
        return;
      case State::kText:
        break;
    }
    if (!utf8_.empty() || c >= 0x80) {
      utf8_ += static_cast<char>(c);
      const auto lead = static_cast<unsigned char>(utf8_[0]);
      const std::size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
      if (utf8_.size() == need) {
        Put(utf8_);
        utf8_.clear();
      }
      return;
    }
    switch (c) {
      case 0x00:  // Padding.
      case 0x07:  // Bell.
        return;
      case 0x1B:
        state_ = State::kEscape;
        return;
      case '\b':
        column_ = std::max(column_ - 1, 0);
        wrap_pending_ = false;
        return;
      case '\r':
        column_ = 0;
        wrap_pending_ = false;
        return;
      case '\n':
        LineFeed();
        wrap_pending_ = false;
        return;
      case '\t':
        column_ = std::min((column_ / 8 + 1) * 8, columns_ - 1);
        return;
      default:
        if (c < 0x20 || c == 0x7F) {
          unknown_.push_back("control byte " + std::to_string(c));
          return;
        }
        Put(std::string(1, static_cast<char>(c)));
    }
  }

  void Put(const std::string& character) {
    if (wrap_pending_) {
      column_ = 0;
      LineFeed();
      wrap_pending_ = false;
    }
    cells_[row_][column_] = character;
    if (column_ == columns_ - 1) {
      wrap_pending_ = true;  // VT100 auto-margin: the next character wraps.
    } else {
      ++column_;
    }
  }

  void LineFeed() {
    if (row_ < rows_ - 1) {
      ++row_;
      return;
    }
    cells_.erase(cells_.begin());
    cells_.emplace_back(columns_, " ");
  }

  void Csi(const std::string& parameters, char final) {
    const auto number = [&](int fallback) {
      if (parameters.empty()) return fallback;
      const int n = std::atoi(parameters.c_str());
      return n == 0 ? fallback : n;
    };
    wrap_pending_ = false;
    switch (final) {
      case 'A':
        row_ = std::max(row_ - number(1), 0);
        return;
      case 'B':
        row_ = std::min(row_ + number(1), rows_ - 1);
        return;
      case 'C':
        column_ = std::min(column_ + number(1), columns_ - 1);
        return;
      case 'D':
        column_ = std::max(column_ - number(1), 0);
        return;
      case 'H':
      case 'f': {
        const std::size_t semicolon = parameters.find(';');
        const int r = parameters.empty() ? 1 : std::max(std::atoi(parameters.c_str()), 1);
        const int col = semicolon == std::string::npos
                            ? 1
                            : std::max(std::atoi(parameters.c_str() + semicolon + 1), 1);
        row_ = std::min(r - 1, rows_ - 1);
        column_ = std::min(col - 1, columns_ - 1);
        return;
      }
      case 'K': {
        const int mode = parameters.empty() ? 0 : std::atoi(parameters.c_str());
        const int from = mode == 0 ? column_ : 0;
        const int to = mode == 1 ? column_ + 1 : columns_;
        for (int col = from; col < to; ++col) cells_[row_][col] = " ";
        return;
      }
      case 'J': {
        const int mode = parameters.empty() ? 0 : std::atoi(parameters.c_str());
        if (mode == 0) {
          for (int col = column_; col < columns_; ++col) cells_[row_][col] = " ";
          for (int r = row_ + 1; r < rows_; ++r) cells_[r].assign(columns_, " ");
        } else {
          unknown_.push_back("CSI " + parameters + "J");
        }
        return;
      }
      case 'm':
        ++colour_changes_;
        return;
      case 'h':
      case 'l':
        if (parameters == "?1") return;  // Cursor key mode.
        break;
      default:
        break;
    }
    unknown_.push_back("CSI " + parameters + final);
  }

  const int rows_;
  const int columns_;
  std::vector<std::vector<std::string>> cells_;
  int row_ = 0;
  int column_ = 0;
  bool wrap_pending_ = false;
  std::pair<int, int> saved_{0, 0};
  State state_ = State::kText;
  std::string sequence_;
  std::string utf8_;
  std::vector<std::string> unknown_;
  int colour_changes_ = 0;
};

// Environment for a client process: nothing inherited but what sanitizers need, so the user's
// locale, editrc or password cannot change a test.
std::vector<std::string> ClientEnvironment(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env = {
      {"PATH", "/usr/bin:/bin"}, {"LANG", "C.UTF-8"}, {"TERM", "vt100"}, {"TZ", "UTC"}};
  env["HOME"] = ::testing::TempDir();
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"}) {
    if (const char* value = std::getenv(name)) env[name] = value;
  }
  for (const auto& [key, value] : extra) env[key] = value;
  std::vector<std::string> out;
  for (const auto& [key, value] : env) out.push_back(key + "=" + value);
  return out;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Waits up to `timeout` for `pid`; returns its exit status, 128 + signal, or -1 after killing it.
int WaitForExit(pid_t pid, milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (SteadyClock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// `poco_messenger client` attached to a pseudo-terminal, its output rendered on a Screen.
class PtyClient {
 public:
  PtyClient(int rows, int columns) : screen_(rows, columns), rows_(rows), columns_(columns) {}
  ~PtyClient() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  PtyClient(const PtyClient&) = delete;
  PtyClient& operator=(const PtyClient&) = delete;

  ::testing::AssertionResult Start(const std::vector<std::string>& client_args,
                                   const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {MESSENGER_CLIENT_BINARY, "client"};
    args.insert(args.end(), client_args.begin(), client_args.end());
    std::vector<std::string> environment = ClientEnvironment(env);
    // Everything the child needs is prepared before fork(): after it only exec may run.
    std::vector<char*> argv = Pointers(args);
    std::vector<char*> envp = Pointers(environment);
    winsize size{};
    size.ws_row = static_cast<unsigned short>(rows_);
    size.ws_col = static_cast<unsigned short>(columns_);
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ < 0) return ::testing::AssertionFailure() << "forkpty failed";
    if (pid_ == 0) {
      // Sockets of this process (the server's listener above all) must not live on in the
      // client: a test that stops the server expects its port to be closed.
      if (::close_range(3, ~0U, 0) != 0) {
        for (int fd = 3; fd < 1024; ++fd) ::close(fd);
      }
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::fcntl(master_, F_SETFL, ::fcntl(master_, F_GETFL) | O_NONBLOCK);
    return ::testing::AssertionSuccess();
  }

  // Sends keystrokes, as a person typing them at once.
  void Type(std::string_view keys) {
    while (!keys.empty()) {
      const ssize_t n = ::write(master_, keys.data(), keys.size());
      if (n <= 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return;
      }
      keys.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Renders output until `condition` holds for the screen or `timeout` passes.
  ::testing::AssertionResult WaitFor(const std::function<bool(const Screen&)>& condition,
                                     const std::string& what, milliseconds timeout = kWait) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      Pump(20ms);
      if (condition(screen_)) return ::testing::AssertionSuccess();
      if (SteadyClock::now() >= deadline) {
        return ::testing::AssertionFailure() << "timed out waiting for " << what << "; screen:\n"
                                             << screen_.Dump();
      }
    }
  }

  // Renders output for `duration`: lets anything still on its way arrive.
  void Settle(milliseconds duration = 200ms) {
    const auto until = SteadyClock::now() + duration;
    while (SteadyClock::now() < until) Pump(10ms);
  }

  ::testing::AssertionResult WaitForText(const std::string& text, milliseconds timeout = kWait) {
    return WaitFor([&](const Screen& s) { return s.FindRow(text) >= 0; }, "'" + text + "'",
                   timeout);
  }

  // Waits for the process to end; returns its exit status.
  int WaitExit(milliseconds timeout = kWait) {
    const auto deadline = SteadyClock::now() + timeout;
    int status = -1;
    while (pid_ > 0) {
      Pump(10ms);
      int raw = 0;
      if (::waitpid(pid_, &raw, WNOHANG) == pid_) {
        status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
        pid_ = -1;
      } else if (SteadyClock::now() >= deadline) {
        ADD_FAILURE() << "the client did not exit; screen:\n" << screen_.Dump();
        return -1;
      }
    }
    return status;
  }

  const Screen& screen() const { return screen_; }

 private:
  void Pump(milliseconds wait) {
    pollfd fd = {master_, POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(wait.count())) <= 0) return;
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(master_, buffer, sizeof buffer);
      if (n <= 0) return;  // EAGAIN, or EIO once the client has exited.
      screen_.Feed(std::string_view(buffer, static_cast<std::size_t>(n)));
    }
  }

  Screen screen_;
  const int rows_;
  const int columns_;
  pid_t pid_ = -1;
  int master_ = -1;
};

struct ProcessResult {
  int status = -1;
  std::string out;
  std::string err;
};

// Runs `poco_messenger client` with `args`, `input` on stdin, no terminal at all (a new session
// without a controlling terminal), and collects its output.
ProcessResult RunClient(const std::vector<std::string>& client_args, const std::string& input = "",
                        const std::map<std::string, std::string>& env = {}) {
  std::vector<std::string> args = {MESSENGER_CLIENT_BINARY, "client"};
  args.insert(args.end(), client_args.begin(), client_args.end());
  std::vector<std::string> environment = ClientEnvironment(env);
  std::vector<char*> argv = Pointers(args);
  std::vector<char*> envp = Pointers(environment);
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe failed";
    return {};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // As in PtyClient::Start.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ProcessResult result;
  if (rc != 0) {
    ADD_FAILURE() << "cannot start " << argv[0];
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    return result;
  }
  std::thread writer([fd = in[1], input] {
    std::string_view rest = input;
    while (!rest.empty()) {
      const ssize_t n = ::write(fd, rest.data(), rest.size());
      if (n <= 0) break;
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    ::close(fd);
  });
  const auto deadline = SteadyClock::now() + kWait;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open = 2;
  while (open > 0 && SteadyClock::now() < deadline) {
    if (::poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
        continue;
      }
      (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(n));
    }
  }
  result.status = WaitForExit(pid, milliseconds(1000));
  writer.join();
  for (const pollfd& fd : fds) {
    if (fd.fd >= 0) ::close(fd.fd);
  }
  if (result.status == -1) ADD_FAILURE() << "the client did not finish; output:\n" << result.out;
  return result;
}

class TerminalClientTest : public ::testing::Test {
 protected:
  TerminalClientTest() : store_(MakeMemoryStore()), messenger_(*store_, hasher_, SystemClock()) {}

  void SetUp() override {
    TcpOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.max_connections = 64;
    Result<std::unique_ptr<TcpFrontDoor>> door = TcpFrontDoor::Start(messenger_, options);
    ASSERT_OK(door.status());
    door_ = std::move(door).value();
    port_ = door_->port();
  }

  void TearDown() override {
    if (grpc_door_) grpc_door_->Shutdown(1s);
    grpc_door_.reset();
    StopServer();
  }

  // A gRPC front door on the same Messenger; returns its port.
  std::uint16_t StartGrpc() {
    GrpcOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    Result<std::unique_ptr<GrpcFrontDoor>> door = GrpcFrontDoor::Start(messenger_, options);
    EXPECT_OK(door.status());
    if (!door.ok()) return 0;
    grpc_door_ = std::move(door).value();
    return grpc_door_->port();
  }

  // Every connection gets SESSION_ENDED(SERVER_SHUTDOWN).
  void StopServer() {
    if (!door_) return;
    door_->StopAccepting();
    EXPECT_TRUE(door_->Shutdown(2s));
    door_.reset();
  }

  void CreateAccount(const std::string& name) {
    const Status created = messenger_.CreateAccount(name, kPassword);
    ASSERT_OK(created);
  }

  // A library client logged in as `name` (registered first).
  std::unique_ptr<Client> LoggedIn(const std::string& name, PushHandler handler = {}) {
    (void)messenger_.CreateAccount(name, kPassword);  // Unless the test registered it already.
    ClientOptions options;
    options.host = "127.0.0.1";
    options.port = port_;
    options.connect_timeout = 2s;
    options.request_timeout = kWait;
    std::unique_ptr<Client> client = MakeWireClient(options, std::move(handler));
    const Status connected = client->Connect();
    EXPECT_OK(connected);
    const Result<LoginOk> login = client->Login(name, kPassword);
    EXPECT_OK(login.status());
    return client;
  }

  std::vector<std::string> Server() const {
    return {"--host", "127.0.0.1", "--port", std::to_string(port_)};
  }
  std::vector<std::string> Server(std::initializer_list<std::string> more) const {
    std::vector<std::string> args = Server();
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }
  static std::map<std::string, std::string> WithPassword(const std::string& password = kPassword) {
    return {{"MESSENGER_PASSWORD", password}};
  }

  // Starts an interactive client logged in as `user` and waits for its prompt.
  ::testing::AssertionResult StartLoggedIn(PtyClient& pty, const std::string& user) {
    if (auto started = pty.Start(Server({"--user", user}), WithPassword()); !started) {
      return started;
    }
    return pty.WaitFor([&](const Screen& s) { return s.CursorLine() == user + ">"; },
                       user + "'s prompt");
  }

  PlainHasher hasher_;
  std::unique_ptr<Store> store_;
  Messenger messenger_;
  std::unique_ptr<TcpFrontDoor> door_;  // Declared after messenger_: destroyed before it.
  std::unique_ptr<GrpcFrontDoor> grpc_door_;
  std::uint16_t port_ = 0;
};

// ---- Interactive, in a pseudo-terminal ----

TEST_F(TerminalClientTest, IncomingMessageLeavesTheHalfTypedLineIntact) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  EXPECT_NE(alice.screen().FindRow("Logged in as alice. No messages are waiting."), -1);

  alice.Type("send bob hel");
  ASSERT_TRUE(alice.WaitFor([](const Screen& s) { return s.CursorLine() == "alice> send bob hel"; },
                            "the half-typed line"));
  ASSERT_TRUE(bob->Send("alice", "hi alice, are you there?").ok());

  ASSERT_TRUE(alice.WaitFor(
      [](const Screen& s) {
        const int message = s.FindRow("bob: hi alice, are you there?");
        return message >= 0 && s.row() == message + 1;
      },
      "bob's message above the line being typed"));
  alice.Settle();
  const Screen& screen = alice.screen();
  // The message is on its own line, with the local time, and the line being typed is below it,
  // intact, with the cursor at its end — and nowhere else on the screen.
  EXPECT_EQ(screen.Row(screen.row() - 1).substr(0, 1), "[");
  EXPECT_NE(screen.Row(screen.row() - 1).find("] bob: hi alice, are you there?"),
            std::string::npos);
  EXPECT_EQ(screen.CursorLine(), "alice> send bob hel") << screen.Dump();
  EXPECT_EQ(screen.column(), static_cast<int>(std::string("alice> send bob hel").size()));
  EXPECT_EQ(screen.CountRows("send bob hel"), 1) << screen.Dump();
  EXPECT_TRUE(screen.unknown().empty()) << screen.Dump();

  alice.Type("lo there\r");
  const std::optional<StoredMessage> received = bob_inbox.WaitFor("hello there");
  ASSERT_TRUE(received) << alice.screen().Dump();
  EXPECT_EQ(received->sender, "alice");
  ASSERT_TRUE(alice.WaitForText("Delivered to bob."));

  // Shown, hence acknowledged (before the line was sent): nothing waits for alice.
  std::unique_ptr<Client> alice_elsewhere = LoggedIn("alice");
  const Result<MessageBatch> waiting = alice_elsewhere->FetchUndelivered(50);
  ASSERT_TRUE(waiting.ok());
  EXPECT_TRUE(waiting->messages.empty());
}

TEST_F(TerminalClientTest, GrpcClientChatsWithAWireClient) {
  const std::uint16_t grpc_port = StartGrpc();
  ASSERT_NE(grpc_port, 0);
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());  // Over the wire.
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(alice.Start({"--transport", "grpc", "--host", "127.0.0.1", "--port",
                           std::to_string(grpc_port), "--user", "alice"},
                          WithPassword()));
  ASSERT_TRUE(
      alice.WaitFor([](const Screen& s) { return s.CursorLine() == "alice>"; }, "alice's prompt"));
  EXPECT_NE(alice.screen().FindRow("(gRPC)"), -1) << alice.screen().Dump();
  EXPECT_NE(alice.screen().FindRow("Logged in as alice. No messages are waiting."), -1);

  alice.Type("send bob hel");
  ASSERT_TRUE(alice.WaitFor([](const Screen& s) { return s.CursorLine() == "alice> send bob hel"; },
                            "the half-typed line"));
  ASSERT_TRUE(bob->Send("alice", "hi alice, over the wire").ok());
  ASSERT_TRUE(alice.WaitFor(
      [](const Screen& s) {
        return s.FindRow("bob: hi alice, over the wire") >= 0 &&
               s.CursorLine() == "alice> send bob hel";
      },
      "bob's message above the line being typed"));

  alice.Type("lo over gRPC\r");
  const std::optional<StoredMessage> received = bob_inbox.WaitFor("hello over gRPC");
  ASSERT_TRUE(received) << alice.screen().Dump();
  EXPECT_EQ(received->sender, "alice");
  ASSERT_TRUE(alice.WaitForText("Delivered to bob."));

  // Shown, hence acknowledged: nothing waits for alice.
  std::unique_ptr<Client> alice_elsewhere = LoggedIn("alice");
  const Result<MessageBatch> waiting = alice_elsewhere->FetchUndelivered(50);
  ASSERT_TRUE(waiting.ok());
  EXPECT_TRUE(waiting->messages.empty());
  // That login took the session over, as over the wire.
  ASSERT_TRUE(alice.WaitForText("logged in from somewhere else"));
}

TEST_F(TerminalClientTest, MessageArrivingWithTheCursorMidLineKeepsItThere) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));

  alice.Type("send bob helo");
  alice.Type("\x1b[D");  // Left: the cursor goes back between 'l' and 'o'.
  ASSERT_TRUE(alice.WaitFor(
      [](const Screen& s) {
        return s.CursorLine() == "alice> send bob helo" &&
               s.column() == static_cast<int>(std::string("alice> send bob hel").size());
      },
      "the cursor inside the word"));
  ASSERT_TRUE(bob->Send("alice", "interrupting").ok());
  ASSERT_TRUE(alice.WaitFor(
      [](const Screen& s) {
        return s.FindRow("bob: interrupting") >= 0 && s.CursorLine() == "alice> send bob helo" &&
               s.column() == static_cast<int>(std::string("alice> send bob hel").size());
      },
      "the message above, the line and cursor unchanged"));

  alice.Type("l\r");  // Typed where the cursor was: "hello".
  ASSERT_TRUE(bob_inbox.WaitFor("hello")) << alice.screen().Dump();
}

TEST_F(TerminalClientTest, WrappedLineAtTheBottomOfTheScreenIsRedrawnWhole) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  CreateAccount("alice");
  constexpr int kRows = 8;
  constexpr int kColumns = 30;
  PtyClient alice(kRows, kColumns);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  alice.Type("help\r");  // Fills the screen: the prompt is now on the last row.
  ASSERT_TRUE(alice.WaitFor(
      [](const Screen& s) { return s.row() == kRows - 1 && s.CursorLine() == "alice>"; },
      "the prompt on the last row"));

  // "alice> " and 38 characters: 45 columns, two rows.
  const std::string typed = "send bob a long line that wraps around";
  alice.Type(typed);
  const std::string full = "alice> " + typed;
  const auto line_is_whole = [&](const Screen& s) {
    return s.row() == kRows - 1 && s.Row(kRows - 2) == full.substr(0, kColumns) &&
           s.CursorLine() == full.substr(kColumns) &&
           s.column() == static_cast<int>(full.size()) - kColumns;
  };
  ASSERT_TRUE(alice.WaitFor(line_is_whole, "the wrapped line"));

  ASSERT_TRUE(bob->Send("alice", "ping").ok());
  ASSERT_TRUE(alice.WaitFor(
      [&](const Screen& s) {
        return line_is_whole(s) && s.Row(kRows - 3).find("bob: ping") != std::string::npos;
      },
      "the message above the two rows of the line"));
  alice.Settle();
  const Screen& screen = alice.screen();
  EXPECT_TRUE(line_is_whole(screen)) << screen.Dump();
  EXPECT_EQ(screen.CountRows("a long"), 1) << screen.Dump();  // No fragment left behind.
  EXPECT_EQ(screen.CountRows("around"), 1) << screen.Dump();
  EXPECT_TRUE(screen.unknown().empty()) << screen.Dump();

  alice.Type("\r");
  ASSERT_TRUE(bob_inbox.WaitFor("a long line that wraps around")) << alice.screen().Dump();
}

TEST_F(TerminalClientTest, EscapeSequencesInMessagesNeverReachTheTerminal) {
  std::unique_ptr<Client> bob = LoggedIn("bob");
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  alice.Type("typing");
  ASSERT_TRUE(
      bob->Send("alice", "\x1b[31mred\x1b[0m \x1b[2J\x1b[H\rgotcha\x07\x1b]0;title\x07").ok());
  ASSERT_TRUE(alice.WaitForText("bob: ^[[31mred^[[0m ^[[2J^[[H^Mgotcha^G^[]0;title^G"));
  alice.Settle();
  const Screen& screen = alice.screen();
  EXPECT_EQ(screen.colour_changes(), 0);
  EXPECT_TRUE(screen.unknown().empty()) << screen.Dump();
  EXPECT_NE(screen.FindRow("Logged in as alice"), -1) << "the screen was cleared";
  EXPECT_EQ(screen.CursorLine(), "alice> typing");
}

TEST_F(TerminalClientTest, PasswordIsAskedWithoutEcho) {
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(alice.Start(Server({"--user", "alice"})));
  ASSERT_TRUE(alice.WaitForText("Password for alice:"));
  alice.Type(std::string(kPassword) + "\r");
  ASSERT_TRUE(alice.WaitForText("Logged in as alice."));
  EXPECT_EQ(alice.screen().CountRows(kPassword), 0) << alice.screen().Dump();
}

TEST_F(TerminalClientTest, RegisterAsksTwiceThenLogsIn) {
  PtyClient carol(24, 80);
  ASSERT_TRUE(carol.Start(Server()));
  ASSERT_TRUE(carol.WaitFor([](const Screen& s) { return s.CursorLine() == ">"; }, "the prompt"));
  carol.Type("register carol\r");
  ASSERT_TRUE(carol.WaitForText("Password for carol:"));
  carol.Type("carols secret\r");
  ASSERT_TRUE(carol.WaitForText("Repeat the password:"));
  carol.Type("carols secret\r");
  ASSERT_TRUE(carol.WaitForText("Logged in as carol. No messages are waiting."));
  ASSERT_TRUE(
      carol.WaitFor([](const Screen& s) { return s.CursorLine() == "carol>"; }, "carol's prompt"));
  EXPECT_EQ(carol.screen().CountRows("carols secret"), 0);
  EXPECT_TRUE(messenger_.CreateAccount("Carol", kPassword).code() == ErrorCode::kUsernameTaken);
}

TEST_F(TerminalClientTest, QueuedMessagesAreCountedAtLoginAndShownByInbox) {
  std::unique_ptr<Client> bob = LoggedIn("bob");
  CreateAccount("alice");
  ASSERT_TRUE(bob->Send("alice", "first").ok());
  ASSERT_TRUE(bob->Send("alice", "second").ok());
  PtyClient alice(24, 80);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  EXPECT_NE(alice.screen().FindRow("2 messages are waiting"), -1) << alice.screen().Dump();
  alice.Type("inbox\r");
  ASSERT_TRUE(alice.WaitForText("bob: second"));
  EXPECT_LT(alice.screen().FindRow("bob: first"), alice.screen().FindRow("bob: second"));
  // Shown, hence acknowledged: nothing waits any more.
  alice.Type("inbox\r");
  ASSERT_TRUE(alice.WaitForText("No messages are waiting."));
  std::unique_ptr<Client> alice_elsewhere = LoggedIn("alice");  // Takes over; counts stored ones.
  const Result<MessageBatch> batch = alice_elsewhere->FetchUndelivered(50);
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->messages.empty());
}

TEST_F(TerminalClientTest, DeleteShowsTheUnreadCountAndNeedsConfirmation) {
  std::unique_ptr<Client> bob = LoggedIn("bob");
  CreateAccount("alice");
  for (const char* text : {"one", "two", "three"}) ASSERT_TRUE(bob->Send("alice", text).ok());
  PtyClient alice(24, 160);  // The warning fits on one row.
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));

  alice.Type("delete\r");
  ASSERT_TRUE(alice.WaitForText("the 3 unread messages waiting for it would be destroyed."));
  ASSERT_TRUE(alice.WaitForText("Type your username (alice) or 'yes' to delete it"));
  alice.Type("no\r");
  ASSERT_TRUE(alice.WaitForText("The account was kept."));

  alice.Type("delete\r");
  ASSERT_TRUE(alice.WaitFor(
      [](const Screen& s) { return s.CursorLine().rfind("Type your username", 0) == 0; },
      "the question again"));
  alice.Type("alice\r");
  ASSERT_TRUE(alice.WaitForText("The account alice was deleted."));
  ASSERT_TRUE(alice.WaitFor([](const Screen& s) { return s.CursorLine() == ">"; },
                            "the logged-out prompt"));
  EXPECT_EQ(bob->Send("alice", "anyone?").status().code(), ErrorCode::kUnknownRecipient);
}

TEST_F(TerminalClientTest, TakeoverIsShownWithItsReasonAndTheLineSurvives) {
  CreateAccount("alice");
  PtyClient alice(24, 100);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  alice.Type("send bob unfinished");
  std::unique_ptr<Client> elsewhere = LoggedIn("alice");
  ASSERT_TRUE(alice.WaitForText("logged in from somewhere else"));
  ASSERT_TRUE(
      alice.WaitFor([](const Screen& s) { return s.CursorLine() == "> send bob unfinished"; },
                    "the logged-out prompt with the line"));
}

TEST_F(TerminalClientTest, ServerShutdownIsShown) {
  CreateAccount("alice");
  PtyClient alice(24, 100);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  StopServer();
  ASSERT_TRUE(alice.WaitForText("The server is shutting down and ended this session."));
  alice.Type("inbox\r");
  // Logged out, and --user tries to log in again: the server is gone.
  ASSERT_TRUE(alice.WaitForText("Could not connect to the server"));
}

TEST_F(TerminalClientTest, TabCompletesCommandsAndListedNames) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  alice.Type("list b*\r");
  ASSERT_TRUE(alice.WaitForText("1 account matches 'b*':"));
  alice.Type("se\t");
  ASSERT_TRUE(
      alice.WaitFor([](const Screen& s) { return s.CursorLine() == "alice> send"; }, "send"));
  alice.Type("b\t");
  ASSERT_TRUE(alice.WaitFor([](const Screen& s) { return s.CursorLine() == "alice> send bob"; },
                            "send bob"));
  alice.Type("completed\r");
  ASSERT_TRUE(bob_inbox.WaitFor("completed")) << alice.screen().Dump();
}

TEST_F(TerminalClientTest, CtrlDOnAnEmptyLineLogsOutAndLeaves) {
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  alice.Type("\x04");
  EXPECT_EQ(alice.WaitExit(), kExitOk);
  EXPECT_NE(alice.screen().FindRow("Logged out."), -1) << alice.screen().Dump();
}

TEST_F(TerminalClientTest, CtrlCClearsTheLineThenLeavesOnAnEmptyOne) {
  CreateAccount("alice");
  PtyClient alice(24, 80);
  ASSERT_TRUE(StartLoggedIn(alice, "alice"));
  alice.Type("never mind");
  ASSERT_TRUE(alice.WaitFor([](const Screen& s) { return s.CursorLine() == "alice> never mind"; },
                            "the typed line"));
  alice.Type("\x03");
  ASSERT_TRUE(
      alice.WaitFor([](const Screen& s) { return s.CursorLine() == "alice>"; }, "an empty line"));
  EXPECT_NE(alice.screen().FindRow("alice> never mind^C"), -1);
  alice.Type("\x03");
  EXPECT_EQ(alice.WaitExit(), kExitOk);
}

// ---- Scripts on stdin ----

TEST_F(TerminalClientTest, ScriptRunsEveryLineWithPlainOutput) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  const ProcessResult result = RunClient(Server(),
                                         "# a comment\n"
                                         "register alice\n"
                                         "\n"
                                         "list *\n"
                                         "send bob hello from a script\n"
                                         "inbox\n"
                                         "logout\n",
                                         WithPassword());
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_EQ(result.out,
            "Account alice created.\n"
            "Logged in as alice. No messages are waiting.\n"
            "alice\n"
            "bob\n"
            "Delivered to bob.\n"
            "No messages are waiting.\n"
            "Logged out.\n");
  EXPECT_EQ(result.err, "");
  ASSERT_TRUE(bob_inbox.WaitFor("hello from a script"));
}

TEST_F(TerminalClientTest, ScriptExitStatusIsThatOfTheFirstFailureAndTheRestStillRuns) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  CreateAccount("alice");
  const ProcessResult result = RunClient(Server({"--user", "alice"}),
                                         "send nobody hi\n"
                                         "frobnicate\n"
                                         "send bob still running\n",
                                         WithPassword());
  EXPECT_EQ(result.status, kExitFailed);
  EXPECT_EQ(result.err,
            "There is no user with that name.\n"
            "Unknown command 'frobnicate'. Type 'help' to see the commands.\n");
  EXPECT_TRUE(bob_inbox.WaitFor("still running"));
}

TEST_F(TerminalClientTest, ScriptShowsPushedMessagesAndEscapesThem) {
  std::unique_ptr<Client> bob = LoggedIn("bob");
  CreateAccount("alice");
  ASSERT_TRUE(bob->Send("alice", "queued \x1b[1mbold").ok());
  const ProcessResult result = RunClient(Server({"--user", "alice"}), "inbox\n", WithPassword());
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("] bob: queued ^[[1mbold\n"), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find('\x1b'), std::string::npos);
}

TEST_F(TerminalClientTest, ScriptDeletionIsConfirmedByTheNextLine) {
  CreateAccount("alice");
  const ProcessResult kept =
      RunClient(Server({"--user", "alice"}), "delete\nnot really\n", WithPassword());
  EXPECT_EQ(kept.status, kExitFailed);
  EXPECT_NE(kept.out.find("The account was kept."), std::string::npos) << kept.out;
  const ProcessResult deleted =
      RunClient(Server({"--user", "alice"}), "delete\nyes\n", WithPassword());
  EXPECT_EQ(deleted.status, kExitOk) << deleted.err;
  EXPECT_NE(deleted.out.find("The account alice was deleted."), std::string::npos);
}

// ---- One-shot commands ----

TEST_F(TerminalClientTest, OneShotSendSucceeds) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  CreateAccount("alice");
  const ProcessResult result =
      RunClient(Server({"--user", "alice", "send", "bob", "see", "you"}), "", WithPassword());
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("Delivered to bob."), std::string::npos);
  EXPECT_TRUE(bob_inbox.WaitFor("see you"));
}

TEST_F(TerminalClientTest, OneShotCommandsWorkOverGrpc) {
  const std::uint16_t grpc_port = StartGrpc();
  ASSERT_NE(grpc_port, 0);
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  const auto run = [&](std::initializer_list<std::string> command) {
    std::vector<std::string> args = {"--transport", "grpc",   "--host",
                                     "127.0.0.1",   "--port", std::to_string(grpc_port),
                                     "--user",      "carol"};
    args.insert(args.end(), command.begin(), command.end());
    return RunClient(args, "", WithPassword());
  };
  ProcessResult result = run({"register"});
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("Account carol created."), std::string::npos) << result.out;
  result = run({"send", "bob", "one", "shot"});
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("Delivered to bob."), std::string::npos) << result.out;
  EXPECT_TRUE(bob_inbox.WaitFor("one shot"));
  result = run({"send", "nobody", "hi"});
  EXPECT_EQ(result.status, kExitFailed);
  EXPECT_EQ(result.err, "There is no user with that name.\n");

  ASSERT_TRUE(bob->Send("carol", "queued for carol").ok());
  result = run({"inbox"});
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("bob: queued for carol"), std::string::npos) << result.out;

  grpc_door_->Shutdown(1s);
  grpc_door_.reset();
  result = run({"inbox"});
  EXPECT_EQ(result.status, kExitConnection);
  EXPECT_EQ(result.err,
            "Could not connect to the server; check the address and that the server is "
            "running.\n");
}

TEST_F(TerminalClientTest, OneShotWrongPasswordExitsWithAuthStatus) {
  CreateAccount("alice");
  const ProcessResult result =
      RunClient(Server({"--user", "alice", "inbox"}), "", WithPassword("not the password"));
  EXPECT_EQ(result.status, kExitAuth);
  EXPECT_EQ(result.err, "Wrong username or password.\n");
}

TEST_F(TerminalClientTest, OneShotUnknownRecipientExitsWithFailure) {
  CreateAccount("alice");
  const ProcessResult result =
      RunClient(Server({"--user", "alice", "send", "nobody", "hi"}), "", WithPassword());
  EXPECT_EQ(result.status, kExitFailed);
  EXPECT_EQ(result.err, "There is no user with that name.\n");
}

TEST_F(TerminalClientTest, OneShotWithoutServerExitsWithConnectionStatus) {
  const std::uint16_t port = port_;
  StopServer();  // Nothing listens on the port any more.
  const ProcessResult result =
      RunClient({"--host", "127.0.0.1", "--port", std::to_string(port), "--user", "alice", "inbox"},
                "", WithPassword());
  EXPECT_EQ(result.status, kExitConnection);
  EXPECT_EQ(result.err,
            "Could not connect to the server; check the address and that the server is "
            "running.\n");
}

TEST_F(TerminalClientTest, OneShotRegisterListInboxAndDelete) {
  std::unique_ptr<Client> bob = LoggedIn("bob");
  const auto run = [&](std::initializer_list<std::string> command) {
    std::vector<std::string> args = Server({"--user", "Alice"});
    args.insert(args.end(), command.begin(), command.end());
    return RunClient(args, "", WithPassword());
  };
  ProcessResult result = run({"register"});
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("Account Alice created."), std::string::npos);
  EXPECT_EQ(run({"register"}).status, kExitFailed);  // Taken.

  result = run({"list", "[a-b]*"});
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("\nAlice\nbob\n"), std::string::npos) << result.out;

  ASSERT_TRUE(bob->Send("alice", "one").ok());
  ASSERT_TRUE(bob->Send("alice", "two").ok());
  result = run({"delete", "--yes"});
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_NE(result.out.find("the 2 unread messages waiting for it would be destroyed."),
            std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("The account Alice was deleted."), std::string::npos);
  EXPECT_EQ(run({"inbox"}).status, kExitAuth);
}

TEST_F(TerminalClientTest, OneShotDeleteWithoutYesAndWithoutAnswerKeepsTheAccount) {
  CreateAccount("alice");
  const ProcessResult result = RunClient(Server({"--user", "alice", "delete"}), "", WithPassword());
  EXPECT_EQ(result.status, kExitFailed);
  EXPECT_NE(result.out.find("The account was kept."), std::string::npos);
  EXPECT_EQ(messenger_.CreateAccount("alice", kPassword).code(), ErrorCode::kUsernameTaken);
}

TEST_F(TerminalClientTest, PasswordComesFromTheFileBeforeTheEnvironment) {
  Inbox bob_inbox;
  std::unique_ptr<Client> bob = LoggedIn("bob", bob_inbox.Handler());
  CreateAccount("alice");
  const std::filesystem::path file =
      std::filesystem::path(::testing::TempDir()) / "terminal_test_password";
  std::ofstream(file) << kPassword << "\n";
  const ProcessResult result = RunClient(
      Server({"--user", "alice", "--password-file", file.string(), "send", "bob", "from file"}), "",
      WithPassword("wrong password"));
  EXPECT_EQ(result.status, kExitOk) << result.err;
  EXPECT_TRUE(bob_inbox.WaitFor("from file"));
  std::filesystem::remove(file);

  const ProcessResult missing =
      RunClient(Server({"--user", "alice", "--password-file", "/nonexistent/pw", "inbox"}), "", {});
  EXPECT_EQ(missing.status, kExitUsage);
}

TEST_F(TerminalClientTest, NoPasswordAndNoTerminalIsAUsageError) {
  CreateAccount("alice");
  const ProcessResult result = RunClient(Server({"--user", "alice", "inbox"}));
  EXPECT_EQ(result.status, kExitUsage);
  EXPECT_NE(result.err.find("MESSENGER_PASSWORD"), std::string::npos) << result.err;
}

TEST_F(TerminalClientTest, HelpAndBadOptions) {
  const ProcessResult help = RunClient({"--help"});
  EXPECT_EQ(help.status, kExitOk);
  EXPECT_EQ(help.out, UsageText());
  const ProcessResult bad = RunClient({"--colour"});
  EXPECT_EQ(bad.status, kExitUsage);
  EXPECT_NE(bad.err.find("unknown option '--colour'"), std::string::npos);
  const ProcessResult bad_command = RunClient(Server({"frobnicate"}));
  EXPECT_EQ(bad_command.status, kExitUsage);
  const ProcessResult bad_transport = RunClient({"--transport", "carrier-pigeon", "inbox"});
  EXPECT_EQ(bad_transport.status, kExitUsage);
  EXPECT_NE(bad_transport.err.find("--transport needs 'wire' or 'grpc'"), std::string::npos)
      << bad_transport.err;
}

}  // namespace
}  // namespace messenger::terminal

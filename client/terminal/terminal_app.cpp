#include "terminal_app.h"

#include <fcntl.h>
#include <langinfo.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <clocale>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "commands.h"
#include "line_editor.h"
#include "messenger/client/client.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/rules.h"
#include "messenger/codec/status.h"

namespace messenger::terminal {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr std::chrono::seconds kConnectTimeout{5};
constexpr std::chrono::seconds kRequestTimeout{10};
// The protocol asks for a PING after at most 60 s without sending (servers close idle
// connections); some margin for a slow tick.
constexpr std::chrono::seconds kKeepAliveAfter{45};
// Bounds on paging loops, far above what a server holds (10000 stored messages per user is 200
// pages), so a misbehaving server cannot keep the client looping.
constexpr int kMaxListPages = 10000;
constexpr int kMaxFetchRounds = 10000;
// Message ids remembered to show a redelivered message only once (the protocol delivers at least
// once); far more than can be in flight, bounded for a long session.
constexpr std::size_t kShownIdCapacity = 10000;
constexpr std::string_view kProgram = "poco_messenger client";

// ---- What the client library hands over, for the thread that owns the screen ----

// Filled by the client's reader thread, emptied by the main thread, which an eventfd wakes.
class PushQueue {
 public:
  PushQueue() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~PushQueue() {
    if (fd_ >= 0) ::close(fd_);
  }
  PushQueue(const PushQueue&) = delete;
  PushQueue& operator=(const PushQueue&) = delete;

  void Add(const Push& push) {
    {
      std::lock_guard lock(mu_);
      items_.push_back(push);
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(fd_, &one, sizeof one);
  }

  std::deque<Push> Take() {
    std::uint64_t count = 0;
    [[maybe_unused]] const ssize_t ignored = ::read(fd_, &count, sizeof count);
    std::lock_guard lock(mu_);
    std::deque<Push> items;
    items.swap(items_);
    return items;
  }

  int fd() const { return fd_; }

 private:
  const int fd_;
  std::mutex mu_;
  std::deque<Push> items_;
};

// The most recent ids, oldest forgotten first.
class RecentIds {
 public:
  bool Contains(std::uint64_t id) const { return ids_.count(id) != 0; }
  void Insert(std::uint64_t id) {
    if (!ids_.insert(id).second) return;
    order_.push_back(id);
    if (order_.size() > kShownIdCapacity) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  std::deque<std::uint64_t> order_;
  std::unordered_set<std::uint64_t> ids_;
};

// ---- Where output goes and answers come from ----

class Ui {
 public:
  virtual ~Ui() = default;
  virtual void Info(std::string_view text) = 0;
  virtual void Error(std::string_view text) = 0;
  // True iff Secret() can ask a person.
  virtual bool CanAskSecret() = 0;
  // A password typed without echo; nullopt when cancelled.
  virtual std::optional<std::string> Secret(std::string_view prompt) = 0;
  // One line of answer; nullopt when there is none.
  virtual std::optional<std::string> Ask(std::string_view question) = 0;
  virtual void PromptChanged(const std::string& /*prompt*/) {}
  // True for a person at a terminal (hints and summaries), false for scripts.
  virtual bool interactive() const = 0;
};

// Scripts and one-shot commands: results on stdout, errors on stderr, nothing else.
class PlainUi final : public Ui {
 public:
  void Info(std::string_view text) override { std::cout << text << '\n' << std::flush; }
  void Error(std::string_view text) override {
    std::cout << std::flush;
    std::cerr << text << '\n' << std::flush;
  }
  bool CanAskSecret() override {
    const int fd = OpenTerminal();
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }
  std::optional<std::string> Secret(std::string_view prompt) override {
    const int fd = OpenTerminal();
    if (fd < 0) return std::nullopt;
    std::optional<std::string> secret = ReadSecretFromTerminal(fd, fd, prompt);
    ::close(fd);
    return secret;
  }
  std::optional<std::string> Ask(std::string_view question) override {
    Info(question);
    std::string answer;
    if (!std::getline(std::cin, answer)) return std::nullopt;
    return answer;
  }
  bool interactive() const override { return false; }

 private:
  // The controlling terminal, which scripts read passwords from as ssh and sudo do.
  static int OpenTerminal() { return ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY); }
};

// A person at a terminal: everything goes through the line editor, which keeps the line being
// typed intact below it.
class TerminalUi final : public Ui {
 public:
  void set_editor(LineEditor* editor) { editor_ = editor; }
  bool terminate_requested() const { return terminate_requested_; }

  void Info(std::string_view text) override { editor_->Print(text); }
  void Error(std::string_view text) override { editor_->Print(text); }
  bool CanAskSecret() override { return true; }
  std::optional<std::string> Secret(std::string_view prompt) override {
    return editor_->ReadSecret(prompt);
  }
  std::optional<std::string> Ask(std::string_view question) override {
    asking_ = true;
    const LineEditor::Input input = editor_->ReadLine(std::string(question), /*remember=*/false);
    asking_ = false;
    if (input.kind == LineEditor::InputKind::kTerminate) terminate_requested_ = true;
    if (input.kind != LineEditor::InputKind::kLine) return std::nullopt;
    return input.text;
  }
  void PromptChanged(const std::string& prompt) override {
    if (!asking_) editor_->SetPrompt(prompt);  // A question keeps its own prompt.
  }
  bool interactive() const override { return true; }

 private:
  LineEditor* editor_ = nullptr;
  bool asking_ = false;
  bool terminate_requested_ = false;
};

// ---- The session: commands against the server ----

struct Settings {
  ClientOptions client;
  Transport transport = Transport::kWire;
  std::string default_user;             // --user
  std::optional<std::string> password;  // From --password-file or MESSENGER_PASSWORD.
};

class Session {
 public:
  Session(const Settings& settings, Ui& ui)
      : settings_(settings), ui_(ui), client_(MakeClient(settings, [this](const Push& push) {
          queue_.Add(push);
          // Not accepted here: a message is acknowledged once it is on the screen (ShowEvents).
          return false;
        })) {}

  ~Session() { client_->Close(); }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int wake_fd() const { return queue_.fd(); }
  bool logged_in() const { return !user_.empty(); }
  std::string Prompt() const { return user_.empty() ? "> " : user_ + "> "; }

  std::vector<std::string> Complete(std::string_view before, std::string_view word) const {
    return CompletionCandidates(before, word, known_users_);
  }

  // Runs one command; returns its exit status.
  int Execute(const Command& command) {
    ShowEvents();
    int status = kExitOk;
    switch (command.name) {
      case CommandName::kHelp:
        ui_.Info(CommandHelp(command.text));
        break;
      case CommandName::kRegister:
        status = Register(command.user.empty() ? settings_.default_user : command.user);
        break;
      case CommandName::kLogin:
        status = Login(command.user.empty() ? settings_.default_user : command.user);
        break;
      case CommandName::kLogout:
        status = Logout();
        break;
      case CommandName::kQuit:
        Quit();
        break;
      case CommandName::kList:
      case CommandName::kSend:
      case CommandName::kInbox:
      case CommandName::kDelete:
        status = EnsureLoggedIn();
        if (status != kExitOk) break;
        if (command.name == CommandName::kList) status = List(command.text);
        if (command.name == CommandName::kSend) status = Send(command.user, command.text);
        if (command.name == CommandName::kInbox) status = Inbox();
        if (command.name == CommandName::kDelete) status = Delete(command.yes);
        break;
    }
    ShowEvents();
    return status;
  }

  // Shows what the server sent meanwhile (messages, the session ending) and acknowledges the
  // messages now on the screen.
  void ShowEvents() {
    std::vector<std::uint64_t> shown;
    for (const Push& push : queue_.Take()) {
      if (const auto* deliver = std::get_if<Deliver>(&push)) {
        Show(deliver->message);
        shown.push_back(deliver->message.message_id);
      } else if (const auto* ended = std::get_if<SessionEnded>(&push)) {
        if (!logged_in()) continue;  // Nothing was lost; a later command connects again.
        ui_.Error(DescribeSessionEnd(ended->reason) + LoginAgainHint());
        LoggedOut();
      } else if (const auto* lost = std::get_if<Disconnected>(&push)) {
        if (!logged_in()) continue;
        ui_.Error(HumanMessage(lost->reason) + " You are no longer logged in." + LoginAgainHint());
        LoggedOut();
      }
    }
    if (!shown.empty() && logged_in()) {
      // Failure needs no word: unacknowledged messages come again and are recognised then.
      (void)Call([&] { return client_->Ack(shown); });
    }
  }

  // Keeps a quiet connection open (servers close connections idle for long).
  void Tick() {
    if (logged_in() && SteadyClock::now() - last_request_ >= kKeepAliveAfter) {
      (void)Call([&] { return client_->Ping(); });
    }
  }

  // Logs out if logged in, and disconnects.
  void Quit() {
    if (logged_in()) {
      (void)Call([&] { return client_->Logout(); });
      if (ui_.interactive()) ui_.Info("Logged out.");
    }
    Close();
  }

 private:
  static std::unique_ptr<Client> MakeClient(const Settings& settings, PushHandler on_push) {
    if (settings.transport == Transport::kGrpc) {
      return MakeGrpcClient(settings.client, std::move(on_push));
    }
    return MakeWireClient(settings.client, std::move(on_push));
  }

  template <typename F>
  auto Call(F request) -> decltype(request()) {
    last_request_ = SteadyClock::now();
    // Threads started meanwhile must not take the terminal's signals. The wire client starts
    // its threads in Connect() only; gRPC may start threads of its own during any call.
    std::optional<ScopedSignalBlock> block;
    if (settings_.transport == Transport::kGrpc) block.emplace();
    return request();
  }

  int Fail(const Status& status) {
    ui_.Error(HumanMessage(status));
    return ExitStatusFor(status);
  }

  std::string LoginAgainHint() const {
    return ui_.interactive() ? " Type 'login' to log in again." : "";
  }

  // Shows `message` unless it is on the screen already (delivery is at least once: the server
  // hands a message again when an acknowledgement was lost). Either way it may be acknowledged.
  void Show(const StoredMessage& message) {
    if (!shown_ids_.Contains(message.message_id)) {
      ui_.Info(FormatMessage(message, std::time(nullptr)));
      shown_ids_.Insert(message.message_id);
    }
    if (CheckUsername(message.sender).ok()) known_users_.insert(message.sender);
  }

  void LoggedOut() {
    user_.clear();
    ui_.PromptChanged(Prompt());
  }

  Status Connect() {
    // The connection's threads start now: they must not take the terminal's signals.
    const ScopedSignalBlock block;
    return Call([&] { return client_->Connect(); });
  }

  void Close() {
    client_->Close();
    // Deliveries that were already queued are still worth showing (unacknowledged, they come
    // again later and are recognised); the end of a connection closed on purpose is not news.
    for (const Push& push : queue_.Take()) {
      if (const auto* deliver = std::get_if<Deliver>(&push)) Show(deliver->message);
    }
  }

  // The password for `user`: given, or asked for (twice when `confirm`). Returns nullopt after
  // saying why there is none (its exit status in `status`).
  std::optional<std::string> Password(const std::string& user, bool confirm, int& status) {
    if (settings_.password) return settings_.password;
    if (!ui_.CanAskSecret()) {
      ui_.Error(
          "No password: there is no terminal to ask on. Set MESSENGER_PASSWORD or use "
          "--password-file FILE.");
      status = kExitUsage;
      return std::nullopt;
    }
    std::optional<std::string> password = ui_.Secret("Password for " + user + ": ");
    if (password && confirm) {
      const std::optional<std::string> again = ui_.Secret("Repeat the password: ");
      if (again && *again != *password) {
        ui_.Error("The two passwords differ; nothing was done.");
        status = kExitFailed;
        return std::nullopt;
      }
      if (!again) password.reset();
    }
    if (!password) {
      ui_.Error("Cancelled.");
      status = kExitFailed;
    }
    return password;
  }

  int EnsureLoggedIn() {
    if (logged_in()) return kExitOk;
    if (settings_.default_user.empty()) {
      ui_.Error(ui_.interactive() ? "You need to log in first: type 'login <name>'."
                                  : "You need to log in first: give --user NAME or a 'login "
                                    "NAME' line.");
      return kExitFailed;
    }
    return Login(settings_.default_user);
  }

  int Login(const std::string& user) {
    if (user.empty()) {
      ui_.Error("Usage: login <name>  (or start the client with --user NAME)");
      return kExitUsage;
    }
    if (logged_in()) {
      if (CheckUsername(user).ok() && CanonicalUsername(user) == CanonicalUsername(user_)) {
        ui_.Info("You are already logged in as " + user_ + ".");
        return kExitOk;
      }
      ui_.Error("You are logged in as " + user_ + "; log out first.");
      return kExitFailed;
    }
    int status = kExitOk;
    const std::optional<std::string> password = Password(user, /*confirm=*/false, status);
    if (!password) return status;
    return LoginWith(user, *password);
  }

  int LoginWith(const std::string& user, const std::string& password) {
    if (Status connected = Connect(); !connected.ok()) return Fail(connected);
    Result<LoginOk> login = Call([&] { return client_->Login(user, password); });
    if (!login.ok()) {
      Close();
      return Fail(login.status());
    }
    user_ = user;
    ui_.PromptChanged(Prompt());
    const std::uint32_t waiting = login->unread_count;
    std::string text = "Logged in as " + user + ". ";
    if (waiting == 0) {
      text += "No messages are waiting.";
    } else {
      text += CountOf(waiting, "message is", "messages are") + " waiting" +
              (ui_.interactive() ? ": type 'inbox' to read them." : ".");
    }
    ui_.Info(text);
    return kExitOk;
  }

  int Register(const std::string& user) {
    if (user.empty()) {
      ui_.Error("Usage: register <name>  (or start the client with --user NAME)");
      return kExitUsage;
    }
    if (Status valid = CheckUsername(user); !valid.ok()) return Fail(valid);
    int status = kExitOk;
    const std::optional<std::string> password = Password(user, /*confirm=*/true, status);
    if (!password) return status;
    if (Status valid = CheckPassword(*password); !valid.ok()) return Fail(valid);
    if (Status connected = Connect(); !connected.ok()) return Fail(connected);
    const Status created = Call([&] { return client_->CreateAccount(user, *password); });
    if (!created.ok()) {
      if (!logged_in()) Close();
      return Fail(created);
    }
    ui_.Info("Account " + user + " created.");
    if (logged_in()) return kExitOk;  // Whoever is logged in stays so.
    return LoginWith(user, *password);
  }

  int Logout() {
    if (!logged_in()) {
      ui_.Error("You are not logged in.");
      return kExitFailed;
    }
    const Status status = Call([&] { return client_->Logout(); });
    user_.clear();
    Close();
    ui_.PromptChanged(Prompt());
    // However it went, the session is over (a lost connection logs out too).
    if (!status.ok() && status.code() != ErrorCode::kDisconnected) return Fail(status);
    ui_.Info("Logged out.");
    return kExitOk;
  }

  int List(const std::string& pattern) {
    std::vector<std::string> names;
    std::string cursor;
    for (int page = 0; page < kMaxListPages; ++page) {
      Result<AccountList> list =
          Call([&] { return client_->ListAccounts(pattern, cursor, kMaxListLimit); });
      if (!list.ok()) return Fail(list.status());
      names.insert(names.end(), list->usernames.begin(), list->usernames.end());
      if (list->next_cursor.empty()) break;
      cursor = list->next_cursor;
    }
    for (const std::string& name : names) {
      if (CheckUsername(name).ok()) known_users_.insert(name);
    }
    const std::string shown_pattern = pattern.empty() ? "*" : EscapeForTerminal(pattern);
    if (!ui_.interactive()) {
      for (const std::string& name : names) ui_.Info(EscapeForTerminal(name));
      return kExitOk;
    }
    if (names.empty()) {
      ui_.Info("No account matches '" + shown_pattern + "'.");
      return kExitOk;
    }
    std::string text =
        CountOf(names.size(), "account matches", "accounts match") + " '" + shown_pattern + "':";
    for (const std::string& name : names) text += "\n  " + EscapeForTerminal(name);
    ui_.Info(text);
    return kExitOk;
  }

  int Send(const std::string& recipient, const std::string& text) {
    if (Status valid = CheckText(text); !valid.ok()) return Fail(valid);
    Result<SendOk> sent = Call([&] { return client_->Send(recipient, text); });
    if (!sent.ok()) return Fail(sent.status());
    if (CheckUsername(recipient).ok()) known_users_.insert(recipient);
    const std::string who = EscapeForTerminal(recipient);
    if (sent->delivery == Delivery::kDelivered) {
      ui_.Info("Delivered to " + who + ".");
    } else {
      ui_.Info("Sent to " + who + ", who is offline: it waits for their next login.");
    }
    return kExitOk;
  }

  int Inbox() {
    std::size_t shown = 0;
    for (int round = 0; round < kMaxFetchRounds; ++round) {
      Result<MessageBatch> batch = Call([&] { return client_->FetchUndelivered(kMaxFetchLimit); });
      if (!batch.ok()) return Fail(batch.status());
      std::vector<std::uint64_t> ids;
      for (const StoredMessage& message : batch->messages) {
        if (!shown_ids_.Contains(message.message_id)) ++shown;
        Show(message);
        ids.push_back(message.message_id);
      }
      if (!ids.empty()) {
        const Status acked = Call([&] { return client_->Ack(ids); });
        if (!acked.ok()) return Fail(acked);
      }
      if (batch->remaining == 0 || batch->messages.empty()) break;
    }
    if (shown == 0) ui_.Info("No messages are waiting.");
    return kExitOk;
  }

  int Delete(bool confirmed) {
    Result<std::uint32_t> unread = Call([&] { return client_->DeleteAccount(false); });
    if (!unread.ok()) return Fail(unread.status());
    const std::string user = user_;
    std::string warning =
        "Deleting the account " + user + " cannot be undone: the name is retired for good";
    if (*unread == 0) {
      warning += ". No unread messages would be lost.";
    } else {
      warning += ", and the " + CountOf(*unread, "unread message", "unread messages") +
                 " waiting for it would be destroyed.";
    }
    ui_.Info(warning);
    if (!confirmed) {
      const std::optional<std::string> answer = ui_.Ask(
          "Type your username (" + user + ") or 'yes' to delete it; anything else keeps it: ");
      if (!answer || !ConfirmsDeletion(*answer, user)) {
        ui_.Info("The account was kept.");
        return kExitFailed;
      }
    }
    Result<std::uint32_t> deleted = Call([&] { return client_->DeleteAccount(true); });
    if (!deleted.ok()) return Fail(deleted.status());
    user_.clear();
    Close();
    ui_.PromptChanged(Prompt());
    ui_.Info("The account " + user + " was deleted.");
    return kExitOk;
  }

  const Settings& settings_;
  Ui& ui_;
  PushQueue queue_;  // Declared before client_: the client's handler uses it until destroyed.
  std::unique_ptr<Client> client_;
  std::string user_;                   // Logged in as, spelt as typed; empty when logged out.
  std::set<std::string> known_users_;  // For Tab completion.
  RecentIds shown_ids_;
  SteadyClock::time_point last_request_ = SteadyClock::now();
};

// ---- Modes ----

void SetUpLocale() {
  // Messages are UTF-8; wcwidth() and libedit must read the terminal's characters as such.
  std::setlocale(LC_CTYPE, "");
  const char* codeset = ::nl_langinfo(CODESET);
  if (codeset == nullptr || std::string_view(codeset) != "UTF-8") {
    std::setlocale(LC_CTYPE, "C.UTF-8");
  }
}

bool TerminalCanEdit() {
  const char* term = std::getenv("TERM");
  return ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO) && term != nullptr && *term != '\0' &&
         std::string_view(term) != "dumb";
}

int RunOneShot(const Settings& settings, const std::vector<std::string>& args) {
  const ParseResult parsed = ParseCommandArgs(args);
  if (!parsed.command) {
    std::cerr << kProgram << ": " << parsed.error << "\n";
    return kExitUsage;
  }
  PlainUi ui;
  Session session(settings, ui);
  const int status = session.Execute(*parsed.command);
  session.Quit();
  return status;
}

int RunScript(const Settings& settings) {
  PlainUi ui;
  Session session(settings, ui);
  int result = kExitOk;
  const auto record = [&](int status) {
    if (result == kExitOk) result = status;
  };
  std::string line;
  while (std::getline(std::cin, line)) {
    const std::string_view trimmed = line;
    if (trimmed.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (trimmed[trimmed.find_first_not_of(" \t\r")] == '#') continue;  // A comment.
    const ParseResult parsed = ParseCommandLine(line);
    if (!parsed.command) {
      ui.Error(parsed.error);
      record(kExitUsage);
      continue;
    }
    if (parsed.command->name == CommandName::kQuit) break;
    record(session.Execute(*parsed.command));
  }
  session.ShowEvents();
  session.Quit();
  return result;
}

int RunInteractive(const Settings& settings) {
  TerminalUi ui;
  Session session(settings, ui);
  LineEditor::Hooks hooks;
  hooks.wake_fd = session.wake_fd();
  hooks.on_wake = [&] { session.ShowEvents(); };
  hooks.on_tick = [&] { session.Tick(); };
  hooks.complete = [&](std::string_view before, std::string_view word) {
    return session.Complete(before, word);
  };
  std::unique_ptr<LineEditor> editor = LineEditor::Create(std::move(hooks));
  if (!editor) return -1;
  ui.set_editor(editor.get());
  std::string how;
  if (settings.transport == Transport::kGrpc) how = "gRPC";
  if (settings.client.tls.enabled) {
    how += std::string(how.empty() ? "" : ", ") +
           (settings.client.tls.insecure ? "TLS, server NOT verified" : "TLS");
  }
  ui.Info("poco_messenger client for " + settings.client.host + ":" +
          std::to_string(settings.client.port) + (how.empty() ? "" : " (" + how + ")") +
          ". Type 'help' to see the commands.");
  if (!settings.default_user.empty()) {
    Command login;
    login.name = CommandName::kLogin;
    session.Execute(login);
  }
  while (!ui.terminate_requested()) {
    session.ShowEvents();
    const LineEditor::Input input = editor->ReadLine(session.Prompt(), /*remember=*/true);
    if (input.kind != LineEditor::InputKind::kLine) break;
    const ParseResult parsed = ParseCommandLine(input.text);
    if (!parsed.command) {
      if (!parsed.error.empty()) ui.Error(parsed.error);
      continue;
    }
    if (parsed.command->name == CommandName::kQuit) break;
    session.Execute(*parsed.command);
  }
  session.Quit();
  return kExitOk;
}

// The first line of `path`, or nullopt after saying why not.
std::optional<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << kProgram << ": cannot read the password file '" << EscapeForTerminal(path)
              << "': " << std::strerror(errno) << "\n";
    return std::nullopt;
  }
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) {
    std::cerr << kProgram << ": the password file '" << EscapeForTerminal(path)
              << "' has an empty first line\n";
    return std::nullopt;
  }
  return line;
}

}  // namespace

int RunClient(int argc, char** argv) {
  SetUpLocale();
  // gRPC's library logs its own diagnostics (e.g. every failed TLS handshake) to stderr, which
  // would land between the client's lines; the client reports failures itself. A user who wants
  // them sets GRPC_VERBOSITY, which this does not override. Before any gRPC use: read at init.
  ::setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);
  const std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  const OptionsResult parsed = ParseOptions(args);
  if (!parsed.error.empty()) {
    std::cerr << kProgram << ": " << parsed.error << "\n"
              << "Try 'poco_messenger client --help'.\n";
    return kExitUsage;
  }
  const Options& options = parsed.options;
  if (options.help) {
    std::cout << UsageText();
    return kExitOk;
  }

  Settings settings;
  settings.client.host = options.host;
  settings.client.port = options.port;
  settings.transport = options.transport;
  settings.client.tls = options.tls;
  if (options.tls.insecure) {
    // Every time, on stderr: a script's output stays clean, the person still sees it.
    std::cerr << kProgram
              << ": WARNING: --tls-insecure: the server's identity is NOT verified. Anyone on "
                 "the network path can read and alter this session, your password included. "
                 "Use --ca-file with the server's CA instead.\n";
  }
  settings.client.connect_timeout = kConnectTimeout;
  settings.client.request_timeout = kRequestTimeout;
  settings.default_user = options.user;
  if (!options.password_file.empty()) {
    settings.password = ReadPasswordFile(options.password_file);
    if (!settings.password) return kExitUsage;
  } else if (const char* env = std::getenv("MESSENGER_PASSWORD"); env != nullptr && *env != '\0') {
    settings.password = env;
  }

  if (!options.command.empty()) return RunOneShot(settings, options.command);
  if (TerminalCanEdit()) {
    const int status = RunInteractive(settings);
    if (status >= 0) return status;  // Else the line editor could not start: read plainly.
  }
  return RunScript(settings);
}

}  // namespace messenger::terminal

#include "line_editor.h"

#include <errno.h>
#include <fcntl.h>
#include <histedit.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cwchar>
#include <cwctype>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "commands.h"

namespace messenger::terminal {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// How often ReadLine runs its on_tick hook.
constexpr milliseconds kTickInterval{1000};
// Lines kept for Up/Down.
constexpr int kHistorySize = 500;
// Longest password read: the protocol's limit is 256 bytes; more is kept to let the server say
// that it is too long rather than cutting it silently.
constexpr std::size_t kMaxSecretBytes = 4096;
// Used when the terminal does not report its width.
constexpr int kDefaultColumns = 80;

// ---- Signals ----
// Handlers only record the signal and write a byte to the self-pipe; everything else happens in
// the thread that reads the terminal.

enum SignalBit : unsigned {
  kInterrupt = 1,  // SIGINT
  kTerminate = 2,  // SIGTERM, SIGHUP, SIGQUIT
  kStop = 4,       // SIGTSTP
  kContinue = 8,   // SIGCONT
  kWindow = 16,    // SIGWINCH
};

std::atomic<unsigned> g_pending{0};
std::atomic<int> g_terminate_signal{0};
std::atomic<int> g_wake_write{-1};

constexpr int kHandledSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGCONT, SIGWINCH};

unsigned BitOf(int signo) {
  switch (signo) {
    case SIGINT:
      return kInterrupt;
    case SIGTSTP:
      return kStop;
    case SIGCONT:
      return kContinue;
    case SIGWINCH:
      return kWindow;
    default:
      return kTerminate;
  }
}

extern "C" void OnSignal(int signo) {
  const int saved_errno = errno;
  if (BitOf(signo) == kTerminate) g_terminate_signal.store(signo);
  g_pending.fetch_or(BitOf(signo));
  const int fd = g_wake_write.load();
  if (fd >= 0) {
    const char byte = 0;
    [[maybe_unused]] const ssize_t ignored = ::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

// Installs OnSignal for `signals` (without SA_RESTART, so blocking reads return EINTR) and puts
// the previous handlers back when destroyed.
class ScopedHandlers {
 public:
  explicit ScopedHandlers(std::vector<int> signals) : signals_(std::move(signals)) {
    saved_.resize(signals_.size());
    struct sigaction action {};
    action.sa_handler = OnSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    for (std::size_t i = 0; i < signals_.size(); ++i) {
      ::sigaction(signals_[i], &action, &saved_[i]);
    }
  }
  ~ScopedHandlers() {
    for (std::size_t i = 0; i < signals_.size(); ++i) ::sigaction(signals_[i], &saved_[i], nullptr);
  }
  ScopedHandlers(const ScopedHandlers&) = delete;
  ScopedHandlers& operator=(const ScopedHandlers&) = delete;

 private:
  std::vector<int> signals_;
  std::vector<struct sigaction> saved_;
};

// Stops the process as SIGTSTP would by default (the shell gets the terminal back), and returns
// once it is continued.
void SuspendSelf() {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  struct sigaction ours {};
  ::sigaction(SIGTSTP, &default_action, &ours);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGTSTP);
  sigset_t saved;
  ::pthread_sigmask(SIG_UNBLOCK, &unblock, &saved);
  ::raise(SIGTSTP);
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  ::sigaction(SIGTSTP, &ours, nullptr);
  g_pending.fetch_and(~static_cast<unsigned>(kContinue | kStop));
}

void WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// ---- Text ----

// UTF-8 of the code points in `text` (wchar_t is UTF-32 on the platforms libedit serves here).
std::string EncodeUtf8(std::wstring_view text) {
  std::string out;
  for (const wchar_t wide : text) {
    auto c = static_cast<char32_t>(wide);
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) c = 0xFFFD;
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

// The code points of UTF-8 `text`; a malformed byte becomes U+FFFD.
std::wstring DecodeUtf8(std::string_view text) {
  std::wstring out;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = lead < 0x80           ? 1
                         : (lead >> 5) == 0x6  ? 2
                         : (lead >> 4) == 0xE  ? 3
                         : (lead >> 3) == 0x1E ? 4
                                               : 0;
    char32_t c = length == 1   ? lead
                 : length == 2 ? (lead & 0x1F)
                 : length == 3 ? (lead & 0x0F)
                               : (lead & 0x07);
    bool valid = length != 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      valid = (next & 0xC0) == 0x80;
      c = (c << 6) | (next & 0x3F);
    }
    if (!valid) {
      out += static_cast<wchar_t>(0xFFFD);
      ++i;
      continue;
    }
    out += static_cast<wchar_t>(c);
    i += length;
  }
  return out;
}

int DisplayWidth(std::string_view utf8) {
  int width = 0;
  for (const wchar_t c : DecodeUtf8(utf8)) width += std::max(::wcwidth(c), 0);
  return width;
}

bool IsBlank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

// ---- Layout ----

int CursorRow(int prompt_columns, std::wstring_view before_cursor, int columns) {
  if (columns <= 0) columns = kDefaultColumns;
  prompt_columns = std::max(prompt_columns, 0);
  int row = prompt_columns / columns;
  int column = prompt_columns % columns;
  // libedit's re_putc: a character wider than the room left starts the next row; reaching the
  // right margin moves to the next row.
  const auto put = [&](int width) {
    if (column + width > columns) {
      ++row;
      column = 0;
    }
    column += width;
    if (column >= columns) {
      ++row;
      column = 0;
    }
  };
  for (const wchar_t c : before_cursor) {
    if (c == L'\n') {
      ++row;
      column = 0;
    } else if (c == L'\t') {
      do {
        put(1);
      } while (column % 8 != 0);
    } else if (c < 0x100 && std::iswcntrl(static_cast<wint_t>(c))) {
      put(1);  // Shown as ^X: two characters, each placed on its own.
      put(1);
    } else if (std::iswprint(static_cast<wint_t>(c))) {
      put(std::max(::wcwidth(c), 0));
    } else {
      // Shown as \U+XXXX (\U+XXXXX above U+FFFF).
      const int width = c > 0xFFFF ? 8 : 7;
      for (int i = 0; i < width; ++i) put(1);
    }
  }
  return row;
}

// ---- Signals ----

ScopedSignalBlock::ScopedSignalBlock() {
  sigset_t block;
  sigemptyset(&block);
  for (const int signo : kHandledSignals) sigaddset(&block, signo);
  ::pthread_sigmask(SIG_BLOCK, &block, &saved_);
}

ScopedSignalBlock::~ScopedSignalBlock() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

std::optional<std::string> ReadSecretFromTerminal(int in_fd, int out_fd, std::string_view prompt) {
  termios saved{};
  if (::tcgetattr(in_fd, &saved) != 0) return std::nullopt;
  int terminate = 0;
  bool cancelled = false;
  bool newline_shown = false;
  std::string secret;
  {
    const ScopedHandlers handlers({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP});
    const auto quiet = [&] {
      termios silent = saved;
      silent.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      silent.c_lflag |= ICANON | ISIG | ECHONL;  // The Enter still shows, as a line break.
      ::tcsetattr(in_fd, TCSANOW, &silent);
    };
    quiet();  // Before the prompt: whoever sees it may type at once.
    WriteAll(out_fd, prompt);
    for (;;) {
      char c = 0;
      const ssize_t n = ::read(in_fd, &c, 1);
      if (n == 1) {
        if (c == '\n' || c == '\r') {
          newline_shown = c == '\n';
          break;
        }
        if (secret.size() < kMaxSecretBytes) secret += c;
        continue;
      }
      if (n < 0 && errno == EINTR) {
        const unsigned bits = g_pending.fetch_and(~static_cast<unsigned>(kInterrupt | kStop));
        if (bits & kTerminate) {
          terminate = g_terminate_signal.load();
          break;
        }
        if (bits & kInterrupt) {
          cancelled = true;
          break;
        }
        if (bits & kStop) {
          ::tcsetattr(in_fd, TCSANOW, &saved);
          WriteAll(out_fd, "\n");
          SuspendSelf();
          secret.clear();
          quiet();
          WriteAll(out_fd, prompt);
        }
        continue;
      }
      cancelled = true;  // End of input or a read error: no password.
      break;
    }
    ::tcsetattr(in_fd, TCSANOW, &saved);
  }
  if (!newline_shown) WriteAll(out_fd, "\n");
  if (terminate != 0) {
    // Handled by whoever handled it before (the line editor), or fatal as usual.
    ::raise(terminate);
    return std::nullopt;
  }
  if (cancelled) return std::nullopt;
  return secret;
}

// ---- LineEditor ----

struct LineEditor::Impl {
  Hooks hooks;
  EditLine* el = nullptr;
  History* history = nullptr;
  int pipe_read = -1;
  int pipe_write = -1;
  std::unique_ptr<ScopedHandlers> handlers;
  std::string prompt;
  bool reading = false;
  bool done = false;
  Input input;

  ~Impl() {
    if (el != nullptr) el_end(el);  // Puts the terminal back as it found it.
    if (history != nullptr) history_end(history);
    handlers.reset();
    g_wake_write.store(-1);
    if (pipe_read >= 0) ::close(pipe_read);
    if (pipe_write >= 0) ::close(pipe_write);
  }

  static Impl& Of(EditLine* el) {
    void* data = nullptr;
    el_get(el, EL_CLIENTDATA, &data);
    return *static_cast<Impl*>(data);
  }

  static char* PromptOf(EditLine* el) { return Of(el).prompt.data(); }

  void Write(std::string_view bytes) {
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fflush(stdout);
  }

  int Columns() const {
    int columns = 0;
    el_get(el, EL_GETTC, "co", &columns);
    return columns > 0 ? columns : kDefaultColumns;
  }

  std::wstring Line() const {
    const LineInfoW* line = el_wline(el);
    return std::wstring(line->buffer, static_cast<std::size_t>(line->lastchar - line->buffer));
  }

  // Moves to the start of the prompt and erases it and everything below, so that the screen
  // looks as if no line were being edited.
  void ClearEditArea() {
    const LineInfoW* line = el_wline(el);
    const std::wstring_view before(line->buffer,
                                   static_cast<std::size_t>(line->cursor - line->buffer));
    const int row = CursorRow(DisplayWidth(prompt), before, Columns());
    std::string out = "\r";
    if (row > 0) out += "\033[" + std::to_string(row) + "A";
    out += "\033[J";
    Write(out);
  }

  // Raw mode, empty line, prompt shown; then `text` typed in, if any.
  void StartLine(const std::wstring& text) {
    el_set(el, EL_UNBUFFERED, 1);
    if (!text.empty()) {
      ClearEditArea();
      el_winsertstr(el, text.c_str());
      el_set(el, EL_REFRESH);
    }
  }

  // Back to the terminal's normal mode (libedit leaves the cursor where it is).
  void EndLine() { el_set(el, EL_UNBUFFERED, 0); }

  // The normal mode without echo, for while a command runs: keys typed ahead wait, unseen, for
  // the next line, where libedit shows them, instead of the terminal echoing them into the
  // command's output.
  static void Quiet() {
    termios mode{};
    if (::tcgetattr(STDIN_FILENO, &mode) != 0) return;
    mode.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &mode);
  }

  void Finish(InputKind kind, std::string text = {}) {
    EndLine();
    Quiet();
    input = Input{kind, std::move(text)};
    done = true;
  }

  void HandleSignals() {
    const unsigned bits = g_pending.exchange(0);
    if (bits & kTerminate) {
      ClearEditArea();
      Finish(InputKind::kTerminate);
      return;
    }
    if (bits & kWindow) el_resize(el);
    if (bits & kInterrupt) {
      const std::wstring typed = Line();
      ClearEditArea();
      if (IsBlank(EncodeUtf8(typed))) {
        Finish(InputKind::kEnd);
        return;
      }
      // Keep what was abandoned visible, as shells do, then start afresh.
      Write(prompt + EscapeForTerminal(EncodeUtf8(typed)) + "^C\n");
      EndLine();
      StartLine(L"");
    }
    if (bits & kStop) {
      const std::wstring typed = Line();
      ClearEditArea();
      EndLine();
      SuspendSelf();
      StartLine(typed);
    } else if (bits & kContinue) {
      // Stopped by someone else: the terminal may have been changed meanwhile.
      const std::wstring typed = Line();
      ClearEditArea();
      EndLine();
      StartLine(typed);
    }
  }

  void ReadKey() {
    int available = 0;
    if (::ioctl(STDIN_FILENO, FIONREAD, &available) != 0 || available <= 0) {
      ClearEditArea();
      Finish(InputKind::kEnd);  // Readable with nothing to read: the terminal has gone.
      return;
    }
    int count = 0;
    const wchar_t* line = el_wgets(el, &count);
    if (line == nullptr || count <= 0) return;
    if (count == 1 && line[0] == 0x04) {
      // Ctrl-D on an empty line; libedit has shown it as ^D, which is erased with the prompt.
      ClearEditArea();
      Finish(InputKind::kEnd);
      return;
    }
    if (line[count - 1] == L'\n') {
      Finish(InputKind::kLine,
             EncodeUtf8(std::wstring_view(line, static_cast<std::size_t>(count - 1))));
    }
  }

  static unsigned char CompleteKey(EditLine* el, int /*key*/) {
    Impl& self = Of(el);
    if (!self.hooks.complete) return CC_REFRESH_BEEP;
    const LineInfoW* line = el_wline(el);
    const wchar_t* start = line->cursor;
    while (start > line->buffer && !std::iswspace(static_cast<wint_t>(start[-1]))) --start;
    const std::string before =
        EncodeUtf8(std::wstring_view(line->buffer, static_cast<std::size_t>(start - line->buffer)));
    const std::wstring word_wide(start, static_cast<std::size_t>(line->cursor - start));
    const std::string word = EncodeUtf8(word_wide);
    const std::vector<std::string> candidates = self.hooks.complete(before, word);
    if (candidates.empty()) return CC_REFRESH_BEEP;
    std::string common = candidates.front();
    for (const std::string& candidate : candidates) {
      std::size_t n = 0;
      while (n < common.size() && n < candidate.size() && common[n] == candidate[n]) ++n;
      common.resize(n);
    }
    if (candidates.size() == 1) common += ' ';
    if (candidates.size() == 1 || common.size() > word.size()) {
      el_wdeletestr(el, static_cast<int>(word_wide.size()));
      el_winsertstr(el, DecodeUtf8(common).c_str());
      return CC_REFRESH;
    }
    // Nothing to add: show the choices above the line.
    std::string list;
    for (const std::string& candidate : candidates) {
      if (!list.empty()) list += "  ";
      list += EscapeForTerminal(candidate);
    }
    self.ClearEditArea();
    self.Write(list + "\n");
    el_set(el, EL_REFRESH);
    return CC_NORM;
  }
};

std::unique_ptr<LineEditor> LineEditor::Create(Hooks hooks) {
  if (!::isatty(STDIN_FILENO) || !::isatty(STDOUT_FILENO)) return nullptr;
  auto impl = std::make_unique<Impl>();
  impl->hooks = std::move(hooks);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return nullptr;
  impl->pipe_read = fds[0];
  impl->pipe_write = fds[1];
  g_pending.store(0);
  g_wake_write.store(impl->pipe_write);
  impl->handlers = std::make_unique<ScopedHandlers>(
      std::vector<int>(std::begin(kHandledSignals), std::end(kHandledSignals)));

  impl->el = el_init("poco_messenger", stdin, stdout, stderr);
  impl->history = history_init();
  if (impl->el == nullptr || impl->history == nullptr) return nullptr;
  HistEvent event;
  history(impl->history, &event, H_SETSIZE, kHistorySize);
  history(impl->history, &event, H_SETUNIQUE, 1);
  EditLine* el = impl->el;
  el_set(el, EL_CLIENTDATA, impl.get());
  el_set(el, EL_EDITOR, "emacs");
  el_set(el, EL_PROMPT, &Impl::PromptOf);
  el_set(el, EL_HIST, history, impl->history);
  el_source(el, nullptr);  // The user's ~/.editrc (key bindings, vi mode), if any.
  // The wide form: the narrow one copies the name and help into memory libedit never frees.
  el_wset(el, EL_ADDFN, L"messenger-complete", L"complete commands and user names",
          &Impl::CompleteKey);
  el_set(el, EL_BIND, "^I", "messenger-complete", nullptr);
  Impl::Quiet();  // Until the first line is read; el_end() restores the terminal's own mode.
  return std::unique_ptr<LineEditor>(new LineEditor(std::move(impl)));
}

LineEditor::LineEditor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LineEditor::~LineEditor() = default;

LineEditor::Input LineEditor::ReadLine(const std::string& prompt, bool remember) {
  Impl& d = *impl_;
  d.prompt = prompt;
  d.done = false;
  d.input = Input{};
  // A Ctrl-C pressed while a command was running (which cannot be cut short) is not meant for
  // this new line.
  g_pending.fetch_and(~static_cast<unsigned>(kInterrupt));
  d.StartLine(L"");
  d.reading = true;
  auto next_tick = SteadyClock::now() + kTickInterval;
  while (!d.done) {
    pollfd fds[3] = {
        {STDIN_FILENO, POLLIN, 0}, {d.pipe_read, POLLIN, 0}, {d.hooks.wake_fd, POLLIN, 0}};
    const nfds_t count = d.hooks.wake_fd >= 0 ? 3 : 2;
    const auto wait = std::chrono::duration_cast<milliseconds>(next_tick - SteadyClock::now());
    const int ready =
        ::poll(fds, count, static_cast<int>(std::max<milliseconds::rep>(wait.count(), 0)));
    if (ready < 0 && errno != EINTR) {
      d.Finish(InputKind::kEnd);
      break;
    }
    if (ready > 0 && (fds[1].revents & POLLIN)) {
      char drained[64];
      while (::read(d.pipe_read, drained, sizeof drained) > 0) {
      }
    }
    if (g_pending.load() != 0) {
      d.HandleSignals();
      if (d.done) break;
    }
    if (ready > 0 && count == 3 && (fds[2].revents & POLLIN) && d.hooks.on_wake) d.hooks.on_wake();
    if (ready > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) d.ReadKey();
    if (!d.done && SteadyClock::now() >= next_tick) {
      next_tick = SteadyClock::now() + kTickInterval;
      if (d.hooks.on_tick) d.hooks.on_tick();
    }
  }
  d.reading = false;
  if (remember && d.input.kind == InputKind::kLine && !IsBlank(d.input.text)) {
    HistEvent event;
    history(d.history, &event, H_ENTER, d.input.text.c_str());
  }
  return d.input;
}

void LineEditor::Print(std::string_view text) {
  Impl& d = *impl_;
  if (!d.reading) {
    d.Write(std::string(text) + "\n");
    return;
  }
  d.ClearEditArea();
  d.Write(std::string(text) + "\n");
  el_set(d.el, EL_REFRESH);
}

void LineEditor::SetPrompt(const std::string& prompt) {
  Impl& d = *impl_;
  if (!d.reading) {
    d.prompt = prompt;
    return;
  }
  d.ClearEditArea();
  d.prompt = prompt;
  el_set(d.el, EL_REFRESH);
}

std::optional<std::string> LineEditor::ReadSecret(std::string_view prompt) {
  std::fflush(stdout);
  return ReadSecretFromTerminal(STDIN_FILENO, STDOUT_FILENO, prompt);
}

}  // namespace messenger::terminal

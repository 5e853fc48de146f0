// LineEditor: the interactive client's input line, with editing, history and Tab completion from
// libedit, while other output (messages arriving from the network) keeps appearing above it.
//
// Input is read one key at a time (libedit's unbuffered mode) from a poll() loop that also
// watches a wake-up descriptor and a self-pipe for signals, so a message can be printed the
// moment it arrives: the edit area is erased (the cursor row is computed as libedit lays the
// line out), the text printed, then libedit redraws prompt, line and cursor where they were.
//
// libedit's readline-compatible callback interface (rl_callback_read_char) is not used: in
// Debian 12's libedit it writes to freed memory once a line exceeds 1024 bytes, and messages may
// be up to 4096. Its native interface (histedit.h) does the same unbuffered reading safely.
//
// Thread-safety: one LineEditor per process (terminal modes and signal handlers are per process),
// used from one thread.
#ifndef MESSENGER_CLIENT_TERMINAL_LINE_EDITOR_H_
#define MESSENGER_CLIENT_TERMINAL_LINE_EDITOR_H_

#include <signal.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace messenger::terminal {

// The row, counted from the row of the prompt, on which libedit puts the cursor when the prompt
// takes `prompt_columns` columns and `before_cursor` precedes the cursor, on a terminal
// `columns` wide. Mirrors libedit's layout: a character that would cross the right margin starts
// the next row; a cursor right after the last column is on the next row; control characters
// take two columns (^X); a tab advances to the next multiple of 8. Uses wcwidth(), so the
// process's LC_CTYPE must be the terminal's.
int CursorRow(int prompt_columns, std::wstring_view before_cursor, int columns);

// Blocks the signals the terminal client handles (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP,
// SIGCONT, SIGWINCH) in the calling thread while alive. Threads started meanwhile inherit the
// mask and never receive them, so they interrupt the thread that reads the terminal.
class ScopedSignalBlock {
 public:
  ScopedSignalBlock();
  ~ScopedSignalBlock();
  ScopedSignalBlock(const ScopedSignalBlock&) = delete;
  ScopedSignalBlock& operator=(const ScopedSignalBlock&) = delete;

 private:
  sigset_t saved_;
};

// Reads a line from the terminal `in_fd` with echo off, after writing `prompt` to `out_fd`.
// Returns nullopt on end of input, error, or Ctrl-C. Ctrl-Z suspends and asks again on resume.
// SIGTERM, SIGHUP and SIGQUIT are raised again once the terminal is restored.
// REQUIRES: `in_fd` is a terminal.
std::optional<std::string> ReadSecretFromTerminal(int in_fd, int out_fd, std::string_view prompt);

class LineEditor {
 public:
  enum class InputKind {
    kLine,       // A line was entered (`text`, without the line break).
    kEnd,        // Ctrl-D or Ctrl-C on an empty line, or the terminal went away.
    kTerminate,  // SIGTERM, SIGHUP or SIGQUIT: leave now.
  };
  struct Input {
    InputKind kind = InputKind::kEnd;
    std::string text;
  };
  struct Hooks {
    int wake_fd = -1;               // Readable when on_wake has output to show.
    std::function<void()> on_wake;  // Called with the line on screen; may call Print().
    std::function<void()> on_tick;  // Called about once a second while waiting for input.
    // Completions of `word` (UTF-8) given the line before it, for Tab.
    std::function<std::vector<std::string>(std::string_view before_word, std::string_view word)>
        complete;
  };

  // Returns nullptr when stdin or stdout is not a terminal or libedit cannot start.
  static std::unique_ptr<LineEditor> Create(Hooks hooks);

  // Restores the terminal modes and the signal handlers.
  ~LineEditor();
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  // Shows `prompt` and lets the user edit a line until Enter, Ctrl-D, Ctrl-C or a terminating
  // signal. Meanwhile runs the hooks. `remember`: add a non-blank line to the history.
  Input ReadLine(const std::string& prompt, bool remember);

  // Prints `text` (one or more lines, no final line break needed; REQUIRES: nothing in it that
  // moves the cursor other than line breaks) above the line being edited, which is redrawn
  // intact below it; outside ReadLine, simply prints it.
  void Print(std::string_view text);

  // Replaces the prompt; redraws at once when a line is being edited.
  void SetPrompt(const std::string& prompt);

  // ReadSecretFromTerminal on stdin/stdout. REQUIRES: not called from a hook.
  std::optional<std::string> ReadSecret(std::string_view prompt);

 private:
  struct Impl;
  explicit LineEditor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace messenger::terminal

#endif  // MESSENGER_CLIENT_TERMINAL_LINE_EDITOR_H_

// `poco_messenger client`: the terminal client people use. Interactive on a terminal (line
// editing, messages appearing as they arrive), line by line with plain output when stdin is not
// a terminal, or one command given on the command line. `poco_messenger client --help` and
// README.md describe it; commands.h holds its rules, line_editor.h its input line.
#ifndef MESSENGER_CLIENT_TERMINAL_TERMINAL_APP_H_
#define MESSENGER_CLIENT_TERMINAL_TERMINAL_APP_H_

namespace messenger::terminal {

// Runs `poco_messenger client`: argv[0] names the program and the client's options and command
// follow. Returns the process exit status (the kExit* constants of commands.h).
int RunClient(int argc, char** argv);

}  // namespace messenger::terminal

#endif  // MESSENGER_CLIENT_TERMINAL_TERMINAL_APP_H_

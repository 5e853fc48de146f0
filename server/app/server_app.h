// The `poco_messenger server` subcommand: options, startup, the readiness line, graceful stop.
#ifndef MESSENGER_SERVER_APP_SERVER_APP_H_
#define MESSENGER_SERVER_APP_SERVER_APP_H_

#include <string_view>

namespace messenger {

// The release this binary belongs to: the CMake project version, passed in by the build.
inline constexpr std::string_view kVersion = MESSENGER_VERSION;

// Process exit codes of poco_messenger.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // Could not start (database, address) or stop cleanly.
inline constexpr int kExitUsage = 2;    // Bad command line or configuration file.

// Runs `poco_messenger server`; argv[0] names the program and the options follow. Returns the
// process exit code. Blocks until SIGINT or SIGTERM, then stops gracefully.
// REQUIRES: called from main() before any other thread exists (it sets the signal mask that all
// threads inherit).
int RunServer(int argc, char** argv);

}  // namespace messenger

#endif  // MESSENGER_SERVER_APP_SERVER_APP_H_

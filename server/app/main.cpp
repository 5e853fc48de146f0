// poco_messenger: one binary, one subcommand per role.
#include <iostream>
#include <string_view>

#include "server_app.h"
#include "terminal_app.h"

namespace {

void PrintUsage(std::ostream& out) {
  out << "Usage: poco_messenger <command> [options]\n"
         "\n"
         "Commands:\n"
         "  server     run the messenger server (poco_messenger server --help for its options)\n"
         "  client     the terminal client (poco_messenger client --help for its commands)\n"
         "\n"
         "  --help     show this help\n"
         "  --version  print the version\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(std::cerr);
    return messenger::kExitUsage;
  }
  const std::string_view command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    PrintUsage(std::cout);
    return messenger::kExitOk;
  }
  if (command == "--version") {
    std::cout << "poco_messenger " << messenger::kVersion << "\n";
    return messenger::kExitOk;
  }
  if (command == "server") {
    argv[1] = argv[0];  // The options follow the program name, as for a plain main().
    return messenger::RunServer(argc - 1, argv + 1);
  }
  if (command == "client") {
    argv[1] = argv[0];
    return messenger::terminal::RunClient(argc - 1, argv + 1);
  }
  std::cerr << "poco_messenger: unknown command '" << command << "'\n\n";
  PrintUsage(std::cerr);
  return messenger::kExitUsage;
}

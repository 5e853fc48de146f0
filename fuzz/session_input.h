// The input format of fuzz_session, shared by the fuzzer and the tool that writes its seed corpus.
//
// An input is one configuration byte, then a script of steps:
//   - a data step `[c][n][n bytes]` with c < kFirstControl: the bytes client (c % kClients) sends
//     next (a closed client connects again first);
//   - a control step `[c][arg]` with c >= kFirstControl: operation (c - kFirstControl) %
//     kControlCount, see Control.
// A step cut short by the end of the input uses what is there.
#ifndef MESSENGER_FUZZ_SESSION_INPUT_H_
#define MESSENGER_FUZZ_SESSION_INPUT_H_

#include <cstdint>

namespace messenger::fuzz_session {

// Clients interleaved over one server: enough for sender, recipient and a third party who tries
// to read, impersonate or take over.
inline constexpr int kClients = 3;

inline constexpr std::uint8_t kFirstControl = 0xC0;

enum class Control : std::uint8_t {
  kAdvanceCentiseconds = 0,  // The clock moves arg * 10 ms; then every open session is ticked.
  kAdvanceSeconds = 1,       // arg seconds, then ticks.
  kAdvanceTenMinutes = 2,    // arg * 10 minutes (past the 24 h dedupe window), then ticks.
  kDisconnect = 3,     // Client (arg % kClients) drops its connection (its next data reconnects).
  kFailStoreCall = 4,  // Store call number (arg % 8) + 1 from now fails with INTERNAL.
  kFailNextHash = 5,   // The next password hash fails (out of memory).
  kShutdown = 6,       // The server shuts down; the rest of the input is ignored.
};
inline constexpr int kControlCount = 7;

// The configuration byte: each field selects one of four settings (see fuzz_session.cpp).
inline constexpr int kConfigFrameSizeShift = 0;  // 1 bit: default or the smallest frame limit.
inline constexpr int kConfigQueueShift = 1;      // 2 bits: queue cap per recipient.
inline constexpr int kConfigRateShift = 3;       // 2 bits: send rate and burst.
inline constexpr int kConfigTimeoutShift = 5;    // 2 bits: idle and login timeouts.

inline constexpr std::uint8_t ControlByte(Control control) {
  return static_cast<std::uint8_t>(kFirstControl + static_cast<std::uint8_t>(control));
}

}  // namespace messenger::fuzz_session

#endif  // MESSENGER_FUZZ_SESSION_INPUT_H_

// Time as the core sees it, injectable so tests control it.
#ifndef MESSENGER_SERVER_CLOCK_H_
#define MESSENGER_SERVER_CLOCK_H_

#include <cstdint>

namespace messenger {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in ms since the Unix epoch (UTC): message timestamps.
  virtual std::uint64_t NowMs() = 0;
  // Monotonic time in ms from an arbitrary origin: timeouts, rate limits, throttles.
  virtual std::uint64_t SteadyMs() = 0;
};

// The process's real clocks.
Clock& SystemClock();

}  // namespace messenger

#endif  // MESSENGER_SERVER_CLOCK_H_

#include "bench.h"

#include <thread>

namespace messenger::bench {

bool RunControl::ReadyAndWait() {
  ready_.fetch_add(1);
  // Setup lasts milliseconds; polling keeps the control free of condition variables that the hot
  // path would otherwise have to notify.
  while (phase() == Phase::kSetup) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return !stopping();
}

void RunControl::Fail(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!failed_.load()) first_failure_ = status;
    failed_.store(true);
  }
  SetPhase(Phase::kStop);
}

Status RunControl::first_failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return first_failure_;
}

void WriteStamp(char* text, std::int64_t nanoseconds) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto value = static_cast<std::uint64_t>(nanoseconds);
  for (int i = static_cast<int>(kStampBytes) - 1; i >= 0; --i) {
    text[i] = kHex[value & 0xF];
    value >>= 4;
  }
}

std::int64_t ReadStamp(const char* text, std::size_t size) {
  if (size < kStampBytes) return -1;
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < kStampBytes; ++i) {
    const char c = text[i];
    std::uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<std::uint64_t>(c - 'a' + 10);
    } else {
      return -1;
    }
    value = (value << 4) | digit;
  }
  return static_cast<std::int64_t>(value);
}

std::string MakeText(std::size_t bytes) {
  std::string text(bytes, 'x');
  WriteStamp(text.data(), 0);
  return text;
}

}  // namespace messenger::bench

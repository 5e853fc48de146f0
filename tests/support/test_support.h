// Scaffolding shared by the loopback test suites (client, server, tls): status assertions, a
// bounded poll, and a transparent password hasher (stateless, so thread-safe). Header-only.
#ifndef MESSENGER_TESTS_SUPPORT_TEST_SUPPORT_H_
#define MESSENGER_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include "messenger/codec/status.h"
#include "messenger/server/password_hasher.h"

// Asserts (fatally) that the messenger::Status `expr` is OK, printing the expression and status.
#define ASSERT_OK(expr)                                               \
  do {                                                                \
    const ::messenger::Status status_ = (expr);                       \
    ASSERT_TRUE(status_.ok()) << #expr << ": " << status_.ToString(); \
  } while (false)

// As ASSERT_OK, but the test carries on after a failure.
#define EXPECT_OK(expr)                                               \
  do {                                                                \
    const ::messenger::Status status_ = (expr);                       \
    EXPECT_TRUE(status_.ok()) << #expr << ": " << status_.ToString(); \
  } while (false)

namespace messenger::testing {

// Eventually's default bound: far above loopback latency, short enough to fail a test promptly.
inline constexpr std::chrono::milliseconds kEventuallyTimeout{5000};

// Polls `condition` every 10 ms until it holds or `timeout` passes; returns its last value.
template <typename Condition>
bool Eventually(Condition condition, std::chrono::milliseconds timeout = kEventuallyTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Stores "plain:" + password: for tests of everything but password storage, it keeps logins fast.
class PlainHasher final : public PasswordHasher {
 public:
  Result<std::string> Hash(std::string_view password) override {
    return "plain:" + std::string(password);
  }
  bool Verify(std::string_view hash, std::string_view password) override {
    return hash == "plain:" + std::string(password);
  }
};

}  // namespace messenger::testing

#endif  // MESSENGER_TESTS_SUPPORT_TEST_SUPPORT_H_

// Fakes shared by the core tests: a clock the test moves, a cheap password hasher, a mock sink.
#ifndef MESSENGER_TESTS_SERVER_FAKES_H_
#define MESSENGER_TESTS_SERVER_FAKES_H_

#include <gmock/gmock.h>

#include <atomic>
#include <string>

#include "messenger/server/clock.h"
#include "messenger/server/messenger.h"
#include "messenger/server/password_hasher.h"

namespace messenger::testing {

class FakeClock final : public Clock {
 public:
  std::uint64_t NowMs() override { return 1'700'000'000'000 + now_; }
  std::uint64_t SteadyMs() override { return now_; }
  void Advance(std::uint64_t ms) { now_ += ms; }

 private:
  std::atomic<std::uint64_t> now_{1000};
};

// Reversible "hash": keeps tests fast; the real Argon2 hasher has its own test.
class FakeHasher final : public PasswordHasher {
 public:
  Result<std::string> Hash(std::string_view password) override {
    ++hashes;
    return "fake$" + std::string(password);
  }
  bool Verify(std::string_view hash, std::string_view password) override {
    ++verifies;
    return hash == "fake$" + std::string(password);
  }
  std::atomic<int> hashes{0};
  std::atomic<int> verifies{0};
};

class MockSink : public SessionSink {
 public:
  MOCK_METHOD(void, Deliver, (const StoredMessage& message), (override));
  MOCK_METHOD(void, End, (EndReason reason, const std::string& message), (override));
};

}  // namespace messenger::testing

#endif  // MESSENGER_TESTS_SERVER_FAKES_H_

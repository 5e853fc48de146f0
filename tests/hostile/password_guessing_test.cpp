// Online password guessing against the real server: failed logins for one name are throttled
// whoever makes them, and nobody else is slowed down by it.
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "hostile_support.h"

namespace messenger::test {
namespace {

// docs/PROTOCOL.md 12.2: the sixth failed LOGIN for a name within 60 s is refused unchecked.
constexpr int kFailuresBeforeThrottle = 5;

TEST_F(HostileTest, PasswordGuessingIsThrottledWithoutSlowingOtherUsers) {
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start());
  {
    TestClient setup;
    ASSERT_TRUE(setup.Connect(server.port()));
    ASSERT_TRUE(setup.Hello());
    ASSERT_TRUE(setup.Create("alice"));
    ASSERT_TRUE(setup.Create("bob"));
  }

  // Three connections take turns guessing alice's password, in any letter case: the failures
  // count for the name, not the connection.
  std::vector<TestClient> guessers(3);
  for (TestClient& guesser : guessers) {
    ASSERT_TRUE(guesser.Connect(server.port()));
    ASSERT_TRUE(guesser.Hello());
  }
  const char* spellings[] = {"alice", "Alice", "ALICE"};
  int failed = 0;
  int throttled = 0;
  for (int i = 0; i < 30; ++i) {
    const std::optional<Frame> reply =
        guessers[i % 3].Call(Login{spellings[i % 3], "guess number " + std::to_string(i)});
    if (i < kFailuresBeforeThrottle) {
      EXPECT_TRUE(IsError(reply, ErrorCode::kAuthFailed)) << "guess " << i << ": " << Show(reply);
    } else {
      EXPECT_TRUE(IsError(reply, ErrorCode::kLoginThrottled))
          << "guess " << i << ": " << Show(reply);
    }
    failed += IsError(reply, ErrorCode::kAuthFailed) ? 1 : 0;
    throttled += IsError(reply, ErrorCode::kLoginThrottled) ? 1 : 0;
  }
  EXPECT_EQ(failed, kFailuresBeforeThrottle);
  EXPECT_EQ(throttled, 30 - kFailuresBeforeThrottle);
  // While throttled, even the right password is refused unchecked: guessing cannot go on.
  EXPECT_TRUE(IsError(guessers[0].Call(Login{"alice", kPassword}), ErrorCode::kLoginThrottled));

  // A burst of pipelined guesses while bob logs in from elsewhere: the guesses are refused
  // without hashing, so bob's login is as quick as ever.
  TestClient bob;
  ASSERT_TRUE(bob.Connect(server.port()));
  ASSERT_TRUE(bob.Hello());
  int burst_throttled = 0;
  std::thread burst([&] {
    std::vector<std::uint32_t> ids;
    for (int i = 0; i < 200; ++i) {
      ids.push_back(guessers[1].Send(Login{"alice", "burst guess " + std::to_string(i)}));
    }
    for (std::uint32_t id : ids) {
      burst_throttled += IsError(guessers[1].WaitResponse(id), ErrorCode::kLoginThrottled) ? 1 : 0;
    }
  });
  const SteadyTime start = Now();
  EXPECT_TRUE(bob.Login("bob"));
  const auto took = std::chrono::duration_cast<milliseconds>(Now() - start);
  burst.join();
  EXPECT_EQ(burst_throttled, 200);
  EXPECT_LT(took, milliseconds(1000)) << "bob's login took " << took.count() << " ms";
  EXPECT_TRUE(Is<Pong>(bob.Call(Ping{1})));

  // Names that do not exist are throttled alike, so throttling does not reveal which exist.
  TestClient prober;
  ASSERT_TRUE(prober.Connect(server.port()));
  ASSERT_TRUE(prober.Hello());
  for (int i = 0; i < kFailuresBeforeThrottle; ++i) {
    EXPECT_TRUE(IsError(prober.Call(Login{"nobody", "wrong guess"}), ErrorCode::kAuthFailed));
  }
  EXPECT_TRUE(IsError(prober.Call(Login{"nobody", "wrong guess"}), ErrorCode::kLoginThrottled));
  // The guessers' connections themselves stay usable.
  for (TestClient& guesser : guessers) EXPECT_TRUE(Is<Pong>(guesser.Call(Ping{2})));
}

}  // namespace
}  // namespace messenger::test

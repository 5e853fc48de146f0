#include "messenger/server/password_hasher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace messenger {
namespace {

TEST(PasswordHasherTest, VerifiesTheRightPasswordOnly) {
  Result<std::unique_ptr<PasswordHasher>> hasher = MakeArgon2Hasher(PasswordCost::kTest, 2);
  ASSERT_TRUE(hasher.ok());
  Result<std::string> hash = (*hasher)->Hash("correct horse");
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(hash->rfind("$argon2id$", 0), 0u) << *hash;
  EXPECT_TRUE((*hasher)->Verify(*hash, "correct horse"));
  EXPECT_FALSE((*hasher)->Verify(*hash, "correct horsE"));
  EXPECT_NE(*(*hasher)->Hash("correct horse"), *hash) << "every hash has its own salt";
}

TEST(PasswordHasherTest, MalformedHashesNeverMatch) {
  auto hasher = std::move(MakeArgon2Hasher(PasswordCost::kTest, 1).value());
  EXPECT_FALSE(hasher->Verify("", "anything at all"));
  EXPECT_FALSE(hasher->Verify("$argon2id$garbage", "anything at all"));
  EXPECT_FALSE(hasher->Verify(std::string(1000, 'x'), "anything at all"));
}

TEST(PasswordHasherTest, ConcurrentCallersAllComplete) {
  auto hasher = std::move(MakeArgon2Hasher(PasswordCost::kTest, 2).value());
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      Result<std::string> hash = hasher->Hash("password " + std::to_string(i));
      if (hash.ok() && hasher->Verify(*hash, "password " + std::to_string(i))) ++verified;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(verified, 8);
}

}  // namespace
}  // namespace messenger

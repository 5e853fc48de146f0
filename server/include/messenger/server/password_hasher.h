// Password hashing (Argon2id via libsodium) with a cap on concurrent hashes.
#ifndef MESSENGER_SERVER_PASSWORD_HASHER_H_
#define MESSENGER_SERVER_PASSWORD_HASHER_H_

#include <memory>
#include <string>
#include <string_view>

#include "messenger/codec/status.h"

namespace messenger {

class Metrics;

// Thread-safe. Calls block while the concurrency cap is reached.
class PasswordHasher {
 public:
  virtual ~PasswordHasher() = default;
  // A self-describing hash string of `password`. Errors: kInternal (out of memory).
  virtual Result<std::string> Hash(std::string_view password) = 0;
  // True iff `password` matches `hash`. A malformed hash never matches.
  virtual bool Verify(std::string_view hash, std::string_view password) = 0;
};

enum class PasswordCost {
  kInteractive,  // libsodium's interactive limits: the production default.
  kTest,         // Minimum cost: fast tests and benchmarks only, never real accounts.
};

// REQUIRES: max_concurrent >= 1. With `metrics` (which must outlive the hasher), every Hash and
// Verify records how long it waited for a free slot (password_hash_wait_seconds).
// Errors: kInternal if libsodium cannot initialise.
Result<std::unique_ptr<PasswordHasher>> MakeArgon2Hasher(PasswordCost cost, int max_concurrent,
                                                         Metrics* metrics = nullptr);

}  // namespace messenger

#endif  // MESSENGER_SERVER_PASSWORD_HASHER_H_

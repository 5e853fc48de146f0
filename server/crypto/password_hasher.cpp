#include "messenger/server/password_hasher.h"

#include <sodium.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "messenger/server/metrics.h"

namespace messenger {
namespace {

class Argon2Hasher final : public PasswordHasher {
 public:
  Argon2Hasher(unsigned long long opslimit, std::size_t memlimit, int max_concurrent,
               Metrics* metrics)
      : opslimit_(opslimit), memlimit_(memlimit), metrics_(metrics), free_slots_(max_concurrent) {}

  Result<std::string> Hash(std::string_view password) override {
    Slot slot(*this);
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(out, password.data(), password.size(), opslimit_, memlimit_) != 0) {
      return Status(ErrorCode::kInternal, "password hashing ran out of memory");
    }
    return std::string(out);
  }

  bool Verify(std::string_view hash, std::string_view password) override {
    // libsodium wants a NUL-terminated string of at most crypto_pwhash_STRBYTES.
    if (hash.size() >= crypto_pwhash_STRBYTES) return false;
    const std::string terminated(hash);
    Slot slot(*this);
    return crypto_pwhash_str_verify(terminated.c_str(), password.data(), password.size()) == 0;
  }

 private:
  // Holds one of the concurrency slots: each Argon2 run takes memlimit bytes, so an unbounded
  // login flood would exhaust memory.
  class Slot {
   public:
    explicit Slot(Argon2Hasher& hasher) : hasher_(hasher) {
      const auto start = std::chrono::steady_clock::now();
      {
        std::unique_lock lock(hasher_.mutex_);
        hasher_.slot_freed_.wait(lock, [this] { return hasher_.free_slots_ > 0; });
        --hasher_.free_slots_;
      }
      if (hasher_.metrics_ != nullptr) {
        hasher_.metrics_->password_hash_wait_seconds().Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
    }
    ~Slot() {
      {
        std::lock_guard lock(hasher_.mutex_);
        ++hasher_.free_slots_;
      }
      hasher_.slot_freed_.notify_one();
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    Argon2Hasher& hasher_;
  };

  const unsigned long long opslimit_;
  const std::size_t memlimit_;
  Metrics* const metrics_;  // Null: nothing is recorded.
  std::mutex mutex_;
  std::condition_variable slot_freed_;
  int free_slots_;
};

}  // namespace

Result<std::unique_ptr<PasswordHasher>> MakeArgon2Hasher(PasswordCost cost, int max_concurrent,
                                                         Metrics* metrics) {
  if (sodium_init() < 0) return Status(ErrorCode::kInternal, "libsodium failed to initialise");
  if (max_concurrent < 1) max_concurrent = 1;
  const bool test = cost == PasswordCost::kTest;
  const unsigned long long ops =
      test ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
  const std::size_t mem = test ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
  return std::unique_ptr<PasswordHasher>(
      std::make_unique<Argon2Hasher>(ops, mem, max_concurrent, metrics));
}

}  // namespace messenger

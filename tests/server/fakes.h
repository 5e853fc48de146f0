// Fakes shared by the core tests: a clock the test moves, a cheap password hasher, a mock sink.
#ifndef MESSENGER_TESTS_SERVER_FAKES_H_
#define MESSENGER_TESTS_SERVER_FAKES_H_

#include <gmock/gmock.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "messenger/server/clock.h"
#include "messenger/server/messenger.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/store.h"

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

// A memory store that can hold an append after its commit or a read after it read, to force
// concurrent requests to finish out of order, and can fail reads, to check that a failed request
// changes nothing, and can fail writes. It records how many requests each AppendMany carried,
// and counts Acks.
class ControlledStore final : public Store {
 public:
  ControlledStore() : inner_(MakeMemoryStore()) {}

  // Appends of `text` commit, then wait until Release() (or the store is destroyed).
  void HoldAppendsOf(std::string text) {
    std::lock_guard lock(mutex_);
    held_text_ = std::move(text);
  }
  // The next ListMessages reads, then waits until Release().
  void HoldNextList() {
    std::lock_guard lock(mutex_);
    hold_next_list_ = true;
  }
  void Release() {
    std::lock_guard lock(mutex_);
    held_text_.reset();
    released_ = true;
    changed_.notify_all();
  }
  // Blocks until a held append (or list) has done its work and is waiting.
  void AwaitHeld() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return holding_; });
  }
  std::atomic<bool> fail_reads{false};   // CountMessages and ListMessages answer kInternal.
  std::atomic<bool> fail_writes{false};  // Append and Ack answer kInternal and change nothing.

  Status CreateAccount(const AccountRecord& account) override {
    return inner_->CreateAccount(account);
  }
  Result<std::optional<AccountRecord>> FindAccount(std::string_view key) override {
    return inner_->FindAccount(key);
  }
  Result<std::vector<AccountRecord>> ScanAccounts(std::string_view after_key,
                                                  std::size_t max) override {
    return inner_->ScanAccounts(after_key, max);
  }
  Result<std::uint32_t> DeleteAccount(std::string_view key) override {
    return inner_->DeleteAccount(key);
  }
  Result<AppendOutcome> Append(const NewMessage& message, const AppendPolicy& policy) override {
    if (fail_writes) return Status(ErrorCode::kInternal, "injected write failure");
    Result<AppendOutcome> outcome = inner_->Append(message, policy);
    std::unique_lock lock(mutex_);
    if (held_text_ == message.text) {
      holding_ = true;
      changed_.notify_all();
      changed_.wait(lock, [&] { return held_text_ != message.text; });
      holding_ = false;
    }
    return outcome;
  }
  std::vector<Result<AppendOutcome>> AppendMany(std::span<const AppendRequest> requests) override {
    {
      std::lock_guard lock(mutex_);
      append_many_sizes_.push_back(requests.size());
    }
    return Store::AppendMany(requests);  // One Append each, so holds apply.
  }
  // The size of every AppendMany call so far, in order.
  std::vector<std::size_t> append_many_sizes() {
    std::lock_guard lock(mutex_);
    return append_many_sizes_;
  }
  Result<std::vector<StoredMessage>> ListMessages(std::string_view recipient_key,
                                                  std::uint64_t after_id,
                                                  std::size_t max) override {
    if (fail_reads) return Status(ErrorCode::kInternal, "injected read failure");
    Result<std::vector<StoredMessage>> page = inner_->ListMessages(recipient_key, after_id, max);
    std::unique_lock lock(mutex_);
    if (hold_next_list_) {
      hold_next_list_ = false;
      released_ = false;
      holding_ = true;
      changed_.notify_all();
      changed_.wait(lock, [&] { return released_; });
      holding_ = false;
    }
    return page;
  }
  Result<std::uint32_t> CountMessages(std::string_view recipient_key) override {
    if (fail_reads) return Status(ErrorCode::kInternal, "injected read failure");
    return inner_->CountMessages(recipient_key);
  }
  Status Ack(std::string_view recipient_key, std::span<const std::uint64_t> ids) override {
    ++ack_calls;
    if (fail_writes) return Status(ErrorCode::kInternal, "injected write failure");
    return inner_->Ack(recipient_key, ids);
  }
  std::atomic<int> ack_calls{0};  // Store writes that acknowledged messages.

 private:
  std::unique_ptr<Store> inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<std::string> held_text_;
  bool holding_ = false;
  bool hold_next_list_ = false;
  bool released_ = false;
  std::vector<std::size_t> append_many_sizes_;
};

}  // namespace messenger::testing

#endif  // MESSENGER_TESTS_SERVER_FAKES_H_

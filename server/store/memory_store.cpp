// The Store kept in process memory: ordered maps behind one mutex. It is the reference for
// store.h's contract (the SQLite store must behave identically; one typed test suite runs both).
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "messenger/server/metrics.h"
#include "messenger/server/store.h"
#include "store_internal.h"

namespace messenger {
namespace {

using store_internal::TextFingerprint;

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(Metrics* metrics) : metrics_(metrics) {}
  ~MemoryStore() override {
    if (metrics_ != nullptr) metrics_->stored_messages().Sub(stored_);
  }

  Status CreateAccount(const AccountRecord& account) override {
    std::lock_guard lock(mu_);
    // A deleted account keeps its entry (deleted = true), so its key stays taken for ever.
    const bool inserted =
        accounts_.try_emplace(account.key, Account{account.name, account.password_hash, false})
            .second;
    return inserted ? Status::Ok() : store_internal::UsernameTaken();
  }

  Result<std::optional<AccountRecord>> FindAccount(std::string_view key) override {
    std::lock_guard lock(mu_);
    const auto it = accounts_.find(key);
    if (it == accounts_.end() || it->second.deleted) return std::optional<AccountRecord>();
    return std::optional<AccountRecord>(
        AccountRecord{it->first, it->second.name, it->second.password_hash});
  }

  Result<std::vector<AccountRecord>> ScanAccounts(std::string_view after_key,
                                                  std::size_t max) override {
    std::lock_guard lock(mu_);
    std::vector<AccountRecord> out;
    for (auto it = accounts_.upper_bound(after_key); it != accounts_.end() && out.size() < max;
         ++it) {
      if (!it->second.deleted) out.push_back(AccountRecord{it->first, it->second.name, {}});
    }
    return out;
  }

  Result<std::uint32_t> DeleteAccount(std::string_view key) override {
    std::lock_guard lock(mu_);
    const auto account = accounts_.find(key);
    if (account == accounts_.end() || account->second.deleted) {
      return store_internal::NoSuchAccount();
    }
    account->second.deleted = true;
    account->second.password_hash.clear();  // Nobody can log in again; keep no secret around.

    std::uint32_t destroyed = 0;
    if (const auto queue = queues_.find(key); queue != queues_.end()) {
      destroyed = Clamp32(queue->second.size());
      CountStored(-static_cast<std::int64_t>(queue->second.size()));
      queues_.erase(queue);
    }
    // The retired key never sends again, so its send log is dead weight.
    const std::string sender(key);
    send_log_.erase(send_log_.lower_bound({sender, 0}),
                    send_log_.upper_bound({sender, UINT64_MAX}));
    return destroyed;
  }

  Result<AppendOutcome> Append(const NewMessage& message, const AppendPolicy& policy) override {
    std::lock_guard lock(mu_);
    PruneSendLog(policy.dedupe_since_ms);

    const auto recipient = accounts_.find(message.recipient_key);
    if (recipient == accounts_.end() || recipient->second.deleted) {
      return store_internal::NoSuchAccount();
    }

    const std::uint64_t fingerprint = TextFingerprint(message.text);
    SendKey send_key{message.sender_key, message.client_message_id};
    const auto earlier = send_log_.find(send_key);
    if (earlier != send_log_.end() &&
        earlier->second.result.timestamp_ms >= policy.dedupe_since_ms) {
      if (earlier->second.recipient_key != message.recipient_key ||
          earlier->second.text_fingerprint != fingerprint) {
        return store_internal::ClientIdReused();
      }
      return AppendOutcome{earlier->second.result, true};
    }

    if (!policy.accept_new) return store_internal::NotAcceptingNew();
    auto& queue = queues_[message.recipient_key];
    if (queue.size() >= policy.queue_cap) {
      if (queue.empty()) queues_.erase(message.recipient_key);
      return store_internal::QueueFull();
    }

    const std::uint64_t id = next_id_++;
    queue.emplace(id, StoredMessage{id, message.sender_name, message.timestamp_ms, message.text});
    CountStored(1);
    const SendOk result{id, message.timestamp_ms, message.delivery};
    send_log_.insert_or_assign(send_key, SendRecord{message.recipient_key, fingerprint, result});
    send_log_order_.emplace_back(std::move(send_key), message.timestamp_ms);
    return AppendOutcome{result, false};
  }

  Result<std::vector<StoredMessage>> ListMessages(std::string_view recipient_key,
                                                  std::uint64_t after_id,
                                                  std::size_t max) override {
    std::lock_guard lock(mu_);
    std::vector<StoredMessage> out;
    const auto queue = queues_.find(recipient_key);
    if (queue == queues_.end()) return out;
    for (auto it = queue->second.upper_bound(after_id);
         it != queue->second.end() && out.size() < max; ++it) {
      out.push_back(it->second);
    }
    return out;
  }

  Result<std::uint32_t> CountMessages(std::string_view recipient_key) override {
    std::lock_guard lock(mu_);
    const auto queue = queues_.find(recipient_key);
    return queue == queues_.end() ? 0 : Clamp32(queue->second.size());
  }

  Status Ack(std::string_view recipient_key, std::span<const std::uint64_t> ids) override {
    std::lock_guard lock(mu_);
    const auto queue = queues_.find(recipient_key);
    if (queue == queues_.end()) return Status::Ok();
    std::size_t removed = 0;
    for (const std::uint64_t id : ids) removed += queue->second.erase(id);
    if (queue->second.empty()) queues_.erase(queue);
    CountStored(-static_cast<std::int64_t>(removed));
    if (metrics_ != nullptr) metrics_->messages_acked().Add(removed);
    return Status::Ok();
  }

 private:
  struct Account {
    std::string name;
    std::string password_hash;
    bool deleted = false;
  };
  // What an accepted SEND leaves behind for recognising its retries.
  struct SendRecord {
    std::string recipient_key;
    std::uint64_t text_fingerprint = 0;
    SendOk result;
  };
  using SendKey = std::pair<std::string, std::uint64_t>;  // Sender key, client message id.

  // REQUIRES: mu_ held.
  void CountStored(std::int64_t delta) {
    stored_ += delta;
    if (metrics_ != nullptr) metrics_->stored_messages().Add(delta);
  }

  static std::uint32_t Clamp32(std::size_t n) {
    return static_cast<std::uint32_t>(std::min<std::size_t>(n, UINT32_MAX));
  }

  // Forgets sends older than `since_ms`, oldest first, so the log holds about one dedupe window.
  // Amortised O(1) per append. If timestamps ever go backwards some expired records linger until
  // those before them expire; lookups check the timestamp, so they never count.
  void PruneSendLog(std::uint64_t since_ms) {
    while (!send_log_order_.empty() && send_log_order_.front().second < since_ms) {
      const auto record = send_log_.find(send_log_order_.front().first);
      // The record may have been replaced by a newer send with the same client id; keep that.
      if (record != send_log_.end() && record->second.result.timestamp_ms < since_ms) {
        send_log_.erase(record);
      }
      send_log_order_.pop_front();
    }
  }

  Metrics* const metrics_;
  std::int64_t stored_ = 0;  // Messages in queues_, guarded by mu_.
  std::mutex mu_;
  // Keyed by canonical name; deleted accounts stay so their keys remain retired.
  std::map<std::string, Account, std::less<>> accounts_;
  // Recipient key -> its stored messages by id (so in acceptance order). No empty queues.
  std::map<std::string, std::map<std::uint64_t, StoredMessage>, std::less<>> queues_;
  std::map<SendKey, SendRecord> send_log_;
  std::deque<std::pair<SendKey, std::uint64_t>> send_log_order_;  // Key and timestamp, by age.
  std::uint64_t next_id_ = 1;
};

}  // namespace

std::unique_ptr<Store> MakeMemoryStore(Metrics* metrics) {
  return std::make_unique<MemoryStore>(metrics);
}

}  // namespace messenger

// Store: the durable state of the messenger, behind a narrow interface.
//
// Accounts are keyed by their canonical name (CanonicalUsername); the name as registered is kept
// for display. Every mutating call is durable when it returns OK (subject to the implementation's
// sync setting). Implementations are thread-safe: the core calls them from many connection threads
// at once, never while holding its own lock.
#ifndef MESSENGER_SERVER_STORE_H_
#define MESSENGER_SERVER_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger {

class Metrics;

struct AccountRecord {
  std::string key;   // Canonical (lower-case) name.
  std::string name;  // As registered.
  std::string password_hash;
  friend bool operator==(const AccountRecord&, const AccountRecord&) = default;
};

struct NewMessage {
  std::string sender_key;
  std::string sender_name;
  std::string recipient_key;
  std::uint64_t client_message_id = 0;
  std::string text;
  std::uint64_t timestamp_ms = 0;
  Delivery delivery = Delivery::kQueued;  // Recorded so a retried SEND gets the original answer.
};

struct AppendPolicy {
  std::uint32_t queue_cap = 0;        // Refuse when the recipient already holds this many.
  std::uint64_t dedupe_since_ms = 0;  // Earlier SENDs no longer count as duplicates.
  bool accept_new = true;             // False: answer duplicates only, refuse new (rate limit).
};

struct AppendOutcome {
  SendOk result;           // The new message, or the original one for a duplicate.
  bool duplicate = false;  // True: an earlier SEND had this client id; nothing was stored.
};

struct AppendRequest {
  NewMessage message;
  AppendPolicy policy;
};

class Store {
 public:
  virtual ~Store() = default;

  // Creates an account. Errors: kUsernameTaken (the key is live or retired), kInternal.
  virtual Status CreateAccount(const AccountRecord& account) = 0;

  // The live account with `key`, or nullopt. Errors: kInternal.
  virtual Result<std::optional<AccountRecord>> FindAccount(std::string_view key) = 0;

  // Up to `max` live accounts with key > `after_key`, in key order (password_hash left empty).
  // Errors: kInternal.
  virtual Result<std::vector<AccountRecord>> ScanAccounts(std::string_view after_key,
                                                          std::size_t max) = 0;

  // In one transaction: removes the live account `key` and every message stored for it, and
  // retires the key so it can never be registered again. Messages it sent to others stay.
  // Returns how many stored messages were destroyed. Errors: kUnknownRecipient (no such live
  // account), kInternal.
  virtual Result<std::uint32_t> DeleteAccount(std::string_view key) = 0;

  // Stores `message` for its recipient unless an earlier SEND by the same sender with the same
  // client_message_id and timestamp >= policy.dedupe_since_ms exists; that one is returned instead.
  // Assigns a message id greater than every id assigned before.
  // Errors: kUnknownRecipient (recipient not live), kClientIdReused (same client id, different
  // recipient or text), kRateLimited (new message and !policy.accept_new), kQueueFull, kInternal.
  virtual Result<AppendOutcome> Append(const NewMessage& message, const AppendPolicy& policy) = 0;

  // Append for each request in turn, all in one transaction where the store has transactions,
  // so that many SENDs cost one commit. outcomes[i] answers requests[i] exactly as Append would
  // have after the requests before it; when the transaction fails, every outcome is that error
  // (kInternal) and nothing was stored. The default runs Append once per request.
  virtual std::vector<Result<AppendOutcome>> AppendMany(std::span<const AppendRequest> requests) {
    std::vector<Result<AppendOutcome>> outcomes;
    outcomes.reserve(requests.size());
    for (const AppendRequest& request : requests) {
      outcomes.push_back(Append(request.message, request.policy));
    }
    return outcomes;
  }

  // Up to `max` stored messages for `recipient_key` with id > `after_id`, oldest first.
  // Errors: kInternal.
  virtual Result<std::vector<StoredMessage>> ListMessages(std::string_view recipient_key,
                                                          std::uint64_t after_id,
                                                          std::size_t max) = 0;

  // How many messages are stored for `recipient_key`. Errors: kInternal.
  virtual Result<std::uint32_t> CountMessages(std::string_view recipient_key) = 0;

  // Removes those of `ids` that are stored for `recipient_key`; other ids are ignored.
  // Errors: kInternal.
  virtual Status Ack(std::string_view recipient_key, std::span<const std::uint64_t> ids) = 0;
};

// A store kept in memory only: for tests, fuzzing and `--db :memory:`. Nothing survives the
// process. With `metrics` (which must outlive the store) it keeps stored_messages and
// messages_acked up to date; its messages leave the gauge when it is destroyed.
std::unique_ptr<Store> MakeMemoryStore(Metrics* metrics = nullptr);

}  // namespace messenger

#endif  // MESSENGER_SERVER_STORE_H_

#include "messenger/server/messenger.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "messenger/codec/limits.h"
#include "messenger/codec/rules.h"
#include "messenger/server/glob.h"

namespace messenger {
namespace {

// Accounts read per store call while filtering a listing.
constexpr std::size_t kScanBatch = 1000;
// Messages read per store call while filling a FETCH page.
constexpr std::size_t kFetchScanBatch = 64;
// Encoded bytes of a stored message besides its strings: id, timestamp, two length prefixes.
constexpr std::size_t kStoredMessageOverhead = 8 + 8 + 2 + 2;
// Throttle records kept before expired ones are swept, so a name-spraying attacker cannot grow
// the map without bound.
constexpr std::size_t kMaxThrottleRecords = 100000;

Status NotLoggedIn() { return Status(ErrorCode::kNotLoggedIn, "log in first"); }
Status UnknownRecipient(std::string_view name) {
  return Status(ErrorCode::kUnknownRecipient, "no user named '" + std::string(name) + "'");
}

// The largest key smaller than every key starting with `prefix`, so a scan after it starts at
// the first candidate. Keys use only [a-z0-9._-], all below 0x7F.
std::string KeyBefore(std::string_view prefix) {
  if (prefix.empty()) return "";
  std::string key(prefix);
  key.back() = static_cast<char>(key.back() - 1);
  key.push_back('\x7F');
  return key;
}

// The literal (lower-cased) characters a pattern starts with, before any metacharacter.
std::string LiteralPrefix(std::string_view pattern) {
  std::string prefix;
  for (const char c : pattern) {
    if (c == '*' || c == '?' || c == '[') break;
    prefix.push_back(c);
  }
  return CanonicalUsername(prefix);
}

struct User {
  std::string key;
  std::string name;
};

struct SessionEntry {
  SessionSink* sink = nullptr;
  Transport transport = Transport::kWire;
  std::optional<User> user;
  // Messages pushed or fetched on this session and not yet ACKed: FETCH skips them.
  std::set<std::uint64_t> handed;
  // Every stored message with an id <= fetch_cursor is in `handed` or ACKed.
  std::uint64_t fetch_cursor = 0;
};

// Pushes to one recipient leave in message-id order (docs/PROTOCOL.md, 10.2) although concurrent
// SENDs commit and return in any order. A SEND takes a ticket before it appends; its committed
// message waits until every SEND to the same recipient that was in flight when it committed has
// finished, since only those can have received a smaller id. Later SENDs get larger ids, so a
// waiting message never waits for them.
struct PushQueue {
  struct Ready {
    std::uint64_t barrier = 0;  // Tickets below this must be finished first.
    StoredMessage message;
  };
  std::uint64_t next_ticket = 0;
  std::set<std::uint64_t> in_flight;
  std::map<std::uint64_t, Ready> ready;  // By message id.
};

struct TokenBucket {
  double tokens = 0;
  std::uint64_t last_ms = 0;
};

struct LoginFailures {
  std::uint32_t count = 0;
  std::uint64_t window_start_ms = 0;
  std::uint64_t blocked_until_ms = 0;
};

}  // namespace

struct Messenger::State {
  State(Store& s, PasswordHasher& h, Clock& c, MessengerOptions o, Metrics* m)
      : store(s),
        hasher(h),
        clock(c),
        options(o),
        own_metrics(m == nullptr ? std::make_unique<Metrics>() : nullptr),
        metrics(m == nullptr ? *own_metrics : *m) {}

  Store& store;
  PasswordHasher& hasher;
  Clock& clock;
  const MessengerOptions options;
  const std::unique_ptr<Metrics> own_metrics;  // When the caller gave none.
  Metrics& metrics;

  std::once_flag dummy_hash_once;
  std::string dummy_hash;  // Verified against when the name is unknown, to take the same time.

  mutable std::mutex mutex;  // Guards everything below. Never held across store or hasher calls.
  SessionId next_id = 1;
  bool shut_down = false;
  std::unordered_map<SessionId, SessionEntry> sessions;
  std::unordered_map<std::string, SessionId> online;       // User key -> its session.
  std::unordered_map<std::string, PushQueue> push_queues;  // Recipient key -> its queue.
  std::unordered_map<std::string, TokenBucket> send_buckets;
  std::unordered_map<std::string, LoginFailures> login_failures;

  // REQUIRES: mutex held. The user of `session`, or nullopt.
  std::optional<User> UserOf(SessionId session) const {
    const auto it = sessions.find(session);
    if (it == sessions.end()) return std::nullopt;
    return it->second.user;
  }

  // REQUIRES: mutex held. Unbinds the user of `entry`; its handed messages become undelivered.
  void LogOut(SessionId id, SessionEntry& entry) {
    if (!entry.user) return;
    const auto it = online.find(entry.user->key);
    if (it != online.end() && it->second == id) online.erase(it);
    metrics.sessions_logged_in(entry.transport).Sub();
    entry.user.reset();
    entry.handed.clear();
    entry.fetch_cursor = 0;
  }

  // REQUIRES: mutex held. Registers a SEND to `recipient_key` about to append; returns its ticket.
  std::uint64_t BeginSend(const std::string& recipient_key) {
    PushQueue& queue = push_queues[recipient_key];
    const std::uint64_t ticket = queue.next_ticket++;
    queue.in_flight.insert(ticket);
    return ticket;
  }

  // REQUIRES: mutex held. Finishes the SEND holding `ticket`; `committed` is its new message, if
  // any. Pushes, in id order, every waiting message no unfinished SEND can precede.
  void FinishSend(const std::string& recipient_key, std::uint64_t ticket,
                  std::optional<StoredMessage> committed) {
    const auto it = push_queues.find(recipient_key);
    PushQueue& queue = it->second;
    queue.in_flight.erase(ticket);
    if (committed) {
      const std::uint64_t id = committed->message_id;
      queue.ready.emplace(id, PushQueue::Ready{queue.next_ticket, std::move(*committed)});
    }
    while (!queue.ready.empty()) {
      PushQueue::Ready& first = queue.ready.begin()->second;
      if (!queue.in_flight.empty() && *queue.in_flight.begin() < first.barrier) break;
      Push(recipient_key, first.message);
      queue.ready.erase(queue.ready.begin());
    }
    if (queue.in_flight.empty() && queue.ready.empty()) push_queues.erase(it);
  }

  // REQUIRES: mutex held. Hands `message` to the recipient's session, if online. Checked at push
  // time: a recipient that logged in after the SEND counted or will fetch it, and its `handed`
  // set keeps it from arriving twice.
  void Push(const std::string& recipient_key, const StoredMessage& message) {
    const auto online_it = online.find(recipient_key);
    if (online_it == online.end()) return;
    SessionEntry& entry = sessions.at(online_it->second);
    if (entry.handed.insert(message.message_id).second) {
      entry.sink->Deliver(message);
      metrics.messages_delivered_live().Add();
    }
  }

  // REQUIRES: mutex held. Takes a send token; false when the user is over its rate.
  bool TakeSendToken(const std::string& key, std::uint64_t now) {
    if (options.send_rate_per_second == 0) return true;
    const double burst = std::max<double>(1, options.send_burst);
    auto [it, inserted] = send_buckets.try_emplace(key, TokenBucket{burst, now});
    TokenBucket& bucket = it->second;
    const double elapsed_s = static_cast<double>(now - bucket.last_ms) / 1000.0;
    bucket.tokens = std::min(burst, bucket.tokens + elapsed_s * options.send_rate_per_second);
    bucket.last_ms = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  void RefundSendToken(const std::string& key) {
    if (options.send_rate_per_second == 0) return;
    const auto it = send_buckets.find(key);
    if (it != send_buckets.end()) it->second.tokens += 1;
  }

  // REQUIRES: mutex held.
  bool LoginThrottled(const std::string& key, std::uint64_t now) const {
    const auto it = login_failures.find(key);
    return it != login_failures.end() && it->second.blocked_until_ms > now;
  }

  // REQUIRES: mutex held.
  void RecordLoginFailure(const std::string& key, std::uint64_t now) {
    if (login_failures.size() >= kMaxThrottleRecords) {
      std::erase_if(login_failures, [&](const auto& entry) {
        return entry.second.blocked_until_ms <= now &&
               now - entry.second.window_start_ms > options.login_failure_window_ms;
      });
    }
    LoginFailures& record = login_failures[key];
    if (now - record.window_start_ms > options.login_failure_window_ms) {
      record.count = 0;
      record.window_start_ms = now;
    }
    if (++record.count >= options.login_failures_before_throttle) {
      record.blocked_until_ms = now + options.login_throttle_ms;
      record.count = 0;
      metrics.login_throttles().Add();
    }
  }
};

Messenger::Messenger(Store& store, PasswordHasher& hasher, Clock& clock, MessengerOptions options,
                     Metrics* metrics)
    : state_(std::make_unique<State>(store, hasher, clock, options, metrics)) {}

Messenger::~Messenger() = default;

const MessengerOptions& Messenger::options() const { return state_->options; }

Metrics& Messenger::metrics() const { return state_->metrics; }

SessionId Messenger::Attach(SessionSink& sink, Transport transport) {
  std::lock_guard lock(state_->mutex);
  const SessionId id = state_->next_id++;
  SessionEntry& entry = state_->sessions[id];
  entry.sink = &sink;
  entry.transport = transport;
  return id;
}

void Messenger::Detach(SessionId session) {
  std::lock_guard lock(state_->mutex);
  const auto it = state_->sessions.find(session);
  if (it == state_->sessions.end()) return;
  state_->LogOut(session, it->second);
  state_->sessions.erase(it);
}

Status Messenger::CreateAccount(std::string_view username, std::string_view password) {
  if (Status s = CheckUsername(username); !s.ok()) return s;
  if (Status s = CheckPassword(password); !s.ok()) return s;
  const std::string key = CanonicalUsername(username);
  // Cheap pre-check so a taken name does not cost a hash; the store decides for certain.
  Result<std::optional<AccountRecord>> existing = state_->store.FindAccount(key);
  if (!existing.ok()) return existing.status();
  if (existing.value()) {
    return Status(ErrorCode::kUsernameTaken, "the name '" + std::string(username) + "' is taken");
  }
  Result<std::string> hash = state_->hasher.Hash(password);
  if (!hash.ok()) return hash.status();
  Status created = state_->store.CreateAccount({key, std::string(username), std::move(*hash)});
  if (created.code() == ErrorCode::kUsernameTaken) {
    return Status(ErrorCode::kUsernameTaken,
                  "the name '" + std::string(username) + "' is taken or was retired");
  }
  return created;
}

Result<LoginOk> Messenger::Login(SessionId session, std::string_view username,
                                 std::string_view password) {
  State& st = *state_;
  const Status auth_failed(ErrorCode::kAuthFailed, "wrong username or password");
  const std::string key =
      CheckUsername(username).ok() ? CanonicalUsername(username) : std::string();
  {
    std::lock_guard lock(st.mutex);
    if (st.shut_down) return Status(ErrorCode::kInternal, "the server is shutting down");
    const auto it = st.sessions.find(session);
    if (it == st.sessions.end()) return Status(ErrorCode::kInternal, "unknown session");
    if (it->second.user) return Status(ErrorCode::kAlreadyLoggedIn, "already logged in");
    if (!key.empty() && st.LoginThrottled(key, st.clock.SteadyMs())) {
      return Status(ErrorCode::kLoginThrottled, "too many failed logins; try again later");
    }
  }
  if (key.empty()) {  // No account can have a malformed name.
    st.metrics.login_failures().Add();
    return auth_failed;
  }

  Result<std::optional<AccountRecord>> account = st.store.FindAccount(key);
  if (!account.ok()) return account.status();
  bool verified = false;
  if (account.value()) {
    verified = st.hasher.Verify(account.value()->password_hash, password);
  } else {
    std::call_once(st.dummy_hash_once, [&st] {
      Result<std::string> hash = st.hasher.Hash("not a real password");
      if (hash.ok()) st.dummy_hash = std::move(*hash);
    });
    st.hasher.Verify(st.dummy_hash, password);  // Same cost as a real check; result unused.
  }

  if (!verified) {
    st.metrics.login_failures().Add();
    std::lock_guard lock(st.mutex);
    st.RecordLoginFailure(key, st.clock.SteadyMs());
    return auth_failed;
  }
  // Counted before anything changes, so that a failure leaves every session as it was (the
  // user's session elsewhere included). A message stored after the count is not counted but
  // stays stored: FETCH_UNDELIVERED finds it.
  Result<std::uint32_t> unread = st.store.CountMessages(key);
  if (!unread.ok()) return unread.status();

  {
    std::lock_guard lock(st.mutex);
    st.login_failures.erase(key);
    const auto it = st.sessions.find(session);
    if (it == st.sessions.end()) return Status(ErrorCode::kInternal, "unknown session");
    if (it->second.user) return Status(ErrorCode::kAlreadyLoggedIn, "already logged in");
    if (st.shut_down) return Status(ErrorCode::kInternal, "the server is shutting down");
    // Takeover: the older session of this user ends.
    if (const auto old = st.online.find(key); old != st.online.end()) {
      SessionEntry& previous = st.sessions.at(old->second);
      st.LogOut(old->second, previous);
      previous.sink->End(EndReason::kTakeover, "logged in from another connection");
    }
    it->second.user = User{key, account.value()->name};
    st.online[key] = session;
    st.metrics.sessions_logged_in(it->second.transport).Add();
  }
  return LoginOk{*unread};
}

Status Messenger::Logout(SessionId session) {
  std::lock_guard lock(state_->mutex);
  const auto it = state_->sessions.find(session);
  if (it == state_->sessions.end() || !it->second.user) return NotLoggedIn();
  state_->LogOut(session, it->second);
  return Status::Ok();
}

bool Messenger::IsLoggedIn(SessionId session) const {
  std::lock_guard lock(state_->mutex);
  return state_->UserOf(session).has_value();
}

Result<AccountList> Messenger::ListAccounts(SessionId session,
                                            const messenger::ListAccounts& request) {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->UserOf(session)) return NotLoggedIn();
  }
  const std::string pattern = request.pattern.empty() ? "*" : request.pattern;
  if (Status s = CheckPattern(pattern); !s.ok()) return s;
  if (request.limit == 0) return Status(ErrorCode::kInvalidArgument, "limit must be at least 1");
  if (!request.cursor.empty() && (!CheckUsername(request.cursor).ok() ||
                                  CanonicalUsername(request.cursor) != request.cursor)) {
    return Status(ErrorCode::kInvalidArgument, "malformed cursor");
  }
  const std::size_t limit = std::min<std::size_t>(request.limit, kMaxListLimit);
  const std::string prefix = LiteralPrefix(pattern);
  std::string after = std::max(request.cursor, KeyBefore(prefix));

  // Collect one match beyond the page to know whether another page exists.
  AccountList page;
  std::string last_key;
  bool more = false;
  while (!more) {
    Result<std::vector<AccountRecord>> batch = state_->store.ScanAccounts(after, kScanBatch);
    if (!batch.ok()) return batch.status();
    for (const AccountRecord& account : *batch) {
      if (account.key.compare(0, prefix.size(), prefix) > 0) {
        batch->clear();  // Sorted keys: past the literal prefix nothing can match.
        break;
      }
      if (!GlobMatch(pattern, account.key)) continue;
      if (page.usernames.size() == limit) {
        more = true;
        break;
      }
      page.usernames.push_back(account.name);
      last_key = account.key;
    }
    if (batch->size() < kScanBatch) break;
    after = batch->back().key;
  }
  if (more) page.next_cursor = last_key;
  return page;
}

Result<SendOk> Messenger::Send(SessionId session, const messenger::Send& request) {
  return std::move(SendMany(session, std::span(&request, 1)).front());
}

std::vector<Result<SendOk>> Messenger::SendMany(SessionId session,
                                                std::span<const messenger::Send> requests) {
  State& st = *state_;
  std::optional<User> sender;
  {
    std::lock_guard lock(st.mutex);
    sender = st.UserOf(session);
  }
  if (!sender) return std::vector<Result<SendOk>>(requests.size(), NotLoggedIn());

  // What each request needs from the store, for those that pass the checks made without it.
  struct Pending {
    std::size_t request = 0;  // Index into `requests` (and the results).
    std::string recipient_key;
    std::uint64_t ticket = 0;
  };
  std::vector<Result<SendOk>> results(requests.size(), Status(ErrorCode::kInternal, "not sent"));
  std::vector<Pending> pending;
  std::vector<AppendRequest> appends;
  pending.reserve(requests.size());
  appends.reserve(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const messenger::Send& request = requests[i];
    if (Status s = CheckText(request.text); !s.ok()) {
      results[i] = s;
      continue;
    }
    if (!CheckUsername(request.recipient).ok()) {
      results[i] = UnknownRecipient(request.recipient);
      continue;
    }
    std::string recipient_key = CanonicalUsername(request.recipient);
    if (recipient_key == sender->key) {
      results[i] = Status(ErrorCode::kSelfSend, "you cannot send a message to yourself");
      continue;
    }
    const std::uint64_t now_ms = st.clock.NowMs();
    NewMessage message{sender->key,  sender->name, recipient_key,    request.client_message_id,
                       request.text, now_ms,       Delivery::kQueued};
    const AppendPolicy policy{
        st.options.max_queued_per_user,
        now_ms > st.options.dedupe_window_ms ? now_ms - st.options.dedupe_window_ms : 0, true};
    pending.push_back(Pending{i, std::move(recipient_key), 0});
    appends.push_back(AppendRequest{std::move(message), policy});
  }
  if (pending.empty()) return results;

  {
    std::lock_guard lock(st.mutex);
    for (std::size_t k = 0; k < pending.size(); ++k) {
      AppendRequest& append = appends[k];
      append.policy.accept_new = st.TakeSendToken(sender->key, st.clock.SteadyMs());
      if (st.online.count(pending[k].recipient_key)) {
        append.message.delivery = Delivery::kDelivered;
      }
      pending[k].ticket = st.BeginSend(pending[k].recipient_key);
    }
  }
  std::vector<Result<AppendOutcome>> outcomes = st.store.AppendMany(appends);
  {
    std::lock_guard lock(st.mutex);
    for (std::size_t k = 0; k < pending.size(); ++k) {
      const Result<AppendOutcome>& outcome = outcomes[k];
      const bool stored = outcome.ok() && !outcome->duplicate;
      std::optional<StoredMessage> committed;
      if (stored) {
        committed = StoredMessage{outcome->result.message_id, sender->name,
                                  outcome->result.timestamp_ms, appends[k].message.text};
      }
      st.FinishSend(pending[k].recipient_key, pending[k].ticket, std::move(committed));
      if (!stored && appends[k].policy.accept_new) st.RefundSendToken(sender->key);
    }
  }
  for (std::size_t k = 0; k < pending.size(); ++k) {
    const Result<AppendOutcome>& outcome = outcomes[k];
    Result<SendOk>& result = results[pending[k].request];
    if (!outcome.ok()) {
      result = outcome.status().code() == ErrorCode::kUnknownRecipient
                   ? UnknownRecipient(requests[pending[k].request].recipient)
                   : outcome.status();
      continue;
    }
    if (!outcome->duplicate) {
      st.metrics.messages_accepted().Add();
      if (outcome->result.delivery == Delivery::kQueued) st.metrics.messages_queued().Add();
    }
    result = outcome->result;
  }
  return results;
}

Result<MessageBatch> Messenger::FetchUndelivered(SessionId session, std::uint16_t limit,
                                                 std::size_t max_bytes) {
  State& st = *state_;
  const std::size_t want = std::min<std::size_t>(limit, kMaxFetchLimit);
  std::optional<User> user;
  std::uint64_t cursor = 0;
  std::set<std::uint64_t> handed;
  {
    std::lock_guard lock(st.mutex);
    const auto it = st.sessions.find(session);
    if (it == st.sessions.end() || !it->second.user) return NotLoggedIn();
    user = it->second.user;
    cursor = it->second.fetch_cursor;
    // The scan starts after the cursor, so only handed ids above it matter: pushed messages.
    // Copying the whole set would cost O(messages the session holds unACKed) per fetch.
    handed.insert(it->second.handed.upper_bound(cursor), it->second.handed.end());
  }

  // The session state is checked first (docs/PROTOCOL.md, 6.3).
  if (limit == 0) return Status(ErrorCode::kInvalidArgument, "limit must be at least 1");
  // Counted before anything is marked handed, so a failure leaves the session unchanged.
  Result<std::uint32_t> stored = st.store.CountMessages(user->key);
  if (!stored.ok()) return stored.status();

  MessageBatch batch;
  std::size_t bytes = 0;
  bool full = false;
  while (!full) {
    Result<std::vector<StoredMessage>> page =
        st.store.ListMessages(user->key, cursor, kFetchScanBatch);
    if (!page.ok()) return page.status();
    for (StoredMessage& message : *page) {
      if (handed.count(message.message_id)) {
        cursor = message.message_id;
        continue;
      }
      const std::size_t size = kStoredMessageOverhead + message.sender.size() + message.text.size();
      if (batch.messages.size() == want || (!batch.messages.empty() && bytes + size > max_bytes)) {
        full = true;
        break;
      }
      bytes += size;
      cursor = message.message_id;
      batch.messages.push_back(std::move(message));
    }
    if (page->size() < kFetchScanBatch) break;
  }

  std::size_t handed_count = 0;
  {
    std::lock_guard lock(st.mutex);
    const auto it = st.sessions.find(session);
    if (it == st.sessions.end() || !it->second.user || it->second.user->key != user->key) {
      return NotLoggedIn();  // Logged out or taken over while reading.
    }
    SessionEntry& entry = it->second;
    // Drop what this session got meanwhile: a message pushed while we read is already handed,
    // and one at or below the cursor was handed by a concurrent fetch (gRPC lets a session
    // fetch concurrently), perhaps even acknowledged and so no longer in `handed`.
    const std::uint64_t handed_through = entry.fetch_cursor;
    std::erase_if(batch.messages, [&entry, handed_through](const StoredMessage& message) {
      return message.message_id <= handed_through ||
             !entry.handed.insert(message.message_id).second;
    });
    entry.fetch_cursor = std::max(entry.fetch_cursor, cursor);
    handed_count = entry.handed.size();
  }
  batch.remaining = *stored > handed_count ? static_cast<std::uint32_t>(*stored - handed_count) : 0;
  st.metrics.messages_fetched().Add(batch.messages.size());
  return batch;
}

Status Messenger::Ack(SessionId session, std::span<const std::uint64_t> ids) {
  return AckMany(session, std::span(&ids, 1)).front();
}

std::vector<Status> Messenger::AckMany(SessionId session,
                                       std::span<const std::span<const std::uint64_t>> id_lists) {
  State& st = *state_;
  std::optional<User> user;
  {
    std::lock_guard lock(st.mutex);
    user = st.UserOf(session);
  }
  if (!user) return std::vector<Status>(id_lists.size(), NotLoggedIn());
  std::vector<Status> results(id_lists.size());
  std::vector<std::uint64_t> ids;  // Of every valid list: ACKs commute, so one write does.
  for (std::size_t i = 0; i < id_lists.size(); ++i) {
    if (id_lists[i].size() > kMaxAckIds) {
      results[i] = Status(ErrorCode::kInvalidArgument,
                          "at most " + std::to_string(kMaxAckIds) + " ids per ACK");
    } else {
      ids.insert(ids.end(), id_lists[i].begin(), id_lists[i].end());
    }
  }
  if (Status s = st.store.Ack(user->key, ids); !s.ok()) {
    for (Status& result : results) {
      if (result.ok()) result = s;
    }
    return results;
  }
  std::lock_guard lock(st.mutex);
  const auto it = st.sessions.find(session);
  if (it != st.sessions.end()) {
    for (const std::uint64_t id : ids) it->second.handed.erase(id);
  }
  return results;
}

Result<std::uint32_t> Messenger::DeleteAccount(SessionId session, bool confirm) {
  State& st = *state_;
  std::optional<User> user;
  {
    std::lock_guard lock(st.mutex);
    user = st.UserOf(session);
  }
  if (!user) return NotLoggedIn();
  if (!confirm) return st.store.CountMessages(user->key);
  Result<std::uint32_t> destroyed = st.store.DeleteAccount(user->key);
  if (!destroyed.ok()) return destroyed.status();
  std::lock_guard lock(st.mutex);
  if (const auto it = st.sessions.find(session); it != st.sessions.end()) {
    st.LogOut(session, it->second);
  }
  st.send_buckets.erase(user->key);
  return destroyed;
}

void Messenger::Shutdown() {
  std::lock_guard lock(state_->mutex);
  state_->shut_down = true;
  for (auto& [id, entry] : state_->sessions) {
    entry.sink->End(EndReason::kServerShutdown, "the server is shutting down");
  }
}

Status Messenger::CheckReady() {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->shut_down) return Status(ErrorCode::kInternal, "the server is shutting down");
  }
  // A read of a key no account can have: it costs one indexed lookup and proves the store
  // answers.
  Result<std::uint32_t> probe = state_->store.CountMessages("");
  if (!probe.ok()) {
    return Status(ErrorCode::kInternal, "the store does not answer: " + probe.status().message());
  }
  return Status::Ok();
}

}  // namespace messenger

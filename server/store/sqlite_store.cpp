// The SQLite Store: one database file in WAL mode.
//
// Writes from every thread are queued to one writer thread, which commits all that are pending in
// a single transaction (group commit): one fsync then covers every write that arrived while the
// previous batch was being committed, and each caller returns only after its own write is durable.
// Reads run on a small pool of separate connections; WAL lets them see the last committed state
// while the writer works. Every check of Append runs inside the write transaction, so concurrent
// deletes and sends cannot slip between a check and the insert.
#include "messenger/server/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "store_internal.h"

namespace messenger {
namespace {

using store_internal::TextFingerprint;

// PRAGMA application_id of every poco_messenger database ("PMSG"), so that no other SQLite file
// is mistaken for one.
constexpr std::int32_t kApplicationId = 0x504D5347;
// How long a connection waits for a lock held by another process (the sqlite3 shell, a backup)
// before the operation fails.
constexpr int kBusyTimeoutMs = 5000;
// Most writes committed in one transaction, so the writes at the tail of a burst are not held
// back behind an arbitrarily large batch.
constexpr std::size_t kMaxBatch = 1024;
// Read connections; readers beyond this many wait for one to come free.
constexpr std::size_t kReadConnections = 4;
// Every kPruneInterval appends, at most kPruneLimit send-log rows older than the dedupe window
// are deleted: the log stays about one window long and no single write pays for a large delete.
constexpr std::uint64_t kPruneInterval = 256;
constexpr std::int64_t kPruneLimit = 1024;
// Bytes of WAL file kept after a checkpoint; a larger one is truncated back to this.
constexpr std::int64_t kWalSizeLimit = 64 * 1024 * 1024;

// The schema, as ordered steps. Step i brings a database from user_version i to i + 1 in one
// transaction. Append new steps; never edit a released one.
constexpr const char* kMigrations[] = {
    // 1: accounts, stored messages and the send log of idempotent SENDs.
    R"sql(
CREATE TABLE accounts (
  key TEXT PRIMARY KEY NOT NULL,         -- canonical (lower-case) name
  name TEXT NOT NULL,                    -- as registered
  password_hash TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0     -- 1: the row stays so the name is retired for ever
) WITHOUT ROWID;

-- AUTOINCREMENT: an id is never reused, even after the newest message is acknowledged.
CREATE TABLE messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient TEXT NOT NULL,
  sender_name TEXT NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  text TEXT NOT NULL
);
CREATE INDEX messages_by_recipient ON messages (recipient, id);

-- One row per accepted SEND within the dedupe window; a retry is answered from it.
CREATE TABLE send_log (
  sender TEXT NOT NULL,
  client_message_id INTEGER NOT NULL,    -- the u64 as its int64 bit pattern
  message_id INTEGER NOT NULL,
  recipient TEXT NOT NULL,
  text_hash INTEGER NOT NULL,            -- 64-bit FNV-1a of the text, as int64 bit pattern
  timestamp_ms INTEGER NOT NULL,
  delivery INTEGER NOT NULL,
  PRIMARY KEY (sender, client_message_id)
);
CREATE INDEX send_log_by_time ON send_log (timestamp_ms);
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// Statements, cached per connection by address.
constexpr char kInsertAccount[] =
    "INSERT INTO accounts (key, name, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (key) DO NOTHING";
constexpr char kFindLiveAccount[] =
    "SELECT name, password_hash FROM accounts WHERE key = ?1 AND deleted = 0";
constexpr char kScanLiveAccounts[] =
    "SELECT key, name FROM accounts WHERE key > ?1 AND deleted = 0 ORDER BY key LIMIT ?2";
constexpr char kRetireAccount[] =
    "UPDATE accounts SET deleted = 1, password_hash = '' WHERE key = ?1";
constexpr char kDeleteQueue[] = "DELETE FROM messages WHERE recipient = ?1";
constexpr char kDeleteSendsBy[] = "DELETE FROM send_log WHERE sender = ?1";
constexpr char kFindSend[] =
    "SELECT message_id, recipient, text_hash, timestamp_ms, delivery FROM send_log "
    "WHERE sender = ?1 AND client_message_id = ?2";
constexpr char kInsertMessage[] =
    "INSERT INTO messages (recipient, sender_name, timestamp_ms, text) VALUES (?1, ?2, ?3, ?4)";
constexpr char kRecordSend[] =
    "INSERT OR REPLACE INTO send_log (sender, client_message_id, message_id, recipient, "
    "text_hash, timestamp_ms, delivery) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
constexpr char kPruneSends[] =
    "DELETE FROM send_log WHERE rowid IN "
    "(SELECT rowid FROM send_log WHERE timestamp_ms < ?1 LIMIT ?2)";
constexpr char kListQueue[] =
    "SELECT id, sender_name, timestamp_ms, text FROM messages "
    "WHERE recipient = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
constexpr char kCountQueue[] = "SELECT COUNT(*) FROM messages WHERE recipient = ?1";
constexpr char kAckOne[] = "DELETE FROM messages WHERE id = ?1 AND recipient = ?2";

// SQLite integers are signed 64-bit; u64 protocol values are stored as their bit pattern.
std::int64_t ToSql(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t FromSql(std::int64_t v) { return static_cast<std::uint64_t>(v); }
std::int64_t ClampToSql(std::size_t v) {
  return static_cast<std::int64_t>(
      std::min<std::uint64_t>(v, static_cast<std::uint64_t>(INT64_MAX)));
}
std::uint32_t Clamp32(std::int64_t v) {
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(v, 0, UINT32_MAX));
}

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status Internal(std::string message) { return Status(ErrorCode::kInternal, std::move(message)); }

// One SQLite connection with its prepared statements. Used by one thread at a time.
class Connection {
 public:
  Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    for (const auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }

  // Opens `path` with `flags`. Errors: kInternal naming the file.
  static Result<std::unique_ptr<Connection>> Open(const std::string& path, int flags) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string message =
          "cannot open " + path + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
      sqlite3_close(db);
      return Internal(std::move(message));
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    return std::make_unique<Connection>(db, path);
  }

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  // kInternal: "`what` failed on <file>: <SQLite's last error on this connection>".
  Status Error(std::string_view what) const {
    return Internal(std::string(what) + " failed on " + path_ + ": " + sqlite3_errmsg(db_));
  }

  // Runs one or more statements that return nothing of interest.
  Status Exec(const std::string& sql, std::string_view what) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) == SQLITE_OK) return Status();
    Status status = Internal(std::string(what) + " failed on " + path_ + ": " +
                             (error != nullptr ? error : sqlite3_errmsg(db_)));
    sqlite3_free(error);
    return status;
  }

  // The cached statement for `sql`, one of the constants above; nullptr on error.
  sqlite3_stmt* Prepare(const char* sql) {
    const auto it = statements_.find(sql);
    if (it != statements_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      return nullptr;
    }
    statements_.emplace(sql, stmt);
    return stmt;
  }

 private:
  sqlite3* db_;
  std::string path_;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

// One use of a cached statement: bind, step, read columns. Resets the statement when it goes out
// of scope, so a finished read never keeps an old snapshot open. The first error (prepare, bind or
// step) is kept and returned by Step().
class Query {
 public:
  Query(Connection& db, const char* sql, std::string_view what)
      : db_(db), stmt_(db.Prepare(sql)), what_(what) {
    if (stmt_ == nullptr) error_ = db_.Error(std::string("preparing ") + std::string(what_));
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  ~Query() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  // Binds the next parameter. The bytes must outlive this Query (SQLITE_STATIC).
  Query& Bind(std::string_view text) {
    // An empty view may have a null data(), which SQLite would store as NULL.
    const char* data = text.empty() ? "" : text.data();
    if (text.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      Note(SQLITE_TOOBIG);
    } else if (stmt_ != nullptr) {
      Note(sqlite3_bind_text(stmt_, ++index_, data, static_cast<int>(text.size()), SQLITE_STATIC));
    }
    return *this;
  }
  Query& Bind(std::int64_t value) {
    if (stmt_ != nullptr) Note(sqlite3_bind_int64(stmt_, ++index_, value));
    return *this;
  }

  // True: a row is available; false: done. Errors: kInternal.
  Result<bool> Step() {
    if (!error_.ok()) return error_;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    error_ = db_.Error(what_);
    return error_;
  }

  // Runs a statement that returns no rows. Errors: kInternal.
  Status Run() {
    Result<bool> row = Step();
    return row.status();
  }

  std::int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const {
    const auto* bytes = sqlite3_column_text(stmt_, column);
    if (bytes == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(bytes),
                       static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
  }

 private:
  void Note(int rc) {
    if (rc != SQLITE_OK && error_.ok()) {
      error_ = Internal("binding " + std::string(what_) + " failed on " + db_.path() + ": " +
                        sqlite3_errstr(rc));
    }
  }

  Connection& db_;
  sqlite3_stmt* stmt_;
  std::string_view what_;
  int index_ = 0;
  Status error_;
};

// Runs a one-value PRAGMA or query and returns its first column as an integer.
Result<std::int64_t> QueryInt(Connection& db, const std::string& sql, std::string_view what) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return db.Error(what);
  }
  const int rc = sqlite3_step(stmt);
  const std::int64_t value = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  Status status = rc == SQLITE_ROW || rc == SQLITE_DONE ? Status() : db.Error(what);
  sqlite3_finalize(stmt);
  if (!status.ok()) return status;
  return value;
}

// Runs a PRAGMA or query and returns the first column of every row as text.
Result<std::vector<std::string>> QueryTexts(Connection& db, const std::string& sql,
                                            std::string_view what) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return db.Error(what);
  }
  std::vector<std::string> rows;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const auto* text = sqlite3_column_text(stmt, 0);
    rows.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
  }
  Status status = rc == SQLITE_DONE ? Status() : db.Error(what);
  sqlite3_finalize(stmt);
  if (!status.ok()) return status;
  return rows;
}

// Refuses, before anything is written, a file that is not a poco_messenger database (another
// application's, or not SQLite at all) or one written by a newer schema. Returns the file's
// schema version: 0 for a new, empty database.
Result<int> CheckIdentity(Connection& db) {
  const std::string& path = db.path();
  Result<std::int64_t> app_id = QueryInt(db, "PRAGMA application_id", "reading application_id");
  if (!app_id.ok()) {
    // SQLite cannot even read the header: not an SQLite database, or a damaged one.
    return Internal(path + " is not a poco_messenger database (" + sqlite3_errmsg(db.handle()) +
                    ")");
  }
  Result<std::int64_t> version = QueryInt(db, "PRAGMA user_version", "reading user_version");
  if (!version.ok()) return version.status();
  Result<std::int64_t> objects =
      QueryInt(db, "SELECT COUNT(*) FROM sqlite_master", "reading the schema");
  if (!objects.ok()) {
    return Internal(path + " is not a poco_messenger database or is corrupt (" +
                    objects.status().message() + ")");
  }

  if (*app_id != kApplicationId) {
    // Application id 0 with nothing in it is a new (or never initialised) database: ours to set
    // up. Anything else belongs to someone else and must not be touched.
    if (*app_id != 0 || *version != 0 || *objects != 0) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%08x", static_cast<std::uint32_t>(*app_id));
      return Internal(path + " is not a poco_messenger database (application_id " + hex +
                      ", expected 0x504d5347); refusing to modify it");
    }
    return 0;
  }
  if (*version > kSchemaVersion) {
    return Internal(path + " was written by a newer version (schema " + std::to_string(*version) +
                    ", this build supports " + std::to_string(kSchemaVersion) +
                    "); refusing to open it");
  }
  return static_cast<int>(*version);
}

// PRAGMA quick_check: refuses a damaged file instead of serving (and extending) bad data.
Status CheckIntegrity(Connection& db) {
  Result<std::vector<std::string>> rows = QueryTexts(db, "PRAGMA quick_check", "quick_check");
  std::string problem;
  if (!rows.ok()) {
    problem = rows.status().message();
  } else if (rows->size() != 1 || rows->front() != "ok") {
    problem = rows->empty() ? "no result" : rows->front();
    if (rows->size() > 1) problem += " (and " + std::to_string(rows->size() - 1) + " more)";
  }
  if (problem.empty()) return Status();
  return Internal(db.path() + " is corrupt (PRAGMA quick_check: " + problem +
                  "); restore it from a backup");
}

// Brings the schema from its current version to kSchemaVersion, one transaction per step. The
// version is re-read under the write lock, so two processes opening one new file do not both
// migrate it.
Status Migrate(Connection& db) {
  for (int step = 0; step < kSchemaVersion; ++step) {
    const int target = step + 1;
    Status status = db.Exec("BEGIN IMMEDIATE", "starting migration");
    if (!status.ok()) return status;
    Result<std::int64_t> version = QueryInt(db, "PRAGMA user_version", "reading user_version");
    if (!version.ok()) {
      status = version.status();
    } else if (*version > kSchemaVersion) {  // Another process upgraded it meanwhile.
      status = Internal(db.path() + " was written by a newer version (schema " +
                        std::to_string(*version) + ", this build supports " +
                        std::to_string(kSchemaVersion) + "); refusing to open it");
    } else if (*version >= target) {
      status = db.Exec("COMMIT", "finishing migration");
      if (status.ok()) continue;
    } else {
      status = db.Exec(kMigrations[step], "migrating to schema " + std::to_string(target));
      if (status.ok()) {
        status = db.Exec("PRAGMA application_id = " + std::to_string(kApplicationId) +
                             "; PRAGMA user_version = " + std::to_string(target),
                         "recording schema " + std::to_string(target));
      }
      if (status.ok()) status = db.Exec("COMMIT", "committing schema " + std::to_string(target));
      if (status.ok()) continue;
    }
    if (sqlite3_get_autocommit(db.handle()) == 0) db.Exec("ROLLBACK", "rolling back migration");
    return status;
  }
  return Status();
}

// A fixed set of connections lent to one user at a time.
class ConnectionPool {
 public:
  void Add(Connection* db) { idle_.push_back(db); }

  Connection& Acquire() {
    std::unique_lock lock(mu_);
    available_.wait(lock, [&] { return !idle_.empty(); });
    Connection* db = idle_.back();
    idle_.pop_back();
    return *db;
  }
  void Release(Connection& db) {
    {
      std::lock_guard lock(mu_);
      idle_.push_back(&db);
    }
    available_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<Connection*> idle_;
};

class Lease {
 public:
  explicit Lease(ConnectionPool& pool) : pool_(pool), db_(pool.Acquire()) {}
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { pool_.Release(db_); }
  Connection& db() { return db_; }

 private:
  ConnectionPool& pool_;
  Connection& db_;
};

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const SqliteOptions& options);

  // `stored` is how many messages the database holds; with `metrics` they are counted from now.
  SqliteStore(std::unique_ptr<Connection> writer, std::vector<std::unique_ptr<Connection>> readers,
              Metrics* metrics, std::int64_t stored)
      : writer_(std::move(writer)), readers_(std::move(readers)), metrics_(metrics) {
    if (metrics_ != nullptr) {
      stored_ = stored;
      metrics_->stored_messages().Add(stored_);
    }
    if (readers_.empty()) {
      // An in-memory database exists once per connection, so reads share the writer connection
      // and the writer holds it for each whole batch.
      shared_connection_ = true;
      read_pool_.Add(writer_.get());
    } else {
      for (const auto& reader : readers_) read_pool_.Add(reader.get());
    }
  }
  // Starts the writer thread. Errors: kInternal.
  Status Start() {
    try {
      writer_thread_ = std::thread([this] { WriterLoop(); });
    } catch (const std::exception& e) {
      return Internal(std::string("cannot start the writer thread: ") + e.what());
    }
    return Status();
  }

  // Commits every queued write, stops the writer, checkpoints the WAL into the database file.
  ~SqliteStore() override {
    {
      std::lock_guard lock(queue_mu_);
      stopping_ = true;
    }
    work_ready_.notify_one();
    if (writer_thread_.joinable()) writer_thread_.join();
    if (metrics_ != nullptr) metrics_->stored_messages().Sub(stored_);
    readers_.clear();
    sqlite3_wal_checkpoint_v2(writer_->handle(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                              nullptr);
  }

  Status CreateAccount(const AccountRecord& account) override {
    Status outcome;
    const std::int64_t now = NowMs();
    Status status = Write([&](Connection& db) -> Status {
      Query insert(db, kInsertAccount, "CreateAccount");
      Status run =
          insert.Bind(account.key).Bind(account.name).Bind(account.password_hash).Bind(now).Run();
      if (!run.ok()) return run;
      if (sqlite3_changes(db.handle()) == 0) outcome = store_internal::UsernameTaken();
      return Status();
    });
    return status.ok() ? outcome : status;
  }

  Result<std::optional<AccountRecord>> FindAccount(std::string_view key) override {
    Lease lease(read_pool_);
    Query find(lease.db(), kFindLiveAccount, "FindAccount");
    Result<bool> row = find.Bind(key).Step();
    if (!row.ok()) return row.status();
    if (!*row) return std::optional<AccountRecord>();
    return std::optional<AccountRecord>(
        AccountRecord{std::string(key), find.Text(0), find.Text(1)});
  }

  Result<std::vector<AccountRecord>> ScanAccounts(std::string_view after_key,
                                                  std::size_t max) override {
    Lease lease(read_pool_);
    Query scan(lease.db(), kScanLiveAccounts, "ScanAccounts");
    scan.Bind(after_key).Bind(ClampToSql(max));
    std::vector<AccountRecord> out;
    for (;;) {
      Result<bool> row = scan.Step();
      if (!row.ok()) return row.status();
      if (!*row) return out;
      out.push_back(AccountRecord{scan.Text(0), scan.Text(1), {}});
    }
  }

  Result<std::uint32_t> DeleteAccount(std::string_view key) override {
    Result<std::uint32_t> outcome = std::uint32_t{0};
    Status status = Write([&](Connection& db) -> Status {
      {
        Query find(db, kFindLiveAccount, "DeleteAccount");
        Result<bool> live = find.Bind(key).Step();
        if (!live.ok()) return live.status();
        if (!*live) {
          outcome = store_internal::NoSuchAccount();
          return Status();
        }
      }
      Query drop_queue(db, kDeleteQueue, "DeleteAccount");
      Status run = drop_queue.Bind(key).Run();
      if (!run.ok()) return run;
      queue_lengths_.erase(std::string(key));
      touched_.insert(std::string(key));
      batch_stored_delta_ -= sqlite3_changes64(db.handle());
      outcome = Clamp32(sqlite3_changes64(db.handle()));
      Query retire(db, kRetireAccount, "DeleteAccount");
      run = retire.Bind(key).Run();
      if (!run.ok()) return run;
      // The retired key never sends again, so its send log is dead weight.
      Query drop_sends(db, kDeleteSendsBy, "DeleteAccount");
      return drop_sends.Bind(key).Run();
    });
    if (!status.ok()) return status;
    return outcome;
  }

  Result<AppendOutcome> Append(const NewMessage& message, const AppendPolicy& policy) override {
    Result<AppendOutcome> outcome = Internal("append did not run");
    Status status =
        Write([&](Connection& db) { return ApplyAppend(db, message, policy, outcome); });
    if (!status.ok()) return status;
    return outcome;
  }

  std::vector<Result<AppendOutcome>> AppendMany(std::span<const AppendRequest> requests) override {
    std::vector<Result<AppendOutcome>> outcomes(requests.size(), Internal("append did not run"));
    Status status = Write([&](Connection& db) -> Status {
      for (std::size_t i = 0; i < requests.size(); ++i) {
        Status applied = ApplyAppend(db, requests[i].message, requests[i].policy, outcomes[i]);
        if (!applied.ok()) return applied;
      }
      return Status();
    });
    if (!status.ok()) std::fill(outcomes.begin(), outcomes.end(), status);
    return outcomes;
  }

  Result<std::vector<StoredMessage>> ListMessages(std::string_view recipient_key,
                                                  std::uint64_t after_id,
                                                  std::size_t max) override {
    std::vector<StoredMessage> out;
    if (after_id > static_cast<std::uint64_t>(INT64_MAX)) return out;  // No id is that large.
    Lease lease(read_pool_);
    Query list(lease.db(), kListQueue, "ListMessages");
    list.Bind(recipient_key).Bind(ToSql(after_id)).Bind(ClampToSql(max));
    for (;;) {
      Result<bool> row = list.Step();
      if (!row.ok()) return row.status();
      if (!*row) return out;
      out.push_back(
          StoredMessage{FromSql(list.Int(0)), list.Text(1), FromSql(list.Int(2)), list.Text(3)});
    }
  }

  Result<std::uint32_t> CountMessages(std::string_view recipient_key) override {
    {
      std::lock_guard lock(committed_mu_);
      const auto known = committed_lengths_.find(std::string(recipient_key));
      if (known != committed_lengths_.end()) return Clamp32(known->second);
    }
    Lease lease(read_pool_);
    Query count(lease.db(), kCountQueue, "CountMessages");
    Result<bool> row = count.Bind(recipient_key).Step();
    if (!row.ok()) return row.status();
    return Clamp32(count.Int(0));
  }

  Status Ack(std::string_view recipient_key, std::span<const std::uint64_t> ids) override {
    if (ids.empty()) return Status();
    return Write([&](Connection& db) -> Status {
      std::int64_t* length = nullptr;  // Looked up at the first deletion, then kept.
      for (const std::uint64_t id : ids) {
        if (id > static_cast<std::uint64_t>(INT64_MAX)) continue;  // Never assigned.
        Query ack(db, kAckOne, "Ack");
        Status run = ack.Bind(ToSql(id)).Bind(recipient_key).Run();
        if (!run.ok()) return run;
        if (sqlite3_changes(db.handle()) > 0) {
          if (length == nullptr) {
            Result<std::int64_t*> counted = QueueLength(db, recipient_key);
            if (!counted.ok()) return counted.status();
            length = *counted;
          }
          --*length;
          --batch_stored_delta_;
          ++batch_acked_;
        }
      }
      return Status();
    });
  }

 private:
  // One queued write. `apply` runs inside the batch transaction on the writer thread; it records
  // its logical result (including refusals) itself and returns non-OK only when SQLite failed,
  // which rolls back the whole batch.
  struct PendingWrite {
    const std::function<Status(Connection&)>* apply;
    Status failure;  // Set when the batch did not commit.
    bool done = false;
    std::condition_variable committed;
  };

  // Queues `apply` for the writer and blocks until its batch committed (OK) or failed (kInternal,
  // and nothing of the batch was written).
  Status Write(const std::function<Status(Connection&)>& apply) {
    PendingWrite write;
    write.apply = &apply;
    std::unique_lock lock(queue_mu_);
    pending_.push_back(&write);
    work_ready_.notify_one();
    write.committed.wait(lock, [&] { return write.done; });
    return write.failure;
  }

  void WriterLoop() {
    std::vector<PendingWrite*> batch;
    std::unique_lock lock(queue_mu_);
    for (;;) {
      work_ready_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // Stopping, and everything queued is done.
      const std::size_t n = std::min(pending_.size(), kMaxBatch);
      batch.assign(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
      lock.unlock();
      const Status failure = RunBatch(batch);
      lock.lock();
      for (PendingWrite* write : batch) {
        write->failure = failure;
        write->done = true;
        // Under the lock: once it sees `done` the caller may return and destroy `write`.
        write->committed.notify_one();
      }
    }
  }

  // Writer thread only: Append's work inside the batch transaction. Sets `outcome` (a refusal
  // too); returns non-OK only when SQLite failed.
  Status ApplyAppend(Connection& db, const NewMessage& message, const AppendPolicy& policy,
                     Result<AppendOutcome>& outcome) {
    const std::int64_t fingerprint = ToSql(TextFingerprint(message.text));
    // The checks run in the order of store.h, inside the transaction that inserts.
    {
      Query recipient(db, kFindLiveAccount, "Append");
      Result<bool> live = recipient.Bind(message.recipient_key).Step();
      if (!live.ok()) return live.status();
      if (!*live) {
        outcome = store_internal::NoSuchAccount();
        return Status();
      }
    }
    {
      Query earlier(db, kFindSend, "Append");
      Result<bool> found =
          earlier.Bind(message.sender_key).Bind(ToSql(message.client_message_id)).Step();
      if (!found.ok()) return found.status();
      if (*found && FromSql(earlier.Int(3)) >= policy.dedupe_since_ms) {
        if (earlier.Text(1) != message.recipient_key || earlier.Int(2) != fingerprint) {
          outcome = store_internal::ClientIdReused();
        } else {
          outcome =
              AppendOutcome{SendOk{FromSql(earlier.Int(0)), FromSql(earlier.Int(3)),
                                   earlier.Int(4) == 1 ? Delivery::kDelivered : Delivery::kQueued},
                            true};
        }
        return Status();
      }
    }
    if (!policy.accept_new) {
      outcome = store_internal::NotAcceptingNew();
      return Status();
    }
    Result<std::int64_t*> length = QueueLength(db, message.recipient_key);
    if (!length.ok()) return length.status();
    if (**length >= std::int64_t{policy.queue_cap}) {
      outcome = store_internal::QueueFull();
      return Status();
    }
    Query insert(db, kInsertMessage, "Append");
    Status run = insert.Bind(message.recipient_key)
                     .Bind(message.sender_name)
                     .Bind(ToSql(message.timestamp_ms))
                     .Bind(message.text)
                     .Run();
    if (!run.ok()) return run;
    const std::int64_t id = sqlite3_last_insert_rowid(db.handle());
    ++**length;
    ++batch_stored_delta_;
    Query record(db, kRecordSend, "Append");
    run = record.Bind(message.sender_key)
              .Bind(ToSql(message.client_message_id))
              .Bind(id)
              .Bind(message.recipient_key)
              .Bind(fingerprint)
              .Bind(ToSql(message.timestamp_ms))
              .Bind(std::int64_t{message.delivery == Delivery::kDelivered ? 1 : 0})
              .Run();
    if (!run.ok()) return run;
    if (++appends_since_prune_ >= kPruneInterval) {
      appends_since_prune_ = 0;
      Query prune(db, kPruneSends, "pruning the send log");
      run = prune.Bind(ToSql(policy.dedupe_since_ms)).Bind(kPruneLimit).Run();
      if (!run.ok()) return run;
    }
    outcome = AppendOutcome{SendOk{FromSql(id), message.timestamp_ms, message.delivery}, false};
    return Status();
  }

  // Writer thread only. The number of messages stored for `recipient_key` as this transaction
  // sees it, counted once and then kept up to date by every write, so that neither the QUEUE_FULL
  // check nor CountMessages costs more for a long queue than for a short one. The pointer stays
  // valid until the map changes.
  Result<std::int64_t*> QueueLength(Connection& db, std::string_view recipient_key) {
    std::string key(recipient_key);
    touched_.insert(key);
    const auto cached = queue_lengths_.find(key);
    if (cached != queue_lengths_.end()) return &cached->second;
    Query count(db, kCountQueue, "counting a queue");
    Result<bool> row = count.Bind(recipient_key).Step();
    if (!row.ok()) return row.status();
    return &queue_lengths_.emplace(std::move(key), count.Int(0)).first->second;
  }

  // Writer thread only, after a commit: what readers see of the queue lengths the batch touched.
  void PublishQueueLengths() {
    std::lock_guard lock(committed_mu_);
    for (const std::string& key : touched_) {
      const auto length = queue_lengths_.find(key);
      if (length == queue_lengths_.end()) {
        committed_lengths_.erase(key);
      } else {
        committed_lengths_[key] = length->second;
      }
    }
    touched_.clear();
  }

  // Applies `batch` in one transaction. Returns OK iff it committed.
  Status RunBatch(std::span<PendingWrite* const> batch) {
    std::optional<Lease> shared;
    if (shared_connection_) shared.emplace(read_pool_);
    Connection& db = *writer_;
    const auto start = std::chrono::steady_clock::now();
    batch_stored_delta_ = 0;
    batch_acked_ = 0;
    Status status = db.Exec("BEGIN IMMEDIATE", "starting a write transaction");
    for (std::size_t i = 0; status.ok() && i < batch.size(); ++i) {
      try {
        status = (*batch[i]->apply)(db);
      } catch (const std::exception& e) {
        status = Internal(std::string("write failed on ") + db.path() + ": " + e.what());
      }
    }
    if (status.ok()) status = db.Exec("COMMIT", "committing");
    if (metrics_ != nullptr) {
      metrics_->commit_batch_size().Observe(static_cast<double>(batch.size()));
      metrics_->commit_duration_seconds().Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    if (status.ok()) {
      PublishQueueLengths();
      if (metrics_ != nullptr) {
        stored_ += batch_stored_delta_;
        metrics_->stored_messages().Add(batch_stored_delta_);
        metrics_->messages_acked().Add(batch_acked_);
      }
      return status;
    }
    // The lengths counted writes that are now rolled back: count again when next needed.
    queue_lengths_.clear();
    touched_.clear();
    {
      std::lock_guard lock(committed_mu_);
      committed_lengths_.clear();
    }
    // SQLite may already have rolled back on its own (e.g. after an I/O error).
    if (sqlite3_get_autocommit(db.handle()) == 0) db.Exec("ROLLBACK", "rolling back");
    return Internal(status.message() + " (nothing of this write was stored)");
  }

  std::unique_ptr<Connection> writer_;  // Used by the writer thread only (and ~SqliteStore).
  std::vector<std::unique_ptr<Connection>> readers_;
  ConnectionPool read_pool_;
  bool shared_connection_ = false;
  std::uint64_t appends_since_prune_ = 0;  // Writer thread only.
  Metrics* const metrics_;                 // Null: nothing is recorded.
  // Messages stored as of the last commit, and what the current batch changes: writer thread
  // only (and the destructor, once it has stopped).
  std::int64_t stored_ = 0;
  std::int64_t batch_stored_delta_ = 0;
  std::uint64_t batch_acked_ = 0;
  // Stored messages per recipient key, for those the writer has counted (writer thread only),
  // and the keys whose length the current batch counted or changed.
  std::unordered_map<std::string, std::int64_t> queue_lengths_;
  std::unordered_set<std::string> touched_;
  // The lengths as of the last commit, for CountMessages on other threads.
  std::mutex committed_mu_;
  std::unordered_map<std::string, std::int64_t> committed_lengths_;  // Guarded by committed_mu_.

  std::mutex queue_mu_;
  std::condition_variable work_ready_;
  std::deque<PendingWrite*> pending_;  // Guarded by queue_mu_.
  bool stopping_ = false;              // Guarded by queue_mu_.
  std::thread writer_thread_;
};

Result<std::unique_ptr<Store>> SqliteStore::Open(const SqliteOptions& options) {
  const std::string& path = options.path;
  const bool in_memory = path == ":memory:" || path.empty();

  Result<std::unique_ptr<Connection>> opened =
      Connection::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Connection> writer = std::move(opened).value();
  if (sqlite3_db_readonly(writer->handle(), "main") == 1) {
    return Internal("cannot open " + path + " for writing");
  }

  // Nothing is written before the file is known to be ours, current and intact.
  Result<int> version = CheckIdentity(*writer);
  if (!version.ok()) return version.status();
  if (*version > 0) {
    Status intact = CheckIntegrity(*writer);
    if (!intact.ok()) return intact;
  }

  if (!in_memory) {
    Result<std::vector<std::string>> mode =
        QueryTexts(*writer, "PRAGMA journal_mode = WAL", "switching to WAL");
    if (!mode.ok()) return mode.status();
    if (mode->empty() || mode->front() != "wal") {
      return Internal("cannot switch " + path + " to WAL mode (journal_mode is " +
                      (mode->empty() ? std::string("unknown") : mode->front()) + ")");
    }
  }
  Status status = writer->Exec(std::string("PRAGMA synchronous = ") +
                                   (options.sync == SyncMode::kFull ? "FULL" : "NORMAL") +
                                   "; PRAGMA journal_size_limit = " + std::to_string(kWalSizeLimit),
                               "configuring the connection");
  if (!status.ok()) return status;
  status = Migrate(*writer);
  if (!status.ok()) return status;

  std::vector<std::unique_ptr<Connection>> readers;
  if (!in_memory) {
    for (std::size_t i = 0; i < kReadConnections; ++i) {
      Result<std::unique_ptr<Connection>> reader = Connection::Open(path, SQLITE_OPEN_READWRITE);
      if (!reader.ok()) return reader.status();
      status = (*reader)->Exec("PRAGMA query_only = 1", "configuring a read connection");
      if (!status.ok()) return status;
      readers.push_back(std::move(reader).value());
    }
  }

  std::int64_t stored = 0;
  if (options.metrics != nullptr) {
    Result<std::int64_t> count =
        QueryInt(*writer, "SELECT COUNT(*) FROM messages", "counting the stored messages");
    if (!count.ok()) return count.status();
    stored = *count;
  }
  auto store =
      std::make_unique<SqliteStore>(std::move(writer), std::move(readers), options.metrics, stored);
  status = store->Start();
  if (!status.ok()) return status;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
  try {
    return SqliteStore::Open(options);
  } catch (const std::exception& e) {
    return Internal("cannot open " + options.path + ": " + e.what());
  }
}

}  // namespace messenger

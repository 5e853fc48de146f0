// The embedded default store: one SQLite file in WAL mode with group commit.
#ifndef MESSENGER_SERVER_SQLITE_STORE_H_
#define MESSENGER_SERVER_SQLITE_STORE_H_

#include <memory>
#include <string>

#include "messenger/server/metrics.h"
#include "messenger/server/store.h"

namespace messenger {

enum class SyncMode {
  kFull,    // fsync at every commit: an acknowledged message survives power loss.
  kNormal,  // WAL fsync at checkpoints only: survives a process crash, may lose the last
            // commits on power loss or an OS crash.
};

struct SqliteOptions {
  std::string path = "messenger.db";
  SyncMode sync = SyncMode::kFull;
  // When set (it must outlive the store): stored_messages, messages_acked and the group-commit
  // histograms are kept up to date. The messages found at open count from then on, and leave
  // the gauge when the store is destroyed.
  Metrics* metrics = nullptr;
};

// Opens (creating if absent) and migrates the database, checks its integrity.
// Errors: kInternal with a message naming the file and the problem (not a messenger database,
// written by a newer version, corrupt, cannot open).
Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

}  // namespace messenger

#endif  // MESSENGER_SERVER_SQLITE_STORE_H_

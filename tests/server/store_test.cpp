// The Store contract (store.h), run against both implementations by one typed suite, and the
// SQLite store's own promises about its file: persistence, refusing foreign, newer or damaged
// files without touching them, and group commit under many writers.
#include "messenger/server/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "messenger/server/sqlite_store.h"

namespace messenger {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A fresh directory, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "store_test-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Overwrites the big-endian u32 at `offset` of an SQLite file header.
void PatchU32(const std::filesystem::path& path, std::size_t offset, std::uint32_t value) {
  std::string bytes = ReadBytes(path);
  ASSERT_GE(bytes.size(), offset + 4);
  for (int i = 0; i < 4; ++i) {
    bytes[offset + static_cast<std::size_t>(i)] = static_cast<char>(value >> (24 - 8 * i));
  }
  WriteBytes(path, bytes);
}
// Offsets in the SQLite database header (sqlite.org/fileformat.html).
constexpr std::size_t kUserVersionOffset = 60;
constexpr std::size_t kApplicationIdOffset = 68;

std::unique_ptr<Store> OpenOrFail(const std::filesystem::path& file,
                                  SyncMode sync = SyncMode::kFull) {
  Result<std::unique_ptr<Store>> store = OpenSqliteStore({file.string(), sync});
  if (!store.ok()) {
    ADD_FAILURE() << "opening " << file << ": " << store.status().ToString();
    return nullptr;
  }
  return std::move(store).value();
}

struct MemoryKind {
  static std::unique_ptr<Store> Open(const std::filesystem::path&) { return MakeMemoryStore(); }
};
struct SqliteKind {
  static std::unique_ptr<Store> Open(const std::filesystem::path& dir) {
    return OpenOrFail(dir / "messenger.db");
  }
};

class KindNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, MemoryKind> ? "Memory" : "Sqlite";
  }
};

// Accepts everything new: a cap no test reaches, no dedupe cut-off.
constexpr AppendPolicy kOpenPolicy{1000000, 0, true};

template <typename Kind>
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "cannot create a temporary directory";
    store_ = Kind::Open(dir_.path());
    ASSERT_NE(store_, nullptr);
    for (const char* name : {"Alice", "Bob", "Carol"}) AddAccount(name);
  }

  static std::string Key(std::string name) {
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return name;
  }

  void AddAccount(const std::string& name) {
    ASSERT_TRUE(store_->CreateAccount({Key(name), name, "hash-of-" + name}).ok()) << name;
  }

  // A SEND from `sender` (a display name) to `recipient` (a display name).
  static NewMessage Message(const std::string& sender, const std::string& recipient,
                            std::uint64_t client_id, const std::string& text,
                            std::uint64_t timestamp_ms = 1000) {
    return NewMessage{Key(sender), sender,       Key(recipient),   client_id,
                      text,        timestamp_ms, Delivery::kQueued};
  }

  // Appends under kOpenPolicy and returns the new id; fails the test on refusal.
  std::uint64_t Send(const std::string& sender, const std::string& recipient,
                     std::uint64_t client_id, const std::string& text) {
    Result<AppendOutcome> outcome =
        store_->Append(Message(sender, recipient, client_id, text), kOpenPolicy);
    EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
    if (!outcome.ok()) return 0;
    EXPECT_FALSE(outcome->duplicate);
    return outcome->result.message_id;
  }

  std::vector<std::uint64_t> Ids(const std::string& recipient_key) {
    Result<std::vector<StoredMessage>> list = store_->ListMessages(recipient_key, 0, 1000000);
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    std::vector<std::uint64_t> ids;
    if (list.ok()) {
      for (const StoredMessage& m : *list) ids.push_back(m.message_id);
    }
    return ids;
  }

  std::uint32_t Count(const std::string& recipient_key) {
    Result<std::uint32_t> count = store_->CountMessages(recipient_key);
    EXPECT_TRUE(count.ok()) << count.status().ToString();
    return count.ok() ? *count : 0;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

using Kinds = ::testing::Types<MemoryKind, SqliteKind>;
TYPED_TEST_SUITE(StoreTest, Kinds, KindNames);

// ---- Accounts ----

TYPED_TEST(StoreTest, FindsCreatedAccountWithNameAndHash) {
  Result<std::optional<AccountRecord>> found = this->store_->FindAccount("alice");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(**found, (AccountRecord{"alice", "Alice", "hash-of-Alice"}));
}

TYPED_TEST(StoreTest, FindAccountOfUnknownKeyIsEmpty) {
  Result<std::optional<AccountRecord>> found = this->store_->FindAccount("zed");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TYPED_TEST(StoreTest, CreateAccountRefusesALiveKeyWhateverTheDisplayName) {
  Status status = this->store_->CreateAccount({"alice", "ALICE", "other-hash"});
  EXPECT_EQ(status.code(), ErrorCode::kUsernameTaken);
  Result<std::optional<AccountRecord>> found = this->store_->FindAccount("alice");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->name, "Alice");
  EXPECT_EQ((*found)->password_hash, "hash-of-Alice");
}

TYPED_TEST(StoreTest, DeletedAccountIsGoneAndItsKeyRetiredForEver) {
  ASSERT_TRUE(this->store_->DeleteAccount("bob").ok());
  Result<std::optional<AccountRecord>> found = this->store_->FindAccount("bob");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  EXPECT_EQ(this->store_->CreateAccount({"bob", "Bob", "new-hash"}).code(),
            ErrorCode::kUsernameTaken);
  EXPECT_EQ(this->store_->CreateAccount({"bob", "BOB", "new-hash"}).code(),
            ErrorCode::kUsernameTaken);
  found = this->store_->FindAccount("bob");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TYPED_TEST(StoreTest, DeleteAccountOfUnknownOrDeletedKeyIsUnknownRecipient) {
  EXPECT_EQ(this->store_->DeleteAccount("zed").status().code(), ErrorCode::kUnknownRecipient);
  ASSERT_TRUE(this->store_->DeleteAccount("carol").ok());
  EXPECT_EQ(this->store_->DeleteAccount("carol").status().code(), ErrorCode::kUnknownRecipient);
}

TYPED_TEST(StoreTest, ScanAccountsListsLiveAccountsInKeyOrderAfterTheGivenKey) {
  this->AddAccount("dave");
  this->AddAccount("Aaron");
  ASSERT_TRUE(this->store_->DeleteAccount("bob").ok());
  auto keys = [&](std::string_view after, std::size_t max) {
    Result<std::vector<AccountRecord>> page = this->store_->ScanAccounts(after, max);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    std::vector<std::string> out;
    if (page.ok()) {
      for (const AccountRecord& a : *page) out.push_back(a.key);
    }
    return out;
  };
  EXPECT_THAT(keys("", 10), ElementsAre("aaron", "alice", "carol", "dave"));
  EXPECT_THAT(keys("", 2), ElementsAre("aaron", "alice"));
  EXPECT_THAT(keys("alice", 2), ElementsAre("carol", "dave"));
  EXPECT_THAT(keys("b", 10), ElementsAre("carol", "dave"));  // Not itself a key.
  EXPECT_THAT(keys("bob", 10), ElementsAre("carol", "dave"));
  EXPECT_THAT(keys("dave", 10), ElementsAre());
  EXPECT_THAT(keys("", 0), ElementsAre());
}

TYPED_TEST(StoreTest, ScanAccountsGivesDisplayNamesButNoPasswordHashes) {
  Result<std::vector<AccountRecord>> page = this->store_->ScanAccounts("", 10);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(*page,
              ElementsAre(AccountRecord{"alice", "Alice", ""}, AccountRecord{"bob", "Bob", ""},
                          AccountRecord{"carol", "Carol", ""}));
}

// ---- Append ----

TYPED_TEST(StoreTest, AppendAssignsIncreasingIdsStartingAtOne) {
  EXPECT_EQ(this->Send("Alice", "Bob", 1, "one"), 1u);
  EXPECT_EQ(this->Send("Carol", "Alice", 1, "two"), 2u);
  EXPECT_EQ(this->Send("Alice", "Bob", 2, "three"), 3u);
}

TYPED_TEST(StoreTest, AppendAnswersWithTheMessageTimestampAndDeliveryAndStoresIt) {
  NewMessage message = this->Message("Alice", "Bob", 7, "hello \xC3\xA9", 123456789);
  message.delivery = Delivery::kDelivered;
  Result<AppendOutcome> outcome = this->store_->Append(message, kOpenPolicy);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_FALSE(outcome->duplicate);
  EXPECT_EQ(outcome->result, (SendOk{1, 123456789, Delivery::kDelivered}));
  Result<std::vector<StoredMessage>> list = this->store_->ListMessages("bob", 0, 10);
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(*list, ElementsAre(StoredMessage{1, "Alice", 123456789, "hello \xC3\xA9"}));
}

TYPED_TEST(StoreTest, TextRoundTripsByteForByteIncludingNul) {
  const std::string text("a\0b", 3);
  this->Send("Alice", "Bob", 1, text);
  Result<std::vector<StoredMessage>> list = this->store_->ListMessages("bob", 0, 10);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().text, text);
}

TYPED_TEST(StoreTest, IdsNeverRepeatAfterTheNewestMessageIsAcked) {
  const std::uint64_t first = this->Send("Alice", "Bob", 1, "one");
  const std::uint64_t second = this->Send("Alice", "Bob", 2, "two");
  const std::uint64_t acked[] = {first, second};
  ASSERT_TRUE(this->store_->Ack("bob", acked).ok());
  EXPECT_GT(this->Send("Alice", "Bob", 3, "three"), second);
}

TYPED_TEST(StoreTest, AppendToUnknownOrDeletedRecipientIsUnknownRecipient) {
  EXPECT_EQ(
      this->store_->Append(this->Message("Alice", "Zed", 1, "hi"), kOpenPolicy).status().code(),
      ErrorCode::kUnknownRecipient);
  ASSERT_TRUE(this->store_->DeleteAccount("bob").ok());
  EXPECT_EQ(
      this->store_->Append(this->Message("Alice", "Bob", 2, "hi"), kOpenPolicy).status().code(),
      ErrorCode::kUnknownRecipient);
  EXPECT_EQ(this->Count("bob"), 0u);
}

// ---- Idempotent SEND ----

TYPED_TEST(StoreTest, RetriedSendGetsTheOriginalAnswerAndStoresNothing) {
  NewMessage original = this->Message("Alice", "Bob", 42, "hi", 1000);
  original.delivery = Delivery::kDelivered;
  Result<AppendOutcome> first = this->store_->Append(original, kOpenPolicy);
  ASSERT_TRUE(first.ok());

  NewMessage retry = this->Message("Alice", "Bob", 42, "hi", 5000);  // Later, now queued.
  Result<AppendOutcome> second = this->store_->Append(retry, kOpenPolicy);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(second->duplicate);
  EXPECT_EQ(second->result, (SendOk{first->result.message_id, 1000, Delivery::kDelivered}));
  EXPECT_EQ(this->Count("bob"), 1u);
}

TYPED_TEST(StoreTest, RetryIsAnsweredEvenAfterTheOriginalWasAcked) {
  const std::uint64_t id = this->Send("Alice", "Bob", 42, "hi");
  const std::uint64_t acked[] = {id};
  ASSERT_TRUE(this->store_->Ack("bob", acked).ok());
  Result<AppendOutcome> retry =
      this->store_->Append(this->Message("Alice", "Bob", 42, "hi"), kOpenPolicy);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->result.message_id, id);
  EXPECT_EQ(this->Count("bob"), 0u);
}

TYPED_TEST(StoreTest, SameClientIdWithOtherRecipientOrTextIsClientIdReused) {
  this->Send("Alice", "Bob", 42, "hi");
  EXPECT_EQ(
      this->store_->Append(this->Message("Alice", "Carol", 42, "hi"), kOpenPolicy).status().code(),
      ErrorCode::kClientIdReused);
  EXPECT_EQ(
      this->store_->Append(this->Message("Alice", "Bob", 42, "hi!"), kOpenPolicy).status().code(),
      ErrorCode::kClientIdReused);
  EXPECT_EQ(this->Count("bob"), 1u);
  EXPECT_EQ(this->Count("carol"), 0u);
}

TYPED_TEST(StoreTest, ClientIdsOfDifferentSendersAreIndependent) {
  const std::uint64_t from_alice = this->Send("Alice", "Bob", 42, "hi");
  const std::uint64_t from_carol = this->Send("Carol", "Bob", 42, "other text");
  EXPECT_NE(from_alice, from_carol);
  EXPECT_EQ(this->Count("bob"), 2u);
}

TYPED_TEST(StoreTest, ClientIdsUseAllSixtyFourBits) {
  const std::uint64_t high = std::uint64_t{1} << 63;
  const std::uint64_t max = UINT64_MAX;
  const std::uint64_t a = this->Send("Alice", "Bob", high, "high");
  const std::uint64_t b = this->Send("Alice", "Bob", max, "max");
  const std::uint64_t c = this->Send("Alice", "Bob", 0, "zero");
  EXPECT_EQ(this->Count("bob"), 3u);
  for (auto [cid, text, id] : {std::tuple{high, "high", a}, std::tuple{max, "max", b},
                               std::tuple{std::uint64_t{0}, "zero", c}}) {
    Result<AppendOutcome> retry =
        this->store_->Append(this->Message("Alice", "Bob", cid, text), kOpenPolicy);
    ASSERT_TRUE(retry.ok()) << cid;
    EXPECT_TRUE(retry->duplicate) << cid;
    EXPECT_EQ(retry->result.message_id, id) << cid;
  }
}

TYPED_TEST(StoreTest, SendsOlderThanTheDedupeWindowNoLongerCount) {
  const std::uint64_t old_id = this->Send("Alice", "Bob", 42, "hi");  // At t=1000.
  AppendPolicy later = kOpenPolicy;
  later.dedupe_since_ms = 1001;

  // Same id with other text: a new message, not CLIENT_ID_REUSED.
  Result<AppendOutcome> reused =
      this->store_->Append(this->Message("Alice", "Bob", 42, "new text", 2000), later);
  ASSERT_TRUE(reused.ok()) << reused.status().ToString();
  EXPECT_FALSE(reused->duplicate);
  EXPECT_GT(reused->result.message_id, old_id);

  // The new send replaced the old one as what the id means.
  Result<AppendOutcome> retry =
      this->store_->Append(this->Message("Alice", "Bob", 42, "new text", 3000), later);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->result.message_id, reused->result.message_id);
  EXPECT_EQ(
      this->store_->Append(this->Message("Alice", "Bob", 42, "hi", 3000), later).status().code(),
      ErrorCode::kClientIdReused);
  EXPECT_EQ(this->Count("bob"), 2u);
}

TYPED_TEST(StoreTest, AnIdenticalSendAfterTheWindowIsStoredAgain) {
  const std::uint64_t old_id = this->Send("Alice", "Bob", 42, "hi");
  AppendPolicy later = kOpenPolicy;
  later.dedupe_since_ms = 5000;
  Result<AppendOutcome> again =
      this->store_->Append(this->Message("Alice", "Bob", 42, "hi", 6000), later);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->duplicate);
  EXPECT_GT(again->result.message_id, old_id);
  EXPECT_EQ(this->Count("bob"), 2u);
}

TYPED_TEST(StoreTest, ExpiredSendsAreForgottenWhileManyOthersArrive) {
  // Enough appends to pass any periodic pruning; the expired entry must still not count.
  this->Send("Alice", "Bob", 1, "first");
  AppendPolicy later{1000000, 2000, true};
  for (std::uint64_t i = 2; i < 300; ++i) {
    // Client id 2 is sent exactly at the window's start, so it still counts.
    ASSERT_TRUE(
        this->store_->Append(this->Message("Alice", "Carol", i, "x", 1998 + i), later).ok());
  }
  Result<AppendOutcome> reused =
      this->store_->Append(this->Message("Alice", "Carol", 1, "other", 9000), later);
  ASSERT_TRUE(reused.ok()) << reused.status().ToString();
  EXPECT_FALSE(reused->duplicate);
  // Sends inside the window, even right at its start, survived the pruning.
  Result<AppendOutcome> retry =
      this->store_->Append(this->Message("Alice", "Carol", 2, "x", 9000), later);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
}

// ---- Policy ----

TYPED_TEST(StoreTest, NotAcceptingNewRefusesNewMessagesButStillAnswersRetries) {
  const std::uint64_t id = this->Send("Alice", "Bob", 1, "hi");
  AppendPolicy limited = kOpenPolicy;
  limited.accept_new = false;
  EXPECT_EQ(this->store_->Append(this->Message("Alice", "Bob", 2, "more"), limited).status().code(),
            ErrorCode::kRateLimited);
  Result<AppendOutcome> retry =
      this->store_->Append(this->Message("Alice", "Bob", 1, "hi"), limited);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->result.message_id, id);
  EXPECT_EQ(
      this->store_->Append(this->Message("Alice", "Bob", 1, "changed"), limited).status().code(),
      ErrorCode::kClientIdReused);
  EXPECT_EQ(this->Count("bob"), 1u);
}

TYPED_TEST(StoreTest, QueueCapRefusesOnceTheRecipientHoldsThatMany) {
  const AppendPolicy capped{2, 0, true};
  const std::uint64_t first =
      this->store_->Append(this->Message("Alice", "Bob", 1, "a"), capped)->result.message_id;
  ASSERT_TRUE(this->store_->Append(this->Message("Carol", "Bob", 1, "b"), capped).ok());
  EXPECT_EQ(this->store_->Append(this->Message("Alice", "Bob", 2, "c"), capped).status().code(),
            ErrorCode::kQueueFull);
  // Another recipient is not affected, and a retry of a stored message is still answered.
  Result<AppendOutcome> to_carol =
      this->store_->Append(this->Message("Alice", "Carol", 3, "d"), capped);
  ASSERT_TRUE(to_carol.ok());
  Result<AppendOutcome> retry = this->store_->Append(this->Message("Alice", "Bob", 1, "a"), capped);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  // Acknowledging frees a place; the refused client id was not consumed.
  const std::uint64_t acked[] = {first};
  ASSERT_TRUE(this->store_->Ack("bob", acked).ok());
  Result<AppendOutcome> after = this->store_->Append(this->Message("Alice", "Bob", 2, "c"), capped);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_FALSE(after->duplicate);
  EXPECT_EQ(this->Count("bob"), 2u);
  // Acknowledging what is already gone, or another recipient's message, frees nothing.
  const std::uint64_t not_bobs[] = {first, to_carol->result.message_id, 999999};
  ASSERT_TRUE(this->store_->Ack("bob", not_bobs).ok());
  EXPECT_EQ(this->store_->Append(this->Message("Carol", "Bob", 2, "e"), capped).status().code(),
            ErrorCode::kQueueFull);
}

// ---- AppendMany ----

TYPED_TEST(StoreTest, AppendManyAnswersEachRequestAsAppendWouldInTurn) {
  const std::uint64_t earlier = this->Send("Alice", "Bob", 1, "stored before");
  const AppendPolicy capped{3, 0, true};  // Bob holds one; two more fit.
  const std::vector<AppendRequest> requests = {
      {this->Message("Alice", "Bob", 2, "first"), capped},
      {this->Message("Alice", "Nobody", 3, "lost"), capped},
      {this->Message("Alice", "Bob", 2, "first"), capped},    // A retry of the first, in the batch.
      {this->Message("Alice", "Bob", 2, "changed"), capped},  // Its id reused for another text.
      {this->Message("Alice", "Bob", 1, "stored before"), capped},  // A retry from before.
      {this->Message("Carol", "Bob", 1, "second"), capped},
      {this->Message("Carol", "Bob", 2, "third"), capped},  // Bob's queue is full by now.
      {this->Message("Carol", "Alice", 3, "elsewhere"), capped},
  };
  std::vector<Result<AppendOutcome>> outcomes = this->store_->AppendMany(requests);
  ASSERT_EQ(outcomes.size(), requests.size());

  ASSERT_TRUE(outcomes[0].ok()) << outcomes[0].status().ToString();
  EXPECT_FALSE(outcomes[0]->duplicate);
  EXPECT_GT(outcomes[0]->result.message_id, earlier);
  EXPECT_EQ(outcomes[1].status().code(), ErrorCode::kUnknownRecipient);
  ASSERT_TRUE(outcomes[2].ok());
  EXPECT_TRUE(outcomes[2]->duplicate);
  EXPECT_EQ(outcomes[2]->result.message_id, outcomes[0]->result.message_id);
  EXPECT_EQ(outcomes[3].status().code(), ErrorCode::kClientIdReused);
  ASSERT_TRUE(outcomes[4].ok());
  EXPECT_TRUE(outcomes[4]->duplicate);
  EXPECT_EQ(outcomes[4]->result.message_id, earlier);
  ASSERT_TRUE(outcomes[5].ok());
  EXPECT_GT(outcomes[5]->result.message_id, outcomes[0]->result.message_id);
  EXPECT_EQ(outcomes[6].status().code(), ErrorCode::kQueueFull);
  ASSERT_TRUE(outcomes[7].ok());
  EXPECT_GT(outcomes[7]->result.message_id, outcomes[5]->result.message_id);

  EXPECT_EQ(this->Ids("bob"), (std::vector<std::uint64_t>{earlier, outcomes[0]->result.message_id,
                                                          outcomes[5]->result.message_id}));
  EXPECT_EQ(this->Ids("alice"), (std::vector<std::uint64_t>{outcomes[7]->result.message_id}));
}

TYPED_TEST(StoreTest, AppendManyOfNothingStoresNothing) {
  EXPECT_TRUE(this->store_->AppendMany({}).empty());
  EXPECT_EQ(this->Send("Alice", "Bob", 1, "hi"), 1u);
}

// ---- Reading and acknowledging ----

TYPED_TEST(StoreTest, ListMessagesPagesOldestFirstAfterTheGivenId) {
  std::vector<std::uint64_t> to_bob;
  for (std::uint64_t i = 1; i <= 5; ++i) {
    to_bob.push_back(this->Send("Alice", "Bob", i, "m" + std::to_string(i)));
    this->Send("Alice", "Carol", 100 + i, "for carol");
  }
  Result<std::vector<StoredMessage>> page = this->store_->ListMessages("bob", 0, 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].message_id, to_bob[0]);
  EXPECT_EQ((*page)[0].text, "m1");
  EXPECT_EQ((*page)[1].message_id, to_bob[1]);

  page = this->store_->ListMessages("bob", to_bob[1], 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].message_id, to_bob[2]);
  EXPECT_EQ((*page)[1].message_id, to_bob[3]);

  page = this->store_->ListMessages("bob", to_bob[3], 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].text, "m5");

  EXPECT_TRUE(this->store_->ListMessages("bob", to_bob[4], 2)->empty());
  EXPECT_TRUE(this->store_->ListMessages("bob", 0, 0)->empty());
  EXPECT_TRUE(this->store_->ListMessages("bob", UINT64_MAX, 10)->empty());
  EXPECT_TRUE(this->store_->ListMessages("zed", 0, 10)->empty());
}

TYPED_TEST(StoreTest, CountMessagesCountsOnlyThatRecipient) {
  this->Send("Alice", "Bob", 1, "a");
  this->Send("Carol", "Bob", 1, "b");
  this->Send("Bob", "Alice", 1, "c");
  EXPECT_EQ(this->Count("bob"), 2u);
  EXPECT_EQ(this->Count("alice"), 1u);
  EXPECT_EQ(this->Count("carol"), 0u);
  EXPECT_EQ(this->Count("zed"), 0u);
}

TYPED_TEST(StoreTest, CountMessagesFollowsAppendsAcksAndDeletion) {
  const std::uint64_t a = this->Send("Alice", "Bob", 1, "a");
  this->Send("Carol", "Bob", 1, "b");
  EXPECT_EQ(this->Count("bob"), 2u);
  const std::uint64_t acked[] = {a};
  ASSERT_TRUE(this->store_->Ack("bob", acked).ok());
  EXPECT_EQ(this->Count("bob"), 1u);
  ASSERT_TRUE(this->store_->Ack("bob", acked).ok());  // Already gone: nothing changes.
  EXPECT_EQ(this->Count("bob"), 1u);
  this->Send("Alice", "Bob", 2, "c");
  EXPECT_EQ(this->Count("bob"), 2u);
  ASSERT_TRUE(this->store_->DeleteAccount("bob").ok());
  EXPECT_EQ(this->Count("bob"), 0u);
}

TYPED_TEST(StoreTest, AckRemovesOnlyTheRecipientsOwnMessages) {
  const std::uint64_t to_bob_1 = this->Send("Alice", "Bob", 1, "a");
  const std::uint64_t to_bob_2 = this->Send("Alice", "Bob", 2, "b");
  const std::uint64_t to_carol = this->Send("Alice", "Carol", 3, "c");
  const std::uint64_t ids[] = {to_bob_1, to_carol, 999999, to_bob_1, UINT64_MAX};
  ASSERT_TRUE(this->store_->Ack("bob", ids).ok());
  EXPECT_THAT(this->Ids("bob"), ElementsAre(to_bob_2));
  EXPECT_THAT(this->Ids("carol"), ElementsAre(to_carol));
  // Idempotent, and harmless for keys with nothing stored.
  EXPECT_TRUE(this->store_->Ack("bob", ids).ok());
  EXPECT_TRUE(this->store_->Ack("zed", ids).ok());
  EXPECT_TRUE(this->store_->Ack("bob", {}).ok());
  EXPECT_THAT(this->Ids("bob"), ElementsAre(to_bob_2));
}

TYPED_TEST(StoreTest, DeleteAccountDestroysItsQueueButKeepsWhatItSent) {
  this->Send("Bob", "Alice", 1, "to alice 1");
  this->Send("Carol", "Alice", 1, "to alice 2");
  this->Send("Bob", "Alice", 2, "to alice 3");
  const std::uint64_t sent = this->Send("Alice", "Bob", 1, "from alice");
  Result<std::uint32_t> destroyed = this->store_->DeleteAccount("alice");
  ASSERT_TRUE(destroyed.ok()) << destroyed.status().ToString();
  EXPECT_EQ(*destroyed, 3u);
  EXPECT_EQ(this->Count("alice"), 0u);
  Result<std::vector<StoredMessage>> bob = this->store_->ListMessages("bob", 0, 10);
  ASSERT_TRUE(bob.ok());
  EXPECT_THAT(*bob, ElementsAre(StoredMessage{sent, "Alice", 1000, "from alice"}));
}

TYPED_TEST(StoreTest, DeleteAccountWithEmptyQueueDestroysNothing) {
  Result<std::uint32_t> destroyed = this->store_->DeleteAccount("carol");
  ASSERT_TRUE(destroyed.ok());
  EXPECT_EQ(*destroyed, 0u);
}

// ---- Concurrency ----

TYPED_TEST(StoreTest, ConcurrentAppendsGetDistinctIncreasingIdsAndAllAreStored) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40;
  const std::string senders[] = {"Alice", "Bob", "Carol"};
  std::vector<std::vector<std::uint64_t>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string& sender = senders[t % 3];
      const std::string recipient = senders[(t + 1) % 3];
      for (int i = 0; i < kPerThread; ++i) {
        const std::uint64_t client_id = static_cast<std::uint64_t>(t * 1000 + i);
        Result<AppendOutcome> outcome = this->store_->Append(
            this->Message(sender, recipient, client_id, "t" + std::to_string(t)), kOpenPolicy);
        if (!outcome.ok() || outcome->duplicate) {
          ADD_FAILURE() << outcome.status().ToString();
          return;
        }
        ids[t].push_back(outcome->result.message_id);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  std::set<std::uint64_t> all;
  for (const auto& mine : ids) {
    ASSERT_EQ(mine.size(), static_cast<std::size_t>(kPerThread));
    EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
    all.insert(mine.begin(), mine.end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::set<std::uint64_t> stored;
  for (const std::string& name : senders) {
    const std::vector<std::uint64_t> queue = this->Ids(this->Key(name));
    EXPECT_TRUE(std::is_sorted(queue.begin(), queue.end()));
    stored.insert(queue.begin(), queue.end());
  }
  EXPECT_EQ(stored, all);
}

TYPED_TEST(StoreTest, ConcurrentRetriesOfOneSendStoreItOnce) {
  constexpr int kThreads = 8;
  std::vector<Result<AppendOutcome>> outcomes(kThreads, Status(ErrorCode::kInternal, "unset"));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      outcomes[t] = this->store_->Append(this->Message("Alice", "Bob", 9, "once"), kOpenPolicy);
    });
  }
  for (std::thread& t : threads) t.join();
  int originals = 0;
  std::set<std::uint64_t> ids;
  for (const auto& outcome : outcomes) {
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    originals += outcome->duplicate ? 0 : 1;
    ids.insert(outcome->result.message_id);
  }
  EXPECT_EQ(originals, 1);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(this->Count("bob"), 1u);
}

TYPED_TEST(StoreTest, ConcurrentCreatesOfOneKeyLetExactlyOneWin) {
  constexpr int kThreads = 8;
  std::atomic<int> created{0};
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Status status = this->store_->CreateAccount({"erin", "Erin", "hash" + std::to_string(t)});
      if (status.ok()) ++created;
      if (status.code() == ErrorCode::kUsernameTaken) ++taken;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(taken.load(), kThreads - 1);
}

TYPED_TEST(StoreTest, SendsRacingADeleteAreEitherDestroyedWithItOrRefused) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 30;
  std::atomic<int> attempts{0};
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i, ++attempts) {
        Result<AppendOutcome> outcome = this->store_->Append(
            this->Message("Alice", "Bob", static_cast<std::uint64_t>(t * 1000 + i), "x"),
            kOpenPolicy);
        if (outcome.ok()) ++accepted;
        if (outcome.status().code() == ErrorCode::kUnknownRecipient) ++refused;
      }
    });
  }
  // Delete while the senders are (most likely) still at it.
  while (attempts.load() < 10) std::this_thread::yield();
  Result<std::uint32_t> destroyed = this->store_->DeleteAccount("bob");
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(destroyed.ok());
  EXPECT_EQ(accepted + refused, kThreads * kPerThread);
  EXPECT_EQ(*destroyed, static_cast<std::uint32_t>(accepted.load()));
  EXPECT_EQ(this->Count("bob"), 0u);
}

// ---- SQLite only: the file ----

class SqliteStoreFileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  std::filesystem::path File() const { return dir_.path() / "messenger.db"; }

  // Creates a database with one account and one message, and closes it.
  void MakeDatabase() {
    std::unique_ptr<Store> store = OpenOrFail(File());
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateAccount({"alice", "Alice", "h"}).ok());
    ASSERT_TRUE(
        store
            ->Append({"alice", "Alice", "alice", 1, "note to self", 1000, Delivery::kQueued},
                     kOpenPolicy)
            .ok());
  }

  // Opening must fail with a message containing `expected` and leave the file as it was.
  void ExpectRefusedUntouched(const std::string& expected) {
    const std::string before = ReadBytes(File());
    Result<std::unique_ptr<Store>> store = OpenSqliteStore({File().string(), SyncMode::kFull});
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), ErrorCode::kInternal);
    EXPECT_THAT(store.status().message(), HasSubstr(expected));
    EXPECT_THAT(store.status().message(), HasSubstr(File().string()));
    EXPECT_TRUE(ReadBytes(File()) == before) << "the refused file was modified";
    EXPECT_FALSE(std::filesystem::exists(File().string() + "-wal"));
  }

  TempDir dir_;
};

TEST_F(SqliteStoreFileTest, EverythingSurvivesCloseAndReopen) {
  std::uint64_t last_id = 0;
  {
    std::unique_ptr<Store> store = OpenOrFail(File());
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateAccount({"alice", "Alice", "ha"}).ok());
    ASSERT_TRUE(store->CreateAccount({"bob", "Bob", "hb"}).ok());
    ASSERT_TRUE(store->CreateAccount({"carol", "Carol", "hc"}).ok());
    ASSERT_TRUE(
        store->Append({"alice", "Alice", "bob", 1, "kept", 1000, Delivery::kQueued}, kOpenPolicy)
            .ok());
    Result<AppendOutcome> newest = store->Append(
        {"alice", "Alice", "bob", 2, "acked", 1001, Delivery::kDelivered}, kOpenPolicy);
    ASSERT_TRUE(newest.ok());
    last_id = newest->result.message_id;
    const std::uint64_t acked[] = {last_id};
    ASSERT_TRUE(store->Ack("bob", acked).ok());
    ASSERT_TRUE(store->DeleteAccount("carol").ok());
  }
  std::unique_ptr<Store> store = OpenOrFail(File());
  ASSERT_NE(store, nullptr);
  Result<std::optional<AccountRecord>> alice = store->FindAccount("alice");
  ASSERT_TRUE(alice.ok() && alice->has_value());
  EXPECT_EQ(**alice, (AccountRecord{"alice", "Alice", "ha"}));
  EXPECT_FALSE(store->FindAccount("carol")->has_value());
  EXPECT_EQ(store->CreateAccount({"carol", "Carol", "h"}).code(), ErrorCode::kUsernameTaken);
  EXPECT_THAT(*store->ListMessages("bob", 0, 10),
              ElementsAre(StoredMessage{1, "Alice", 1000, "kept"}));
  // The send log survived: the acked message's retry gets its original answer.
  Result<AppendOutcome> retry =
      store->Append({"alice", "Alice", "bob", 2, "acked", 9000, Delivery::kQueued}, kOpenPolicy);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->result, (SendOk{last_id, 1001, Delivery::kDelivered}));
  // Ids continue above the acked newest one.
  Result<AppendOutcome> next =
      store->Append({"alice", "Alice", "bob", 3, "new", 9000, Delivery::kQueued}, kOpenPolicy);
  ASSERT_TRUE(next.ok());
  EXPECT_GT(next->result.message_id, last_id);
}

TEST_F(SqliteStoreFileTest, CreatesAWalModeFileWithTheProjectApplicationId) {
  MakeDatabase();
  const std::string bytes = ReadBytes(File());
  ASSERT_GE(bytes.size(), 100u);
  EXPECT_EQ(bytes.substr(0, 16), std::string("SQLite format 3\0", 16));
  EXPECT_EQ(bytes[18], 2) << "write version: WAL";
  EXPECT_EQ(bytes[19], 2) << "read version: WAL";
  EXPECT_EQ(bytes.substr(kApplicationIdOffset, 4), "PMSG");
  EXPECT_EQ(bytes.substr(kUserVersionOffset, 4), std::string("\0\0\0\1", 4));
  // A clean close checkpoints the log into the file.
  EXPECT_FALSE(std::filesystem::exists(File().string() + "-wal"));
}

TEST_F(SqliteStoreFileTest, RefusesAForeignApplicationIdWithoutTouchingTheFile) {
  MakeDatabase();
  PatchU32(File(), kApplicationIdOffset, 0x12345678);
  ExpectRefusedUntouched("not a poco_messenger database");
}

TEST_F(SqliteStoreFileTest, RefusesAnUnmarkedDatabaseThatAlreadyHasTables) {
  MakeDatabase();
  PatchU32(File(), kApplicationIdOffset, 0);
  PatchU32(File(), kUserVersionOffset, 0);
  ExpectRefusedUntouched("not a poco_messenger database");
}

TEST_F(SqliteStoreFileTest, RefusesANewerSchemaWithoutTouchingTheFile) {
  MakeDatabase();
  PatchU32(File(), kUserVersionOffset, 999);
  ExpectRefusedUntouched("written by a newer version (schema 999, this build supports 1)");
}

TEST_F(SqliteStoreFileTest, RefusesGarbageWithoutTouchingTheFile) {
  std::string garbage(8192, '\0');
  std::uint32_t x = 12345;
  for (char& c : garbage) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  WriteBytes(File(), garbage);
  ExpectRefusedUntouched("not a poco_messenger database");
}

TEST_F(SqliteStoreFileTest, RefusesACorruptDatabaseWithoutTouchingTheFile) {
  MakeDatabase();
  std::string bytes = ReadBytes(File());
  const std::size_t page_size =
      (static_cast<unsigned char>(bytes[16]) << 8) | static_cast<unsigned char>(bytes[17]);
  ASSERT_GE(bytes.size(), 3 * page_size);
  // Page 2 holds a table's b-tree; scribble over all of it, keeping page 1 (header, schema).
  for (std::size_t i = page_size; i < 2 * page_size; ++i) bytes[i] = static_cast<char>(0xA5);
  WriteBytes(File(), bytes);
  ExpectRefusedUntouched("corrupt");
}

TEST_F(SqliteStoreFileTest, ReportsAFileThatCannotBeOpened) {
  const std::filesystem::path missing = dir_.path() / "no-such-dir" / "messenger.db";
  Result<std::unique_ptr<Store>> store = OpenSqliteStore({missing.string(), SyncMode::kFull});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), ErrorCode::kInternal);
  EXPECT_THAT(store.status().message(), HasSubstr(missing.string()));
}

TEST_F(SqliteStoreFileTest, InMemoryPathWorks) {
  Result<std::unique_ptr<Store>> opened = OpenSqliteStore({":memory:", SyncMode::kNormal});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  ASSERT_TRUE(store.CreateAccount({"alice", "Alice", "h"}).ok());
  Result<AppendOutcome> sent =
      store.Append({"alice", "Alice", "alice", 1, "hi", 1, Delivery::kQueued}, kOpenPolicy);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*store.CountMessages("alice"), 1u);
  EXPECT_THAT(*store.ListMessages("alice", 0, 10), ElementsAre(StoredMessage{1, "Alice", 1, "hi"}));
}

TEST_F(SqliteStoreFileTest, ManyWritersAllCommitUnderGroupCommit) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::unique_ptr<Store> store = OpenOrFail(File(), SyncMode::kFull);
  ASSERT_NE(store, nullptr);
  for (int t = 0; t < kThreads; ++t) {
    const std::string name = "user" + std::to_string(t);
    ASSERT_TRUE(store->CreateAccount({name, name, "h"}).ok());
  }
  std::vector<std::thread> threads;
  std::vector<std::vector<std::uint64_t>> ids(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string sender = "user" + std::to_string(t);
      const std::string recipient = "user" + std::to_string((t + 1) % kThreads);
      for (int i = 0; i < kPerThread; ++i) {
        Result<AppendOutcome> outcome =
            store->Append({sender, sender, recipient, static_cast<std::uint64_t>(i), "m", 1000,
                           Delivery::kQueued},
                          AppendPolicy{kPerThread, 0, true});
        if (!outcome.ok()) {
          ADD_FAILURE() << outcome.status().ToString();
          return;
        }
        ids[t].push_back(outcome->result.message_id);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::uint64_t> all;
  for (const auto& mine : ids) {
    EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
    all.insert(mine.begin(), mine.end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(*store->CountMessages("user" + std::to_string(t)),
              static_cast<std::uint32_t>(kPerThread));
  }
  store.reset();

  // And all of it is in the file.
  store = OpenOrFail(File(), SyncMode::kNormal);
  ASSERT_NE(store, nullptr);
  std::size_t total = 0;
  for (int t = 0; t < kThreads; ++t) total += *store->CountMessages("user" + std::to_string(t));
  EXPECT_EQ(total, static_cast<std::size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace messenger

// The metrics and their Prometheus text exposition: exact output of the writer, escaping,
// cumulative histograms, and the whole Metrics exposition read back by a strict parser.
#include "messenger/server/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fakes.h"
#include "messenger/codec/status.h"
#include "messenger/server/messenger.h"
#include "messenger/server/sqlite_store.h"
#include "messenger/server/store.h"
#include "prometheus_text.h"

namespace messenger {
namespace {

using test::ParsePrometheusText;
using test::PromExposition;

PromExposition Parsed(const std::string& text) {
  PromExposition exposition;
  const std::optional<std::string> problem = ParsePrometheusText(text, exposition);
  EXPECT_FALSE(problem.has_value()) << *problem << "\n--- exposition ---\n" << text;
  return exposition;
}

TEST(ExpositionWriterTest, WritesCountersAndGaugesWithHelpAndType) {
  ExpositionWriter w;
  w.BeginFamily("jobs_total", "counter", "Jobs done.");
  const Label ok[] = {{"result", "ok"}};
  const Label failed[] = {{"result", "failed"}};
  w.Sample("jobs_total", ok, std::uint64_t{18446744073709551615u});
  w.Sample("jobs_total", failed, std::uint64_t{0});
  w.BeginFamily("temperature", "gauge", "Degrees.");
  w.Sample("temperature", {}, std::int64_t{-3});
  EXPECT_EQ(w.text(),
            "# HELP jobs_total Jobs done.\n"
            "# TYPE jobs_total counter\n"
            "jobs_total{result=\"ok\"} 18446744073709551615\n"
            "jobs_total{result=\"failed\"} 0\n"
            "# HELP temperature Degrees.\n"
            "# TYPE temperature gauge\n"
            "temperature -3\n");
  const PromExposition parsed = Parsed(w.text());
  EXPECT_EQ(parsed.types.at("jobs_total"), "counter");
  EXPECT_EQ(parsed.Value("temperature"), -3);
}

TEST(ExpositionWriterTest, EscapesLabelValuesAndHelpSoTheyReadBack) {
  const std::string nasty = "a\"b\\c\nd}{,=";
  EXPECT_EQ(ExpositionWriter::EscapeLabelValue(nasty), "a\\\"b\\\\c\\nd}{,=");

  ExpositionWriter w;
  w.BeginFamily("odd", "gauge", "Help with \\ and\na newline \"quoted\".");
  const Label labels[] = {{"path", nasty}, {"empty", ""}};
  w.Sample("odd", labels, std::int64_t{1});
  EXPECT_EQ(w.text(),
            "# HELP odd Help with \\\\ and\\na newline \"quoted\".\n"
            "# TYPE odd gauge\n"
            "odd{path=\"a\\\"b\\\\c\\nd}{,=\",empty=\"\"} 1\n");
  const PromExposition parsed = Parsed(w.text());
  ASSERT_EQ(parsed.samples.size(), 1u);
  EXPECT_EQ(parsed.samples[0].labels.at("path"), nasty);
  EXPECT_EQ(parsed.samples[0].labels.at("empty"), "");
  EXPECT_EQ(parsed.help.at("odd"), "Help with \\ and\na newline \"quoted\".");
}

TEST(ExpositionWriterTest, FormatsValuesExactlyAndInfinitiesAsPrometheusSpellsThem) {
  EXPECT_EQ(ExpositionWriter::FormatValue(1), "1");
  EXPECT_EQ(ExpositionWriter::FormatValue(0.005), "0.005");
  EXPECT_EQ(ExpositionWriter::FormatValue(-2.5), "-2.5");
  EXPECT_EQ(ExpositionWriter::FormatValue(0.0001), "0.0001");
  EXPECT_EQ(ExpositionWriter::FormatValue(0.00001), "1e-05");
  EXPECT_EQ(ExpositionWriter::FormatValue(1e21), "1e+21");
  EXPECT_EQ(ExpositionWriter::FormatValue(123456789012.5), "123456789012.5");
  EXPECT_EQ(ExpositionWriter::FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(ExpositionWriter::FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(ExpositionWriter::FormatValue(std::nan("")), "NaN");
  const double tiny = 0.0001;
  EXPECT_EQ(std::strtod(ExpositionWriter::FormatValue(tiny).c_str(), nullptr), tiny);
  const double third = 1.0 / 3;
  EXPECT_EQ(std::strtod(ExpositionWriter::FormatValue(third).c_str(), nullptr), third);
}

constexpr double kBounds[] = {0.5, 1, 5};

TEST(HistogramTest, BucketsAreCumulativeWithInclusiveUpperBounds) {
  Histogram h(kBounds);
  for (const double v : {0.1, 0.5, 0.7, 1.0, 4.0, 5.0, 6.0, 100.0}) h.Observe(v);
  const Histogram::Snapshot s = h.Read();
  // le=0.5: 0.1 0.5; le=1: +0.7 1.0; le=5: +4 5; +Inf: +6 100.
  EXPECT_EQ(s.cumulative, (std::vector<std::uint64_t>{2, 4, 6, 8}));
  EXPECT_EQ(s.count, 8u);
  EXPECT_DOUBLE_EQ(s.sum, 0.1 + 0.5 + 0.7 + 1.0 + 4.0 + 5.0 + 6.0 + 100.0);
}

TEST(HistogramTest, NanCountsInTheInfBucketButNotInTheSum) {
  Histogram h(kBounds);
  h.Observe(0.2);
  h.Observe(std::nan(""));
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.cumulative, (std::vector<std::uint64_t>{1, 1, 1, 2}));
  EXPECT_DOUBLE_EQ(s.sum, 0.2);
}

TEST(HistogramTest, WritesBucketsSumAndCountThatParseAsAHistogram) {
  Histogram h(kBounds);
  h.Observe(0.25);
  h.Observe(3);
  ExpositionWriter w;
  w.BeginFamily("wait_seconds", "histogram", "Waiting.");
  const Label labels[] = {{"pool", "main"}};
  w.HistogramSamples("wait_seconds", labels, h.upper_bounds(), h.Read());
  EXPECT_EQ(w.text(),
            "# HELP wait_seconds Waiting.\n"
            "# TYPE wait_seconds histogram\n"
            "wait_seconds_bucket{pool=\"main\",le=\"0.5\"} 1\n"
            "wait_seconds_bucket{pool=\"main\",le=\"1\"} 1\n"
            "wait_seconds_bucket{pool=\"main\",le=\"5\"} 2\n"
            "wait_seconds_bucket{pool=\"main\",le=\"+Inf\"} 2\n"
            "wait_seconds_sum{pool=\"main\"} 3.25\n"
            "wait_seconds_count{pool=\"main\"} 2\n");
  Parsed(w.text());
}

TEST(HistogramTest, ConcurrentObservationsAreAllCounted) {
  Histogram h(kBounds);
  Counter c;
  constexpr int kThreads = 4;
  constexpr int kEach = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        h.Observe(1);
        c.Add();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.count, std::uint64_t{kThreads * kEach});
  EXPECT_EQ(s.cumulative[1], std::uint64_t{kThreads * kEach});
  EXPECT_DOUBLE_EQ(s.sum, kThreads * kEach);
  EXPECT_EQ(c.value(), std::uint64_t{kThreads * kEach});
}

// The parser itself must reject what a scraper would: otherwise the tests above prove nothing.
TEST(PrometheusTextParserTest, RejectsBrokenExpositions) {
  const char* broken[] = {
      "x 1\n",                                                     // No TYPE.
      "# TYPE x counter\nx 1",                                     // No final newline.
      "# TYPE x counter\nx{a=\"1} 1\n",                            // Unterminated label value.
      "# TYPE x counter\nx{a=\"\\t\"} 1\n",                        // Invalid escape.
      "# TYPE x counter\nx one\n",                                 // Unparseable value.
      "# TYPE x counter\nx 1\nx 2\n",                              // Duplicate series.
      "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 1\n",  // Family not contiguous.
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  // No +Inf.
      "# TYPE x counter\n\nx 1\n",                                       // Blank line.
  };
  for (const char* text : broken) {
    PromExposition ignored;
    EXPECT_TRUE(ParsePrometheusText(text, ignored).has_value()) << text;
  }
}

TEST(MetricsTest, AFreshExpositionParsesAndNamesEveryMetricByConvention) {
  Metrics metrics;
  const PromExposition parsed = Parsed(metrics.RenderPrometheus());
  const std::set<std::string> expected = {
      "messenger_connections_open",           "messenger_connections_accepted_total",
      "messenger_connections_refused_total",  "messenger_slow_consumer_disconnects_total",
      "messenger_sessions_logged_in",         "messenger_errors_total",
      "messenger_messages_accepted_total",    "messenger_messages_delivered_live_total",
      "messenger_messages_queued_total",      "messenger_messages_fetched_total",
      "messenger_messages_acked_total",       "messenger_stored_messages",
      "messenger_login_failures_total",       "messenger_login_throttles_total",
      "messenger_store_commit_batch_size",    "messenger_store_commit_duration_seconds",
      "messenger_password_hash_wait_seconds",
  };
  std::set<std::string> families;
  for (const auto& [name, type] : parsed.types) {
    families.insert(name);
    EXPECT_TRUE(parsed.help.count(name)) << name << " has no HELP";
    const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    EXPECT_EQ(total, type == "counter") << name << " is a " << type;
  }
  EXPECT_EQ(families, expected);
  for (const auto& sample : parsed.samples) {
    if (sample.name.find("_bucket") != std::string::npos) continue;
    EXPECT_EQ(sample.value, 0) << PromExposition::Key(sample);
  }
  // Both transports are always there, so rate() works before the first event.
  EXPECT_EQ(parsed.Value("messenger_connections_open", {{"transport", "wire"}}), 0);
  EXPECT_EQ(parsed.Value("messenger_connections_open", {{"transport", "grpc"}}), 0);
  EXPECT_EQ(parsed.Value("messenger_connections_refused_total",
                         {{"transport", "wire"}, {"reason", "tls_handshake"}}),
            0);
  EXPECT_EQ(parsed.Value("messenger_errors_total", {{"transport", "grpc"}, {"code", "INTERNAL"}}),
            0);
}

TEST(MetricsTest, EachUpdateMovesExactlyItsOwnSeries) {
  Metrics metrics;
  const PromExposition before = Parsed(metrics.RenderPrometheus());
  metrics.errors(Transport::kWire, ErrorCode::kAuthFailed).Add();
  metrics.errors(Transport::kGrpc, ErrorCode::kAuthFailed).Add(2);
  metrics.connections_refused(Transport::kWire, RefuseReason::kFdExhausted).Add();
  metrics.connections_open(Transport::kGrpc).Add(3);
  metrics.connections_open(Transport::kGrpc).Sub();
  metrics.sessions_logged_in(Transport::kWire).Sub();  // Gauges may go below zero.
  metrics.slow_consumer_disconnects(Transport::kWire).Add();
  metrics.messages_fetched().Add(5);
  metrics.stored_messages().Set(42);
  metrics.password_hash_wait_seconds().Observe(0.003);
  const PromExposition after = Parsed(metrics.RenderPrometheus());

  const std::map<std::string, double> moved = {
      {"messenger_errors_total{code=\"AUTH_FAILED\",transport=\"wire\"}", 1},
      {"messenger_errors_total{code=\"AUTH_FAILED\",transport=\"grpc\"}", 2},
      {"messenger_connections_refused_total{reason=\"fd_exhausted\",transport=\"wire\"}", 1},
      {"messenger_connections_open{transport=\"grpc\"}", 2},
      {"messenger_sessions_logged_in{transport=\"wire\"}", -1},
      {"messenger_slow_consumer_disconnects_total{transport=\"wire\"}", 1},
      {"messenger_messages_fetched_total{}", 5},
      {"messenger_stored_messages{}", 42},
      {"messenger_password_hash_wait_seconds_bucket{le=\"0.005\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"0.01\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"0.025\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"0.05\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"0.1\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"0.25\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"0.5\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"1\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"2.5\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"5\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"10\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"30\"}", 1},
      {"messenger_password_hash_wait_seconds_bucket{le=\"+Inf\"}", 1},
      {"messenger_password_hash_wait_seconds_sum{}", 0.003},
      {"messenger_password_hash_wait_seconds_count{}", 1},
  };
  ASSERT_EQ(before.samples.size(), after.samples.size());
  for (std::size_t i = 0; i < after.samples.size(); ++i) {
    const std::string key = PromExposition::Key(after.samples[i]);
    ASSERT_EQ(key, PromExposition::Key(before.samples[i]));
    const auto it = moved.find(key);
    EXPECT_DOUBLE_EQ(after.samples[i].value - before.samples[i].value,
                     it == moved.end() ? 0 : it->second)
        << key;
  }
}

TEST(MetricsTest, CodesThatNeverReachAClientAreNotExported) {
  Metrics metrics;
  metrics.errors(Transport::kWire, ErrorCode::kTimeout).Add();  // Client-local.
  metrics.errors(Transport::kWire, ErrorCode::kOk).Add();
  const PromExposition parsed = Parsed(metrics.RenderPrometheus());
  std::size_t codes = 0;
  for (const auto& sample : parsed.samples) {
    if (sample.name != "messenger_errors_total") continue;
    EXPECT_EQ(sample.value, 0) << PromExposition::Key(sample);
    EXPECT_NE(sample.labels.at("code"), "UNKNOWN");
    ++codes;
  }
  std::size_t known = 0;
  for (std::uint16_t v = 0; v < 1000; ++v) known += IsKnownErrorCode(v) ? 1 : 0;
  EXPECT_EQ(codes, kTransportCount * known);  // Every wire code, per transport.
}

// ---- What the core and the stores record ----

using ::testing::NiceMock;

class CoreMetricsTest : public ::testing::Test {
 protected:
  void Register(const std::string& name) {
    ASSERT_TRUE(messenger_.CreateAccount(name, "password1").ok());
  }
  SessionId LoggedIn(const std::string& name, SessionSink& sink,
                     Transport transport = Transport::kWire) {
    const SessionId id = messenger_.Attach(sink, transport);
    EXPECT_TRUE(messenger_.Login(id, name, "password1").ok());
    return id;
  }

  Metrics metrics_;
  testing::FakeClock clock_;
  testing::FakeHasher hasher_;
  std::unique_ptr<Store> store_ = MakeMemoryStore(&metrics_);
  Messenger messenger_{*store_, hasher_, clock_, MessengerOptions{}, &metrics_};
  NiceMock<testing::MockSink> sink1_, sink2_, sink3_;
};

TEST_F(CoreMetricsTest, LoggedInGaugesFollowLoginTakeoverLogoutAndDetachPerTransport) {
  Register("alice");
  Register("bob");
  const SessionId wire = LoggedIn("alice", sink1_);
  const SessionId grpc = LoggedIn("bob", sink2_, Transport::kGrpc);
  EXPECT_EQ(metrics_.sessions_logged_in(Transport::kWire).value(), 1);
  EXPECT_EQ(metrics_.sessions_logged_in(Transport::kGrpc).value(), 1);
  // Alice moves to gRPC: the wire session is taken over.
  const SessionId takeover = LoggedIn("alice", sink3_, Transport::kGrpc);
  EXPECT_EQ(metrics_.sessions_logged_in(Transport::kWire).value(), 0);
  EXPECT_EQ(metrics_.sessions_logged_in(Transport::kGrpc).value(), 2);
  EXPECT_TRUE(messenger_.Logout(grpc).ok());
  EXPECT_EQ(metrics_.sessions_logged_in(Transport::kGrpc).value(), 1);
  messenger_.Detach(wire);
  messenger_.Detach(grpc);
  messenger_.Detach(takeover);
  messenger_.Detach(takeover);  // Idempotent, and so is the gauge.
  EXPECT_EQ(metrics_.sessions_logged_in(Transport::kWire).value(), 0);
  EXPECT_EQ(metrics_.sessions_logged_in(Transport::kGrpc).value(), 0);
}

TEST_F(CoreMetricsTest, DeletingAnAccountTakesItsMessagesOffTheStoredGauge) {
  Register("alice");
  Register("bob");
  const SessionId alice = LoggedIn("alice", sink1_);
  for (std::uint64_t i = 1; i <= 3; ++i) {
    ASSERT_TRUE(messenger_.Send(alice, {"bob", i, "hi"}).ok());
  }
  EXPECT_EQ(metrics_.stored_messages().value(), 3);
  EXPECT_EQ(metrics_.messages_queued().value(), 3u);
  // A retried SEND is answered from its dedupe record: nothing new is accepted.
  ASSERT_TRUE(messenger_.Send(alice, {"bob", 3, "hi"}).ok());
  EXPECT_EQ(metrics_.messages_accepted().value(), 3u);
  const SessionId bob = LoggedIn("bob", sink2_);
  EXPECT_EQ(messenger_.DeleteAccount(bob, true).value(), 3u);
  EXPECT_EQ(metrics_.stored_messages().value(), 0);
  EXPECT_EQ(metrics_.messages_acked().value(), 0u);  // Destroyed, not acknowledged.
}

TEST_F(CoreMetricsTest, AMessengerWithoutMetricsCountsIntoItsOwn) {
  testing::FakeHasher hasher;
  std::unique_ptr<Store> store = MakeMemoryStore();
  Messenger messenger(*store, hasher, clock_);
  ASSERT_TRUE(messenger.CreateAccount("carol", "password1").ok());
  const SessionId id = messenger.Attach(sink1_);
  EXPECT_FALSE(messenger.Login(id, "carol", "wrong password").ok());
  EXPECT_EQ(messenger.metrics().login_failures().value(), 1u);
  EXPECT_EQ(metrics_.login_failures().value(), 0u);
  messenger.Detach(id);
}

TEST_F(CoreMetricsTest, ReadinessFailsOnlyAfterShutdown) {
  EXPECT_TRUE(messenger_.CheckReady().ok());
  messenger_.Shutdown();
  const Status status = messenger_.CheckReady();
  EXPECT_EQ(status.code(), ErrorCode::kInternal);
  EXPECT_EQ(status.message(), "the server is shutting down");
}

TEST(SqliteStoreMetricsTest, AppendManyIsOneWriteInOneCommit) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("messenger_append_many_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    Metrics metrics;
    Result<std::unique_ptr<Store>> store =
        OpenSqliteStore({(dir / "messenger.db").string(), SyncMode::kNormal, &metrics});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->CreateAccount({"bob", "bob", "x"}).ok());
    std::vector<AppendRequest> requests;
    for (std::uint64_t i = 1; i <= 10; ++i) {
      requests.push_back(
          {{"alice", "alice", "bob", i, "hi", 1, Delivery::kQueued}, {100, 0, true}});
    }
    for (const Result<AppendOutcome>& outcome : (*store)->AppendMany(requests)) {
      EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
    }
    EXPECT_EQ(metrics.stored_messages().value(), 10);
    // The account, then the ten messages: two commits of one write each.
    const Histogram::Snapshot batches = metrics.commit_batch_size().Read();
    EXPECT_EQ(batches.count, 2u);
    EXPECT_EQ(batches.sum, 2);
  }
  std::filesystem::remove_all(dir);
}

TEST(SqliteStoreMetricsTest, CountsStoredMessagesFromTheFileAndEveryCommit) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("messenger_metrics_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "messenger.db").string();
  const AppendPolicy policy{100, 0, true};
  {
    Metrics metrics;
    Result<std::unique_ptr<Store>> store = OpenSqliteStore({path, SyncMode::kNormal, &metrics});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->CreateAccount({"bob", "bob", "x"}).ok());
    std::vector<std::uint64_t> ids;
    for (std::uint64_t i = 1; i <= 3; ++i) {
      Result<AppendOutcome> appended =
          (*store)->Append({"alice", "alice", "bob", i, "hi", 1, Delivery::kQueued}, policy);
      ASSERT_TRUE(appended.ok());
      ids.push_back(appended->result.message_id);
    }
    const std::uint64_t ack[] = {ids[0], ids[0], 999999};  // A repeat and a stranger count once.
    ASSERT_TRUE((*store)->Ack("bob", ack).ok());
    EXPECT_EQ(metrics.stored_messages().value(), 2);
    EXPECT_EQ(metrics.messages_acked().value(), 1u);
    // Five writes, each committed before the next was queued.
    const Histogram::Snapshot batches = metrics.commit_batch_size().Read();
    EXPECT_EQ(batches.count, 5u);
    EXPECT_EQ(batches.sum, 5);
    EXPECT_EQ(metrics.commit_duration_seconds().Read().count, 5u);
    store->reset();
    EXPECT_EQ(metrics.stored_messages().value(), 0);  // They left with the store.
  }
  {
    Metrics metrics;
    Result<std::unique_ptr<Store>> store = OpenSqliteStore({path, SyncMode::kNormal, &metrics});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ(metrics.stored_messages().value(), 2);  // Found in the file.
    EXPECT_EQ((*store)->DeleteAccount("bob").value(), 2u);
    EXPECT_EQ(metrics.stored_messages().value(), 0);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace messenger

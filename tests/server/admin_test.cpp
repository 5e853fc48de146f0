// The admin HTTP port over loopback: the whole server in-process (SQLite store on a temporary
// file, Argon2 at test cost, the TCP front door, the wire client) with its metrics scraped
// before and after real traffic, the health and readiness probes, and the real binary's
// --admin-port. Every wait is bounded.
#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/Timespan.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "admin_server.h"
#include "messenger/client/client.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/server/clock.h"
#include "messenger/server/messenger.h"
#include "messenger/server/metrics.h"
#include "messenger/server/password_hasher.h"
#include "messenger/server/sqlite_store.h"
#include "messenger/server/store.h"
#include "prometheus_text.h"
#include "tcp_front_door.h"
#include "test_support.h"

#ifndef MESSENGER_SERVER_BINARY
#error "MESSENGER_SERVER_BINARY must name the poco_messenger binary under test"
#endif

extern char** environ;

namespace messenger {
namespace {

using namespace std::chrono_literals;
using test::ParsePrometheusText;
using test::PromExposition;
using testing::Eventually;

constexpr std::chrono::milliseconds kWait{5000};
constexpr char kPassword[] = "correct horse";
constexpr char kExpositionType[] = "text/plain; version=0.0.4; charset=utf-8";

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string allow;
  std::string body;
  std::string content_length;
};

// One request to 127.0.0.1:`port`; throws Poco::Exception when nothing answers.
HttpReply Http(std::uint16_t port, const std::string& method, const std::string& path) {
  Poco::Net::HTTPClientSession session("127.0.0.1", port);
  session.setTimeout(Poco::Timespan(5, 0));
  Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
  if (method == Poco::Net::HTTPRequest::HTTP_POST) request.setContentLength(0);
  session.sendRequest(request);
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  HttpReply reply;
  reply.status = static_cast<int>(response.getStatus());
  reply.content_type = response.getContentType();
  reply.allow = response.get("Allow", "");
  reply.content_length = response.get("Content-Length", "");
  Poco::StreamCopier::copyToString(in, reply.body);
  return reply;
}

// Parses a scrape, failing the test (with the text) if it is not a valid exposition.
PromExposition Parse(const std::string& text) {
  PromExposition parsed;
  const std::optional<std::string> problem = ParsePrometheusText(text, parsed);
  EXPECT_FALSE(problem.has_value()) << *problem << "\n--- scrape ---\n" << text;
  return parsed;
}

// Expects every series to have moved from `before` to `after` by exactly `expected` (by
// PromExposition::Key; unnamed series by 0). Bucket counts and the sums of timings are left
// out: they depend on how fast this machine is.
void ExpectMoved(const PromExposition& before, const PromExposition& after,
                 const std::map<std::string, double>& expected) {
  ASSERT_EQ(before.samples.size(), after.samples.size());
  std::map<std::string, double> seen;
  for (std::size_t i = 0; i < after.samples.size(); ++i) {
    const std::string key = PromExposition::Key(after.samples[i]);
    ASSERT_EQ(key, PromExposition::Key(before.samples[i]));
    const std::string& name = after.samples[i].name;
    if (name.ends_with("_bucket") || name.ends_with("_seconds_sum")) continue;
    const auto it = expected.find(key);
    EXPECT_EQ(after.samples[i].value - before.samples[i].value,
              it == expected.end() ? 0 : it->second)
        << key;
    seen[key] = 1;
  }
  for (const auto& [key, delta] : expected) EXPECT_TRUE(seen.count(key)) << "no series " << key;
}

// Counts DELIVER pushes without accepting them, so the client ACKs nothing on its own.
class Deliveries {
 public:
  PushHandler Handler() {
    return [this](const Push& push) {
      if (std::holds_alternative<Deliver>(push)) {
        std::lock_guard lock(mu_);
        ++count_;
        changed_.notify_all();
      }
      return false;
    };
  }
  bool WaitFor(int count) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kWait, [&] { return count_ >= count; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int count_ = 0;
};

std::filesystem::path FreshDirectory() {
  static std::atomic<int> next{0};
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("messenger_admin_test_" + std::to_string(::getpid()) + "_" + std::to_string(next++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDirectory();
    Result<std::unique_ptr<Store>> store =
        OpenSqliteStore({(dir_ / "messenger.db").string(), SyncMode::kNormal, &metrics_});
    ASSERT_OK(store.status());
    store_ = std::move(store).value();
    Result<std::unique_ptr<PasswordHasher>> hasher =
        MakeArgon2Hasher(PasswordCost::kTest, 2, &metrics_);
    ASSERT_OK(hasher.status());
    hasher_ = std::move(hasher).value();
    messenger_ = std::make_unique<Messenger>(*store_, *hasher_, SystemClock(), MessengerOptions{},
                                             &metrics_);

    TcpOptions tcp;
    tcp.host = "127.0.0.1";
    tcp.port = 0;
    tcp.max_connections = 16;
    Result<std::unique_ptr<TcpFrontDoor>> door = TcpFrontDoor::Start(*messenger_, tcp);
    ASSERT_OK(door.status());
    door_ = std::move(door).value();

    Result<std::unique_ptr<AdminServer>> admin =
        AdminServer::Start(messenger_->metrics(), [this] { return messenger_->CheckReady(); }, {});
    ASSERT_OK(admin.status());
    admin_ = std::move(admin).value();
    EXPECT_TRUE(admin_->loopback());
  }

  void TearDown() override {
    if (admin_) admin_->Shutdown();
    if (door_) {
      door_->StopAccepting();
      EXPECT_TRUE(door_->Shutdown(2s));
    }
    admin_.reset();
    door_.reset();
    messenger_.reset();
    hasher_.reset();
    store_.reset();
    // Every message the store counted left the gauge with it.
    EXPECT_EQ(metrics_.stored_messages().value(), 0);
    std::filesystem::remove_all(dir_);
  }

  HttpReply Get(const std::string& path) { return Http(admin_->port(), "GET", path); }

  PromExposition Scrape() {
    const HttpReply reply = Get("/metrics");
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.content_type, kExpositionType);
    return Parse(reply.body);
  }

  std::unique_ptr<Client> Connected(PushHandler handler = {}) {
    ClientOptions options;
    options.host = "127.0.0.1";
    options.port = door_->port();
    options.connect_timeout = 2s;
    options.request_timeout = kWait;
    std::unique_ptr<Client> client = MakeWireClient(options, std::move(handler));
    const Status status = client->Connect();
    EXPECT_OK(status);
    return client;
  }

  Metrics metrics_;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<PasswordHasher> hasher_;
  std::unique_ptr<Messenger> messenger_;
  std::unique_ptr<TcpFrontDoor> door_;
  std::unique_ptr<AdminServer> admin_;
};

TEST_F(AdminTest, MetricsMoveByExactlyWhatTheClientsDid) {
  const PromExposition before = Scrape();

  std::unique_ptr<Client> alice = Connected();
  ASSERT_TRUE(alice->CreateAccount("alice", kPassword).ok());
  ASSERT_TRUE(alice->CreateAccount("bob", kPassword).ok());
  EXPECT_EQ(alice->Login("alice", "wrong password").status().code(), ErrorCode::kAuthFailed);
  ASSERT_TRUE(alice->Login("alice", kPassword).ok());
  const Result<SendOk> queued = alice->Send("bob", "while you were out");
  ASSERT_OK(queued.status());
  EXPECT_EQ(queued->delivery, Delivery::kQueued);
  EXPECT_EQ(alice->Send("nobody", "hello?").status().code(), ErrorCode::kUnknownRecipient);

  Deliveries deliveries;
  std::unique_ptr<Client> bob = Connected(deliveries.Handler());
  const Result<LoginOk> bob_login = bob->Login("bob", kPassword);
  ASSERT_OK(bob_login.status());
  EXPECT_EQ(bob_login->unread_count, 1u);
  const Result<SendOk> live = alice->Send("bob", "are you there?");
  ASSERT_OK(live.status());
  EXPECT_EQ(live->delivery, Delivery::kDelivered);
  ASSERT_TRUE(deliveries.WaitFor(1));

  const PromExposition middle = Scrape();
  EXPECT_EQ(*middle.Value("messenger_stored_messages") - *before.Value("messenger_stored_messages"),
            2);

  const Result<MessageBatch> batch = bob->FetchUndelivered(10);
  ASSERT_OK(batch.status());
  ASSERT_EQ(batch->messages.size(), 1u);  // The pushed one is not fetched again.
  EXPECT_EQ(batch->messages[0].message_id, queued->message_id);
  const std::uint64_t ids[] = {queued->message_id, live->message_id};
  ASSERT_TRUE(bob->Ack(ids).ok());

  const PromExposition after = Scrape();
  // Writes: two accounts, three SENDs (the one to nobody runs its checks in a write
  // transaction too), one ACK; one client at a time, so one write per group commit. Hashing
  // slots: two hashes, three password checks.
  ExpectMoved(before, after,
              {
                  {"messenger_connections_accepted_total{transport=\"wire\"}", 2},
                  {"messenger_connections_open{transport=\"wire\"}", 2},
                  {"messenger_sessions_logged_in{transport=\"wire\"}", 2},
                  {"messenger_errors_total{code=\"AUTH_FAILED\",transport=\"wire\"}", 1},
                  {"messenger_errors_total{code=\"UNKNOWN_RECIPIENT\",transport=\"wire\"}", 1},
                  {"messenger_login_failures_total{}", 1},
                  {"messenger_messages_accepted_total{}", 2},
                  {"messenger_messages_queued_total{}", 1},
                  {"messenger_messages_delivered_live_total{}", 1},
                  {"messenger_messages_fetched_total{}", 1},
                  {"messenger_messages_acked_total{}", 2},
                  {"messenger_store_commit_batch_size_count{}", 6},
                  {"messenger_store_commit_batch_size_sum{}", 6},
                  {"messenger_store_commit_duration_seconds_count{}", 6},
                  {"messenger_password_hash_wait_seconds_count{}", 5},
              });

  // Closed connections leave the gauges.
  alice->Close();
  bob->Close();
  EXPECT_TRUE(Eventually([&] {
    const PromExposition now = Scrape();
    return now.Value("messenger_connections_open", {{"transport", "wire"}}) ==
               before.Value("messenger_connections_open", {{"transport", "wire"}}) &&
           now.Value("messenger_sessions_logged_in", {{"transport", "wire"}}) ==
               before.Value("messenger_sessions_logged_in", {{"transport", "wire"}});
  }));
}

// Writes `requests` in one write on a new connection and returns the first `replies` frames.
std::vector<Frame> ExchangeInOneWrite(std::uint16_t port, const std::vector<Frame>& requests,
                                      std::size_t replies) {
  Bytes burst;
  for (const Frame& request : requests) EXPECT_OK(EncodeFrame(request, burst));
  Poco::Net::StreamSocket socket;
  socket.connect(Poco::Net::SocketAddress("127.0.0.1", port), Poco::Timespan(2, 0));
  socket.setReceiveTimeout(Poco::Timespan(5, 0));
  EXPECT_EQ(socket.sendBytes(burst.data(), static_cast<int>(burst.size())),
            static_cast<int>(burst.size()));
  FrameDecoder decoder(kDefaultMaxFrameSize);
  std::vector<Frame> frames;
  std::uint8_t buffer[4096];
  while (frames.size() < replies) {
    const int n = socket.receiveBytes(buffer, sizeof buffer);  // Throws after the timeout.
    if (n <= 0) {
      ADD_FAILURE() << "closed after " << frames.size() << " replies";
      break;
    }
    decoder.Feed({buffer, static_cast<std::size_t>(n)});
    while (std::optional<DecodeResult> decoded = decoder.Next()) {
      EXPECT_OK(decoded->status);
      frames.push_back({decoded->request_id, decoded->message});
    }
  }
  return frames;
}

TEST_F(AdminTest, PipelinedSendsAndAcksOfOneConnectionShareOneCommitEach) {
  {
    std::unique_ptr<Client> setup = Connected();
    ASSERT_OK(setup->CreateAccount("alice", kPassword));
    ASSERT_OK(setup->CreateAccount("bob", kPassword));
  }
  constexpr std::uint32_t kRequests = 10;

  // HELLO, LOGIN and ten SENDs in one write, before reading any answer.
  std::vector<Frame> requests = {{1, Hello{kProtocolVersion}}, {2, Login{"alice", kPassword}}};
  for (std::uint32_t i = 0; i < kRequests; ++i) {
    requests.push_back({10 + i, Send{"bob", 1 + i, "pipelined"}});
  }
  Histogram::Snapshot before = metrics_.commit_batch_size().Read();
  std::vector<Frame> replies = ExchangeInOneWrite(door_->port(), requests, requests.size());
  ASSERT_EQ(replies.size(), requests.size());
  std::vector<std::uint64_t> ids;
  for (std::uint32_t i = 0; i < kRequests; ++i) {
    ASSERT_EQ(replies[2 + i].request_id, 10 + i);
    const auto* ok = std::get_if<SendOk>(&replies[2 + i].message);
    ASSERT_NE(ok, nullptr) << Describe(replies[2 + i]);
    ids.push_back(ok->message_id);
  }
  Histogram::Snapshot after = metrics_.commit_batch_size().Read();
  EXPECT_EQ(after.count - before.count, 1u) << "the ten SENDs took more than one commit";
  EXPECT_EQ(after.sum - before.sum, 1);
  EXPECT_EQ(metrics_.stored_messages().value(), static_cast<std::int64_t>(kRequests));

  // The recipient acknowledges each message with an ACK of its own, all in one write.
  requests = {{1, Hello{kProtocolVersion}}, {2, Login{"bob", kPassword}}};
  for (std::uint32_t i = 0; i < kRequests; ++i) requests.push_back({10 + i, Ack{{ids[i]}}});
  before = after;
  replies = ExchangeInOneWrite(door_->port(), requests, requests.size());
  ASSERT_EQ(replies.size(), requests.size());
  for (std::uint32_t i = 0; i < kRequests; ++i) {
    EXPECT_EQ(replies[2 + i], (Frame{10 + i, Ok{}}));
  }
  after = metrics_.commit_batch_size().Read();
  EXPECT_EQ(after.count - before.count, 1u) << "the ten ACKs took more than one commit";
  EXPECT_EQ(metrics_.stored_messages().value(), 0);
}

TEST_F(AdminTest, RepeatedFailedLoginsCountFailuresAndOneThrottle) {
  std::unique_ptr<Client> client = Connected();
  ASSERT_TRUE(client->CreateAccount("carol", kPassword).ok());
  const PromExposition before = Scrape();
  const std::uint32_t limit = MessengerOptions{}.login_failures_before_throttle;
  for (std::uint32_t i = 0; i < limit; ++i) {
    EXPECT_EQ(client->Login("carol", "wrong password").status().code(), ErrorCode::kAuthFailed);
  }
  EXPECT_EQ(client->Login("carol", kPassword).status().code(), ErrorCode::kLoginThrottled);
  const PromExposition after = Scrape();
  ExpectMoved(before, after,
              {
                  {"messenger_login_failures_total{}", limit},
                  {"messenger_login_throttles_total{}", 1},
                  {"messenger_errors_total{code=\"AUTH_FAILED\",transport=\"wire\"}", limit},
                  {"messenger_errors_total{code=\"LOGIN_THROTTLED\",transport=\"wire\"}", 1},
                  {"messenger_password_hash_wait_seconds_count{}", limit},
              });
}

TEST_F(AdminTest, HealthAndReadinessAnswerOkWhileServing) {
  const HttpReply health = Get("/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_EQ(health.content_type, "text/plain; charset=utf-8");
  const HttpReply ready = Get("/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ok\n");
}

TEST_F(AdminTest, ReadinessFailsWithAReasonOnceTheMessengerShutsDown) {
  messenger_->Shutdown();
  const HttpReply ready = Get("/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "the server is shutting down\n");
  EXPECT_EQ(Get("/healthz").status, 200);  // Still alive, just not taking traffic.
}

TEST_F(AdminTest, HeadAnswersLikeGetWithoutABody) {
  const HttpReply metrics = Http(admin_->port(), "HEAD", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.content_type, kExpositionType);
  EXPECT_GT(std::stoul(metrics.content_length), 0u);
  EXPECT_EQ(metrics.body, "");
  EXPECT_EQ(Http(admin_->port(), "HEAD", "/healthz").status, 200);
}

TEST_F(AdminTest, UnknownPathsAre404AndOtherMethods405) {
  EXPECT_EQ(Get("/").status, 404);
  EXPECT_EQ(Get("/metricsx").status, 404);
  EXPECT_EQ(Http(admin_->port(), "POST", "/nowhere").status, 404);
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    const HttpReply reply = Http(admin_->port(), method, "/metrics");
    EXPECT_EQ(reply.status, 405) << method;
    EXPECT_EQ(reply.allow, "GET, HEAD") << method;
  }
  EXPECT_EQ(Http(admin_->port(), "POST", "/readyz").status, 405);
  EXPECT_EQ(Get("/metrics?name=x").status, 200);  // A query string does not change the path.
}

TEST_F(AdminTest, ShutdownStopsServingAndIsIdempotent) {
  const std::uint16_t port = admin_->port();
  admin_->Shutdown();
  admin_->Shutdown();
  EXPECT_THROW(Http(port, "GET", "/healthz"), Poco::Exception);
}

TEST_F(AdminTest, StartFailsOnAPortInUseAndNamesIt) {
  AdminOptions options;
  options.port = admin_->port();
  Result<std::unique_ptr<AdminServer>> second = AdminServer::Start(
      metrics_, [] { return Status::Ok(); }, options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kInternal);
  EXPECT_NE(second.status().message().find("127.0.0.1:" + std::to_string(admin_->port())),
            std::string::npos)
      << second.status().message();
  EXPECT_EQ(AdminServer::Start(metrics_, nullptr, {}).status().code(), ErrorCode::kInvalidArgument);
}

// ---- The real binary ----

// `poco_messenger server ARGS` with stdout on a pipe; killed (SIGKILL) if still running at the
// end.
class Binary {
 public:
  explicit Binary(const std::vector<std::string>& args) {
    std::vector<std::string> all = {MESSENGER_SERVER_BINARY, "server"};
    all.insert(all.end(), args.begin(), args.end());
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    std::vector<char*> argv;
    for (std::string& arg : all) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    stdout_ = fds[0];
  }
  ~Binary() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
  }
  Binary(const Binary&) = delete;
  Binary& operator=(const Binary&) = delete;

  // The next line of stdout without its newline; nullopt at EOF or after kWait.
  std::optional<std::string> Line() {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd fd = {stdout_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&fd, 1, static_cast<int>(left.count())) <= 0) {
        return std::nullopt;
      }
      char c;
      if (::read(stdout_, &c, 1) != 1) return std::nullopt;
      if (c == '\n') return line;
      line.push_back(c);
    }
  }

  // Sends `signal` and returns the exit status, or -1 if it has not exited within kWait.
  int Stop(int signal) {
    ::kill(pid_, signal);
    return Wait();
  }
  int Wait() {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
};

std::uint16_t PortAfter(const std::string& line, const std::string& prefix) {
  if (line.rfind(prefix, 0) != 0) return 0;
  return static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
}

TEST(AdminBinaryTest, AdminPortAutoAnnouncesItselfLastAndStopsOnSigterm) {
  Binary server({"--host", "127.0.0.1", "--port", "0", "--grpc-port", "0", "--admin-port", "auto",
                 "--db", ":memory:", "--password-cost", "test"});
  const std::optional<std::string> wire = server.Line();
  ASSERT_TRUE(wire.has_value());
  EXPECT_NE(PortAfter(*wire, "poco_messenger listening on 127.0.0.1:"), 0) << *wire;
  const std::optional<std::string> admin = server.Line();
  ASSERT_TRUE(admin.has_value());
  const std::uint16_t port = PortAfter(*admin, "poco_messenger admin listening on 127.0.0.1:");
  ASSERT_NE(port, 0) << *admin;

  EXPECT_EQ(Http(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(Http(port, "GET", "/readyz").status, 200);
  const HttpReply metrics = Http(port, "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  const PromExposition parsed = Parse(metrics.body);
  EXPECT_EQ(parsed.Value("messenger_stored_messages"), 0);
  EXPECT_EQ(server.Stop(SIGTERM), 0);
  EXPECT_THROW(Http(port, "GET", "/healthz"), Poco::Exception);
}

TEST(AdminBinaryTest, AdminPortIsOffByDefaultAndRejectsABadValue) {
  {
    Binary server({"--host", "127.0.0.1", "--port", "0", "--grpc-port", "0", "--db",
                   ":memory:", "--password-cost", "test"});
    ASSERT_TRUE(server.Line().has_value());
    EXPECT_EQ(server.Stop(SIGTERM), 0);
    EXPECT_EQ(server.Line(), std::nullopt);  // No admin line was printed.
  }
  Binary bad({"--admin-port", "http", "--db", ":memory:"});
  EXPECT_EQ(bad.Wait(), 2);
}

}  // namespace
}  // namespace messenger

// Floods of connections against the real server: past --max-connections, past the descriptor
// limit, and ten thousand short connections of random bytes. Ordinary users chat throughout and
// must not notice.
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "hostile_support.h"

namespace messenger::test {
namespace {

int CountOf(const std::string& text, const std::string& what) {
  int count = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

TEST_F(HostileTest, ConnectionsBeyondTheLimitAreRefusedWhileSessionsKeepChatting) {
  constexpr int kMaxConnections = 20;
  constexpr int kFloodThreads = 4;
  constexpr int kMaxFloodPerThread = 5000;
  constexpr milliseconds kFloodTime = seconds(2);
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"max-connections", std::to_string(kMaxConnections)}}));
  Chatter chat;
  ASSERT_TRUE(chat.Start(server.port(), "chat"));
  // The chat holds two slots; idle handshaken connections take the rest.
  std::vector<TestClient> holders(kMaxConnections - 2);
  for (TestClient& holder : holders) {
    ASSERT_TRUE(holder.Connect(server.port()));
    ASSERT_TRUE(holder.Hello());
  }

  // For two seconds (and at most kMaxFloodPerThread connections per thread) every flood
  // connection must get ERROR SERVER_BUSY #0 and the close, promptly. Half of them send HELLO at
  // once, half say nothing: neither may be served or left hanging.
  std::atomic<int> attempts{0};
  std::atomic<int> refused{0};
  std::atomic<long long> slowest_ms{0};
  std::vector<std::string> wrong[kFloodThreads];
  std::vector<std::thread> threads;
  const SteadyTime flood_end = Now() + kFloodTime;
  for (int t = 0; t < kFloodThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kMaxFloodPerThread && Now() < flood_end; ++i) {
        ++attempts;
        RawConnection connection;
        if (!connection.Connect(server.port())) {
          wrong[t].push_back("connect failed: " + std::string(std::strerror(errno)));
          continue;
        }
        if (i % 2 == 0) (void)connection.SendFrame(Frame{1, Hello{kProtocolVersion}});
        const Received received = connection.ReadUntilClosed(seconds(3));
        if (received.IsFatalError(ErrorCode::kServerBusy)) {
          ++refused;
        } else {
          wrong[t].push_back(received.Describe());
        }
        if (received.waited.count() > slowest_ms.load()) slowest_ms = received.waited.count();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  chat.Stop();

  for (const auto& list : wrong) {
    for (std::size_t i = 0; i < list.size() && i < 5; ++i) ADD_FAILURE() << list[i];
  }
  std::cerr << "connection flood: " << refused.load() << " of " << attempts.load()
            << " connections refused, the slowest in " << slowest_ms.load() << " ms; "
            << chat.Healthy().message() << "\n";
  EXPECT_GT(attempts.load(), 400) << "the flood was too small to mean anything";
  EXPECT_EQ(refused.load(), attempts.load());
  EXPECT_LT(slowest_ms.load(), 1000) << "a refusal took " << slowest_ms.load() << " ms";
  EXPECT_TRUE(chat.Healthy());
  for (TestClient& holder : holders) EXPECT_TRUE(Is<Pong>(holder.Call(Ping{1})));

  // The refusals were counted, not logged one by one.
  EXPECT_LT(CountOf(server.log(), "refused connection from"), 50);

  // Slots come back once their holders leave.
  holders.clear();
  bool served = false;
  for (const SteadyTime deadline = Now() + seconds(5); !served && Now() < deadline;) {
    TestClient again;
    ASSERT_TRUE(again.Connect(server.port()));
    served = Is<HelloOk>(again.Call(Hello{kProtocolVersion}));
    if (!served) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(served) << "no slot was released after the holders left";
}

// Measures the server's CPU use over `window` as a share of one core.
double CpuShare(pid_t pid, milliseconds window) {
  const milliseconds cpu_before = ReadCpuTime(pid);
  const SteadyTime start = Now();
  std::this_thread::sleep_for(window);
  const milliseconds cpu = ReadCpuTime(pid) - cpu_before;
  const auto wall = std::chrono::duration_cast<milliseconds>(Now() - start);
  return static_cast<double>(cpu.count()) / static_cast<double>(wall.count());
}

// Opens `count` connections that each send HELLO and stay open; returns them.
std::vector<RawConnection> OpenAndHello(std::uint16_t port, int count, int* failed_connects) {
  std::vector<RawConnection> flood(static_cast<std::size_t>(count));
  *failed_connects = 0;
  for (RawConnection& connection : flood) {
    if (!connection.Connect(port, seconds(3))) {
      ++*failed_connects;
      connection.Close();
      continue;
    }
    // Before the answer: the server may refuse it without reading anything.
    (void)connection.SendFrame(Frame{1, Hello{kProtocolVersion}});
  }
  return flood;
}

// Sorts the flood into served (HELLO_OK), refused (ERROR SERVER_BUSY #0, then the close) and
// unanswered connections, watching all of them at once for up to `timeout`.
struct Fates {
  int served = 0;
  int refused = 0;
  int unanswered = 0;
  std::vector<std::string> other;
};
Fates CollectFates(std::vector<RawConnection>& flood, milliseconds timeout) {
  struct Watch {
    RawConnection* connection;
    FrameDecoder decoder{kMaxMaxFrameSize};
    std::vector<Frame> frames;
  };
  std::vector<Watch> open;
  for (RawConnection& connection : flood) {
    if (connection.fd() >= 0)
      open.push_back(Watch{&connection, FrameDecoder(kMaxMaxFrameSize), {}});
  }
  Fates fates;
  const SteadyTime deadline = Now() + timeout;
  while (!open.empty()) {
    std::vector<pollfd> fds;
    for (const Watch& watch : open) fds.push_back({watch.connection->fd(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), RemainingMs(deadline)) <= 0) break;
    std::vector<Watch> still_open;
    for (std::size_t i = 0; i < open.size(); ++i) {
      Watch& watch = open[i];
      bool closed = false;
      if (fds[i].revents != 0) {
        std::uint8_t buffer[4096];
        const ssize_t n = ::recv(fds[i].fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n > 0) {
          watch.decoder.Feed(std::span<const std::uint8_t>(buffer, static_cast<std::size_t>(n)));
          while (std::optional<DecodeResult> result = watch.decoder.Next()) {
            watch.frames.push_back(Frame{result->request_id, std::move(result->message)});
          }
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          closed = true;
        }
      }
      const bool hello_ok =
          watch.frames.size() == 1 && std::holds_alternative<HelloOk>(watch.frames[0].message);
      if (hello_ok && !closed) {
        ++fates.served;
      } else if (closed) {
        Received received;
        received.frames = std::move(watch.frames);
        received.closed = true;
        if (received.IsFatalError(ErrorCode::kServerBusy)) {
          ++fates.refused;
        } else {
          fates.other.push_back(received.Describe());
        }
      } else {
        still_open.push_back(std::move(watch));
      }
    }
    open = std::move(still_open);
  }
  fates.unanswered = static_cast<int>(open.size());
  return fates;
}

// A freshly connecting client is served again within a few seconds.
::testing::AssertionResult ServedAgain(std::uint16_t port) {
  std::string last;
  for (const SteadyTime deadline = Now() + seconds(10); Now() < deadline;) {
    TestClient client;
    if (client.Connect(port)) {
      const std::optional<Frame> reply = client.Call(Hello{kProtocolVersion}, seconds(2));
      if (Is<HelloOk>(reply)) return ::testing::AssertionSuccess();
      last = Show(reply);
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return ::testing::AssertionFailure() << "no new connection was served; last answer " << last;
}

// The server runs under `ulimit -n 256` with the default --max-connections (1000), far more than
// 256 descriptors can serve. 1000 connection attempts are held open: the server must keep its
// sessions responsive, answer every attempt one way or the other, and neither burn a core nor
// fill its log retrying. (An accept loop whose accept() fails with EMFILE while the listener
// stays readable turns at full speed; POCO's own loop cannot even poll then, as its poll()
// needs a descriptor: it logs an error every 50 ms and leaves new clients waiting unanswered.)
TEST_F(HostileTest, OutOfDescriptorsTheServerStaysResponsiveAndDoesNotSpin) {
  constexpr int kDescriptorLimit = 256;
  constexpr int kAttempts = 1000;
  ServerProcess& server = NewServer();
  server.set_descriptor_limit(kDescriptorLimit);
  ASSERT_TRUE(server.Start({{"send-rate", "0"}}));
  Chatter chat;
  ASSERT_TRUE(chat.Start(server.port(), "chat"));

  int failed_connects = 0;
  std::vector<RawConnection> flood = OpenAndHello(server.port(), kAttempts, &failed_connects);
  EXPECT_EQ(failed_connects, 0);
  std::this_thread::sleep_for(milliseconds(500));  // Let the server take in the flood.
  const double cpu = CpuShare(server.pid(), seconds(3));
  const int rounds_before = chat.rounds();
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_GT(chat.rounds(), rounds_before) << "the chat stalled while descriptors were exhausted";

  const Fates fates = CollectFates(flood, seconds(3));
  chat.Stop();
  std::cerr << "out of descriptors: server CPU " << cpu * 100 << "% of a core; " << fates.served
            << " served, " << fates.refused << " refused, " << fates.unanswered
            << " unanswered; log " << server.log().size() << " bytes\n";
  EXPECT_LT(cpu, 0.25) << "the server used " << cpu * 100 << "% of a core while out of descriptors";
  EXPECT_TRUE(chat.Healthy());
  // Every attempt got a definite answer: served (as many as descriptors allow) or SERVER_BUSY.
  EXPECT_EQ(fates.unanswered, 0) << fates.served << " served, " << fates.refused << " refused";
  EXPECT_TRUE(fates.other.empty())
      << fates.other.size() << " odd outcomes, e.g. " << fates.other.front();
  EXPECT_GT(fates.served, 10);
  EXPECT_LT(fates.served, kDescriptorLimit / 2);
  EXPECT_EQ(fates.served + fates.refused, kAttempts);
  // The server said what it can serve, and its accepting thread logged no failures.
  const std::string log = server.log();
  EXPECT_NE(log.find("serving at most"), std::string::npos);
  EXPECT_EQ(CountOf(log, "unhandled exception"), 0);

  flood.clear();
  EXPECT_TRUE(ServedAgain(server.port()));
  EXPECT_EQ(server.Terminate(), 0);
}

// Descriptors can also run out while the server is running (other descriptors in use, or the
// limit lowered from outside): then accept() itself fails with EMFILE. Lowering the running
// server's limit with prlimit() brings that about on demand.
TEST_F(HostileTest, DescriptorsRunningOutAtAcceptTimeDoNotSpinTheAcceptLoop) {
  if (kSanitized) GTEST_SKIP() << "UBSan's checks need free descriptors (see kSanitized)";
  constexpr int kAttempts = 300;
  constexpr rlim_t kHeadroom = 20;  // Descriptors left free: room for a few connections only.
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"send-rate", "0"}, {"max-connections", "1000"}}));
  Chatter chat;
  ASSERT_TRUE(chat.Start(server.port(), "chat"));

  std::error_code ignored;
  const auto fd_dir = std::filesystem::path("/proc") / std::to_string(server.pid()) / "fd";
  const auto open_fds = static_cast<rlim_t>(std::distance(
      std::filesystem::directory_iterator(fd_dir, ignored), std::filesystem::directory_iterator()));
  ASSERT_GT(open_fds, 0u);
  const rlimit lowered = {open_fds + kHeadroom, open_fds + kHeadroom};
  ASSERT_EQ(::prlimit(server.pid(), RLIMIT_NOFILE, &lowered, nullptr), 0) << std::strerror(errno);

  int failed_connects = 0;
  std::vector<RawConnection> flood = OpenAndHello(server.port(), kAttempts, &failed_connects);
  EXPECT_EQ(failed_connects, 0);
  std::this_thread::sleep_for(milliseconds(500));
  const double cpu = CpuShare(server.pid(), seconds(3));

  const Fates fates = CollectFates(flood, seconds(3));
  chat.Stop();
  std::cerr << "descriptors exhausted at accept: server CPU " << cpu * 100 << "% of a core; "
            << fates.served << " served, " << fates.refused << " refused, " << fates.unanswered
            << " unanswered; log " << server.log().size() << " bytes\n";
  EXPECT_LT(cpu, 0.25) << "the server used " << cpu * 100 << "% of a core while accept() failed";
  EXPECT_TRUE(chat.Healthy());
  EXPECT_EQ(fates.unanswered, 0) << fates.served << " served, " << fates.refused << " refused";
  EXPECT_TRUE(fates.other.empty())
      << fates.other.size() << " odd outcomes, e.g. " << fates.other.front();
  // About kHeadroom / 2 (the descriptors counted may include a few above the new limit).
  EXPECT_LE(fates.served, static_cast<int>(kHeadroom / 2) + 3);
  EXPECT_EQ(fates.served + fates.refused, kAttempts);
  // A failing accept() is reported at most once a second, not once per attempt.
  const std::string log = server.log();
  EXPECT_EQ(CountOf(log, "unhandled exception"), 0);
  EXPECT_LT(CountOf(log, "cannot accept connections"), 15);

  flood.clear();
  EXPECT_TRUE(ServedAgain(server.port()));
  EXPECT_EQ(server.Terminate(), 0);
}

// 10,000 short connections, each sending random bytes (a few from four threads at a time): the
// server must stay up and keep its memory flat, and an ordinary pair of users keeps chatting.
TEST_F(HostileTest, TenThousandConnectionsOfRandomBytesLeaveNoTrace) {
  constexpr int kThreads = 4;
  constexpr int kWarmUp = 1000;
  constexpr int kConnections = 10000;
  // Allocator arenas and pool threads settle during the warm-up; what grows after it is a leak.
  constexpr long kRssMarginKib = 3 * 1024;
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"send-rate", "0"}}));
  Chatter chat;
  ASSERT_TRUE(chat.Start(server.port(), "chat", milliseconds(100)));

  std::atomic<int> next{0};
  std::atomic<int> failed_connects{0};
  std::atomic<int> left_open{0};
  std::atomic<long> rss_after_warm_up{-1};
  std::atomic<long> rss_peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<std::uint32_t>(t + 1));
      for (int i = next++; i < kConnections; i = next++) {
        if (i == kWarmUp) {
          rss_after_warm_up = ReadRssKib(server.pid());
        }
        if (i % 500 == 0) rss_peak = std::max(rss_peak.load(), ReadRssKib(server.pid()));
        RawConnection connection;
        if (!connection.Connect(server.port())) {
          ++failed_connects;
          continue;
        }
        Bytes garbage(1 + random() % 600);
        for (std::uint8_t& byte : garbage) byte = static_cast<std::uint8_t>(random());
        (void)connection.SendAll(garbage, seconds(1));
        switch (i % 3) {
          case 0:  // Waits for the server to close the connection.
            connection.ShutdownWrite();
            if (!connection.ReadUntilClosed(seconds(3)).closed) ++left_open;
            break;
          case 1:  // Leaves at once.
            connection.Close();
            break;
          default:  // Leaves with a reset.
            connection.Reset();
            break;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // Let the last connections finish on the server before measuring.
  std::this_thread::sleep_for(milliseconds(500));
  const long rss_end = ReadRssKib(server.pid());
  chat.Stop();

  EXPECT_EQ(failed_connects.load(), 0);
  EXPECT_EQ(left_open.load(), 0) << "connections the server did not close after the client's FIN";
  EXPECT_TRUE(chat.Healthy());
  std::cerr << "RSS after warm-up " << rss_after_warm_up.load() << " KiB, at the end " << rss_end
            << " KiB, peak sample " << rss_peak.load() << " KiB"
            << (kSanitized ? " (not checked under a sanitizer)" : "") << "\n";
  if (!kSanitized) {
    ASSERT_GT(rss_after_warm_up.load(), 0);
    EXPECT_LT(rss_end - rss_after_warm_up.load(), kRssMarginKib);
  }
  EXPECT_EQ(server.Terminate(), 0);
}

}  // namespace
}  // namespace messenger::test

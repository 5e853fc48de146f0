// Clients that hold the server's resources by being slow: half frames (slowloris), oversized
// length prefixes before login, a consumer that never reads, and peers that fall silent.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hostile_support.h"

namespace messenger::test {
namespace {

// The first `size` bytes of a frame whose length prefix announces `announced` bytes (header and
// body) of a PING, the rest never sent.
Bytes HalfFrame(std::uint32_t announced, std::size_t size) {
  Bytes bytes = RawFrame(0x0A, 77, Bytes(announced - kFrameHeaderSize, 0x00));
  bytes.resize(size);
  return bytes;
}

// Frames received, then whether the connection was closed, and when (from `start`).
struct Ending {
  std::vector<Frame> frames;
  bool closed = false;
  milliseconds after{0};
};

// Reads until the server closes `connection` or `timeout` passes; with `trickle`, one more byte
// of the unfinished frame is sent every 300 ms meanwhile (the frame is never completed).
Ending AwaitClose(RawConnection& connection, SteadyTime start, milliseconds timeout, bool trickle) {
  Ending ending;
  const SteadyTime deadline = Now() + timeout;
  const std::uint8_t filler = 0;
  while (!ending.closed && Now() < deadline) {
    Received part = connection.ReadUntilClosed(
        std::min(milliseconds(300), milliseconds(RemainingMs(deadline))));
    ending.frames.insert(ending.frames.end(), part.frames.begin(), part.frames.end());
    ending.closed = part.closed;
    if (!ending.closed && trickle) (void)connection.SendAll({&filler, 1}, seconds(1));
  }
  ending.after = std::chrono::duration_cast<milliseconds>(Now() - start);
  return ending;
}

// True iff `ending` is a SESSION_ENDED with `reason` as the last frame, then the close, after
// `timeout` but not much after it.
::testing::AssertionResult EndedAtTimeout(const Ending& ending, EndReason reason,
                                          milliseconds timeout, milliseconds slack) {
  std::string frames;
  for (const Frame& frame : ending.frames) frames += Describe(frame) + "; ";
  const auto failure = [&] {
    return ::testing::AssertionFailure() << "got " << frames << (ending.closed ? "closed" : "open")
                                         << " after " << ending.after.count() << " ms";
  };
  if (!ending.closed || ending.frames.empty()) return failure();
  const Frame& last = ending.frames.back();
  const auto* ended = std::get_if<SessionEnded>(&last.message);
  if (ended == nullptr || ended->reason != reason) return failure();
  // The session's timer may start a little before the client's clock does.
  if (ending.after < timeout - milliseconds(250) || ending.after > timeout + slack) {
    return failure() << "; expected about " << timeout.count() << " ms";
  }
  return ::testing::AssertionSuccess();
}

// 50 clients each send part of a frame and stall, some trickling a byte now and then. Each is
// closed at its timeout: the pre-login timeout before login, the idle timeout after it (only a
// complete frame counts as activity). A normal pair of users chats unaffected meanwhile.
TEST_F(HostileTest, SlowlorisClientsAreClosedAtTheirTimeoutWhileOthersChat) {
  constexpr int kPreLogin = 40;
  constexpr int kLoggedIn = 10;
  constexpr milliseconds kLoginTimeout = seconds(2);
  constexpr milliseconds kIdleTimeout = seconds(3);
  constexpr milliseconds kSlack = milliseconds(1500);
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"login-timeout", "2"}, {"idle-timeout", "3"}, {"send-rate", "0"}}));
  Chatter chat;
  ASSERT_TRUE(chat.Start(server.port(), "chat"));

  // Logged-in attackers first (their accounts and logins take a moment), each left with half
  // a 200-byte frame.
  std::vector<TestClient> logged_in(kLoggedIn);
  std::vector<SteadyTime> logged_in_at(kLoggedIn);
  for (int i = 0; i < kLoggedIn; ++i) {
    const std::string name = "loris" + std::to_string(i);
    ASSERT_TRUE(logged_in[i].Connect(server.port()));
    ASSERT_TRUE(logged_in[i].Hello());
    ASSERT_TRUE(logged_in[i].Create(name));
    logged_in_at[i] = Now();
    ASSERT_TRUE(logged_in[i].Login(name));
    logged_in[i].SendRaw(HalfFrame(200, 100));
  }

  std::mutex mu;
  std::vector<std::string> failures;
  const auto check = [&](const ::testing::AssertionResult& result, const std::string& who) {
    if (result) return;
    std::lock_guard lock(mu);
    failures.push_back(who + ": " + result.message());
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kPreLogin; ++i) {
    threads.emplace_back([&, i] {
      const std::string who = "pre-login loris " + std::to_string(i);
      RawConnection connection;
      const SteadyTime start = Now();
      if (!connection.Connect(server.port())) return check(::testing::AssertionFailure(), who);
      // A quarter say HELLO first; half trickle; the frame announced is at most the pre-login
      // limit, so the server has to wait for the rest.
      if (i % 4 == 0) (void)connection.SendFrame(Frame{1, Hello{kProtocolVersion}});
      (void)connection.SendAll(HalfFrame(kMaxPreloginFrameSize, 9 + i));
      const Ending ending = AwaitClose(connection, start, kLoginTimeout + seconds(5), i % 2 == 1);
      check(EndedAtTimeout(ending, EndReason::kLoginTimeout, kLoginTimeout, kSlack), who);
    });
  }
  for (int i = 0; i < kLoggedIn; ++i) {
    threads.emplace_back([&, i] {
      // The LOGIN was the last complete frame: the idle timer runs from there.
      const Ending ending = [&] {
        Ending result;
        result.closed = logged_in[i].WaitClosed(kIdleTimeout + seconds(5));
        result.after = std::chrono::duration_cast<milliseconds>(Now() - logged_in_at[i]);
        for (const Frame& frame : logged_in[i].pushes()) result.frames.push_back(frame);
        return result;
      }();
      check(EndedAtTimeout(ending, EndReason::kIdleTimeout, kIdleTimeout, kSlack),
            "logged-in loris " + std::to_string(i));
    });
  }
  for (std::thread& thread : threads) thread.join();
  chat.Stop();

  for (const std::string& failure : failures) ADD_FAILURE() << failure;
  EXPECT_TRUE(chat.Healthy());
  EXPECT_LT(chat.longest_gap(), milliseconds(1000));
}

// 1,000 connections each announce a frame of 0xFFFFFFFF bytes before logging in: each is
// answered FRAME_TOO_LARGE at once, without the server buffering anything for it, so its memory
// stays within a small budget. A connection that says HELLO and then nothing is closed at the
// pre-login timeout.
TEST_F(HostileTest, HugeLengthPrefixesBeforeLoginAreRefusedPromptlyWithinAMemoryBudget) {
  constexpr int kThreads = 4;
  constexpr int kConnections = 1000;
  constexpr long kRssBudgetKib = 4 * 1024;
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"login-timeout", "2"}}));

  // The idler is watched on its own thread, so the time of its close is known.
  TestClient idler;
  const SteadyTime idler_start = Now();
  ASSERT_TRUE(idler.Connect(server.port()));
  ASSERT_TRUE(idler.Hello());
  std::optional<Frame> idler_ended;
  bool idler_closed = false;
  milliseconds idler_lived{0};
  std::thread idler_thread([&] {
    idler_ended = idler.WaitPush(seconds(10));
    idler_closed = idler.WaitClosed();
    idler_lived = std::chrono::duration_cast<milliseconds>(Now() - idler_start);
  });

  const long rss_before = ReadRssKib(server.pid());
  EXPECT_GT(rss_before, 0);
  std::atomic<int> next{0};
  std::atomic<int> refused{0};
  std::atomic<long long> slowest_ms{0};
  std::mutex mu;
  std::vector<std::string> wrong;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kConnections; i = next++) {
        RawConnection connection;
        if (!connection.Connect(server.port())) {
          std::lock_guard lock(mu);
          wrong.push_back("connect: " + std::string(std::strerror(errno)));
          continue;
        }
        // Half after the handshake (LOGGED_OUT), half straight away (CONNECTED).
        if (i % 2 == 0) (void)connection.SendFrame(Frame{1, Hello{kProtocolVersion}});
        const std::uint8_t huge[] = {0xFF, 0xFF, 0xFF, 0xFF};
        (void)connection.SendAll(huge);
        Received received = connection.ReadUntilClosed(seconds(3));
        if (i % 2 == 0 && !received.frames.empty() &&
            std::holds_alternative<HelloOk>(received.frames.front().message)) {
          received.frames.erase(received.frames.begin());
        }
        if (received.IsFatalError(ErrorCode::kFrameTooLarge)) {
          ++refused;
        } else {
          std::lock_guard lock(mu);
          wrong.push_back(received.Describe());
        }
        if (received.waited.count() > slowest_ms.load()) slowest_ms = received.waited.count();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const long rss_after = ReadRssKib(server.pid());

  for (std::size_t i = 0; i < wrong.size() && i < 10; ++i) ADD_FAILURE() << wrong[i];
  EXPECT_EQ(refused.load(), kConnections);
  EXPECT_LT(slowest_ms.load(), 1000) << "a refusal took " << slowest_ms.load() << " ms";
  std::cerr << "RSS " << rss_before << " KiB before, " << rss_after << " KiB after " << kConnections
            << " connections" << (kSanitized ? " (not checked under a sanitizer)" : "")
            << "; slowest refusal " << slowest_ms.load() << " ms\n";
  if (!kSanitized) {
    EXPECT_LT(rss_after - rss_before, kRssBudgetKib)
        << "RSS grew from " << rss_before << " KiB to " << rss_after << " KiB";
  }

  // The idler was closed at the pre-login timeout, while the flood went on.
  idler_thread.join();
  ASSERT_TRUE(Is<SessionEnded>(idler_ended)) << Show(idler_ended);
  EXPECT_EQ(Get<SessionEnded>(idler_ended).reason, EndReason::kLoginTimeout);
  EXPECT_TRUE(idler_closed);
  EXPECT_GE(idler_lived, milliseconds(2000 - 250));
  EXPECT_LE(idler_lived, milliseconds(2000 + 1500))
      << "the idler lived " << idler_lived.count() << " ms with a 2 s pre-login timeout";
}

// True once the server has reset (hard-closed) `fd`, found without reading from it: poll() with
// no requested events still reports POLLERR and POLLHUP.
bool WaitForReset(int fd, milliseconds timeout) {
  const SteadyTime deadline = Now() + timeout;
  for (;;) {
    pollfd poll_fd = {fd, 0, 0};
    if (::poll(&poll_fd, 1, std::min(50, RemainingMs(deadline))) > 0 &&
        (poll_fd.revents & (POLLERR | POLLHUP)) != 0) {
      return true;
    }
    if (Now() >= deadline) return false;
  }
}

// A client that never reads (tiny receive buffer) while two others send it 100 messages of the
// largest size: it is disconnected as a slow consumer within --send-timeout plus 2 s, no sender
// waits on it, and when it comes back all 100 messages are there.
TEST_F(HostileTest, ConsumerThatNeverReadsIsDroppedAndLosesNothing) {
  constexpr seconds kSendTimeout{2};
  constexpr int kSenders = 2;
  constexpr int kPerSender = 50;
  ServerProcess& server = NewServer();
  ASSERT_TRUE(
      server.Start({{"send-timeout", std::to_string(kSendTimeout.count())}, {"send-rate", "0"}}));
  TestClient consumer;
  ASSERT_TRUE(consumer.Connect(server.port(), /*receive_buffer=*/4096));
  ASSERT_TRUE(consumer.Hello());
  ASSERT_TRUE(consumer.Create("consumer"));
  ASSERT_TRUE(consumer.Login("consumer"));
  // From here on the consumer reads nothing.

  std::vector<TestClient> senders(kSenders);
  for (int s = 0; s < kSenders; ++s) {
    ASSERT_TRUE(senders[s].Connect(server.port()));
    ASSERT_TRUE(senders[s].Hello());
    ASSERT_TRUE(senders[s].Create("sender" + std::to_string(s)));
    ASSERT_TRUE(senders[s].Login("sender" + std::to_string(s)));
  }
  // Texts of exactly the maximum size, each naming its sender and number.
  const auto text_of = [](int sender, int number) {
    std::string text = "from " + std::to_string(sender) + " #" + std::to_string(number) + " ";
    text.resize(kMaxTextBytes, static_cast<char>('a' + number % 26));
    return text;
  };
  std::atomic<long long> slowest_ms{0};
  std::mutex mu;
  std::vector<std::string> wrong;
  std::vector<std::thread> threads;
  for (int s = 0; s < kSenders; ++s) {
    threads.emplace_back([&, s] {
      for (int n = 0; n < kPerSender; ++n) {
        const SteadyTime start = Now();
        const std::optional<Frame> reply = senders[s].Call(
            Send{"consumer", static_cast<std::uint64_t>(n + 1), text_of(s, n)}, seconds(10));
        const auto took = std::chrono::duration_cast<milliseconds>(Now() - start).count();
        if (took > slowest_ms.load()) slowest_ms = took;
        if (!Is<SendOk>(reply)) {
          std::lock_guard lock(mu);
          wrong.push_back("SEND " + std::to_string(n) + ": " + Show(reply));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const SteadyTime sends_done = Now();
  for (const std::string& failure : wrong) ADD_FAILURE() << failure;
  EXPECT_LT(slowest_ms.load(), 1000) << "a sender waited " << slowest_ms.load() << " ms";

  // The server stopped making progress on the consumer by the last SEND_OK at the latest.
  EXPECT_TRUE(WaitForReset(consumer.fd(), kSendTimeout + seconds(2)))
      << "the consumer was not disconnected within the send timeout plus 2 s";
  const auto dropped_after = std::chrono::duration_cast<milliseconds>(Now() - sends_done);
  std::cerr << "slow consumer dropped " << dropped_after.count()
            << " ms after the last SEND_OK; slowest SEND " << slowest_ms.load() << " ms\n";
  EXPECT_NE(server.log().find("(consumer): closed: slow consumer"), std::string::npos);

  TestClient again;
  ASSERT_TRUE(again.Connect(server.port()));
  ASSERT_TRUE(again.Hello());
  std::uint32_t unread = 0;
  ASSERT_TRUE(again.Login("consumer", &unread));
  EXPECT_EQ(unread, static_cast<std::uint32_t>(kSenders * kPerSender));
  std::set<std::string> expected;
  for (int s = 0; s < kSenders; ++s) {
    for (int n = 0; n < kPerSender; ++n) expected.insert(text_of(s, n));
  }
  std::uint64_t last_id = 0;
  int fetched = 0;
  for (int pages = 0; pages < 100; ++pages) {
    const std::optional<Frame> batch = again.Call(FetchUndelivered{kMaxFetchLimit});
    ASSERT_TRUE(Is<MessageBatch>(batch)) << Show(batch);
    const MessageBatch& page = Get<MessageBatch>(batch);
    for (const StoredMessage& message : page.messages) {
      EXPECT_GT(message.message_id, last_id);
      last_id = message.message_id;
      EXPECT_EQ(expected.erase(message.text), 1u) << "unexpected or repeated message";
      ++fetched;
    }
    if (page.messages.empty()) {
      EXPECT_EQ(page.remaining, 0u);
      break;
    }
  }
  EXPECT_EQ(fetched, kSenders * kPerSender);
  EXPECT_TRUE(expected.empty()) << expected.size() << " messages missing";
}

// A peer that vanishes without FIN or RST cannot be produced on loopback: the local kernel keeps
// acknowledging for it, so TCP keepalive probes are answered and never expire. What the server
// sees of a vanished peer is silence: no bytes in, nothing taken of what it writes. So a
// "half-open" peer here is one that stops reading and writing, and the idle timeout is what must
// reap it (TCP keepalive backs that up on real networks). The server logs the reason.
TEST_F(HostileTest, SilentPeersAreReapedByTheIdleTimeoutAndTheLogSaysWhy) {
  constexpr milliseconds kIdleTimeout = seconds(2);
  ServerProcess& server = NewServer();
  ASSERT_TRUE(server.Start({{"idle-timeout", "2"}, {"send-rate", "0"}}));
  Chatter chat;
  ASSERT_TRUE(chat.Start(server.port(), "chat"));

  RawConnection ghost;
  ASSERT_TRUE(ghost.Connect(server.port()));
  {
    TestClient setup;
    ASSERT_TRUE(setup.Connect(server.port()));
    ASSERT_TRUE(setup.Hello());
    ASSERT_TRUE(setup.Create("ghost"));
  }
  // The ghost logs in with raw frames and then falls silent, its answers left unread.
  ASSERT_TRUE(ghost.SendFrame(Frame{1, Hello{kProtocolVersion}}));
  ASSERT_TRUE(ghost.SendFrame(Frame{2, Login{"ghost", kPassword}}));
  const SteadyTime silent_since = Now();
  // Messages keep arriving for it meanwhile (they are pushed into its unread buffers).
  TestClient friendly;
  ASSERT_TRUE(friendly.Connect(server.port()));
  ASSERT_TRUE(friendly.Hello());
  ASSERT_TRUE(friendly.Create("friendly"));
  ASSERT_TRUE(friendly.Login("friendly"));
  for (std::uint64_t i = 1; i <= 3; ++i) {
    ASSERT_TRUE(Is<SendOk>(friendly.Call(Send{"ghost", i, "are you there?"})));
  }

  // Noticed without reading: the server's FIN shows as POLLRDHUP.
  bool reaped = false;
  for (const SteadyTime deadline = silent_since + kIdleTimeout + seconds(3);
       !reaped && Now() < deadline;) {
    pollfd fd = {ghost.fd(), POLLRDHUP, 0};
    reaped = ::poll(&fd, 1, 50) > 0 && (fd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }
  const auto silent_for = std::chrono::duration_cast<milliseconds>(Now() - silent_since);
  ASSERT_TRUE(reaped) << "the silent peer was not closed within the idle timeout plus 3 s";
  EXPECT_GE(silent_for, kIdleTimeout - milliseconds(250));
  const Received received = ghost.ReadUntilClosed();
  ASSERT_TRUE(received.closed);
  ASSERT_FALSE(received.frames.empty());
  const auto* ended = std::get_if<SessionEnded>(&received.frames.back().message);
  ASSERT_NE(ended, nullptr) << received.Describe();
  EXPECT_EQ(ended->reason, EndReason::kIdleTimeout);
  EXPECT_NE(server.log().find("(ghost): closed: idle timeout"), std::string::npos);

  // Its messages are still stored for its next session.
  TestClient back;
  ASSERT_TRUE(back.Connect(server.port()));
  ASSERT_TRUE(back.Hello());
  std::uint32_t unread = 0;
  ASSERT_TRUE(back.Login("ghost", &unread));
  EXPECT_EQ(unread, 3u);
  chat.Stop();
  EXPECT_TRUE(chat.Healthy());
}

}  // namespace
}  // namespace messenger::test

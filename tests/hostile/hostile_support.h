// Tools for the hostile-client tests: bare sockets for floods, the server's resource use read
// from /proc, and a pair of users who keep chatting in the background so a test can show that an
// attack leaves ordinary sessions unharmed. Built on the harness of the integration tests.
#ifndef MESSENGER_TESTS_HOSTILE_HOSTILE_SUPPORT_H_
#define MESSENGER_TESTS_HOSTILE_HOSTILE_SUPPORT_H_

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "server_harness.h"

namespace messenger::test {

// True iff this build, and so the server built alongside it, runs under ASan or TSan. Their
// shadow memory and ASan's quarantine of freed blocks make RSS say nothing about leaks; and
// UBSan (built with ASan here) checks each virtual call by probing memory through a pipe, so
// with no descriptor left it reports every such call as invalid.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

// ---- The server's resource use, from /proc ----

// Resident set size of process `pid` in KiB (VmRSS), or -1 if it cannot be read.
inline long ReadRssKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// CPU time (user + system) process `pid` has used so far, or -1 ms if it cannot be read.
inline milliseconds ReadCpuTime(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // The command name (field 2) may contain spaces; the fields after its ')' are positional:
  // state is field 3, utime field 14, stime field 15.
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return milliseconds(-1);
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  return milliseconds((utime + stime) * 1000 / static_cast<unsigned long long>(ticks_per_second));
}

// Raises this process's own descriptor limit to `wanted` (within the hard limit): the tests hold
// more sockets than the common default soft limit of 1024.
inline void RaiseOwnDescriptorLimit(rlim_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur >= wanted) return;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
  (void)::setrlimit(RLIMIT_NOFILE, &limit);
}

// ---- A bare socket, for floods ----

// What a connection received until the server closed it (or the wait ended).
struct Received {
  std::vector<Frame> frames;
  bool closed = false;       // EOF or reset seen.
  bool undecodable = false;  // The server sent bytes that are not valid frames.
  milliseconds waited{0};    // From the start of the wait to the close (or the timeout).

  // True iff exactly one frame arrived, an ERROR with `code` and request id 0, and then the close.
  bool IsFatalError(ErrorCode code) const {
    return closed && !undecodable && frames.size() == 1 && frames[0].request_id == 0 &&
           std::holds_alternative<Error>(frames[0].message) &&
           std::get<Error>(frames[0].message).code == code;
  }
  std::string Describe() const {
    std::string text;
    for (const Frame& frame : frames) text += messenger::Describe(frame) + "; ";
    text += closed ? "closed" : "still open";
    if (undecodable) text += " (undecodable bytes)";
    return text + " after " + std::to_string(waited.count()) + " ms";
  }
};

// A client socket without protocol state, cheap enough to open by the thousand. Move-only.
class RawConnection {
 public:
  RawConnection() = default;
  ~RawConnection() { Close(); }
  RawConnection(RawConnection&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  RawConnection& operator=(RawConnection&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }

  // Connects to 127.0.0.1:port within `timeout`; false (errno set) if that fails. With
  // `receive_buffer` > 0 the receive buffer is made that small first.
  bool Connect(std::uint16_t port, milliseconds timeout = kReplyTimeout, int receive_buffer = 0) {
    Close();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    if (receive_buffer > 0) {
      (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
      return true;
    }
    if (errno != EINPROGRESS) return false;
    pollfd fd = {fd_, POLLOUT, 0};
    if (::poll(&fd, 1, static_cast<int>(timeout.count())) <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    int error = 0;
    socklen_t size = sizeof error;
    (void)::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size);
    errno = error;
    return error == 0;
  }

  // Writes all of `bytes` within `timeout`; false if the connection fails or stays full.
  bool SendAll(std::span<const std::uint8_t> bytes, milliseconds timeout = kReplyTimeout) {
    const SteadyTime deadline = Now() + timeout;
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes = bytes.subspan(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) return false;
      pollfd fd = {fd_, POLLOUT, 0};
      if (::poll(&fd, 1, RemainingMs(deadline)) <= 0) return false;
    }
    return true;
  }
  bool SendFrame(const Frame& frame) {
    Bytes bytes;
    return EncodeFrame(frame, bytes).ok() && SendAll(bytes);
  }

  // Reads and decodes what the server sends until it closes the connection, `max_frames` frames
  // have arrived, or `timeout` passes.
  Received ReadUntilClosed(milliseconds timeout = kReplyTimeout,
                           std::size_t max_frames = SIZE_MAX) {
    Received received;
    FrameDecoder decoder(kMaxMaxFrameSize);
    const SteadyTime start = Now();
    const SteadyTime deadline = start + timeout;
    std::uint8_t buffer[16 * 1024];
    while (!received.closed && received.frames.size() < max_frames) {
      pollfd fd = {fd_, POLLIN, 0};
      if (::poll(&fd, 1, RemainingMs(deadline)) <= 0) break;
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        received.closed = true;
        break;
      }
      decoder.Feed(std::span<const std::uint8_t>(buffer, static_cast<std::size_t>(n)));
      while (std::optional<DecodeResult> result = decoder.Next()) {
        if (!result->status.ok()) {
          received.undecodable = true;
          continue;
        }
        received.frames.push_back(Frame{result->request_id, std::move(result->message)});
      }
    }
    received.waited = std::chrono::duration_cast<milliseconds>(Now() - start);
    return received;
  }

  // True iff nothing arrived and the connection is still open after `wait`.
  bool QuietFor(milliseconds wait) {
    pollfd fd = {fd_, POLLIN, 0};
    return ::poll(&fd, 1, static_cast<int>(wait.count())) == 0;
  }

  // Sends FIN; the server then sees the end of the stream.
  void ShutdownWrite() { (void)::shutdown(fd_, SHUT_WR); }

  // Closes with a reset (RST) instead of a FIN, as a crashed or impatient client would.
  void Reset() {
    if (fd_ < 0) return;
    linger abort{1, 0};
    (void)::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    Close();
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// ---- Ordinary users, chatting in the background ----

// Two logged-in users who exchange messages on a background thread while a test attacks the
// server. Each round one of them SENDs to the other, waits for SEND_OK, and the other waits for
// the DELIVER and ACKs it. Anything else is a failure, and so is a stretch longer than `limit`
// without a completed round: the chat has to go on throughout the attack, not just resume after.
class Chatter {
 public:
  ~Chatter() { Stop(); }

  // Creates `<prefix>a` and `<prefix>b`, logs both in and starts chatting every `period`.
  ::testing::AssertionResult Start(std::uint16_t port, const std::string& prefix,
                                   milliseconds period = milliseconds(50),
                                   milliseconds limit = milliseconds(2000)) {
    names_[0] = prefix + "a";
    names_[1] = prefix + "b";
    limit_ = limit;
    for (int i = 0; i < 2; ++i) {
      if (auto result = users_[i].Connect(port); !result) return result;
      if (auto result = users_[i].Hello(); !result) return result;
      if (auto result = users_[i].Create(names_[i]); !result) return result;
      if (auto result = users_[i].Login(names_[i]); !result) return result;
    }
    last_progress_ = Now();
    thread_ = std::thread([this, period] {
      while (!stop_.load()) {
        Round();
        std::this_thread::sleep_for(period);
      }
      NoteProgressGap();  // The time since the last round counts too.
    });
    return ::testing::AssertionSuccess();
  }

  // Stops chatting; the results below are final afterwards.
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  int rounds() const { return rounds_.load(); }
  // The longest stretch without a completed round.
  milliseconds longest_gap() const { return milliseconds(longest_gap_ms_.load()); }

  // Success iff no round failed, at least `min_rounds` completed, and none took longer than
  // the limit to follow the one before.
  ::testing::AssertionResult Healthy(int min_rounds = 3) const {
    std::lock_guard lock(mu_);
    if (!failures_.empty()) {
      auto result = ::testing::AssertionFailure() << failures_.size() << " chat failure(s):";
      for (std::size_t i = 0; i < failures_.size() && i < 10; ++i) {
        result << "\n  " << failures_[i];
      }
      return result;
    }
    if (rounds() < min_rounds) {
      return ::testing::AssertionFailure()
             << "only " << rounds() << " chat rounds, expected at least " << min_rounds;
    }
    if (longest_gap() > limit_) {
      return ::testing::AssertionFailure() << "the chat stalled for " << longest_gap().count()
                                           << " ms (limit " << limit_.count() << " ms)";
    }
    return ::testing::AssertionSuccess()
           << rounds() << " chat rounds, longest gap " << longest_gap().count() << " ms";
  }

 private:
  void Round() {
    const int from = round_ % 2;
    const int to = 1 - from;
    ++round_;
    const std::string text = "round " + std::to_string(round_);
    const std::optional<Frame> sent =
        users_[from].Call(Send{names_[to], static_cast<std::uint64_t>(round_), text});
    if (!Is<SendOk>(sent)) return Fail("SEND: " + Show(sent));
    const std::optional<Frame> push = users_[to].WaitPush();
    if (!Is<Deliver>(push) || Get<Deliver>(push).message.text != text) {
      return Fail("DELIVER of '" + text + "': " + Show(push));
    }
    const std::optional<Frame> acked =
        users_[to].Call(Ack{{Get<Deliver>(push).message.message_id}});
    if (!Is<Ok>(acked)) return Fail("ACK: " + Show(acked));
    NoteProgressGap();
    ++rounds_;
  }

  void NoteProgressGap() {
    const SteadyTime now = Now();
    const long long gap = std::chrono::duration_cast<milliseconds>(now - last_progress_).count();
    if (gap > longest_gap_ms_.load()) longest_gap_ms_ = gap;
    last_progress_ = now;
  }

  void Fail(const std::string& what) {
    std::lock_guard lock(mu_);
    failures_.push_back(what);
  }

  TestClient users_[2];
  std::string names_[2];
  milliseconds limit_{2000};
  int round_ = 0;
  SteadyTime last_progress_;  // The chat thread's only, once started.
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> rounds_{0};
  std::atomic<long long> longest_gap_ms_{0};
  mutable std::mutex mu_;
  std::vector<std::string> failures_;
};

// ---- Fixture ----

class HostileTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    RaiseOwnDescriptorLimit(8192);
  }
};

}  // namespace messenger::test

#endif  // MESSENGER_TESTS_HOSTILE_HOSTILE_SUPPORT_H_

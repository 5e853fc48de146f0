#include "messenger/tls/tls_client_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "messenger/tls/tls_session.h"

namespace messenger {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A Send waiting for the socket to become readable depends on the reader thread's progress,
// which poll() on this thread does not see: it looks again after this long.
constexpr milliseconds kWriteWantsReadRecheck{50};

// Milliseconds from now until `deadline`, rounded up, at least 0.
int MillisUntil(SteadyClock::time_point deadline) {
  const auto left = deadline - SteadyClock::now();
  if (left <= SteadyClock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<milliseconds>(left).count();
  return static_cast<int>(std::min<decltype(ms)>(ms, INT_MAX));
}

short EventsFor(TlsIo io) { return io == TlsIo::kWantWrite ? POLLOUT : POLLIN; }

}  // namespace

struct TlsClientStream::Impl {
  ~Impl() {
    session.reset();
    if (wake_fd >= 0) ::close(wake_fd);
  }

  int fd = -1;
  int wake_fd = -1;  // eventfd: Shutdown() wakes a Receive blocked in poll().
  std::unique_ptr<TlsSession> session;
  std::mutex ssl_mu;   // Held only around each call into `session`, never while waiting.
  std::mutex send_mu;  // One Send at a time, so that calls do not interleave.
  std::atomic<bool> shut_down{false};
  // Guarded by send_mu: a failed Send may leave a record half sent, so none may follow.
  std::optional<Status> send_failure;
};

TlsClientStream::TlsClientStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TlsClientStream::~TlsClientStream() = default;

Result<std::unique_ptr<TlsClientStream>> TlsClientStream::Connect(
    int fd, std::shared_ptr<const TlsClientContext> context, const std::string& server_name,
    milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto impl = std::make_unique<Impl>();
  impl->fd = fd;
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return Status(ErrorCode::kInternal,
                  std::string("cannot make the socket non-blocking: ") + std::strerror(errno));
  }
  impl->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->wake_fd < 0) {
    return Status(ErrorCode::kInternal,
                  std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
  Result<std::unique_ptr<TlsSession>> session =
      TlsSession::Connect(std::move(context), fd, server_name);
  if (!session.ok()) return session.status();
  impl->session = std::move(session).value();

  for (;;) {
    const TlsIo io = impl->session->Handshake();
    if (io == TlsIo::kDone) break;
    if (io != TlsIo::kWantRead && io != TlsIo::kWantWrite) {
      return Status(ErrorCode::kTlsFailed, impl->session->error());
    }
    const int wait_ms = MillisUntil(deadline);
    if (wait_ms == 0) {
      return Status(ErrorCode::kTimeout, "the TLS handshake did not complete within " +
                                             std::to_string(timeout.count()) + " ms");
    }
    pollfd socket = {fd, EventsFor(io), 0};
    if (::poll(&socket, 1, wait_ms) < 0 && errno != EINTR) {
      return Status(ErrorCode::kTlsFailed, std::string("poll failed: ") + std::strerror(errno));
    }
  }
  return std::unique_ptr<TlsClientStream>(new TlsClientStream(std::move(impl)));
}

Status TlsClientStream::Send(std::span<const std::uint8_t> bytes, milliseconds timeout) {
  Impl& s = *impl_;
  std::lock_guard send_lock(s.send_mu);
  if (s.send_failure) return *s.send_failure;
  // The timeout bounds a wait without progress, as SO_SNDTIMEO does for a plain socket: a large
  // send to a slow but reading peer is not a stalled one.
  auto deadline = SteadyClock::now() + timeout;
  const auto fail = [&](Status status) {
    s.send_failure = status;
    return status;
  };
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    if (s.shut_down.load()) {
      return fail(Status(ErrorCode::kDisconnected, "the connection was shut down"));
    }
    TlsIo io;
    std::size_t written = 0;
    std::string error;
    {
      std::lock_guard lock(s.ssl_mu);
      io = s.session->Write(bytes.subspan(sent), written);
      if (io == TlsIo::kError) error = s.session->error();
    }
    if (io == TlsIo::kDone) {
      sent += written;
      deadline = SteadyClock::now() + timeout;
      continue;
    }
    if (io != TlsIo::kWantRead && io != TlsIo::kWantWrite) {
      return fail(Status(ErrorCode::kDisconnected, error));
    }
    int wait_ms = MillisUntil(deadline);
    if (wait_ms == 0) {
      return fail(Status(ErrorCode::kTimeout,
                         "the peer took nothing for " + std::to_string(timeout.count()) + " ms"));
    }
    if (io == TlsIo::kWantRead) wait_ms = std::min<int>(wait_ms, kWriteWantsReadRecheck.count());
    pollfd socket = {s.fd, EventsFor(io), 0};
    if (::poll(&socket, 1, wait_ms) < 0 && errno != EINTR) {
      return fail(
          Status(ErrorCode::kDisconnected, std::string("poll failed: ") + std::strerror(errno)));
    }
  }
  return Status::Ok();
}

Result<std::size_t> TlsClientStream::Receive(std::span<std::uint8_t> buffer) {
  Impl& s = *impl_;
  for (;;) {
    if (s.shut_down.load()) return std::size_t{0};
    TlsIo io;
    std::size_t read = 0;
    std::string error;
    {
      std::lock_guard lock(s.ssl_mu);
      // Always read before waiting: decrypted bytes left from the last record are invisible to
      // poll().
      io = s.session->Read(buffer, read);
      if (io == TlsIo::kError) error = s.session->error();
    }
    switch (io) {
      case TlsIo::kDone:
        return read;
      case TlsIo::kClosed:
        return std::size_t{0};
      case TlsIo::kError:
        if (s.shut_down.load()) return std::size_t{0};
        return Status(ErrorCode::kDisconnected, error);
      case TlsIo::kWantRead:
      case TlsIo::kWantWrite:
        break;
    }
    pollfd fds[2] = {{s.fd, EventsFor(io), 0}, {s.wake_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
      return Status(ErrorCode::kDisconnected, std::string("poll failed: ") + std::strerror(errno));
    }
    if (fds[1].revents & POLLIN) {
      std::uint64_t ignored;
      (void)!::read(s.wake_fd, &ignored, sizeof ignored);
    }
  }
}

void TlsClientStream::Shutdown() {
  Impl& s = *impl_;
  if (s.shut_down.exchange(true)) return;
  {
    std::lock_guard lock(s.ssl_mu);
    s.session->Close();
  }
  // Ends the TCP connection both ways: the server sees the end, and a Send waiting for POLLOUT
  // wakes (a shut-down socket polls writable).
  (void)::shutdown(s.fd, SHUT_RDWR);
  const std::uint64_t one = 1;
  (void)!::write(s.wake_fd, &one, sizeof one);
}

std::string TlsClientStream::Description() const {
  std::lock_guard lock(impl_->ssl_mu);
  return impl_->session->Description();
}

}  // namespace messenger

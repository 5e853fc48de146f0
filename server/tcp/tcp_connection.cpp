#include "tcp_connection.h"

#include <Poco/Exception.h>
#include <Poco/Net/SocketImpl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "messenger/codec/limits.h"
#include "messenger/server/clock.h"
#include "messenger/server/wire_session.h"

namespace messenger {
namespace {

// Bytes read from the socket per recv(): the most a connection holds of unprocessed input.
constexpr std::size_t kReadChunk = 64 * 1024;
// Unsent output above which no more requests are read: a client that pipelines without reading
// its answers is slowed down by TCP flow control rather than growing this buffer.
constexpr std::size_t kPauseReadingBytes = 256 * 1024;
// Written bytes after which the sent prefix of the outbound buffer is dropped.
constexpr std::size_t kCompactBytes = 64 * 1024;
// After the last write of a graceful close: how long input is drained so that unread bytes do
// not turn the close into a reset that could destroy the final frame in flight.
constexpr std::uint64_t kLingerMs = 100;
// The kernel send buffer of a connection (the kernel doubles the value for its bookkeeping).
// Fixed, because auto-tuning lets it grow to tcp_wmem's maximum (often 4 MiB): a client that
// stops reading could then swallow hundreds of messages into kernel memory without the
// connection ever stalling, so the send timeout would never see it. With this bound the stall
// reaches the outbound buffer after ~128 KiB, and kernel memory per connection stays small.
constexpr int kSendBufferBytes = 64 * 1024;
// TCP keepalive: probe after 60 s of silence, every 10 s, give up after 6 unanswered probes,
// so a vanished peer is noticed well before the idle timeout on a busy connection.
constexpr int kKeepIdleSeconds = 60;
constexpr int kKeepIntervalSeconds = 10;
constexpr int kKeepCount = 6;
// After refusing a connection over TLS: how long input is drained at most before closing, as
// kLingerMs for a served connection (the client's HELLO follows its handshake at once).
constexpr std::chrono::milliseconds kRefusalLinger{200};

void SetIntOption(int fd, int level, int name, int value) {
  // Best effort: a socket option the kernel refuses only weakens liveness detection.
  (void)::setsockopt(fd, level, name, &value, sizeof value);
}

// True for the request types whose runs WireSession answers with one commit.
bool SharesCommits(std::uint8_t type) {
  return type == static_cast<std::uint8_t>(MessageType::kSend) ||
         type == static_cast<std::uint8_t>(MessageType::kAck);
}

// True iff `bytes` begins with a complete frame of type `type`.
bool StartsWithWholeFrameOf(std::uint8_t type, std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kLengthPrefixSize + kFrameHeaderSize) return false;
  const std::uint32_t length = (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
                               (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
  return length >= kFrameHeaderSize && bytes.size() - kLengthPrefixSize >= length &&
         bytes[kLengthPrefixSize] == type;
}

}  // namespace

Bytes EncodeServerBusy(const std::string& message) {
  Bytes frame;
  const Status status = EncodeFrame(Frame{0, Error{ErrorCode::kServerBusy, message}}, frame);
  (void)status;  // The messages are constant ASCII text, which always encodes.
  return frame;
}

void AnswerServerBusy(int fd, const Bytes& busy_frame) {
  if (!busy_frame.empty()) {
    (void)::send(fd, busy_frame.data(), busy_frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ::shutdown(fd, SHUT_WR);
  // Unread input (a HELLO sent right after connect) would turn the close into a reset; discard
  // what has already arrived, a bounded amount so a flood cannot hold the calling thread.
  std::uint8_t sink[1024];
  for (int i = 0; i < 16; ++i) {
    if (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0) break;
  }
}

std::string AnswerServerBusyTls(int fd, std::shared_ptr<const TlsServerContext> context,
                                const Bytes& busy_frame, std::chrono::milliseconds timeout) {
  using SteadyClock = std::chrono::steady_clock;
  const auto deadline = SteadyClock::now() + timeout;
  const auto wait_ms = [](SteadyClock::time_point until) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - SteadyClock::now());
    return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, INT_MAX));
  };
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return std::strerror(errno);
  Result<std::unique_ptr<TlsSession>> created = TlsSession::Accept(std::move(context), fd);
  if (!created.ok()) return created.status().message();
  TlsSession& tls = *created.value();
  std::string why;
  std::size_t sent = 0;
  for (;;) {
    TlsIo io;
    if (!tls.established()) {
      io = tls.Handshake();
      if (io == TlsIo::kDone) continue;
    } else if (sent < busy_frame.size()) {
      std::size_t written = 0;
      io = tls.Write(std::span<const std::uint8_t>(busy_frame).subspan(sent), written);
      sent += written;
      if (io == TlsIo::kDone) continue;
    } else {
      break;
    }
    if (io != TlsIo::kWantRead && io != TlsIo::kWantWrite) {
      why = (tls.established() ? "TLS error: " : "TLS handshake failed: ") + tls.error();
      break;
    }
    const int ms = wait_ms(deadline);
    if (ms == 0) {
      why = "timed out after " + std::to_string(timeout.count()) + " ms";
      break;
    }
    pollfd socket = {fd, static_cast<short>(io == TlsIo::kWantWrite ? POLLOUT : POLLIN), 0};
    (void)::poll(&socket, 1, ms);
  }
  if (why.empty()) tls.Close();
  ::shutdown(fd, SHUT_WR);
  // As AnswerServerBusy, but the client's HELLO may still be on its way: wait for it briefly.
  const auto linger_until = std::min(deadline, SteadyClock::now() + kRefusalLinger);
  std::uint8_t sink[1024];
  for (int i = 0; i < 16; ++i) {
    pollfd socket = {fd, POLLIN, 0};
    if (::poll(&socket, 1, wait_ms(linger_until)) <= 0) break;
    if (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0) break;
  }
  return why;
}

// ---- TcpFrontDoor::Shared ----

TcpFrontDoor::Shared::Shared(Messenger& messenger_in, const TcpOptions& options_in)
    : messenger(messenger_in), options(options_in), logger(Poco::Logger::get("messenger.tcp")) {}

bool TcpFrontDoor::Shared::Register(TcpConnection* connection) {
  std::lock_guard lock(mu_);
  live_.insert(connection);
  return !ending_all_;
}

void TcpFrontDoor::Shared::Unregister(TcpConnection* connection) {
  std::lock_guard lock(mu_);
  live_.erase(connection);
  admitted.fetch_sub(1);
  if (live_.empty()) empty_.notify_all();
}

void TcpFrontDoor::Shared::EndAll() {
  std::lock_guard lock(mu_);
  ending_all_ = true;
  // Holding mu_ keeps each connection alive during the call (Unregister waits for it); End()
  // only queues a frame and signals, so this never waits on a client.
  for (TcpConnection* connection : live_) {
    connection->End(EndReason::kServerShutdown, "server is shutting down");
  }
}

void TcpFrontDoor::Shared::AbortAll() {
  std::lock_guard lock(mu_);
  for (TcpConnection* connection : live_) connection->Abort();
}

bool TcpFrontDoor::Shared::WaitUntilEmpty(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return empty_.wait_for(lock, timeout, [this] { return live_.empty(); });
}

int TcpFrontDoor::Shared::live() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(live_.size());
}

bool TcpFrontDoor::Shared::BeginTlsRefusal() {
  std::lock_guard lock(mu_);
  if (tls_refusals_ >= kMaxTlsRefusals) return false;
  ++tls_refusals_;
  return true;
}

void TcpFrontDoor::Shared::EndTlsRefusal() {
  std::lock_guard lock(mu_);
  if (--tls_refusals_ == 0) tls_refusals_done_.notify_all();
}

bool TcpFrontDoor::Shared::WaitForTlsRefusals(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return tls_refusals_done_.wait_for(lock, timeout, [this] { return tls_refusals_ == 0; });
}

// ---- TcpConnection ----

TcpConnection::TcpConnection(const Poco::Net::StreamSocket& socket,
                             std::shared_ptr<TcpFrontDoor::Shared> shared)
    : Poco::Net::TCPServerConnection(socket), shared_(std::move(shared)), logger_(shared_->logger) {
  {
    std::lock_guard lock(shared_->descriptors_mu);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) wake_fd_error_ = errno;
  }
  try {
    peer_ = socket.peerAddress().toString();
  } catch (const Poco::Exception&) {
    peer_ = "(unknown peer)";  // Already disconnected; the loop notices.
  }
  label_ = "connection from " + peer_;
  if (!shared_->Register(this)) End(EndReason::kServerShutdown, "server is shutting down");
}

TcpConnection::~TcpConnection() {
  shared_->Unregister(this);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void TcpConnection::run() {
  try {
    Serve();
  } catch (const Poco::Exception& e) {
    logger_.error(label_ + ": unexpected error, closing: " + e.displayText());
  } catch (const std::exception& e) {
    logger_.error(label_ + ": unexpected error, closing: " + e.what());
  }
}

void TcpConnection::Serve() {
  if (wake_fd_ < 0) {
    // Out of descriptors (see ListeningSocketImpl): the client is told so rather than finding
    // its connection closed without a word.
    const Bytes busy = EncodeServerBusy("server is out of file descriptors; try later");
    if (shared_->options.tls) {
      (void)AnswerServerBusyTls(socket().impl()->sockfd(), shared_->options.tls, busy,
                                kTlsRefusalTimeout);
    } else {
      AnswerServerBusy(socket().impl()->sockfd(), busy);
    }
    logger_.error(label_ + ": refused with SERVER_BUSY: cannot create an eventfd: " +
                  std::strerror(wake_fd_error_));
    shared_->messenger.metrics()
        .connections_refused(Transport::kWire, RefuseReason::kFdExhausted)
        .Add();
    // SERVER_BUSY is an ERROR like any other (over TLS it may still fail in the handshake).
    shared_->messenger.metrics().errors(Transport::kWire, ErrorCode::kServerBusy).Add();
    return;
  }
  Poco::Net::StreamSocket& sock = socket();
  fd_ = sock.impl()->sockfd();
  sock.setBlocking(false);
  sock.setNoDelay(true);
  sock.setKeepAlive(true);
  SetIntOption(fd_, SOL_SOCKET, SO_SNDBUF, kSendBufferBytes);
  SetIntOption(fd_, IPPROTO_TCP, TCP_KEEPIDLE, kKeepIdleSeconds);
  SetIntOption(fd_, IPPROTO_TCP, TCP_KEEPINTVL, kKeepIntervalSeconds);
  SetIntOption(fd_, IPPROTO_TCP, TCP_KEEPCNT, kKeepCount);

  Clock& clock = SystemClock();
  const TcpOptions& options = shared_->options;
  std::uint64_t now = clock.SteadyMs();
  WireSession session(shared_->messenger, *this, options.wire, now);
  session_id_ = session.id();
  label_ = "session " + std::to_string(session_id_) + " from " + peer_;
  if (options.tls) {
    // The handshake counts against the login timeout: a connection that stalls in it closes
    // when a silent plain one would.
    if (!CompleteTlsHandshake(session.Deadline())) return;
    logger_.information(label_ + ": connected over " + tls_->Description() + " (" +
                        std::to_string(shared_->live()) + " live)");
  } else {
    logger_.information(label_ + ": connected (" + std::to_string(shared_->live()) + " live)");
  }

  // Not value-initialised: recv() touches only the pages it fills, so an idle connection does not
  // keep 64 KiB of zeroes resident (about 90 KiB per idle session with them, 10,000 sessions).
  const std::unique_ptr<std::uint8_t[]> input(new std::uint8_t[kReadChunk]);
  std::size_t input_begin = 0;
  std::size_t input_end = 0;
  Bytes replies;
  bool session_open = true;  // False once the session answered a fatal error or timed out.
  bool peer_eof = false;
  CloseReason reason = CloseReason::kPeerClosed;
  int error = 0;

  for (;;) {
    now = clock.SteadyMs();
    bool ending;
    std::size_t pending;
    {
      std::lock_guard lock(mu_);
      if (abort_) {
        reason = CloseReason::kAborted;
        break;
      }
      if (overflow_) {
        reason = CloseReason::kSlowConsumerOverflow;
        break;
      }
      ending = ending_;
      pending = outbound_.size() - outbound_sent_;
    }

    // Hand buffered input to the session one frame at a time, pausing while output backs up;
    // but whole SENDs following a SEND (ACKs following an ACK) go with it, so that pipelined
    // SENDs (ACKs) share one commit. Their replies are small, so the pause still bounds output.
    while (session_open && !ending && input_begin < input_end && pending < kPauseReadingBytes) {
      const std::span<const std::uint8_t> available(input.get() + input_begin,
                                                    input_end - input_begin);
      std::size_t take = tap_.BytesToFrameEnd(available);
      std::optional<TappedFrame> frame = tap_.Consume(available.first(take));
      if (frame) NoteRequest(*frame);
      for (std::size_t run = 1;
           frame && SharesCommits(frame->type) && run < WireSession::kMaxRequestsPerCommit &&
           StartsWithWholeFrameOf(frame->type, available.subspan(take));
           ++run) {
        const std::size_t next = tap_.BytesToFrameEnd(available.subspan(take));
        frame = tap_.Consume(available.subspan(take, next));
        if (frame) NoteRequest(*frame);
        take += next;
      }
      const std::span<const std::uint8_t> chunk = available.first(take);
      input_begin += chunk.size();
      replies.clear();
      const bool keep_open = session.OnBytes(chunk, now, replies);
      NoteReplies(replies);
      pending = AppendOutbound(replies);
      if (!keep_open) {
        session_open = false;
        reason = CloseReason::kProtocolError;
      }
    }
    if (input_begin == input_end) input_begin = input_end = 0;

    if (session_open && !ending && now >= session.Deadline()) {
      replies.clear();
      if (!session.OnTick(now, replies)) {
        session_open = false;
        reason = CloseReason::kTimeout;
      }
      NoteReplies(replies);
      pending = AppendOutbound(replies);
    }

    // `pending` and `ending` come from one look under the lock: a SESSION_ENDED queued after it
    // wakes the loop again, one queued before it is counted in `pending`.
    if (!Flush(now, pending, ending, error)) {
      reason = CloseReason::kWriteError;
      break;
    }
    if (ending && session_open) reason = CloseReason::kEnded;
    const bool finished = !session_open || ending || (peer_eof && input_begin == input_end);
    if (finished && pending == 0) break;
    if (pending > 0 && stalled_since_ms_ != 0 &&
        now - stalled_since_ms_ >= options.send_timeout_ms) {
      reason = CloseReason::kSlowConsumerStalled;
      break;
    }

    const bool want_read = session_open && !ending && !peer_eof && input_begin == input_end &&
                           pending < kPauseReadingBytes;
    // Decrypted input already inside the TLS session: poll() cannot see it, so do not wait.
    const bool tls_buffered = want_read && tls_ && tls_->HasBufferedInput();
    std::uint64_t wake_at = std::numeric_limits<std::uint64_t>::max();
    if (session_open && !ending) wake_at = session.Deadline();
    if (pending > 0 && stalled_since_ms_ != 0) {
      wake_at = std::min(wake_at, stalled_since_ms_ + options.send_timeout_ms);
    }
    int timeout_ms = -1;
    if (wake_at != std::numeric_limits<std::uint64_t>::max()) {
      // A deadline already past is retried after a short pause rather than in a busy loop.
      timeout_ms =
          wake_at > now ? static_cast<int>(std::min<std::uint64_t>(wake_at - now, INT_MAX)) : 10;
    }
    if (tls_buffered) timeout_ms = 0;
    // TLS may need the other direction: a read may have to write (and a write to read) first.
    int events = 0;
    if (want_read) events |= (tls_ && tls_->read_wants_write()) ? POLLOUT : POLLIN;
    if (pending > 0) events |= (tls_ && tls_->write_wants_read()) ? POLLIN : POLLOUT;
    pollfd fds[2] = {};
    fds[0].fd = fd_;
    fds[0].events = static_cast<short>(events);
    fds[1].fd = wake_fd_;
    fds[1].events = POLLIN;
    const int ready = ::poll(fds, 2, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      error = errno;
      reason = CloseReason::kReadError;
      break;
    }
    if (fds[1].revents & POLLIN) {
      std::uint64_t ignored;
      (void)!::read(wake_fd_, &ignored, sizeof ignored);
    }
    const bool readable = (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 || tls_buffered ||
                          (tls_ && tls_->read_wants_write() && (fds[0].revents & POLLOUT));
    if (want_read && readable) {
      std::size_t n = 0;
      const IoOutcome outcome = ReceiveSome(input.get(), kReadChunk, n, error);
      if (outcome == IoOutcome::kProgress) {
        input_begin = 0;
        input_end = n;
      } else if (outcome == IoOutcome::kEnd) {
        peer_eof = true;
        reason = CloseReason::kPeerClosed;
      } else if (outcome == IoOutcome::kError) {
        reason = CloseReason::kReadError;
        break;
      }
    }
  }

  const bool hard = reason == CloseReason::kSlowConsumerStalled ||
                    reason == CloseReason::kSlowConsumerOverflow ||
                    reason == CloseReason::kAborted || reason == CloseReason::kWriteError ||
                    reason == CloseReason::kReadError;
  {
    std::lock_guard lock(mu_);
    ending_ = true;  // No more pushes are queued from here on.
  }
  const std::string text = label_ + (user_.empty() ? "" : " (" + user_ + ")") +
                           ": closed: " + CloseReasonText(reason, error);
  if (reason == CloseReason::kSlowConsumerStalled || reason == CloseReason::kSlowConsumerOverflow) {
    shared_->messenger.metrics().slow_consumer_disconnects(Transport::kWire).Add();
    logger_.warning(text);
  } else {
    logger_.information(text);
  }
  CloseSocket(hard);
  // `session` is destroyed here: it detaches, and messages handed to this connection but not
  // ACKed become undelivered again.
}

void TcpConnection::Deliver(const StoredMessage& message) {
  Bytes frame;
  const Status status = EncodeFrame(Frame{0, messenger::Deliver{message}}, frame);
  if (!status.ok()) {
    logger_.error(label_ + ": cannot encode DELIVER of message " +
                  std::to_string(message.message_id) + ": " + status.ToString());
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (ending_ || abort_ || overflow_) return;  // It stays stored; the next session gets it.
    if (outbound_.size() - outbound_sent_ + frame.size() > shared_->options.max_outbound_bytes) {
      overflow_ = true;
    } else {
      outbound_.insert(outbound_.end(), frame.begin(), frame.end());
    }
  }
  Wake();
}

void TcpConnection::End(EndReason reason, const std::string& message) {
  Bytes frame;
  const Status status = EncodeFrame(Frame{0, SessionEnded{reason, message}}, frame);
  {
    std::lock_guard lock(mu_);
    if (ending_ || abort_) return;
    ending_ = true;
    end_reason_ = reason;
    if (status.ok()) outbound_.insert(outbound_.end(), frame.begin(), frame.end());
  }
  Wake();
}

void TcpConnection::Abort() {
  {
    std::lock_guard lock(mu_);
    abort_ = true;
  }
  Wake();
}

std::size_t TcpConnection::AppendOutbound(const Bytes& bytes) {
  std::lock_guard lock(mu_);
  // SESSION_ENDED is the last frame of a connection: a reply the session produced after it
  // (a request that was in progress when the session was taken over or the server stopped) is
  // dropped; a client retries, and SEND's client_message_id makes the retry safe.
  if (ending_) return outbound_.size() - outbound_sent_;
  // Replies are not held to max_outbound_bytes: reading pauses at kPauseReadingBytes, so they
  // add at most one reply beyond it.
  outbound_.insert(outbound_.end(), bytes.begin(), bytes.end());
  return outbound_.size() - outbound_sent_;
}

bool TcpConnection::Flush(std::uint64_t now_ms, std::size_t& pending, bool& ending, int& error) {
  std::lock_guard lock(mu_);
  bool progress = false;
  while (outbound_sent_ < outbound_.size()) {
    std::size_t n = 0;
    const IoOutcome outcome =
        SendSome(outbound_.data() + outbound_sent_, outbound_.size() - outbound_sent_, n, error);
    if (outcome == IoOutcome::kProgress) {
      outbound_sent_ += n;
      progress = true;
    } else if (outcome == IoOutcome::kBlocked) {
      break;
    } else {
      return false;
    }
  }
  if (outbound_sent_ == outbound_.size()) {
    outbound_.clear();
    outbound_sent_ = 0;
    stalled_since_ms_ = 0;
  } else {
    if (progress || stalled_since_ms_ == 0) stalled_since_ms_ = now_ms;
    if (outbound_sent_ >= kCompactBytes && outbound_sent_ * 2 >= outbound_.size()) {
      outbound_.erase(outbound_.begin(),
                      outbound_.begin() + static_cast<std::ptrdiff_t>(outbound_sent_));
      outbound_sent_ = 0;
    }
  }
  pending = outbound_.size() - outbound_sent_;
  ending = ending_;
  return true;
}

bool TcpConnection::CompleteTlsHandshake(std::uint64_t deadline) {
  Result<std::unique_ptr<TlsSession>> created = TlsSession::Accept(shared_->options.tls, fd_);
  if (!created.ok()) {
    logger_.error(label_ + ": cannot start TLS: " + created.status().message());
    CloseSocket(/*hard=*/true);
    return false;
  }
  tls_ = std::move(created).value();
  Clock& clock = SystemClock();
  for (;;) {
    const TlsIo io = tls_->Handshake();
    if (io == TlsIo::kDone) return true;
    if (io != TlsIo::kWantRead && io != TlsIo::kWantWrite) {
      logger_.information(label_ + ": TLS handshake failed: " + tls_->error());
      shared_->messenger.metrics()
          .connections_refused(Transport::kWire, RefuseReason::kTlsHandshake)
          .Add();
      // Graceful: the alert OpenSSL has sent must not be destroyed by a reset.
      CloseSocket(/*hard=*/false);
      return false;
    }
    {
      std::lock_guard lock(mu_);
      if (abort_ || ending_) {
        logger_.information(label_ + ": closed during the TLS handshake: server shutdown");
        CloseSocket(/*hard=*/true);
        return false;
      }
    }
    const std::uint64_t now = clock.SteadyMs();
    if (now >= deadline) {
      logger_.information(label_ + ": TLS handshake failed: not completed within the login " +
                          "timeout (" + std::to_string(shared_->options.wire.login_timeout_ms) +
                          " ms)");
      shared_->messenger.metrics()
          .connections_refused(Transport::kWire, RefuseReason::kTlsHandshake)
          .Add();
      CloseSocket(/*hard=*/true);
      return false;
    }
    pollfd fds[2] = {};
    fds[0].fd = fd_;
    fds[0].events = static_cast<short>(io == TlsIo::kWantWrite ? POLLOUT : POLLIN);
    fds[1].fd = wake_fd_;
    fds[1].events = POLLIN;
    const int ready =
        ::poll(fds, 2, static_cast<int>(std::min<std::uint64_t>(deadline - now, INT_MAX)));
    if (ready < 0 && errno != EINTR) {
      logger_.information(label_ + ": TLS handshake failed: poll: " + std::strerror(errno));
      CloseSocket(/*hard=*/true);
      return false;
    }
    if (ready > 0 && (fds[1].revents & POLLIN)) {
      std::uint64_t ignored;
      (void)!::read(wake_fd_, &ignored, sizeof ignored);
    }
  }
}

TcpConnection::IoOutcome TcpConnection::ReceiveSome(std::uint8_t* buffer, std::size_t capacity,
                                                    std::size_t& received, int& error) {
  received = 0;
  if (!tls_) {
    const ssize_t n = ::recv(fd_, buffer, capacity, 0);
    if (n > 0) {
      received = static_cast<std::size_t>(n);
      return IoOutcome::kProgress;
    }
    if (n == 0) return IoOutcome::kEnd;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return IoOutcome::kBlocked;
    error = errno;
    return IoOutcome::kError;
  }
  // A TLS read yields at most one record (16 KiB); fill the buffer as far as input allows.
  while (received < capacity) {
    std::size_t n = 0;
    const TlsIo io = tls_->Read(std::span<std::uint8_t>(buffer + received, capacity - received), n);
    if (io == TlsIo::kDone) {
      received += n;
      continue;
    }
    if (io == TlsIo::kWantRead || io == TlsIo::kWantWrite) break;
    if (received > 0) break;  // The end or the error shows again on the next call.
    if (io == TlsIo::kClosed) return IoOutcome::kEnd;
    tls_error_ = tls_->error();
    return IoOutcome::kError;
  }
  return received > 0 ? IoOutcome::kProgress : IoOutcome::kBlocked;
}

TcpConnection::IoOutcome TcpConnection::SendSome(const std::uint8_t* data, std::size_t size,
                                                 std::size_t& sent, int& error) {
  sent = 0;
  if (tls_) {
    const TlsIo io = tls_->Write(std::span<const std::uint8_t>(data, size), sent);
    if (io == TlsIo::kDone) return IoOutcome::kProgress;
    if (io == TlsIo::kWantRead || io == TlsIo::kWantWrite) return IoOutcome::kBlocked;
    tls_error_ = tls_->error();
    return IoOutcome::kError;
  }
  for (;;) {
    const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent = static_cast<std::size_t>(n);
      return IoOutcome::kProgress;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return IoOutcome::kBlocked;
    error = n < 0 ? errno : EPIPE;
    return IoOutcome::kError;
  }
}

void TcpConnection::Wake() {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void TcpConnection::NoteRequest(const TappedFrame& frame) {
  if (!frame.login_username.empty()) pending_login_.emplace(frame.request_id, frame.login_username);
  if (logger_.debug()) {
    logger_.debug(label_ + ": -> " +
                  std::string(MessageTypeName(static_cast<MessageType>(frame.type))) + " #" +
                  std::to_string(frame.request_id) + " (" + std::to_string(frame.size) + " bytes)");
  }
}

void TcpConnection::NoteReplies(const Bytes& replies) {
  if (replies.empty()) return;
  const bool debug = logger_.debug();
  ReplySummary summary = SummarizeReplies(replies, debug);
  if (debug) logger_.debug(label_ + ": <- " + summary.description);
  if (summary.login_ok_id && pending_login_ && pending_login_->first == *summary.login_ok_id) {
    user_ = pending_login_->second;
    logger_.information(label_ + ": logged in as " + user_);
  }
  if (summary.has_ok && !user_.empty() && !shared_->messenger.IsLoggedIn(session_id_)) {
    logger_.information(label_ + ": " + user_ + " logged out");
    user_.clear();
  }
  if (summary.fatal_error) fatal_error_ = std::move(summary.fatal_error);
  if (summary.session_ended) session_ended_ = std::move(summary.session_ended);
}

std::string TcpConnection::CloseReasonText(CloseReason reason, int error) const {
  switch (reason) {
    case CloseReason::kPeerClosed:
      return "peer closed the connection";
    case CloseReason::kReadError:
      return "receive failed: " + (tls_error_.empty() ? std::strerror(error) : tls_error_);
    case CloseReason::kWriteError:
      return "send failed: " + (tls_error_.empty() ? std::strerror(error) : tls_error_);
    case CloseReason::kProtocolError:
      if (fatal_error_) {
        return "fatal protocol error " + std::string(ErrorCodeName(fatal_error_->code)) + " (" +
               fatal_error_->message + ")";
      }
      return "fatal protocol error";
    case CloseReason::kTimeout:
      if (session_ended_ && session_ended_->reason == EndReason::kLoginTimeout) {
        return "login timeout";
      }
      return "idle timeout";
    case CloseReason::kEnded: {
      std::lock_guard lock(mu_);
      if (end_reason_ == EndReason::kTakeover) return "session taken over by a new login";
      if (end_reason_ == EndReason::kServerShutdown) return "server shutdown";
      return "session ended";
    }
    case CloseReason::kSlowConsumerStalled:
      return "slow consumer: no write progress for " +
             std::to_string(shared_->options.send_timeout_ms) + " ms";
    case CloseReason::kSlowConsumerOverflow:
      return "slow consumer: more than " + std::to_string(shared_->options.max_outbound_bytes) +
             " bytes of pushes unsent";
    case CloseReason::kAborted:
      return "closed without flushing at shutdown";
  }
  return "unknown";
}

void TcpConnection::CloseSocket(bool hard) {
  try {
    if (hard) {
      // Drop whatever is still queued in the kernel for a client that is not reading.
      socket().setLinger(true, 0);
    } else {
      if (tls_) tls_->Close();  // close_notify, when nothing is half written.
      ::shutdown(fd_, SHUT_WR);
      Clock& clock = SystemClock();
      const std::uint64_t until = clock.SteadyMs() + kLingerMs;
      std::uint8_t sink[4096];
      for (std::uint64_t now = clock.SteadyMs(); now < until; now = clock.SteadyMs()) {
        pollfd fd = {fd_, POLLIN, 0};
        if (::poll(&fd, 1, static_cast<int>(until - now)) <= 0) break;
        const ssize_t n = ::recv(fd_, sink, sizeof sink, 0);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) break;
      }
    }
    socket().close();
  } catch (const Poco::Exception&) {
    // Closing a socket the peer already reset: nothing left to do.
  }
}

}  // namespace messenger

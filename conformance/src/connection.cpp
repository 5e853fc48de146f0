#include "connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "messenger/codec/limits.h"

namespace messenger::conformance {
namespace {

int MillisUntil(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 3'600'000));
}

std::uint32_t BigEndian32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace

std::string Hex(std::span<const std::uint8_t> bytes, std::size_t limit) {
  std::string out;
  char pair[4];
  for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
    std::snprintf(pair, sizeof pair, "%02x", bytes[i]);
    if (!out.empty()) out += ' ';
    out += pair;
  }
  if (bytes.size() > limit) out += " ... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

Result<int> ConnectTcp(const std::string& host, std::uint16_t port,
                       std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return Status(ErrorCode::kConnectionFailed,
                  "cannot resolve " + host + ": " + ::gai_strerror(rc));
  }
  std::string error = "no address";
  int connected = -1;
  const Clock::time_point deadline = Clock::now() + timeout;
  for (addrinfo* a = found; a != nullptr && connected < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p = {fd, POLLOUT, 0};
      rc = ::poll(&p, 1, MillisUntil(deadline)) == 1 ? 0 : -1;
      int so_error = rc == 0 ? 0 : ETIMEDOUT;
      socklen_t len = sizeof so_error;
      if (rc == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      errno = so_error;
      rc = so_error == 0 ? 0 : -1;
    }
    if (rc != 0) {
      error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connected = fd;
  }
  ::freeaddrinfo(found);
  if (connected < 0) {
    return Status(ErrorCode::kConnectionFailed,
                  "cannot connect to " + host + ":" + service + ": " + error);
  }
  return connected;
}

Connection::~Connection() { Close(); }

Status Connection::Open(const std::string& host, std::uint16_t port,
                        std::chrono::milliseconds timeout, const ClientTls& tls) {
  Close();
  const Clock::time_point deadline = Clock::now() + timeout;
  Result<int> fd = ConnectTcp(host, port, timeout);
  if (!fd.ok()) return fd.status();
  fd_ = *fd;
  buffer_.clear();
  inbox_.clear();
  unframed_ = closed_ = false;
  close_detail_.clear();
  write_error_.clear();
  if (!tls.enabled) return Status::Ok();

  const std::string where = host + ":" + std::to_string(port);
  Result<std::shared_ptr<const TlsClientContext>> context =
      TlsClientContext::Create(tls.ca_file, /*insecure=*/false);
  Result<std::unique_ptr<TlsSession>> session =
      context.ok()
          ? TlsSession::Connect(*context, fd_, tls.server_name.empty() ? host : tls.server_name)
          : Result<std::unique_ptr<TlsSession>>(context.status());
  if (!session.ok()) {
    Close();
    return session.status();
  }
  tls_ = std::move(session).value();
  for (;;) {
    const TlsIo io = tls_->Handshake();
    if (io == TlsIo::kDone) return Status::Ok();
    if (io == TlsIo::kError || io == TlsIo::kClosed) {
      const std::string error = "TLS with " + where + " failed: " + tls_->error();
      Close();
      return Status(ErrorCode::kTlsFailed, error);
    }
    if (!WaitFor(io, deadline)) {
      Close();
      return Status(ErrorCode::kTimeout, "the TLS handshake with " + where + " took over " +
                                             std::to_string(timeout.count()) + " ms");
    }
  }
}

bool Connection::WaitFor(TlsIo io, Clock::time_point deadline) const {
  pollfd p = {fd_, static_cast<short>(io == TlsIo::kWantWrite ? POLLOUT : POLLIN), 0};
  return ::poll(&p, 1, MillisUntil(deadline)) > 0;
}

Status Connection::Write(std::span<const std::uint8_t> bytes, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::size_t done = 0;
  while (tls_ && done < bytes.size()) {
    std::size_t written = 0;
    const TlsIo io = tls_->Write(bytes.subspan(done), written);
    if (io == TlsIo::kDone) {
      done += written;
    } else if (io == TlsIo::kError || io == TlsIo::kClosed) {
      write_error_ = "writing failed: " + tls_->error();
      return Status(ErrorCode::kDisconnected, write_error_);
    } else if (!WaitFor(io, deadline)) {
      write_error_ =
          "the server took no more bytes within " + std::to_string(timeout.count()) + " ms";
      return Status(ErrorCode::kTimeout, write_error_);
    }
  }
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p = {fd_, POLLOUT, 0};
      if (::poll(&p, 1, MillisUntil(deadline)) <= 0) {
        write_error_ =
            "the server took no more bytes within " + std::to_string(timeout.count()) + " ms";
        return Status(ErrorCode::kTimeout, write_error_);
      }
      continue;
    }
    write_error_ = std::string("writing failed: ") + std::strerror(errno);
    return Status(ErrorCode::kDisconnected, write_error_);
  }
  return Status::Ok();
}

Status Connection::SendRequest(const Frame& frame, std::chrono::milliseconds timeout) {
  Bytes bytes;
  if (const Status s = EncodeFrame(frame, bytes); !s.ok()) return s;
  return Write(bytes, timeout);
}

bool Connection::Receive(Clock::time_point deadline) {
  if (fd_ < 0 || closed_) return false;
  // ReadAvailable leaves nothing inside the TLS session, so the socket tells when more comes.
  if (!WaitFor(tls_ && tls_->read_wants_write() ? TlsIo::kWantWrite : TlsIo::kWantRead, deadline)) {
    return false;
  }
  const std::size_t before = inbox_.size();
  ReadAvailable();
  Split();
  return closed_ || inbox_.size() > before;
}

void Connection::ReadAvailable() {
  std::uint8_t chunk[64 * 1024];
  while (tls_) {
    std::size_t n = 0;
    const TlsIo io = tls_->Read(chunk, n);
    if (io == TlsIo::kDone) {
      if (!unframed_) buffer_.insert(buffer_.end(), chunk, chunk + n);
      continue;
    }
    if (io == TlsIo::kWantRead || io == TlsIo::kWantWrite) return;
    closed_ = true;
    close_detail_ = io == TlsIo::kClosed ? "end of stream" : tls_->error();
    return;
  }
  for (;;) {
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      if (!unframed_) buffer_.insert(buffer_.end(), chunk, chunk + n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    closed_ = true;
    close_detail_ = n == 0 ? "end of stream" : std::string(std::strerror(errno));
    break;
  }
}

void Connection::Close() {
  if (tls_) tls_->Close();
  tls_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Connection::Split() {
  std::size_t pos = 0;
  while (!unframed_ && buffer_.size() - pos >= kLengthPrefixSize) {
    const std::uint32_t length = BigEndian32(buffer_.data() + pos);
    if (length < kFrameHeaderSize || length > kMaxMaxFrameSize) {
      // No conforming server sends this; nothing after it can be delimited.
      Arrival bad;
      bad.bytes.assign(buffer_.begin() + static_cast<std::ptrdiff_t>(pos), buffer_.end());
      bad.text = "an impossible length prefix " + std::to_string(length) +
                 " (bytes: " + Hex(bad.bytes) + ")";
      inbox_.push_back(std::move(bad));
      unframed_ = true;
      pos = buffer_.size();
      break;
    }
    if (buffer_.size() - pos < kLengthPrefixSize + length) break;
    Arrival arrival;
    const auto begin = buffer_.begin() + static_cast<std::ptrdiff_t>(pos);
    arrival.bytes.assign(begin, begin + static_cast<std::ptrdiff_t>(kLengthPrefixSize + length));
    const DecodeResult decoded =
        DecodeFrame(std::span<const std::uint8_t>(arrival.bytes).subspan(kLengthPrefixSize));
    if (decoded.status.ok()) {
      arrival.frame = Frame{decoded.request_id, decoded.message};
      arrival.text = Describe(*arrival.frame);
      arrival.matchable = true;
    } else {
      arrival.text = "an undecodable frame (" + decoded.status.ToString() +
                     "; bytes: " + Hex(arrival.bytes) + ")";
    }
    inbox_.push_back(std::move(arrival));
    pos += kLengthPrefixSize + length;
  }
  buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(pos));
  if (closed_ && !buffer_.empty() && !unframed_) {
    Arrival partial;
    partial.bytes = buffer_;
    partial.text = "a partial frame before the connection closed (bytes: " + Hex(buffer_) + ")";
    inbox_.push_back(std::move(partial));
    buffer_.clear();
  }
}

}  // namespace messenger::conformance

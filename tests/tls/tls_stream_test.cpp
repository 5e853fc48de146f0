// TlsClientStream (blocking, shared by a reader and writers) against a server driven by
// TlsSession in a poll() loop, over loopback: bytes cross both ways intact while both directions
// are busy, Shutdown() wakes a blocked Receive, and a handshake against a silent peer ends at
// its timeout. Every wait is bounded.

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "messenger/codec/status.h"
#include "messenger/tls/tls_client_stream.h"
#include "messenger/tls/tls_context.h"
#include "messenger/tls/tls_session.h"
#include "test_pki.h"

namespace messenger {
namespace {

using namespace std::chrono_literals;
using testing::Pki;

// One accepted connection served by TlsSession in a poll() loop, on a thread of its own:
// completes the handshake, then echoes what it receives (when `echo`) or only counts it.
// Buffers at most kMaxPending unsent bytes, so a client that does not read stalls it, as a
// real server would.
class TlsTestServer {
 public:
  static constexpr std::size_t kMaxPending = 256 * 1024;

  TlsTestServer(std::shared_ptr<const TlsServerContext> context, bool echo)
      : context_(std::move(context)),
        echo_(echo),
        listener_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~TlsTestServer() {
    stop_ = true;
    thread_.join();
  }

  std::uint16_t port() const { return listener_.address().port(); }
  bool handshake_done() const { return handshake_done_; }
  void CloseConnection() { close_ = true; }

 private:
  void Run() {
    Poco::Net::StreamSocket socket;
    while (!stop_) {
      if (listener_.poll(Poco::Timespan(0, 20000), Poco::Net::Socket::SELECT_READ)) {
        socket = listener_.acceptConnection();
        break;
      }
    }
    if (stop_) return;
    const int fd = socket.impl()->sockfd();
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    Result<std::unique_ptr<TlsSession>> created = TlsSession::Accept(context_, fd);
    if (!created.ok()) return;
    TlsSession& tls = *created.value();
    std::vector<std::uint8_t> pending;
    std::vector<std::uint8_t> buffer(64 * 1024);
    while (!stop_) {
      int events = 0;
      if (!tls.established()) {
        const TlsIo io = tls.Handshake();
        if (io == TlsIo::kError) return;
        if (io == TlsIo::kDone) {
          handshake_done_ = true;
          continue;
        }
        events = io == TlsIo::kWantWrite ? POLLOUT : POLLIN;
      } else {
        if (close_) {
          tls.Close();
          socket.shutdown();
          close_ = false;
        }
        while (!pending.empty()) {
          std::size_t written = 0;
          const TlsIo io = tls.Write(pending, written);
          if (io != TlsIo::kDone) break;
          pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(written));
        }
        bool more = true;
        while (more && pending.size() < kMaxPending) {
          std::size_t read = 0;
          const TlsIo io = tls.Read(buffer, read);
          if (io == TlsIo::kClosed || io == TlsIo::kError) return;
          more = io == TlsIo::kDone;
          if (more && echo_) pending.insert(pending.end(), buffer.begin(), buffer.begin() + read);
        }
        if (pending.size() < kMaxPending) {
          events |= tls.read_wants_write() ? POLLOUT : POLLIN;
        }
        if (!pending.empty()) events |= tls.write_wants_read() ? POLLIN : POLLOUT;
      }
      pollfd socket_poll = {fd, static_cast<short>(events), 0};
      ::poll(&socket_poll, 1, 20);
    }
  }

  std::shared_ptr<const TlsServerContext> context_;
  const bool echo_;
  Poco::Net::ServerSocket listener_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> close_{false};
  std::atomic<bool> handshake_done_{false};
  std::thread thread_;
};

class TlsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Pki().ok()) << "make-test-certs failed";
    Result<std::shared_ptr<const TlsServerContext>> server =
        TlsServerContext::Load(Pki().File("server.pem"), Pki().File("server.key"));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_context_ = server.value();
    Result<std::shared_ptr<const TlsClientContext>> client =
        TlsClientContext::Create(Pki().File("ca.pem"), false);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_context_ = client.value();
  }

  // Connects `socket` to `port` and performs the TLS handshake.
  std::unique_ptr<TlsClientStream> Connect(Poco::Net::StreamSocket& socket, std::uint16_t port) {
    socket.connect(Poco::Net::SocketAddress("127.0.0.1", port), Poco::Timespan(5, 0));
    Result<std::unique_ptr<TlsClientStream>> stream =
        TlsClientStream::Connect(socket.impl()->sockfd(), client_context_, "127.0.0.1", 5s);
    EXPECT_TRUE(stream.ok()) << stream.status().ToString();
    return stream.ok() ? std::move(stream).value() : nullptr;
  }

  std::shared_ptr<const TlsServerContext> server_context_;
  std::shared_ptr<const TlsClientContext> client_context_;
};

std::uint8_t PatternByte(std::size_t i) {
  return static_cast<std::uint8_t>((i * 7 + i / 251) % 251);
}

TEST_F(TlsStreamTest, CarriesBytesBothWaysWhileAReaderAndAWriterRunAtOnce) {
  TlsTestServer server(server_context_, /*echo=*/true);
  Poco::Net::StreamSocket socket;
  std::unique_ptr<TlsClientStream> stream = Connect(socket, server.port());
  ASSERT_NE(stream, nullptr);
  EXPECT_NE(stream->Description().find("TLSv1.3"), std::string::npos) << stream->Description();

  // Far more than the socket buffers hold: the echo only flows while the reader reads, so the
  // writer's SSL_write and the reader's SSL_read interleave on the one connection.
  constexpr std::size_t kTotal = 8 * 1024 * 1024;
  std::vector<std::uint8_t> data(kTotal);
  for (std::size_t i = 0; i < kTotal; ++i) data[i] = PatternByte(i);

  auto received = std::async(std::launch::async, [&] {
    std::vector<std::uint8_t> got;
    std::vector<std::uint8_t> buffer(32 * 1024);
    while (got.size() < kTotal) {
      Result<std::size_t> n = stream->Receive(buffer);
      if (!n.ok() || *n == 0) break;
      got.insert(got.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*n));
    }
    return got;
  });
  for (std::size_t offset = 0; offset < kTotal; offset += 100 * 1000) {
    const std::size_t size = std::min<std::size_t>(100 * 1000, kTotal - offset);
    const Status sent = stream->Send(std::span(data).subspan(offset, size), 10s);
    ASSERT_TRUE(sent.ok()) << sent.ToString();
  }
  ASSERT_EQ(received.wait_for(20s), std::future_status::ready);
  const std::vector<std::uint8_t> got = received.get();
  ASSERT_EQ(got.size(), kTotal);
  EXPECT_TRUE(got == data);
  stream->Shutdown();
}

TEST_F(TlsStreamTest, ShutdownWakesABlockedReceive) {
  TlsTestServer server(server_context_, /*echo=*/false);  // Never sends a byte.
  Poco::Net::StreamSocket socket;
  std::unique_ptr<TlsClientStream> stream = Connect(socket, server.port());
  ASSERT_NE(stream, nullptr);
  auto received = std::async(std::launch::async, [&] {
    std::uint8_t buffer[1024];
    return stream->Receive(buffer);
  });
  ASSERT_EQ(received.wait_for(300ms), std::future_status::timeout) << "Receive did not block";
  const auto start = std::chrono::steady_clock::now();
  stream->Shutdown();
  ASSERT_EQ(received.wait_for(5s), std::future_status::ready) << "Shutdown did not wake Receive";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  const Result<std::size_t> result = received.get();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(*result, 0u);
  // After Shutdown nothing more is sent, and Shutdown is idempotent.
  const std::uint8_t byte = 1;
  EXPECT_EQ(stream->Send(std::span(&byte, 1), 1s).code(), ErrorCode::kDisconnected);
  stream->Shutdown();
}

TEST_F(TlsStreamTest, ReceiveReturnsZeroWhenTheServerClosesTheSession) {
  TlsTestServer server(server_context_, /*echo=*/true);
  Poco::Net::StreamSocket socket;
  std::unique_ptr<TlsClientStream> stream = Connect(socket, server.port());
  ASSERT_NE(stream, nullptr);
  server.CloseConnection();
  std::uint8_t buffer[1024];
  const Result<std::size_t> result = stream->Receive(buffer);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(*result, 0u);
}

TEST_F(TlsStreamTest, HandshakeWithASilentPeerEndsAtTheTimeout) {
  Poco::Net::ServerSocket silent(Poco::Net::SocketAddress("127.0.0.1", 0));  // Never accepts.
  Poco::Net::StreamSocket socket;
  socket.connect(silent.address(), Poco::Timespan(5, 0));
  const auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<TlsClientStream>> stream =
      TlsClientStream::Connect(socket.impl()->sockfd(), client_context_, "127.0.0.1", 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(stream.status().code(), ErrorCode::kTimeout) << stream.status().ToString();
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
}

TEST_F(TlsStreamTest, HostNameMatchesRegardlessOfLetterCase) {
  TlsTestServer server(server_context_, /*echo=*/true);
  Poco::Net::StreamSocket socket;  // server.pem is for localhost (and 127.0.0.1, ::1).
  socket.connect(Poco::Net::SocketAddress("127.0.0.1", server.port()), Poco::Timespan(5, 0));
  Result<std::unique_ptr<TlsClientStream>> stream =
      TlsClientStream::Connect(socket.impl()->sockfd(), client_context_, "LocalHost", 5s);
  EXPECT_TRUE(stream.ok()) << stream.status().ToString();
}

}  // namespace
}  // namespace messenger

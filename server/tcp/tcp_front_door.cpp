#include "tcp_front_door.h"

#include <Poco/AutoPtr.h>
#include <Poco/Exception.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/Net/TCPServerParams.h>
#include <Poco/ThreadPool.h>
#include <Poco/Timespan.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "messenger/codec/codec.h"
#include "messenger/server/clock.h"
#include "tcp_connection.h"

namespace messenger {
namespace {

// Threads beyond max_connections: a thread that has just finished a connection is briefly not
// yet idle, and a connection accepted in that moment must still get a thread, not a queue slot.
constexpr int kSpareThreads = 8;
// Threads kept ready while the server is quiet.
constexpr int kMinThreads = 4;
// Seconds an idle pool thread lingers before it exits.
constexpr int kThreadIdleSeconds = 60;
// Stack of a connection thread. The loop keeps its buffers on the heap; SQLite and Argon2 (heap
// memory) run comfortably in this, and 1000 connections reserve 512 MiB of address space, not
// the 8 GiB that default 8 MiB stacks would.
constexpr int kThreadStackBytes = 512 * 1024;
// Pending connections the kernel holds before accept(): a burst of clients connecting at once
// waits there rather than being refused by the kernel.
constexpr int kListenBacklog = 1024;
// How long stragglers get after being closed without flushing (they only finish a store call).
constexpr std::chrono::milliseconds kAbortWait{5000};

class ConnectionFactory final : public Poco::Net::TCPServerConnectionFactory {
 public:
  explicit ConnectionFactory(std::shared_ptr<TcpFrontDoor::Shared> shared)
      : shared_(std::move(shared)) {}

  Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& socket) override {
    return new TcpConnection(socket, shared_);
  }

 private:
  std::shared_ptr<TcpFrontDoor::Shared> shared_;
};

// Runs on the accepting thread: admits a connection if a slot is free, else answers
// ERROR(SERVER_BUSY) at once and has TCPServer close it. Refusing here, before the dispatcher,
// is what keeps a full server from silently queueing connections no thread will serve.
class AdmissionFilter final : public Poco::Net::TCPServerConnectionFilter {
 public:
  explicit AdmissionFilter(std::shared_ptr<TcpFrontDoor::Shared> shared)
      : shared_(std::move(shared)) {
    const Status status = EncodeFrame(
        Frame{0, Error{ErrorCode::kServerBusy,
                       "server is at its connection limit (" +
                           std::to_string(shared_->options.max_connections) + "); try later"}},
        busy_frame_);
    (void)status;  // A constant ASCII message always encodes.
  }

  // REQUIRES: called before the server starts.
  void SetServer(const Poco::Net::TCPServer* server) { server_ = server; }

  bool accept(const Poco::Net::StreamSocket& socket) override {
    ReleaseDroppedSlots();
    // Only this thread increments, so checking after the increment cannot over-admit.
    if (shared_->admitted.fetch_add(1) < shared_->options.max_connections) return true;
    shared_->admitted.fetch_sub(1);
    Refuse(socket);
    return false;
  }

 private:
  // After accept() admits a connection, POCO's dispatcher can still drop it silently (its queue
  // full, or no pool thread free at that instant); such a connection never reaches a
  // TcpConnection, so its slot is given back here, counted from the server's refusals.
  void ReleaseDroppedSlots() {
    if (server_ == nullptr) return;
    const int dropped = server_->refusedConnections();
    if (dropped == dropped_seen_) return;
    shared_->admitted.fetch_sub(dropped - dropped_seen_);
    shared_->logger.warning(std::to_string(dropped - dropped_seen_) +
                            " admitted connection(s) dropped by the TCP dispatcher");
    dropped_seen_ = dropped;
  }

  void Refuse(const Poco::Net::StreamSocket& accepted) {
    std::string peer = "(unknown peer)";
    try {
      Poco::Net::StreamSocket socket(accepted);
      peer = socket.peerAddress().toString();
      socket.setBlocking(false);
      // A fresh socket's send buffer is empty, so this small frame is taken whole.
      (void)::send(socket.impl()->sockfd(), busy_frame_.data(), busy_frame_.size(),
                   MSG_NOSIGNAL | MSG_DONTWAIT);
      ::shutdown(socket.impl()->sockfd(), SHUT_WR);
      // Unread input (a HELLO sent right after connect) would turn the close into a reset;
      // discard what has already arrived, a bounded amount so a flood cannot hold this thread.
      std::uint8_t sink[1024];
      for (int i = 0; i < 16; ++i) {
        if (::recv(socket.impl()->sockfd(), sink, sizeof sink, MSG_DONTWAIT) <= 0) break;
      }
    } catch (const Poco::Exception&) {
      // The client is already gone.
    }
    ++refused_;
    // One warning per second at most, so a flood of refused connections cannot flood the log.
    const std::uint64_t now = SystemClock().SteadyMs();
    if (now - last_warning_ms_ >= 1000 || last_warning_ms_ == 0) {
      shared_->logger.warning("refused connection from " + peer + ": server busy (" +
                              std::to_string(shared_->options.max_connections) +
                              " connections, the --max-connections limit); " +
                              std::to_string(refused_) + " refused since the last report");
      last_warning_ms_ = now;
      refused_ = 0;
    }
  }

  std::shared_ptr<TcpFrontDoor::Shared> shared_;
  const Poco::Net::TCPServer* server_ = nullptr;
  int dropped_seen_ = 0;
  Bytes busy_frame_;
  std::uint64_t refused_ = 0;
  std::uint64_t last_warning_ms_ = 0;
};

}  // namespace

Result<std::unique_ptr<TcpFrontDoor>> TcpFrontDoor::Start(Messenger& messenger,
                                                          const TcpOptions& options) {
  if (options.max_connections < 1) {
    return Status(ErrorCode::kInvalidArgument, "max_connections must be at least 1");
  }
  std::unique_ptr<TcpFrontDoor> door(new TcpFrontDoor());
  door->shared_ = std::make_shared<Shared>(messenger, options);
  const std::string where = options.host + ":" + std::to_string(options.port);
  try {
    const Poco::Net::SocketAddress address(options.host, options.port);
    Poco::Net::ServerSocket listener;
    // SO_REUSEADDR lets a restarted server bind while old connections sit in TIME_WAIT. POCO's
    // two-argument bind() would also set SO_REUSEPORT, letting a second server silently share
    // the port (and split the clients) instead of failing to start.
    listener.bind(address, /*reuseAddress=*/true, /*reusePort=*/false);
    listener.listen(kListenBacklog);
    const Poco::Net::SocketAddress bound = listener.address();
    door->port_ = bound.port();
    door->loopback_ = bound.host().isLoopback();

    // TCPServer hands connections to a thread pool and queues them, unserved, when the pool is
    // full; and a maxThreads above the pool's capacity has no effect. So the pool is ours and
    // sized for every admitted connection plus spares, maxThreads matches it, and the queue can
    // hold every admitted connection so the dispatcher never drops one silently.
    const int capacity = options.max_connections + kSpareThreads;
    door->pool_ =
        std::make_unique<Poco::ThreadPool>("connection", std::min(kMinThreads, capacity), capacity,
                                           kThreadIdleSeconds, kThreadStackBytes);
    Poco::Net::TCPServerParams::Ptr params = new Poco::Net::TCPServerParams;
    params->setMaxThreads(capacity);
    params->setMaxQueued(capacity);
    params->setThreadIdleTime(Poco::Timespan(kThreadIdleSeconds, 0));
    door->server_ = std::make_unique<Poco::Net::TCPServer>(new ConnectionFactory(door->shared_),
                                                           *door->pool_, listener, params);
    Poco::AutoPtr<AdmissionFilter> filter(new AdmissionFilter(door->shared_));
    filter->SetServer(door->server_.get());
    door->server_->setConnectionFilter(filter);
    door->server_->start();
    door->accepting_ = true;
  } catch (const Poco::Exception& e) {
    return Status(ErrorCode::kInternal, "cannot listen on " + where + ": " + e.displayText());
  }
  return door;
}

TcpFrontDoor::~TcpFrontDoor() {
  if (!Shutdown()) {
    // Connection threads are still running on the pool and the server: destroying those would
    // wait for or pull the rug from under them. The process is about to exit anyway.
    (void)pool_.release();
    (void)server_.release();
  }
}

int TcpFrontDoor::live_connections() const { return shared_->live(); }

void TcpFrontDoor::StopAccepting() {
  if (!accepting_) return;
  accepting_ = false;
  // Joins the accepting thread; connections queued but not yet started are dropped.
  server_->stop();
}

bool TcpFrontDoor::Shutdown(std::chrono::milliseconds flush_timeout) {
  if (shut_down_) return true;
  StopAccepting();
  Poco::Logger& logger = shared_->logger;
  shared_->EndAll();
  if (!shared_->WaitUntilEmpty(flush_timeout)) {
    logger.warning(std::to_string(shared_->live()) + " connection(s) still flushing after " +
                   std::to_string(flush_timeout.count()) + " ms; closing them");
    shared_->AbortAll();
    if (!shared_->WaitUntilEmpty(kAbortWait)) {
      logger.error(std::to_string(shared_->live()) +
                   " connection thread(s) did not finish; leaving them running");
      return false;
    }
  }
  server_.reset();
  if (pool_) pool_->joinAll();
  shut_down_ = true;
  return true;
}

}  // namespace messenger

#include "tcp_front_door.h"

#include <Poco/AutoPtr.h>
#include <Poco/Exception.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/ServerSocketImpl.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/StreamSocketImpl.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/Net/TCPServerParams.h>
#include <Poco/ThreadPool.h>
#include <Poco/Timespan.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
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
// How long a TCPServer dispatcher thread waits for the next connection before it looks again
// whether the server is stopping. POCO 1.11's TCPServerDispatcher::stop() wakes only one waiting
// dispatcher thread; the others notice the stop when this wait ends, and shutdown (joining the
// pool) waits for them. After a burst of connections several are waiting, so a long idle time
// (such as kThreadIdleSeconds) would hold up every graceful stop for that long.
constexpr int kDispatcherIdleMs = 250;
// Stack of a connection thread. The loop keeps its buffers on the heap; SQLite and Argon2 (heap
// memory) run comfortably in this, and 1000 connections reserve 512 MiB of address space, not
// the 8 GiB that default 8 MiB stacks would.
constexpr int kThreadStackBytes = 512 * 1024;
// Pending connections the kernel holds before accept(): a burst of clients connecting at once
// waits there rather than being refused by the kernel.
constexpr int kListenBacklog = 1024;
// How long stragglers get after being closed without flushing (they only finish a store call).
constexpr std::chrono::milliseconds kAbortWait{5000};
// Descriptors one connection holds (its socket and its wakeup eventfd), and those kept free for
// everything else: standard streams, the listener and its reserve descriptor, the database and
// its WAL files, and the socket of a connection while it is being refused.
constexpr rlim_t kDescriptorsPerConnection = 2;
constexpr rlim_t kDescriptorsReserved = 64;
// Pause of the accepting thread when accept() fails for want of resources and no pending
// connection could be shed: it bounds the retries (the listener stays readable meanwhile).
constexpr std::chrono::milliseconds kAcceptBackoff{100};

// The most connections the descriptor limit (RLIMIT_NOFILE) lets the server serve, capped at
// `wanted`. Admitting more would not serve more: accept() and eventfd() would fail instead, and
// clients would wait unanswered rather than being refused with SERVER_BUSY.
int AffordableConnections(int wanted, Poco::Logger& logger) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return wanted;
  const rlim_t affordable =
      limit.rlim_cur > kDescriptorsReserved
          ? (limit.rlim_cur - kDescriptorsReserved) / kDescriptorsPerConnection
          : 0;
  if (affordable >= static_cast<rlim_t>(wanted)) return wanted;
  const int serving = std::max(1, static_cast<int>(affordable));
  logger.warning("serving at most " + std::to_string(serving) + " connections, not the " +
                 std::to_string(wanted) +
                 " of --max-connections: the descriptor limit (ulimit -n) is " +
                 std::to_string(limit.rlim_cur) + " and each connection needs " +
                 std::to_string(kDescriptorsPerConnection) + "; others get SERVER_BUSY");
  return serving;
}

// The listening socket, made to survive running out of descriptors.
//
// POCO's TCPServer polls the listener and calls acceptConnection() whenever it is readable. POCO's
// own poll() creates an epoll descriptor on every call, so with descriptors exhausted it fails
// before accept() is even tried: the accepting thread then logs an error and retries every 50 ms,
// and every client that connects meanwhile waits unanswered in the kernel's queue. And when
// accept() itself fails (EMFILE, ENFILE) the connection stays queued and the listener readable,
// so the loop turns at once. Here poll() is plain poll(2), which needs no descriptor, and a
// connection that cannot be accepted for want of descriptors is shed: a descriptor kept in
// reserve is freed, the connection accepted with it, answered SERVER_BUSY and closed, and the
// reserve taken back. If even that fails (another thread took the freed descriptor, or memory is
// short), the accepting thread pauses for kAcceptBackoff. Either way acceptConnection() returns a
// socket without a descriptor, which AdmissionFilter drops without a word to the error log.
class ListeningSocketImpl final : public Poco::Net::ServerSocketImpl {
 public:
  explicit ListeningSocketImpl(std::shared_ptr<TcpFrontDoor::Shared> shared)
      : shared_(std::move(shared)),
        // On a TLS door the frame would not be TLS: the connection is closed without it.
        busy_frame_(shared_->options.tls
                        ? Bytes()
                        : EncodeServerBusy("server is out of file descriptors; try later")),
        reserve_fd_(OpenReserve()) {}

  bool poll(const Poco::Timespan& timeout, int mode) override {
    pollfd fd = {sockfd(), 0, 0};
    if (mode & SELECT_READ) fd.events |= POLLIN;
    if (mode & SELECT_WRITE) fd.events |= POLLOUT;
    if (mode & SELECT_ERROR) fd.events |= POLLPRI;
    const int timeout_ms = static_cast<int>(timeout.totalMilliseconds());
    int ready;
    do {
      ready = ::poll(&fd, 1, timeout_ms);
    } while (ready < 0 && errno == EINTR);
    if (ready < 0) error();  // Throws, as POCO's poll() does.
    return ready > 0;
  }

  Poco::Net::SocketImpl* acceptConnection(Poco::Net::SocketAddress& client_address) override {
    if (reserve_fd_ < 0) reserve_fd_ = OpenReserve();
    sockaddr_storage address{};
    socklen_t size = sizeof address;
    int fd;
    do {
      fd = ::accept4(sockfd(), reinterpret_cast<sockaddr*>(&address), &size, SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0) {
      client_address = Poco::Net::SocketAddress(reinterpret_cast<const sockaddr*>(&address), size);
      return new Poco::Net::StreamSocketImpl(fd);
    }
    const int accept_error = errno;
    if (accept_error != EMFILE && accept_error != ENFILE && accept_error != ENOBUFS &&
        accept_error != ENOMEM) {
      error(accept_error);  // Throws, as POCO's accept does; TCPServer logs it and goes on.
    }
    Shed(accept_error);
    return new Poco::Net::StreamSocketImpl();  // No descriptor: AdmissionFilter drops it.
  }

 protected:
  ~ListeningSocketImpl() override {
    if (reserve_fd_ >= 0) ::close(reserve_fd_);
  }

 private:
  static int OpenReserve() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

  void Shed(int accept_error) {
    bool shed = false;
    if ((accept_error == EMFILE || accept_error == ENFILE) && reserve_fd_ >= 0) {
      std::lock_guard lock(shared_->descriptors_mu);
      ::close(reserve_fd_);
      // The listener blocks: accept only what is already queued, never wait holding the lock.
      pollfd queued = {sockfd(), POLLIN, 0};
      const int fd =
          ::poll(&queued, 1, 0) == 1 ? ::accept4(sockfd(), nullptr, nullptr, SOCK_CLOEXEC) : -1;
      if (fd >= 0) {
        AnswerServerBusy(fd, busy_frame_);
        ::close(fd);
        shed = true;
        shared_->messenger.metrics()
            .connections_refused(Transport::kWire, RefuseReason::kFdExhausted)
            .Add();
        if (!busy_frame_.empty()) {  // Over TLS the shed connection gets no frame.
          shared_->messenger.metrics().errors(Transport::kWire, ErrorCode::kServerBusy).Add();
        }
      }
      reserve_fd_ = OpenReserve();
    }
    if (shed) {
      ++shed_;
    } else {
      ++pauses_;
      std::this_thread::sleep_for(kAcceptBackoff);
    }
    // One warning per second at most, so that the log does not grow with the flood.
    const std::uint64_t now = SystemClock().SteadyMs();
    if (last_warning_ms_ == 0 || now - last_warning_ms_ >= 1000) {
      shared_->logger.warning(
          "cannot accept connections: " + std::string(std::strerror(accept_error)) +
          "; since the last report " + std::to_string(shed_) + " refused with SERVER_BUSY, " +
          std::to_string(pauses_) + " pause(s) of " + std::to_string(kAcceptBackoff.count()) +
          " ms");
      last_warning_ms_ = now;
      shed_ = 0;
      pauses_ = 0;
    }
  }

  std::shared_ptr<TcpFrontDoor::Shared> shared_;
  const Bytes busy_frame_;
  int reserve_fd_ = -1;  // Open on /dev/null; freed for a moment to shed a connection.
  std::uint64_t shed_ = 0;
  std::uint64_t pauses_ = 0;
  std::uint64_t last_warning_ms_ = 0;
};

// A ServerSocket on a ListeningSocketImpl (the constructor taking an implementation is
// protected).
class ListeningSocket final : public Poco::Net::ServerSocket {
 public:
  explicit ListeningSocket(std::shared_ptr<TcpFrontDoor::Shared> shared)
      : Poco::Net::ServerSocket(new ListeningSocketImpl(std::move(shared)), true) {}
};

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
      : shared_(std::move(shared)),
        busy_frame_(EncodeServerBusy("server is at its connection limit (" +
                                     std::to_string(shared_->options.max_connections) +
                                     "); try later")) {}

  // REQUIRES: called before the server starts.
  void SetServer(const Poco::Net::TCPServer* server) { server_ = server; }

  bool accept(const Poco::Net::StreamSocket& socket) override {
    // A connection ListeningSocketImpl has already shed (out of descriptors).
    if (socket.impl()->sockfd() == POCO_INVALID_SOCKET) return false;
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
      if (shared_->options.tls) {
        RefuseOverTls(socket, peer);
      } else {
        AnswerServerBusy(socket.impl()->sockfd(), busy_frame_);
      }
    } catch (const Poco::Exception&) {
      // The client is already gone.
    }
    shared_->messenger.metrics()
        .connections_refused(Transport::kWire, RefuseReason::kServerBusy)
        .Add();
    // SERVER_BUSY is an ERROR like any other (over TLS it may still fail in the handshake).
    shared_->messenger.metrics().errors(Transport::kWire, ErrorCode::kServerBusy).Add();
    ++refused_;
    // One warning per second at most, so a flood of refused connections cannot flood the log.
    const std::uint64_t now = SystemClock().SteadyMs();
    if (now - last_warning_ms_ >= 1000 || last_warning_ms_ == 0) {
      shared_->logger.warning("refused connection from " + peer + ": server busy (" +
                              std::to_string(shared_->options.max_connections) +
                              " connections, the connection limit); " + std::to_string(refused_) +
                              " refused since the last report");
      last_warning_ms_ = now;
      refused_ = 0;
    }
  }

  // SERVER_BUSY over TLS needs a handshake first, which must not hold up the accepting thread:
  // it runs on a thread of its own that keeps the socket (a copy shares its descriptor). When
  // kMaxTlsRefusals run already, or no thread can start, the connection is closed unanswered.
  void RefuseOverTls(const Poco::Net::StreamSocket& socket, const std::string& peer) {
    if (!shared_->BeginTlsRefusal()) {
      AnswerServerBusy(socket.impl()->sockfd(), Bytes());
      return;
    }
    try {
      std::thread([shared = shared_, socket = Poco::Net::StreamSocket(socket), frame = busy_frame_,
                   peer]() mutable {
        const std::string why = AnswerServerBusyTls(socket.impl()->sockfd(), shared->options.tls,
                                                    frame, kTlsRefusalTimeout);
        if (!why.empty() && shared->logger.debug()) {
          shared->logger.debug("refusing " + peer + " over TLS: " + why);
        }
        try {
          socket.close();
        } catch (const Poco::Exception&) {
          // Already reset by the client.
        }
        shared->EndTlsRefusal();
      }).detach();
    } catch (const std::system_error&) {
      shared_->EndTlsRefusal();
      AnswerServerBusy(socket.impl()->sockfd(), Bytes());
    }
  }

  std::shared_ptr<TcpFrontDoor::Shared> shared_;
  const Poco::Net::TCPServer* server_ = nullptr;
  int dropped_seen_ = 0;
  const Bytes busy_frame_;
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
  TcpOptions effective = options;
  effective.max_connections =
      AffordableConnections(options.max_connections, Poco::Logger::get("messenger.tcp"));
  door->shared_ = std::make_shared<Shared>(messenger, effective);
  const std::string where = options.host + ":" + std::to_string(options.port);
  try {
    const Poco::Net::SocketAddress address(options.host, options.port);
    ListeningSocket listener(door->shared_);
    // SO_REUSEADDR lets a restarted server bind while old connections sit in TIME_WAIT. POCO's
    // two-argument bind() would also set SO_REUSEPORT, letting a second server silently share
    // the port (and split the clients) instead of failing to start.
    listener.bind(address, /*reuseAddress=*/true, /*reusePort=*/false);
    listener.listen(kListenBacklog);
    const Poco::Net::SocketAddress bound = listener.address();
    door->port_ = bound.port();
    door->loopback_ = bound.host().isLoopback();
    door->tls_ = options.tls != nullptr;

    // TCPServer hands connections to a thread pool and queues them, unserved, when the pool is
    // full; and a maxThreads above the pool's capacity has no effect. So the pool is ours and
    // sized for every admitted connection plus spares, maxThreads matches it, and the queue can
    // hold every admitted connection so the dispatcher never drops one silently.
    const int capacity = effective.max_connections + kSpareThreads;
    door->pool_ =
        std::make_unique<Poco::ThreadPool>("connection", std::min(kMinThreads, capacity), capacity,
                                           kThreadIdleSeconds, kThreadStackBytes);
    Poco::Net::TCPServerParams::Ptr params = new Poco::Net::TCPServerParams;
    params->setMaxThreads(capacity);
    params->setMaxQueued(capacity);
    params->setThreadIdleTime(Poco::Timespan(0, kDispatcherIdleMs * 1000));
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
  // Refusals over TLS touch neither the Messenger nor the store, but should not outlive the door.
  if (!shared_->WaitForTlsRefusals(kTlsRefusalTimeout + std::chrono::seconds(1))) {
    logger.warning("refusals over TLS still running; leaving them to finish");
  }
  shut_down_ = true;
  return true;
}

}  // namespace messenger

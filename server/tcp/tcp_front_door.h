// TcpFrontDoor: the wire protocol over TCP, plain or TLS, served with POCO's TCPServer.
//
// Each accepted connection gets a thread from a pool sized for --max-connections and runs a small
// poll() loop: bytes received go to a WireSession, its replies and the pushes the core sends from
// other threads (SessionSink) share one outbound buffer that is written without ever blocking.
// A connection beyond the limit is answered ERROR(SERVER_BUSY) and closed on the accepting thread,
// so a full server refuses at once instead of letting connections wait in a queue.
//
// With TLS (TcpOptions::tls) the loop first completes the TLS handshake, without blocking and
// within the login timeout, then carries the same bytes through TLS. A connection beyond the
// limit is refused after a TLS handshake, so that the client reads SERVER_BUSY rather than bytes
// that are not TLS: up to kMaxTlsRefusals such handshakes run at once on threads of their own,
// each given kTlsRefusalTimeout; beyond that a refused connection is closed without an answer.
// Out of descriptors, a refused TLS connection is closed without an answer too.
//
// Thread-safety: Start, StopAccepting and Shutdown are called from one controlling thread.
#ifndef MESSENGER_SERVER_TCP_TCP_FRONT_DOOR_H_
#define MESSENGER_SERVER_TCP_TCP_FRONT_DOOR_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "messenger/codec/status.h"
#include "messenger/server/messenger.h"
#include "messenger/server/wire_session.h"
#include "messenger/tls/tls_context.h"

namespace Poco {
class ThreadPool;
namespace Net {
class TCPServer;
}  // namespace Net
}  // namespace Poco

namespace messenger {

struct TcpOptions {
  std::string host = "0.0.0.0";
  std::uint16_t port = 5050;  // 0: an ephemeral port; port() tells which.
  // Connections served at once; one more is refused with SERVER_BUSY. One thread each. Start
  // lowers it, with a warning, to what the descriptor limit (RLIMIT_NOFILE) can serve.
  int max_connections = 1000;
  // Pushes queued for a client beyond this many unsent bytes: the client is too slow and is
  // disconnected (its messages stay stored and are delivered again on its next session).
  std::size_t max_outbound_bytes = 4 * 1024 * 1024;
  // Unsent bytes and no write progress for this long: the client is too slow, disconnected.
  std::uint64_t send_timeout_ms = 10 * 1000;
  WireOptions wire;
  // The server's certificate and key; null: plain TCP.
  std::shared_ptr<const TlsServerContext> tls;
};

// Refusals of connections beyond the limit that may run a TLS handshake at once, and how long
// each may take: bounded, because each holds a descriptor and a thread.
inline constexpr int kMaxTlsRefusals = 16;
inline constexpr std::chrono::milliseconds kTlsRefusalTimeout{3000};

class TcpFrontDoor {
 public:
  // Binds host:port, listens and starts accepting. REQUIRES: `messenger` outlives the result.
  // Errors: kInvalidArgument (max_connections < 1), kInternal (cannot resolve, bind or listen;
  // the message names the address and the cause).
  static Result<std::unique_ptr<TcpFrontDoor>> Start(Messenger& messenger,
                                                     const TcpOptions& options);

  ~TcpFrontDoor();  // Shutdown() with the default timeout if not done yet.
  TcpFrontDoor(const TcpFrontDoor&) = delete;
  TcpFrontDoor& operator=(const TcpFrontDoor&) = delete;

  // The port actually bound (the ephemeral one when options.port was 0).
  std::uint16_t port() const { return port_; }
  // True iff the listening address is a loopback address (127.0.0.0/8, ::1).
  bool loopback() const { return loopback_; }
  // True iff connections speak TLS (TcpOptions::tls was given).
  bool tls() const { return tls_; }
  // Connections currently being served.
  int live_connections() const;

  // Stops accepting; connections already served go on. Idempotent.
  void StopAccepting();

  // Graceful stop; call after StopAccepting() and Messenger::Shutdown(). Every connection still
  // open gets SESSION_ENDED(SERVER_SHUTDOWN) unless already ending, and up to `flush_timeout` to
  // write what it has queued; after that the stragglers are closed without flushing. Returns
  // true iff every connection thread has finished (only then may the Messenger and its store be
  // destroyed). Idempotent.
  bool Shutdown(std::chrono::milliseconds flush_timeout = std::chrono::seconds(5));

  struct Shared;  // State shared with the connection threads; private to tcp_front_door.cpp.

 private:
  TcpFrontDoor() = default;

  std::shared_ptr<Shared> shared_;
  std::unique_ptr<Poco::ThreadPool> pool_;
  std::unique_ptr<Poco::Net::TCPServer> server_;
  std::uint16_t port_ = 0;
  bool loopback_ = false;
  bool tls_ = false;
  bool accepting_ = false;
  bool shut_down_ = false;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_TCP_TCP_FRONT_DOOR_H_

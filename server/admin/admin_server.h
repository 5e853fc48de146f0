// AdminServer: the operators' HTTP port (docs/OPERATIONS.md), served with POCO's HTTPServer.
//
//   GET /healthz  200 "ok": the process is alive and serving HTTP.
//   GET /readyz   200 "ok" when the readiness check passes, else 503 with its one-line reason.
//   GET /metrics  every Metrics value in the Prometheus text exposition format 0.0.4.
// HEAD is answered like GET without a body; any other method on these paths is 405, any other
// path 404. A few threads of its own serve it, so a scrape never waits for the front doors and
// a stuck scraper cannot hold more than those threads.
//
// Thread-safety: Start and Shutdown are called from one controlling thread.
#ifndef MESSENGER_SERVER_ADMIN_ADMIN_SERVER_H_
#define MESSENGER_SERVER_ADMIN_ADMIN_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "messenger/codec/status.h"
#include "messenger/server/metrics.h"

namespace Poco {
class ThreadPool;
namespace Net {
class HTTPServer;
}  // namespace Net
}  // namespace Poco

namespace messenger {

struct AdminOptions {
  // Loopback by default: metrics describe the server to whoever can read them.
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: an ephemeral port; port() tells which.
};

class AdminServer {
 public:
  // OK when the server is ready for traffic; otherwise the status message is the reason
  // /readyz gives. Called on the admin threads, concurrently with everything else.
  using ReadinessCheck = std::function<Status()>;

  // Binds host:port and starts serving. REQUIRES: `metrics` and whatever `ready` uses outlive
  // the result (or its Shutdown()). Errors: kInvalidArgument (no readiness check), kInternal
  // (cannot resolve or bind; the message names the address and the cause).
  static Result<std::unique_ptr<AdminServer>> Start(const Metrics& metrics, ReadinessCheck ready,
                                                    const AdminOptions& options);

  ~AdminServer();  // Shutdown() if not done yet.
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // The port actually bound (the ephemeral one when options.port was 0).
  std::uint16_t port() const { return port_; }
  // True iff the listening address is a loopback address.
  bool loopback() const { return loopback_; }

  // Stops accepting, aborts requests in progress and waits for the admin threads. Idempotent.
  void Shutdown();

 private:
  AdminServer() = default;

  std::unique_ptr<Poco::ThreadPool> pool_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  std::uint16_t port_ = 0;
  bool loopback_ = false;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_ADMIN_ADMIN_SERVER_H_

// GrpcFrontDoor: the protocol's operations as gRPC (messenger.v1, docs/PROTOCOL.md section 15)
// onto the same Messenger core as the TCP front door, so both kinds of client share accounts,
// queues, takeover and delivery.
//
// A gRPC session is a core session (Messenger::Attach) created by Login and named by a random
// token. Unary calls run on gRPC's synchronous thread pool and call the core directly. Pushes go
// through the session's Subscribe stream, a callback-API reactor: the core queues a push on the
// session without blocking and the reactor writes one at a time, so no thread waits on a slow
// client. A housekeeping thread ends sessions that never subscribed and detaches ended ones.
//
// Thread-safety: Start and Shutdown are called from one controlling thread.
#ifndef MESSENGER_SERVER_GRPC_GRPC_FRONT_DOOR_H_
#define MESSENGER_SERVER_GRPC_GRPC_FRONT_DOOR_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "messenger/codec/limits.h"
#include "messenger/codec/status.h"
#include "messenger/server/messenger.h"

namespace messenger {

struct GrpcOptions {
  std::string host = "0.0.0.0";
  std::uint16_t port = 5051;  // 0: an ephemeral port; port() tells which.
  // Largest request accepted, and the byte budget of a FetchUndelivered page.
  std::uint32_t max_frame_size = kDefaultMaxFrameSize;
  // Sessions at once; Login beyond it fails with SERVER_BUSY.
  int max_sessions = 1000;
  // A session with no Subscribe stream this long after Login ends with LOGIN_TIMEOUT.
  std::uint64_t login_timeout_ms = 30 * 1000;
  std::string server_name = "poco-messenger";
  // PEM certificate chain and private key. Both set: the port speaks TLS only, with that
  // identity (no client certificates); both empty: plaintext.
  std::string tls_cert_pem;
  std::string tls_key_pem;
};

class GrpcFrontDoor {
 public:
  // Binds host:port and starts serving. REQUIRES: `messenger` outlives the result. Counts its
  // sessions, refusals, errors and slow consumers in messenger.metrics() (transport grpc).
  // Errors: kInvalidArgument (max_sessions < 1, only one of the TLS certificate and key),
  // kInternal (cannot bind, or the TLS pair is unusable; the message says where).
  static Result<std::unique_ptr<GrpcFrontDoor>> Start(Messenger& messenger,
                                                      const GrpcOptions& options);

  ~GrpcFrontDoor();  // Shutdown() with a short timeout if not done yet.
  GrpcFrontDoor(const GrpcFrontDoor&) = delete;
  GrpcFrontDoor& operator=(const GrpcFrontDoor&) = delete;

  // The port actually bound (the ephemeral one when options.port was 0).
  std::uint16_t port() const;

  // Stops accepting calls, lets open streams write what they hold (call Messenger::Shutdown
  // first, so each gets SESSION_ENDED) for up to `timeout`, cancels the rest and detaches every
  // session from the core. Idempotent.
  void Shutdown(std::chrono::milliseconds timeout);

 private:
  class Impl;
  explicit GrpcFrontDoor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_GRPC_GRPC_FRONT_DOOR_H_

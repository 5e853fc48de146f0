// A scenario client over gRPC (PROTOCOL.md section 15), driving the generated messenger.v1 stub
// directly. It takes the same request frames a wire client sends and answers them with the
// frames a wire server would send (grpc_translate.h):
//
// - Requests run one at a time, in the order sent, on a worker thread of the client, so that
//   responses come in request order as on the wire (section 5.3); each answer carries the id of
//   the request it answers. HELLO is GetServerInfo, LOGIN is Login: the client keeps the session
//   token for the calls after it (`authorization: Bearer <token>`) and opens the session's
//   Subscribe stream at once (section 15.2), so that pushes flow as they do on a wire connection.
// - Pushes (DELIVER, SESSION_ENDED) arrive from the Subscribe stream whenever they come.
// - The client counts as closed once its session ends for a reason that closes a wire connection
//   (not LOGGED_OUT, which leaves it usable as LOGOUT leaves a wire connection), or its stream
//   fails. Close() drops the TCP connection without a goodbye, as a killed client would.
//
// Each client has a TCP connection of its own (the channel is built on a socket the client
// connected), so no two scenario clients share one. Thread-safety: the ScenarioClient methods are
// for one thread; the client's own threads only hand results over to it.
#ifndef MESSENGER_CONFORMANCE_GRPC_CLIENT_H_
#define MESSENGER_CONFORMANCE_GRPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "messenger/v1/messenger.grpc.pb.h"
#include "scenario_client.h"

namespace messenger::conformance {

class GrpcClient final : public ScenarioClient {
 public:
  // `call_timeout` bounds each unary call.
  explicit GrpcClient(std::chrono::milliseconds call_timeout);
  ~GrpcClient() override;  // Close().
  GrpcClient(const GrpcClient&) = delete;
  GrpcClient& operator=(const GrpcClient&) = delete;

  // Connects to the gRPC server at host:port within `timeout`, over TLS when tls.enabled.
  // Errors: kConnectionFailed; kTlsFailed (the TLS handshake or the certificate check failed).
  Status Open(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
              const ClientTls& tls = {});

  Transport transport() const override { return Transport::kGrpc; }
  // Queues the request for the worker. Errors: kInvalidArgument for a frame that is not a
  // request (a response or push type has no RPC).
  Status SendRequest(const Frame& frame, std::chrono::milliseconds timeout) override;
  // Always kInvalidArgument: gRPC has no byte stream of the protocol to write to.
  Status SendRaw(std::span<const std::uint8_t> bytes, std::chrono::milliseconds timeout) override;
  bool Receive(Clock::time_point deadline) override;
  void Close() override;
  int wait_fd() const override { return event_fd_; }

 private:
  struct PushStream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::ServerPush>> reader;
    std::thread thread;
  };

  void Work();
  void Execute(const Frame& frame);
  // Runs one unary call with `invoke(context, response)`; on failure posts the ERROR it stands
  // for and returns nullopt.
  template <typename Response, typename Invoke>
  std::optional<Response> Call(std::uint32_t request_id, bool with_token, Invoke invoke);
  void Subscribe();
  void ReadPushes(PushStream& stream);
  // Hand-over from the client's threads to Receive.
  void Post(Arrival arrival);
  void PostClosed(std::string detail);
  bool Take();

  const std::chrono::milliseconds call_timeout_;
  std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Messenger::Stub> stub_;
  // Our duplicate of the channel's socket, to drop the connection. -1 over TLS, where gRPC
  // makes the connection itself: Close() then cancels the calls instead.
  int socket_fd_ = -1;
  int event_fd_ = -1;  // Readable while arrivals wait to be taken.
  std::string token_;  // Worker only.
  std::thread worker_;

  std::mutex mutex_;
  std::condition_variable work_;
  std::deque<Frame> requests_;
  bool stopping_ = false;
  grpc::ClientContext* current_call_ = nullptr;
  std::vector<std::unique_ptr<PushStream>> streams_;  // Appended by the worker only.
  std::deque<Arrival> arrived_;
  std::optional<std::string> arrived_close_;
};

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_GRPC_CLIENT_H_

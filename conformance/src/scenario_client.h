// A client of a scenario, whatever it travels over: a wire connection (connection.h) or a gRPC
// client (grpc_client.h). Either way the scenario writes the requests it sends and the frames it
// expects in the one-line form of PROTOCOL.md section 1, and whatever arrives waits in the inbox,
// in arrival order, until an expectation consumes it.
//
// Single-threaded from the runner's side; every wait has a deadline.
#ifndef MESSENGER_CONFORMANCE_SCENARIO_CLIENT_H_
#define MESSENGER_CONFORMANCE_SCENARIO_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger::conformance {

using Clock = std::chrono::steady_clock;

// How a client reaches the server: the binary protocol over TCP, or gRPC (PROTOCOL.md 15).
enum class Transport { kWire, kGrpc };

// "wire" or "grpc".
std::string_view TransportName(Transport transport);

// The transport named `name` ("wire" or "grpc"), or nullopt.
std::optional<Transport> ParseTransport(std::string_view name);

// How a client secures its connection: plain TCP, or TLS trusting `ca_file` and expecting the
// server's certificate to name `server_name` (empty: the host connected to).
struct ClientTls {
  bool enabled = false;
  std::string ca_file;
  std::string server_name;
};

// What arrived on a client: a frame, or something that is not one.
struct Arrival {
  std::optional<Frame> frame;  // The frame, when the codec can represent it.
  // The one-line form of what arrived; when it is not `matchable`, what is wrong with it.
  std::string text;
  Bytes bytes;  // Wire only: the frame, length prefix included (for an undecodable one).
  // True iff `text` is a one-line description an expectation may match: a decodable wire frame,
  // or an RPC result the gRPC binding defines.
  bool matchable = false;
};

class ScenarioClient {
 public:
  virtual ~ScenarioClient() = default;

  virtual Transport transport() const = 0;

  // Sends one request. Errors: kDisconnected, kTimeout (also kept in write_error()), and for a
  // request the transport has no counterpart for, kInvalidArgument.
  virtual Status SendRequest(const Frame& frame, std::chrono::milliseconds timeout) = 0;

  // Sends bytes as they are. Errors: as SendRequest; kInvalidArgument where there is no byte
  // stream to write them to (gRPC).
  virtual Status SendRaw(std::span<const std::uint8_t> bytes,
                         std::chrono::milliseconds timeout) = 0;

  // Waits until `deadline` for arrivals; returns true as soon as some were added to the inbox or
  // the client was found closed, false if nothing happened by then. With a deadline in the past
  // it only takes what has already arrived.
  virtual bool Receive(Clock::time_point deadline) = 0;

  // Takes everything that has already arrived, without waiting.
  void Drain() {
    while (Receive(Clock::now())) {
    }
  }

  // Ends the client from its side (for gRPC: its connection is dropped, as a killed client's
  // would be).
  virtual void Close() = 0;

  // A descriptor that polls readable when Receive has something to take (for waiting on many
  // clients at once).
  virtual int wait_fd() const = 0;

  std::deque<Arrival>& inbox() { return inbox_; }
  // True once the server ended the client: closed the connection (wire), or ended its session
  // for a reason that closes a wire connection, or its Subscribe stream failed (gRPC).
  bool closed() const { return closed_; }
  // How it was closed, e.g. "end of stream" or "reset by peer".
  const std::string& close_detail() const { return close_detail_; }
  // The error of the last failed send, if any (a request written to a closed connection).
  const std::string& write_error() const { return write_error_; }

 protected:
  std::deque<Arrival> inbox_;
  bool closed_ = false;
  std::string close_detail_;
  std::string write_error_;
};

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_SCENARIO_CLIENT_H_

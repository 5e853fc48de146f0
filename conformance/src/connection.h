// One wire client of a scenario: a TCP socket, the bytes written to it, and the frames that
// arrived on it, kept in arrival order until an expectation consumes them.
//
// Frames are delimited here rather than by FrameDecoder so that a frame the codec cannot decode is
// kept with its bytes, for the failure report. Single-threaded; every wait has a deadline.
#ifndef MESSENGER_CONFORMANCE_CONNECTION_H_
#define MESSENGER_CONFORMANCE_CONNECTION_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "messenger/tls/tls_session.h"
#include "scenario_client.h"

namespace messenger::conformance {

// Returns `bytes` as two-digit hex pairs separated by spaces, at most `limit` bytes of them.
std::string Hex(std::span<const std::uint8_t> bytes, std::size_t limit = 64);

// Opens a TCP connection to host:port within `timeout`; returns the connected non-blocking
// socket (close-on-exec, TCP_NODELAY). Errors: kConnectionFailed.
Result<int> ConnectTcp(const std::string& host, std::uint16_t port,
                       std::chrono::milliseconds timeout);

class Connection final : public ScenarioClient {
 public:
  Connection() = default;
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects to host:port within `timeout`, with the TLS handshake when tls.enabled. Errors:
  // kConnectionFailed, kTlsFailed (the handshake failed; the message says why), kTimeout.
  Status Open(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
              const ClientTls& tls = {});

  // Writes all of `bytes` within `timeout`. Errors: kDisconnected (the peer is gone), kTimeout.
  Status Write(std::span<const std::uint8_t> bytes, std::chrono::milliseconds timeout);

  Transport transport() const override { return Transport::kWire; }
  // Encodes the frame and writes it.
  Status SendRequest(const Frame& frame, std::chrono::milliseconds timeout) override;
  Status SendRaw(std::span<const std::uint8_t> bytes, std::chrono::milliseconds timeout) override {
    return Write(bytes, timeout);
  }

  // Waits until `deadline` for bytes; returns true as soon as a read added frames to the inbox
  // or found the connection closed (end of stream or reset), false if nothing happened by then.
  // Never blocks past `deadline`.
  bool Receive(Clock::time_point deadline) override;

  // Closes the socket (an orderly close from the client's side).
  void Close() override;

  int wait_fd() const override { return fd_; }
  int fd() const { return fd_; }

 private:
  void Split();
  // Waits until `deadline` for the socket to allow what `io` wants; false on timeout.
  bool WaitFor(TlsIo io, Clock::time_point deadline) const;
  // Moves every byte the socket (or the TLS session) has now into buffer_; sets closed_ at the
  // end of the stream.
  void ReadAvailable();

  int fd_ = -1;
  std::unique_ptr<TlsSession> tls_;  // Null for plain TCP.
  Bytes buffer_;
  bool unframed_ = false;  // A length prefix made the rest of the stream impossible to delimit.
};

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_CONNECTION_H_

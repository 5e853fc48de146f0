// One client connection of a scenario: a TCP socket, the bytes written to it, and the frames that
// arrived on it, kept in arrival order until an expectation consumes them.
//
// Frames are delimited here rather than by FrameDecoder so that a frame the codec cannot decode is
// kept with its bytes, for the failure report. Single-threaded; every wait has a deadline.
#ifndef MESSENGER_CONFORMANCE_CONNECTION_H_
#define MESSENGER_CONFORMANCE_CONNECTION_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>

#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger::conformance {

using Clock = std::chrono::steady_clock;

// A frame as it arrived.
struct Arrival {
  std::optional<Frame> frame;  // Empty if the bytes are not a decodable frame.
  std::string text;            // Describe(*frame), or what is wrong with the bytes.
  Bytes bytes;                 // The frame, length prefix included (for an undecodable one).
};

// Returns `bytes` as two-digit hex pairs separated by spaces, at most `limit` bytes of them.
std::string Hex(std::span<const std::uint8_t> bytes, std::size_t limit = 64);

class Connection {
 public:
  Connection() = default;
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects to host:port within `timeout`. Errors: kConnectionFailed.
  Status Open(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);

  // Writes all of `bytes` within `timeout`. Errors: kDisconnected (the peer is gone), kTimeout.
  Status Write(std::span<const std::uint8_t> bytes, std::chrono::milliseconds timeout);

  // Waits until `deadline` for bytes; returns true as soon as a read added frames to the inbox
  // or found the connection closed, false if nothing happened by then. Never blocks past
  // `deadline`; with a deadline in the past it only takes what has already arrived.
  bool Receive(Clock::time_point deadline);

  // Takes everything that has already arrived, without waiting.
  void Drain();

  // Closes the socket (an orderly close from the client's side).
  void Close();

  std::deque<Arrival>& inbox() { return inbox_; }
  // True once the peer closed the connection (end of stream or reset).
  bool closed() const { return closed_; }
  // How it was closed, e.g. "end of stream" or "reset by peer".
  const std::string& close_detail() const { return close_detail_; }
  // The error of the last failed Write, if any (a request written to a closed connection).
  const std::string& write_error() const { return write_error_; }
  int fd() const { return fd_; }

 private:
  void Split();

  int fd_ = -1;
  Bytes buffer_;
  bool unframed_ = false;  // A length prefix made the rest of the stream impossible to delimit.
  bool closed_ = false;
  std::string close_detail_;
  std::string write_error_;
  std::deque<Arrival> inbox_;
};

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_CONNECTION_H_

// WireSession: the wire protocol's per-connection logic, without I/O.
//
// Bytes received go in; encoded replies come out; pushes from other sessions reach the
// connection through its SessionSink (which the front door implements). It enforces the
// handshake, the pre-login frame limit, request ordering and the timeouts of docs/PROTOCOL.md.
// Not thread-safe: one per connection, driven by that connection's thread. Times are steady
// (monotonic) milliseconds supplied by the caller.
#ifndef MESSENGER_SERVER_WIRE_SESSION_H_
#define MESSENGER_SERVER_WIRE_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/server/messenger.h"

namespace messenger {

struct WireOptions {
  std::uint32_t max_frame_size = kDefaultMaxFrameSize;  // After LOGIN_OK.
  std::string server_name = "poco_messenger";
  std::uint64_t idle_timeout_ms = 300 * 1000;  // Nothing received for this long: closed.
  std::uint64_t login_timeout_ms = 30 * 1000;  // Not logged in this long after connect: closed.
};

class WireSession {
 public:
  // Most pipelined SENDs (or ACKs) of one connection that share one commit: bounds how long one
  // connection's batch holds back the commits of others.
  static constexpr std::size_t kMaxRequestsPerCommit = 64;

  // Attaches to `messenger` with `sink` for pushes. REQUIRES: both outlive this object.
  // The connection counts as accepted and open (Metrics, transport wire) while this exists.
  WireSession(Messenger& messenger, SessionSink& sink, WireOptions options, std::uint64_t now_ms);
  ~WireSession();  // Detaches: unACKed messages become undelivered again.
  WireSession(const WireSession&) = delete;
  WireSession& operator=(const WireSession&) = delete;

  // Processes `bytes` (any split of the stream) and appends the encoded replies to `out`.
  // Returns false when the connection must be closed once `out` has been written (a fatal error
  // was answered). After that, further calls do nothing.
  bool OnBytes(std::span<const std::uint8_t> bytes, std::uint64_t now_ms, Bytes& out);

  // Applies the idle and login timeouts: appends SESSION_ENDED and returns false when one
  // expired.
  bool OnTick(std::uint64_t now_ms, Bytes& out);

  // The steady time at which OnTick would next end the session, if nothing arrives before.
  std::uint64_t Deadline() const;

  SessionId id() const { return id_; }

 private:
  void Handle(const DecodeResult& decoded, std::uint64_t now_ms, Bytes& out);
  // Answers the held SENDs (Messenger::SendMany) or ACKs (Messenger::AckMany): one commit.
  void AnswerHeld(Bytes& out);
  void SetLoggedIn(bool logged_in, std::uint64_t now_ms);
  void Reply(std::uint32_t request_id, Message message, Bytes& out);
  // Appends ERROR; the connection closes after it if `close` or the code is fatal.
  void ReplyError(std::uint32_t request_id, const Status& status, Bytes& out, bool close = false);
  // Appends SESSION_ENDED and marks the connection for closing.
  void Push(Message message, Bytes& out);

  Messenger& messenger_;
  const WireOptions options_;
  const SessionId id_;
  FrameDecoder decoder_;
  bool handshake_done_ = false;
  bool logged_in_ = false;
  bool closing_ = false;
  std::uint64_t logged_out_since_ms_;  // Start of the login timeout.
  std::uint64_t last_activity_ms_;     // Start of the idle timeout.
  // Consecutive SENDs, or ACKs, of one OnBytes call (never both), held so they share a commit,
  // and their request ids.
  std::vector<Send> held_sends_;
  std::vector<Ack> held_acks_;
  std::size_t held_ack_ids_ = 0;  // Message ids in held_acks_.
  std::vector<std::uint32_t> held_ids_;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_WIRE_SESSION_H_

// TcpConnection: one accepted client, served on one pool thread by a poll() loop; and the state
// the front door shares with every connection (registry, admission count). Private to server/tcp.
#ifndef MESSENGER_SERVER_TCP_TCP_CONNECTION_H_
#define MESSENGER_SERVER_TCP_TCP_CONNECTION_H_

#include <Poco/Logger.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServerConnection.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "frame_tap.h"
#include "messenger/codec/codec.h"
#include "messenger/server/messenger.h"
#include "messenger/tls/tls_session.h"
#include "tcp_front_door.h"

namespace messenger {

class TcpConnection;

// ERROR(SERVER_BUSY) with request id 0 and `message`, encoded.
Bytes EncodeServerBusy(const std::string& message);

// Answers a connection the server will not serve: writes `busy_frame` (a fresh socket's send
// buffer takes it whole; nothing when it is empty), ends the output, and discards a bounded
// amount of input already received, so that closing does not turn into a reset that destroys
// the frame in flight. Never blocks. The caller closes `fd`.
void AnswerServerBusy(int fd, const Bytes& busy_frame);

// The same over TLS: completes the handshake on `fd`, sends `busy_frame` and close_notify, ends
// the output and drains input briefly, all within `timeout`. Blocks (up to `timeout`). Returns
// why the frame could not be delivered (for logs), empty when it was. The caller closes `fd`.
std::string AnswerServerBusyTls(int fd, std::shared_ptr<const TlsServerContext> context,
                                const Bytes& busy_frame, std::chrono::milliseconds timeout);

struct TcpFrontDoor::Shared {
  Shared(Messenger& messenger_in, const TcpOptions& options_in);

  // Adds a connection; false once EndAll() has run (the connection must end at once).
  bool Register(TcpConnection* connection);
  // Removes a connection and releases its admission slot.
  void Unregister(TcpConnection* connection);
  // From now on every connection, present or future, ends with SERVER_SHUTDOWN.
  void EndAll();
  // Closes every connection without flushing.
  void AbortAll();
  // Waits until no connection is registered; false on timeout.
  bool WaitUntilEmpty(std::chrono::milliseconds timeout);
  int live() const;
  // A refusal over TLS (AnswerServerBusyTls on a thread of its own) starts: false when
  // kMaxTlsRefusals are running already. Each true is followed by one EndTlsRefusal().
  bool BeginTlsRefusal();
  void EndTlsRefusal();
  // Waits until no refusal over TLS runs; false on timeout.
  bool WaitForTlsRefusals(std::chrono::milliseconds timeout);

  Messenger& messenger;
  const TcpOptions options;
  Poco::Logger& logger;
  // Connections accepted and not yet finished: counted on the accepting thread so the limit
  // holds before a pool thread picks the connection up.
  std::atomic<int> admitted{0};
  // Held while a connection thread creates a descriptor (its eventfd) and while the accepting
  // thread frees its reserve descriptor to shed a connection (ListeningSocketImpl): otherwise,
  // with descriptors exhausted, the eventfd could take the freed slot and leave the accepting
  // thread with neither the connection nor its reserve.
  std::mutex descriptors_mu;

 private:
  mutable std::mutex mu_;
  std::condition_variable empty_;
  std::set<TcpConnection*> live_;
  bool ending_all_ = false;
  int tls_refusals_ = 0;
  std::condition_variable tls_refusals_done_;
};

class TcpConnection final : public Poco::Net::TCPServerConnection, public SessionSink {
 public:
  TcpConnection(const Poco::Net::StreamSocket& socket,
                std::shared_ptr<TcpFrontDoor::Shared> shared);
  ~TcpConnection() override;

  // The connection's loop; returns when the connection is over.
  void run() override;

  // SessionSink: called by the core on other threads (possibly under its lock): they only queue
  // bytes and signal the loop, never touch the socket, never block.
  void Deliver(const StoredMessage& message) override;
  void End(EndReason reason, const std::string& message) override;

  // Closes at the next turn of the loop without writing what is queued. Thread-safe.
  void Abort();

 private:
  enum class CloseReason {
    kPeerClosed,
    kReadError,
    kWriteError,
    kProtocolError,
    kTimeout,
    kEnded,
    kSlowConsumerStalled,
    kSlowConsumerOverflow,
    kAborted,
  };

  // What one attempt to move bytes achieved.
  enum class IoOutcome { kProgress, kBlocked, kEnd, kError };

  void Serve();
  // Completes the TLS handshake without blocking, waiting at most until `deadline` (the login
  // timeout). Returns false when the connection is over: then it has logged why and closed.
  bool CompleteTlsHandshake(std::uint64_t deadline);
  // Reads what the connection has now (decrypted, with TLS) into `buffer`. kEnd: the peer
  // closed; kError: `error` (errno) or tls_error_ says why.
  IoOutcome ReceiveSome(std::uint8_t* buffer, std::size_t capacity, std::size_t& received,
                        int& error);
  // Writes a prefix of [data, data + size) without blocking.
  IoOutcome SendSome(const std::uint8_t* data, std::size_t size, std::size_t& sent, int& error);
  // Appends encoded frames to the outbound buffer; returns the unsent byte count.
  std::size_t AppendOutbound(const Bytes& bytes);
  // Writes what the socket takes now; then reports the unsent byte count and whether the
  // connection is ending, both as of one moment. Returns false on a write error (`error` set).
  bool Flush(std::uint64_t now_ms, std::size_t& pending, bool& ending, int& error);
  void Wake();
  // Logs what a block of replies says and records the close reason it implies.
  void NoteReplies(const Bytes& replies);
  void NoteRequest(const TappedFrame& frame);
  std::string CloseReasonText(CloseReason reason, int error) const;
  void CloseSocket(bool hard);

  std::shared_ptr<TcpFrontDoor::Shared> shared_;
  Poco::Logger& logger_;
  int fd_ = -1;
  int wake_fd_ = -1;       // eventfd: other threads' pushes wake the loop.
  int wake_fd_error_ = 0;  // errno of the eventfd() that failed, if it did.
  // With TLS: the session over fd_ (the connection thread's only), and why it failed.
  std::unique_ptr<TlsSession> tls_;
  std::string tls_error_;
  std::string peer_;
  std::string label_;  // "session N from ADDRESS", for logs.
  std::uint64_t session_id_ = 0;
  std::string user_;  // The logged-in user, for logs; the connection thread's only.
  std::optional<std::pair<std::uint32_t, std::string>> pending_login_;
  std::optional<Error> fatal_error_;
  std::optional<SessionEnded> session_ended_;
  FrameTap tap_;

  // Shared with the core's threads (Deliver, End) and the front door (Abort).
  mutable std::mutex mu_;
  Bytes outbound_;
  std::size_t outbound_sent_ = 0;  // Bytes of outbound_ already written.
  bool ending_ = false;            // SESSION_ENDED queued: close once written.
  std::optional<EndReason> end_reason_;
  bool overflow_ = false;  // Pushes exceeded max_outbound_bytes.
  bool abort_ = false;
  // Unsent bytes and no write progress since then; 0 when nothing is pending. Written by the
  // connection thread only.
  std::uint64_t stalled_since_ms_ = 0;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_TCP_TCP_CONNECTION_H_

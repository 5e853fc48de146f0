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
#include "tcp_front_door.h"

namespace messenger {

class TcpConnection;

// ERROR(SERVER_BUSY) with request id 0 and `message`, encoded.
Bytes EncodeServerBusy(const std::string& message);

// Answers a connection the server will not serve: writes `busy_frame` (a fresh socket's send
// buffer takes it whole), ends the output, and discards a bounded amount of input already
// received, so that closing does not turn into a reset that destroys the frame in flight.
// Never blocks. The caller closes `fd`.
void AnswerServerBusy(int fd, const Bytes& busy_frame);

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

  void Serve();
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

// One gRPC session: the core's SessionSink for it, its queue of pushes and the Subscribe stream
// that writes them (docs/PROTOCOL.md, 15.2).
#ifndef MESSENGER_SERVER_GRPC_GRPC_SESSION_H_
#define MESSENGER_SERVER_GRPC_GRPC_SESSION_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "messenger/server/messenger.h"
#include "messenger/v1/messenger.pb.h"

namespace messenger {

class PushStream;

// Pushes a session holds for its stream before it counts as a slow consumer (15.2).
inline constexpr std::size_t kMaxHeldPushes = 1000;

// Methods are thread-safe. Deliver and End are called by the core under its lock: they only
// queue and never call back into the core.
class GrpcSession final : public SessionSink {
 public:
  // With `metrics` (which must outlive the session) a slow consumer is counted there.
  GrpcSession(std::string token, std::uint64_t created_ms, Metrics* metrics = nullptr);

  const std::string& token() const { return token_; }
  std::uint64_t created_ms() const { return created_ms_; }
  SessionId id() const { return id_; }
  void set_id(SessionId id) { id_ = id; }

  // SessionSink.
  void Deliver(const StoredMessage& message) override;
  void End(EndReason reason, const std::string& message) override;

  // Ends the session for a reason only gRPC has (LOGGED_OUT, SLOW_CONSUMER), or any other.
  void EndWith(v1::EndReason reason, const std::string& message,
               grpc::Status final_status = grpc::Status::OK);

  // True once the session has ended: its token no longer works and it is to be retired.
  bool ended() const;
  // Steady time it ended; 0 while it lives.
  std::uint64_t ended_ms() const;
  // True iff a stream was ever attached.
  bool subscribed() const;
  // True while a stream is attached and not yet finished.
  bool streaming() const;

  // Claims the session's one stream; false if it already had one (a second Subscribe).
  bool ClaimStream();
  // Attaches the stream claimed by ClaimStream() and starts writing what is held.
  void AttachStream(PushStream* stream);
  // The stream finished (OnDone): the session ends if it had not.
  void StreamDone(std::uint64_t now_ms);
  // A write completed; `ok` false means the client is gone.
  void WriteDone(bool ok, std::uint64_t now_ms);
  // The client cancelled the stream or vanished.
  void StreamCancelled(std::uint64_t now_ms);
  // Cancels a stream that has not finished (a client that stopped reading), if any.
  void CancelStream();

  // Set once when the session is detached from the core; true for the caller that set it.
  bool MarkRetired() { return !retired_.exchange(true); }

 private:
  // Starts the next write, or finishes the stream once the session has ended and nothing is
  // left; a no-op while a write is in flight. gRPC is called without holding mutex_.
  void Pump();
  // REQUIRES: mutex_ held.
  void EndLocked(v1::EndReason reason, const std::string& message, grpc::Status final_status,
                 std::uint64_t now_ms);

  const std::string token_;
  const std::uint64_t created_ms_;
  Metrics* const metrics_;
  SessionId id_ = 0;
  std::atomic<bool> retired_{false};

  mutable std::mutex mutex_;
  std::deque<v1::ServerPush> held_;
  v1::ServerPush in_flight_;  // The push being written; untouched until its write completes.
  PushStream* stream_ = nullptr;
  bool subscribed_ = false;
  bool writing_ = false;
  std::uint64_t ended_ms_ = 0;
  bool ended_ = false;
  grpc::Status final_status_;
};

// The Subscribe reactor. Deletes itself when gRPC is done with it. `open_streams` counts the
// reactors alive; it must outlive them (the server waits for every call before it goes).
class PushStream final : public grpc::ServerWriteReactor<v1::ServerPush> {
 public:
  PushStream(grpc::CallbackServerContext* context, std::shared_ptr<GrpcSession> session,
             std::atomic<int>& open_streams);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  grpc::CallbackServerContext* context() const { return context_; }

 private:
  grpc::CallbackServerContext* context_;
  std::shared_ptr<GrpcSession> session_;
  std::atomic<int>& open_streams_;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_GRPC_GRPC_SESSION_H_

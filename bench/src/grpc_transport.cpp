// The gRPC transport: the generated stub's asynchronous API, one completion queue and one thread
// per worker, each worker on its own channel (its own TCP connection, like a wire worker). A
// session follows docs/PROTOCOL.md section 15.2: Login, then the token as `authorization: Bearer`
// metadata on every call, a Subscribe stream for pushes (opened by every worker, since a session
// without one ends at the login timeout), ACK through the Ack RPC.
//
// Request and response messages live in reused call slots; gRPC itself still allocates per call
// (a ClientContext cannot be reused), which is part of what this transport costs.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "bench.h"
#include "messenger/codec/limits.h"
#include "messenger/v1/messenger.grpc.pb.h"

namespace messenger::bench {
namespace {

namespace pb = ::messenger::v1;

// How long the worker waits on its completion queue before it looks at the run's phase again.
constexpr auto kPollInterval = std::chrono::milliseconds(100);
// How long a setup call (CreateAccount, Login) may take.
constexpr auto kSetupTimeout = std::chrono::seconds(30);

Status Failure(std::string message) { return Status(ErrorCode::kInternal, std::move(message)); }

// "RPC failed: CODE message [PROTOCOL_ERROR]" from a status and its trailers.
Status RpcFailure(const std::string& what, const grpc::Status& status,
                  const grpc::ClientContext& context) {
  std::string text = what + " failed: gRPC status " + std::to_string(status.error_code()) + " " +
                     status.error_message();
  const auto& trailers = context.GetServerTrailingMetadata();
  if (const auto it = trailers.find("messenger-error-bin"); it != trailers.end()) {
    pb::ErrorDetail detail;
    if (detail.ParseFromArray(it->second.data(), static_cast<int>(it->second.size()))) {
      text += " [" + detail.name() + "]";
    }
  }
  return Failure(text);
}

std::shared_ptr<grpc::Channel> MakeChannel(const Endpoint& endpoint) {
  grpc::ChannelArguments args;
  // A subchannel pool per channel: otherwise channels to the same target share one TCP
  // connection, and C workers would not be C connections.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(endpoint.host + ":" + std::to_string(endpoint.port),
                                   grpc::InsecureChannelCredentials(), args);
}

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kSetupTimeout);
}

// What a completion-queue tag refers to.
struct Tag {
  enum Kind { kSubscribeStarted, kSubscribeRead, kSubscribeFinished, kUnary } kind = kUnary;
  std::size_t slot = 0;
};

// One unary call: reused request and response, a fresh context per call.
template <typename Request, typename Response>
struct CallSlot {
  std::optional<grpc::ClientContext> context;
  Request request;
  Response response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
  Tag tag;
  std::int64_t started_ns = 0;
  std::size_t ids = 0;  // ACK: how many ids it carries.
  bool busy = false;
};

// A logged-in session on its own channel with its own completion queue and Subscribe stream.
class Session {
 public:
  explicit Session(const Endpoint& endpoint)
      : channel_(MakeChannel(endpoint)), stub_(pb::Messenger::NewStub(channel_)) {}

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The stream and every call must be finished (Close) before the queue goes away.
  ~Session() { Close(); }

  Status Login(const std::string& user, const std::string& password,
               std::uint32_t* unread = nullptr) {
    grpc::ClientContext context;
    SetDeadline(context);
    pb::LoginRequest request;
    request.set_username(user);
    request.set_password(password);
    pb::LoginResponse response;
    const grpc::Status status = stub_->Login(&context, request, &response);
    if (!status.ok()) return RpcFailure("Login " + user, status, context);
    bearer_ = "Bearer " + response.session_token();
    if (unread != nullptr) *unread = response.unread_count();
    return Status::Ok();
  }

  // Opens the Subscribe stream and waits until the call has started.
  Status Subscribe() {
    Authorize(subscribe_context_);
    subscribe_ = stub_->PrepareAsyncSubscribe(&subscribe_context_, pb::SubscribeRequest(), &cq_);
    subscribe_->StartCall(&subscribe_started_);
    ++outstanding_;
    void* tag = nullptr;
    bool ok = false;
    const auto deadline = SteadyClock::now() + kSetupTimeout;
    while (SteadyClock::now() < deadline) {
      if (cq_.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + kPollInterval) !=
          grpc::CompletionQueue::GOT_EVENT) {
        continue;
      }
      --outstanding_;
      if (tag != &subscribe_started_ || !ok) return Failure("Subscribe did not start");
      subscribe_open_ = true;
      ReadPush();
      return Status::Ok();
    }
    return Failure("Subscribe did not start within the setup timeout");
  }

  void Authorize(grpc::ClientContext& context) const {
    context.AddMetadata("authorization", bearer_);
  }

  pb::Messenger::Stub& stub() { return *stub_; }
  grpc::CompletionQueue& cq() { return cq_; }

  // Waits for the next event (at most kPollInterval, or until `until_ns` on the steady clock if
  // that is sooner). Returns the tag or nullptr on timeout.
  Tag* Next(bool& ok, std::int64_t until_ns = 0) {
    auto deadline = std::chrono::system_clock::now() + kPollInterval;
    if (until_ns > 0) {
      const auto wait = std::chrono::nanoseconds(std::max<std::int64_t>(0, until_ns - NowNs()));
      if (wait < kPollInterval) {
        deadline = std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(wait);
      }
    }
    void* tag = nullptr;
    if (cq_.AsyncNext(&tag, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) return nullptr;
    --outstanding_;
    return static_cast<Tag*>(tag);
  }

  // Handles a Subscribe event. Returns a failure if the stream ended while the run goes on.
  // `push` is set when a push arrived; it stays valid until the next call.
  Status OnSubscribeEvent(const Tag& tag, bool ok, const pb::ServerPush** push) {
    *push = nullptr;
    if (tag.kind == Tag::kSubscribeRead) {
      if (ok) {
        if (push_.has_session_ended()) {
          return Failure(
              "the session ended: " + pb::EndReason_Name(push_.session_ended().reason()) + " " +
              push_.session_ended().message());
        }
        *push = &push_;
        ReadPush();
        return Status::Ok();
      }
      subscribe_open_ = false;
      subscribe_->Finish(&subscribe_status_, &subscribe_finished_);
      ++outstanding_;
      if (!closing_) return Failure("the Subscribe stream ended");
    }
    return Status::Ok();
  }

  // Every started call registers here so that Close() can wait for it.
  void Started() { ++outstanding_; }

  // Cancels everything in flight and waits until the queue has returned every tag.
  void Close() {
    if (closed_) return;
    closed_ = true;
    closing_ = true;
    if (subscribe_) subscribe_context_.TryCancel();
    for (grpc::ClientContext* context : cancel_on_close_) context->TryCancel();
    while (outstanding_ > 0) {
      bool ok = false;
      void* raw = nullptr;
      if (!cq_.Next(&raw, &ok)) break;
      --outstanding_;
      auto* tag = static_cast<Tag*>(raw);
      if (tag == &subscribe_read_ && !ok) {
        subscribe_->Finish(&subscribe_status_, &subscribe_finished_);
        ++outstanding_;
      }
    }
    cq_.Shutdown();
    void* raw = nullptr;
    bool ok = false;
    while (cq_.Next(&raw, &ok)) {
    }
  }

  // Contexts of calls that may be in flight at Close() (their slots outlive the session's use).
  void CancelOnClose(grpc::ClientContext* context) { cancel_on_close_.push_back(context); }
  void ClearCancelList() { cancel_on_close_.clear(); }

 private:
  void ReadPush() {
    subscribe_->Read(&push_, &subscribe_read_);
    ++outstanding_;
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Messenger::Stub> stub_;
  grpc::CompletionQueue cq_;
  std::string bearer_;
  grpc::ClientContext subscribe_context_;
  std::unique_ptr<grpc::ClientAsyncReader<pb::ServerPush>> subscribe_;
  grpc::Status subscribe_status_;
  pb::ServerPush push_;
  Tag subscribe_started_{Tag::kSubscribeStarted, 0};
  Tag subscribe_read_{Tag::kSubscribeRead, 0};
  Tag subscribe_finished_{Tag::kSubscribeFinished, 0};
  bool subscribe_open_ = false;
  bool closing_ = false;
  bool closed_ = false;
  int outstanding_ = 0;
  std::vector<grpc::ClientContext*> cancel_on_close_;
};

using SendSlot = CallSlot<pb::SendRequest, pb::SendResponse>;
using AckSlot = CallSlot<pb::AckRequest, pb::AckResponse>;
using FetchSlot = CallSlot<pb::FetchUndeliveredRequest, pb::FetchUndeliveredResponse>;

// Starts a unary call on `slot` with `start` = the stub's PrepareAsync method.
template <typename Slot, typename Start>
void StartCall(Session& session, Slot& slot, Start start) {
  // The reader lives in the call's arena, which the context owns: drop the reader first.
  slot.reader.reset();
  slot.context.reset();
  slot.context.emplace();
  session.Authorize(*slot.context);
  slot.reader = start(&*slot.context, slot.request, &session.cq());
  slot.reader->StartCall();
  slot.reader->Finish(&slot.response, &slot.status, &slot.tag);
  slot.busy = true;
  session.Started();
}

template <typename Slot>
void NumberSlots(std::vector<Slot>& slots) {
  for (std::size_t i = 0; i < slots.size(); ++i) slots[i].tag = Tag{Tag::kUnary, i};
}

// Cancels the busy calls, closes the session and releases every call while its queue exists.
template <typename... Slots>
void CloseSession(Session& session, std::vector<Slots>&... slots) {
  session.ClearCancelList();
  (
      [&session](auto& list) {
        for (auto& slot : list) {
          if (slot.busy) session.CancelOnClose(&*slot.context);
        }
      }(slots),
      ...);
  session.Close();
}

// Channels (TCP connections) that carry the idle sessions, each with its own completion queue and
// thread: the server multiplexes sessions over HTTP/2 streams, so a few connections carry them all.
constexpr std::size_t kIdleChannels = 8;

// Idle sessions on one channel: Login, then a Subscribe stream held open with one Read pending,
// all asynchronous and driven by one thread. A session is established once the stream's response
// headers have arrived: the server sends them when it has attached the stream.
class IdleChannel {
 public:
  IdleChannel(const Endpoint& endpoint, std::vector<std::string> users, const std::string& password,
              int in_flight)
      : users_(std::move(users)),
        password_(password),
        in_flight_(std::max(1, in_flight)),
        channel_(MakeChannel(endpoint)),
        stub_(pb::Messenger::NewStub(channel_)),
        sessions_(new IdleSession[users_.size()]) {
    for (std::size_t i = 0; i < users_.size(); ++i) {
      IdleSession& session = sessions_[i];
      for (int e = 0; e < IdleEvent::kCount; ++e) {
        session.events[e] = IdleEvent{&session, static_cast<IdleEvent::Kind>(e)};
      }
      session.index = i;
    }
    thread_ = std::thread([this] { Loop(); });
  }

  IdleChannel(const IdleChannel&) = delete;
  IdleChannel& operator=(const IdleChannel&) = delete;

  // Cancels every call and waits until the queue has returned all of them.
  ~IdleChannel() {
    closing_.store(true);
    thread_.join();
  }

  int established() const { return established_.load(); }
  int lost() const { return lost_.load(); }
  bool failed() const { return failed_.load(); }
  Status failure() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }

 private:
  struct IdleSession;
  struct IdleEvent {
    enum Kind { kLogin, kStarted, kHeaders, kRead, kFinished, kCount };
    IdleSession* session = nullptr;
    Kind kind = kLogin;
  };
  enum class State { kNew, kLoggingIn, kSubscribing, kOpen, kEnded };
  struct IdleSession {
    std::size_t index = 0;  // In users_.
    State state = State::kNew;
    std::unique_ptr<grpc::ClientContext> login_context;
    pb::LoginResponse login_response;
    grpc::Status login_status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::LoginResponse>> login;
    grpc::ClientContext subscribe_context;
    std::unique_ptr<grpc::ClientAsyncReader<pb::ServerPush>> subscribe;
    pb::ServerPush push;
    grpc::Status subscribe_status;
    IdleEvent events[IdleEvent::kCount];
  };

  void Fail(Status status) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!failed_.exchange(true)) failure_ = std::move(status);
  }

  void StartLogin(IdleSession& session) {
    pb::LoginRequest request;
    request.set_username(users_[session.index]);
    request.set_password(password_);
    session.login_context = std::make_unique<grpc::ClientContext>();
    SetDeadline(*session.login_context);
    session.login = stub_->PrepareAsyncLogin(session.login_context.get(), request, &cq_);
    session.login->StartCall();
    session.login->Finish(&session.login_response, &session.login_status,
                          &session.events[IdleEvent::kLogin]);
    session.state = State::kLoggingIn;
    ++outstanding_;
  }

  // The stream is over (or never started): collect its status.
  void Finish(IdleSession& session) {
    session.state = State::kEnded;
    session.subscribe->Finish(&session.subscribe_status, &session.events[IdleEvent::kFinished]);
    ++outstanding_;
  }

  void OnEvent(const IdleEvent& event, bool ok, bool closing) {
    IdleSession& session = *event.session;
    const std::string& user = users_[session.index];
    switch (event.kind) {
      case IdleEvent::kLogin: {
        --pending_;
        if (!ok || !session.login_status.ok() || closing) {
          // Once closing, a session that has just logged in is not subscribed any more: nothing
          // would cancel its stream. The server ends it at its login timeout.
          session.state = State::kEnded;
          if (!closing) {
            Fail(RpcFailure("Login " + user, session.login_status, *session.login_context));
          }
        } else {
          ++pending_;
          session.subscribe_context.AddMetadata("authorization",
                                                "Bearer " + session.login_response.session_token());
          session.subscribe = stub_->PrepareAsyncSubscribe(&session.subscribe_context,
                                                           pb::SubscribeRequest(), &cq_);
          session.subscribe->StartCall(&session.events[IdleEvent::kStarted]);
          session.state = State::kSubscribing;
          ++outstanding_;
        }
        session.login.reset();
        session.login_context.reset();
        session.login_response.Clear();
        return;
      }
      case IdleEvent::kStarted:
        if (!ok) {
          --pending_;
          if (!closing) Fail(Failure("Subscribe of " + user + " did not start"));
          Finish(session);
          return;
        }
        session.subscribe->ReadInitialMetadata(&session.events[IdleEvent::kHeaders]);
        ++outstanding_;
        return;
      case IdleEvent::kHeaders:
        --pending_;
        if (!ok) {
          if (!closing) Fail(Failure("Subscribe of " + user + " was not accepted"));
          Finish(session);
          return;
        }
        session.state = State::kOpen;
        ++established_;
        session.subscribe->Read(&session.push, &session.events[IdleEvent::kRead]);
        ++outstanding_;
        return;
      case IdleEvent::kRead:
        if (ok) {
          // An idle session receives nothing; a push here is its SESSION_ENDED (or a stray
          // message): either way it no longer counts as idle.
          if (session.state == State::kOpen && !closing) ++lost_;
          session.state = State::kEnded;
          session.subscribe->Read(&session.push, &session.events[IdleEvent::kRead]);
          ++outstanding_;
        } else {
          if (session.state == State::kOpen && !closing) ++lost_;
          Finish(session);
        }
        return;
      case IdleEvent::kFinished:
      case IdleEvent::kCount:
        return;
    }
  }

  void Loop() {
    const std::size_t count = users_.size();
    std::size_t next = 0;
    bool cancelled = false;
    for (;;) {
      const bool closing = closing_.load() || failed_.load();
      while (!closing && next < count && pending_ < in_flight_) {
        StartLogin(sessions_[next++]);
        ++pending_;
      }
      if (closing && !cancelled) {
        cancelled = true;
        for (std::size_t i = 0; i < next; ++i) {
          IdleSession& session = sessions_[i];
          if (session.login_context) session.login_context->TryCancel();
          if (session.subscribe) session.subscribe_context.TryCancel();
        }
      }
      if (closing && outstanding_ == 0) break;
      void* tag = nullptr;
      bool ok = false;
      if (cq_.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + kPollInterval) !=
          grpc::CompletionQueue::GOT_EVENT) {
        continue;
      }
      --outstanding_;
      OnEvent(*static_cast<IdleEvent*>(tag), ok, cancelled);
    }
    cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  const std::vector<std::string> users_;
  const std::string password_;
  const int in_flight_;  // Sessions being set up at once.
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Messenger::Stub> stub_;
  grpc::CompletionQueue cq_;
  std::unique_ptr<IdleSession[]> sessions_;
  // Owned by the thread.
  int pending_ = 0;      // Sessions logging in or subscribing.
  int outstanding_ = 0;  // Tags the queue still owes.
  std::atomic<int> established_{0};
  std::atomic<int> lost_{0};
  std::atomic<bool> closing_{false};
  std::atomic<bool> failed_{false};
  mutable std::mutex mutex_;
  Status failure_;
  std::thread thread_;
};

class GrpcIdleSessions final : public IdleSessions {
 public:
  int CountLost() override {
    int lost = 0;
    for (const auto& channel : channels_) lost += channel->lost();
    return lost;
  }
  int source_addresses() const override { return 1; }

  std::vector<std::unique_ptr<IdleChannel>> channels_;
};

// How long the idle sessions may go without one more being established.
constexpr auto kIdleStallTimeout = std::chrono::seconds(60);

class GrpcTransport final : public Transport {
 public:
  GrpcTransport(Endpoint endpoint, std::size_t text_bytes)
      : endpoint_(std::move(endpoint)), text_(MakeText(text_bytes)) {}

  Status CreateAccounts(const std::vector<std::string>& names,
                        const std::string& password) override {
    const auto channel = MakeChannel(endpoint_);
    const auto stub = pb::Messenger::NewStub(channel);
    for (const std::string& name : names) {
      grpc::ClientContext context;
      SetDeadline(context);
      pb::CreateAccountRequest request;
      request.set_username(name);
      request.set_password(password);
      pb::CreateAccountResponse response;
      const grpc::Status status = stub->CreateAccount(&context, request, &response);
      if (!status.ok()) return RpcFailure("CreateAccount " + name, status, context);
    }
    return Status::Ok();
  }

  Status RunSender(const SenderSpec& spec, RunControl& control, WorkerStats& stats) override {
    Status s = Sender(spec, control, stats);
    if (!s.ok()) control.Fail(s);
    return s;
  }

  Status RunReceiver(const ReceiverSpec& spec, RunControl& control, WorkerStats& stats) override {
    Status s = Receiver(spec, control, stats);
    if (!s.ok()) control.Fail(s);
    return s;
  }

  Status RunDrainer(const DrainSpec& spec, RunControl& control, DrainResult& result) override {
    Status s = Drainer(spec, control, result);
    if (!s.ok()) control.Fail(s);
    return s;
  }

  Result<std::unique_ptr<IdleSessions>> OpenIdleSessions(const IdleSpec& spec) override {
    const std::size_t count = spec.users.size();
    const std::size_t channels = std::clamp<std::size_t>(count, 1, kIdleChannels);
    const int per_channel = std::max(1, std::max(1, spec.parallelism) / static_cast<int>(channels));
    auto sessions = std::make_unique<GrpcIdleSessions>();
    for (std::size_t c = 0; c < channels; ++c) {
      std::vector<std::string> users;
      for (std::size_t i = c; i < count; i += channels) users.push_back(spec.users[i]);
      sessions->channels_.push_back(
          std::make_unique<IdleChannel>(endpoint_, std::move(users), spec.password, per_channel));
    }
    int last = -1;
    auto last_progress = SteadyClock::now();
    for (;;) {
      int established = 0;
      for (const auto& channel : sessions->channels_) {
        if (channel->failed()) return channel->failure();
        established += channel->established();
      }
      if (established == static_cast<int>(count)) break;
      if (established != last) {
        last = established;
        last_progress = SteadyClock::now();
      } else if (SteadyClock::now() - last_progress > kIdleStallTimeout) {
        return Failure("idle sessions: " + std::to_string(established) + " of " +
                       std::to_string(count) + " established, no progress for 60 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::unique_ptr<IdleSessions>(std::move(sessions));
  }

 private:
  Status Sender(const SenderSpec& spec, RunControl& control, WorkerStats& stats) {
    const auto depth = static_cast<std::size_t>(std::max(1, spec.depth));
    std::vector<SendSlot> slots(depth);
    Session session(endpoint_);
    Status result = SenderLoop(spec, control, stats, session, slots);
    CloseSession(session, slots);
    return result;
  }

  Status SenderLoop(const SenderSpec& spec, RunControl& control, WorkerStats& stats,
                    Session& session, std::vector<SendSlot>& slots) {
    if (Status s = session.Login(spec.user, spec.password); !s.ok()) return s;
    if (Status s = session.Subscribe(); !s.ok()) return s;
    NumberSlots(slots);
    for (SendSlot& slot : slots) {
      slot.request.set_recipient(spec.recipient);
      slot.request.set_text(text_);
    }
    std::vector<std::size_t> free_slots;
    for (std::size_t i = slots.size(); i-- > 0;) free_slots.push_back(i);
    std::uint64_t client_id = 0;
    std::uint64_t accepted = 0;
    const std::int64_t interval_ns = spec.rate > 0 ? static_cast<std::int64_t>(1e9 / spec.rate) : 0;
    if (!control.ReadyAndWait()) return Status::Ok();
    std::int64_t next_due =
        NowNs() + static_cast<std::int64_t>(spec.phase * static_cast<double>(interval_ns));
    const auto start = [&session](grpc::ClientContext* c, const pb::SendRequest& r,
                                  grpc::CompletionQueue* q) {
      return session.stub().PrepareAsyncSend(c, r, q);
    };
    while (!control.stopping()) {
      const bool limited = spec.limit != 0;
      std::int64_t now = NowNs();
      while (!free_slots.empty() && (!limited || client_id < spec.limit)) {
        if (interval_ns > 0) {
          if (now < next_due) break;
          next_due += interval_ns;
        }
        SendSlot& slot = slots[free_slots.back()];
        free_slots.pop_back();
        slot.request.set_client_message_id(++client_id);
        WriteStamp(slot.request.mutable_text()->data(), now);
        slot.started_ns = now;
        StartCall(session, slot, start);
      }
      if (free_slots.size() == slots.size() && limited && accepted >= spec.limit) break;
      bool ok = false;
      Tag* tag = session.Next(ok, interval_ns > 0 ? next_due : 0);
      if (tag == nullptr) continue;
      if (tag->kind != Tag::kUnary) {
        const pb::ServerPush* push = nullptr;
        if (Status s = session.OnSubscribeEvent(*tag, ok, &push); !s.ok()) return s;
        continue;
      }
      SendSlot& slot = slots[tag->slot];
      slot.busy = false;
      if (!slot.status.ok()) return RpcFailure("Send", slot.status, *slot.context);
      if (control.measuring()) {
        ++stats.replies;
        if (spec.record_reply_latency) stats.latency.Record(NowNs() - slot.started_ns);
      }
      ++accepted;
      free_slots.push_back(tag->slot);
    }
    return Status::Ok();
  }

  Status Receiver(const ReceiverSpec& spec, RunControl& control, WorkerStats& stats) {
    std::vector<AckSlot> acks(1);
    Session session(endpoint_);
    Status result = ReceiverLoop(spec, control, stats, session, acks);
    CloseSession(session, acks);
    return result;
  }

  Status ReceiverLoop(const ReceiverSpec& spec, RunControl& control, WorkerStats& stats,
                      Session& session, std::vector<AckSlot>& acks) {
    if (Status s = session.Login(spec.user, spec.password); !s.ok()) return s;
    if (Status s = session.Subscribe(); !s.ok()) return s;
    NumberSlots(acks);
    AckSlot& ack = acks[0];
    std::vector<std::uint64_t> pending;
    pending.reserve(4 * kMaxAckIds);
    const auto start = [&session](grpc::ClientContext* c, const pb::AckRequest& r,
                                  grpc::CompletionQueue* q) {
      return session.stub().PrepareAsyncAck(c, r, q);
    };
    if (!control.ReadyAndWait()) return Status::Ok();
    while (!control.stopping()) {
      bool ok = false;
      Tag* tag = session.Next(ok);
      if (tag != nullptr && tag->kind == Tag::kUnary) {
        ack.busy = false;
        if (!ack.status.ok()) return RpcFailure("Ack", ack.status, *ack.context);
      } else if (tag != nullptr) {
        const pb::ServerPush* push = nullptr;
        if (Status s = session.OnSubscribeEvent(*tag, ok, &push); !s.ok()) return s;
        if (push != nullptr && push->has_deliver()) {
          const pb::StoredMessage& message = push->deliver();
          if (control.measuring()) {
            ++stats.delivered;
            const std::int64_t stamp = ReadStamp(message.text().data(), message.text().size());
            if (stamp >= 0) stats.latency.Record(NowNs() - stamp);
          }
          pending.push_back(message.message_id());
        }
      }
      // One Ack in flight at a time, as on the wire: it carries whatever arrived meanwhile.
      if (!pending.empty() && !ack.busy) {
        const std::size_t n = std::min(kMaxAckIds, pending.size());
        ack.request.mutable_message_ids()->Clear();
        ack.request.mutable_message_ids()->Add(pending.begin(),
                                               pending.begin() + static_cast<std::ptrdiff_t>(n));
        pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
        StartCall(session, ack, start);
      }
    }
    return Status::Ok();
  }

  Status Drainer(const DrainSpec& spec, RunControl& control, DrainResult& result) {
    const auto depth = static_cast<std::size_t>(std::max(1, spec.depth));
    std::vector<FetchSlot> fetches(depth);
    // An ACK per page: at most as many in flight as pages fetched but not yet confirmed.
    std::vector<AckSlot> acks(2 * depth);
    Session session(endpoint_);
    Status status = DrainerLoop(spec, control, result, session, fetches, acks);
    CloseSession(session, fetches, acks);
    return status;
  }

  Status DrainerLoop(const DrainSpec& spec, RunControl& control, DrainResult& result,
                     Session& session, std::vector<FetchSlot>& fetches,
                     std::vector<AckSlot>& acks) {
    std::uint32_t unread = 0;
    if (Status s = session.Login(spec.user, spec.password, &unread); !s.ok()) return s;
    result.unread_at_login = unread;
    result.ids.reserve(result.unread_at_login + kMaxFetchLimit);
    if (Status s = session.Subscribe(); !s.ok()) return s;
    // Fetch tags are 0..depth-1, ack tags depth.. so one tag tells which list it belongs to.
    for (std::size_t i = 0; i < fetches.size(); ++i) fetches[i].tag = Tag{Tag::kUnary, i};
    for (std::size_t i = 0; i < acks.size(); ++i) {
      acks[i].tag = Tag{Tag::kUnary, fetches.size() + i};
    }
    const auto fetch = [&session](grpc::ClientContext* c, const pb::FetchUndeliveredRequest& r,
                                  grpc::CompletionQueue* q) {
      return session.stub().PrepareAsyncFetchUndelivered(c, r, q);
    };
    const auto ack_call = [&session](grpc::ClientContext* c, const pb::AckRequest& r,
                                     grpc::CompletionQueue* q) {
      return session.stub().PrepareAsyncAck(c, r, q);
    };
    std::vector<std::size_t> free_acks;
    for (std::size_t i = acks.size(); i-- > 0;) free_acks.push_back(i);
    // Pages whose ACK waits for a free slot (only when ACKs lag far behind the fetches).
    std::vector<std::vector<std::uint64_t>> waiting;
    std::size_t fetches_in_flight = 0;
    bool exhausted = false;
    const std::int64_t start = NowNs();
    for (;;) {
      for (FetchSlot& slot : fetches) {
        if (exhausted || slot.busy) continue;
        slot.request.set_limit(kMaxFetchLimit);
        StartCall(session, slot, fetch);
        ++fetches_in_flight;
      }
      while (!waiting.empty() && !free_acks.empty()) {
        AckSlot& slot = acks[free_acks.back()];
        free_acks.pop_back();
        slot.request.mutable_message_ids()->Assign(waiting.back().begin(), waiting.back().end());
        slot.ids = waiting.back().size();
        waiting.pop_back();
        StartCall(session, slot, ack_call);
      }
      if (exhausted && fetches_in_flight == 0 && free_acks.size() == acks.size() &&
          waiting.empty()) {
        break;
      }
      if (control.stopping()) return Status::Ok();
      bool ok = false;
      Tag* tag = session.Next(ok);
      if (tag == nullptr) continue;
      if (tag->kind != Tag::kUnary) {
        const pb::ServerPush* push = nullptr;
        if (Status s = session.OnSubscribeEvent(*tag, ok, &push); !s.ok()) return s;
        continue;
      }
      if (tag->slot < fetches.size()) {
        FetchSlot& slot = fetches[tag->slot];
        slot.busy = false;
        --fetches_in_flight;
        if (!slot.status.ok()) return RpcFailure("FetchUndelivered", slot.status, *slot.context);
        const auto& messages = slot.response.messages();
        if (!messages.empty()) {
          std::vector<std::uint64_t> ids;
          ids.reserve(static_cast<std::size_t>(messages.size()));
          for (const pb::StoredMessage& m : messages) ids.push_back(m.message_id());
          result.ids.insert(result.ids.end(), ids.begin(), ids.end());
          waiting.push_back(std::move(ids));
        }
        if (slot.response.remaining() == 0) exhausted = true;
      } else {
        const std::size_t index = tag->slot - fetches.size();
        AckSlot& slot = acks[index];
        slot.busy = false;
        if (!slot.status.ok()) return RpcFailure("Ack", slot.status, *slot.context);
        result.acknowledged += slot.ids;
        free_acks.push_back(index);
      }
    }
    result.elapsed_ns = NowNs() - start;
    return Status::Ok();
  }

  Endpoint endpoint_;
  std::string text_;
};

}  // namespace

std::unique_ptr<Transport> MakeGrpcTransport(Endpoint endpoint, std::size_t text_bytes) {
  return std::make_unique<GrpcTransport>(std::move(endpoint), text_bytes);
}

}  // namespace messenger::bench

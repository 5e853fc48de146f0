#include "messenger/server/wire_session.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "messenger/codec/limits.h"
#include "messenger/codec/rules.h"

namespace messenger {
namespace {

// Bytes of a MESSAGE_BATCH frame besides its messages: header, list count, `remaining`.
constexpr std::size_t kBatchOverhead = kFrameHeaderSize + 2 + 4;

// Most usernames an ACCOUNT_LIST frame of `max_frame_size` bytes can carry: each name takes a
// length prefix and up to kMaxUsernameBytes, and the cursor is one more name.
std::size_t MaxNamesPerFrame(std::uint32_t max_frame_size) {
  const std::size_t per_name = 2 + kMaxUsernameBytes;
  return (max_frame_size - kFrameHeaderSize - 2) / per_name - 1;
}

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace

WireSession::WireSession(Messenger& messenger, SessionSink& sink, WireOptions options,
                         std::uint64_t now_ms)
    : messenger_(messenger),
      options_(std::move(options)),
      id_(messenger.Attach(sink)),
      decoder_(kMaxPreloginFrameSize),
      logged_out_since_ms_(now_ms),
      last_activity_ms_(now_ms) {
  messenger_.metrics().connections_accepted(Transport::kWire).Add();
  messenger_.metrics().connections_open(Transport::kWire).Add();
}

WireSession::~WireSession() {
  messenger_.Detach(id_);
  messenger_.metrics().connections_open(Transport::kWire).Sub();
}

bool WireSession::OnBytes(std::span<const std::uint8_t> bytes, std::uint64_t now_ms, Bytes& out) {
  if (closing_) return false;
  decoder_.Feed(bytes);
  while (!closing_) {
    std::optional<DecodeResult> decoded = decoder_.Next();
    if (!decoded) break;
    // Only a complete frame restarts the idle timer (docs/PROTOCOL.md, 12.3): a client trickling
    // one byte at a time must not hold the connection open.
    last_activity_ms_ = now_ms;
    // A run of pipelined SENDs, or of ACKs, is answered together (one commit), in order,
    // before the next request of any other kind.
    if (decoded->status.ok() && handshake_done_) {
      if (auto* send = std::get_if<Send>(&decoded->message)) {
        if (!held_acks_.empty()) AnswerHeld(out);
        held_sends_.push_back(std::move(*send));
        held_ids_.push_back(decoded->request_id);
        if (held_ids_.size() == kMaxRequestsPerCommit) AnswerHeld(out);
        continue;
      }
      if (auto* ack = std::get_if<Ack>(&decoded->message)) {
        // A commit removes at most as many ids as one ACK may carry, so a run of ACKs holds the
        // store's writer no longer than one large ACK does. (An ACK with more is refused.)
        const std::size_t n = ack->message_ids.size() <= kMaxAckIds ? ack->message_ids.size() : 0;
        if (!held_sends_.empty() || held_ack_ids_ + n > kMaxAckIds) AnswerHeld(out);
        held_ack_ids_ += n;
        held_acks_.push_back(std::move(*ack));
        held_ids_.push_back(decoded->request_id);
        if (held_ids_.size() == kMaxRequestsPerCommit) AnswerHeld(out);
        continue;
      }
    }
    AnswerHeld(out);
    Handle(*decoded, now_ms, out);
  }
  AnswerHeld(out);
  return !closing_;
}

void WireSession::AnswerHeld(Bytes& out) {
  if (!held_sends_.empty()) {
    std::vector<Result<SendOk>> results = messenger_.SendMany(id_, held_sends_);
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (results[i].ok()) {
        Reply(held_ids_[i], *results[i], out);
      } else {
        ReplyError(held_ids_[i], results[i].status(), out);
      }
    }
  } else if (!held_acks_.empty()) {
    std::vector<std::span<const std::uint64_t>> id_lists;
    id_lists.reserve(held_acks_.size());
    for (const Ack& ack : held_acks_) id_lists.emplace_back(ack.message_ids);
    const std::vector<Status> results = messenger_.AckMany(id_, id_lists);
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (results[i].ok()) {
        Reply(held_ids_[i], Ok{}, out);
      } else {
        ReplyError(held_ids_[i], results[i], out);
      }
    }
  }
  held_sends_.clear();
  held_acks_.clear();
  held_ack_ids_ = 0;
  held_ids_.clear();
}

bool WireSession::OnTick(std::uint64_t now_ms, Bytes& out) {
  if (closing_) return false;
  if (!logged_in_ && now_ms >= logged_out_since_ms_ + options_.login_timeout_ms) {
    Push(SessionEnded{EndReason::kLoginTimeout, "not logged in within the login timeout"}, out);
  } else if (now_ms >= last_activity_ms_ + options_.idle_timeout_ms) {
    Push(SessionEnded{EndReason::kIdleTimeout, "nothing received within the idle timeout"}, out);
  }
  return !closing_;
}

std::uint64_t WireSession::Deadline() const {
  const std::uint64_t idle = last_activity_ms_ + options_.idle_timeout_ms;
  if (logged_in_) return idle;
  return std::min(idle, logged_out_since_ms_ + options_.login_timeout_ms);
}

void WireSession::Handle(const DecodeResult& decoded, std::uint64_t now_ms, Bytes& out) {
  const std::uint32_t id = decoded.request_id;
  if (!decoded.status.ok()) {
    // Before the handshake the peer has not shown it speaks this protocol: every error is fatal.
    return ReplyError(id, decoded.status, out, /*close=*/!handshake_done_);
  }
  const MessageType type = TypeOf(decoded.message);
  if (!handshake_done_) {
    const auto* hello = std::get_if<Hello>(&decoded.message);
    if (hello == nullptr) {
      return ReplyError(id, Status(ErrorCode::kHandshakeRequired, "send HELLO first"), out);
    }
    if (hello->protocol_version != kProtocolVersion) {
      return ReplyError(
          id,
          Status(ErrorCode::kUnsupportedVersion, "this server speaks protocol version " +
                                                     std::to_string(kProtocolVersion) + ", not " +
                                                     std::to_string(hello->protocol_version)),
          out);
    }
    handshake_done_ = true;
    return Reply(id,
                 HelloOk{kProtocolVersion, options_.max_frame_size, kMaxPreloginFrameSize,
                         static_cast<std::uint32_t>(kMaxTextBytes),
                         messenger_.options().max_queued_per_user, options_.server_name},
                 out);
  }
  if (!IsRequest(type)) {
    return ReplyError(id,
                      Status(ErrorCode::kUnexpectedMessage,
                             std::string(MessageTypeName(type)) + " is not a request"),
                      out);
  }

  // Answers a Result<T> with `to_message(value)` or its error.
  auto answer = [&](auto result, auto to_message) {
    if (result.ok()) {
      Reply(id, to_message(std::move(result).value()), out);
    } else {
      ReplyError(id, result.status(), out);
    }
  };
  auto answer_status = [&](const Status& status) {
    if (status.ok()) {
      Reply(id, Ok{}, out);
    } else {
      ReplyError(id, status, out);
    }
  };

  std::visit(
      Overloaded{
          [&](const Hello&) {
            ReplyError(id, Status(ErrorCode::kUnexpectedMessage, "HELLO was already sent"), out);
          },
          [&](const CreateAccount& m) {
            answer_status(messenger_.CreateAccount(m.username, m.password));
          },
          [&](const Login& m) {
            Result<LoginOk> result = messenger_.Login(id_, m.username, m.password);
            if (result.ok()) SetLoggedIn(true, now_ms);
            answer(std::move(result), [](LoginOk ok) { return ok; });
          },
          [&](const Logout&) {
            const Status status = messenger_.Logout(id_);
            if (status.ok()) SetLoggedIn(false, now_ms);
            answer_status(status);
          },
          [&](const ListAccounts& m) {
            // A page of maximum-length names must fit in one frame of the configured size.
            ListAccounts request = m;
            request.limit = static_cast<std::uint16_t>(
                std::min<std::size_t>(request.limit, MaxNamesPerFrame(options_.max_frame_size)));
            answer(messenger_.ListAccounts(id_, request), [](AccountList list) { return list; });
          },
          [&](const Send& m) { answer(messenger_.Send(id_, m), [](SendOk ok) { return ok; }); },
          [&](const FetchUndelivered& m) {
            answer(
                messenger_.FetchUndelivered(id_, m.limit, options_.max_frame_size - kBatchOverhead),
                [](MessageBatch batch) { return batch; });
          },
          [&](const Ack& m) { answer_status(messenger_.Ack(id_, m.message_ids)); },
          [&](const DeleteAccount& m) {
            Result<std::uint32_t> result = messenger_.DeleteAccount(id_, m.confirm);
            if (!result.ok()) return ReplyError(id, result.status(), out);
            if (!m.confirm) return Reply(id, ConfirmRequired{*result}, out);
            SetLoggedIn(false, now_ms);
            Reply(id, Ok{}, out);
          },
          [&](const Ping& m) { Reply(id, Pong{m.nonce}, out); },
          [&](const auto&) {
            // Unreachable: IsRequest() filtered every other alternative out.
            ReplyError(id, Status(ErrorCode::kUnexpectedMessage, "not a request"), out);
          },
      },
      decoded.message);
}

void WireSession::SetLoggedIn(bool logged_in, std::uint64_t now_ms) {
  logged_in_ = logged_in;
  // Only an authenticated peer may send large frames (docs/PROTOCOL.md, "Pre-login limit").
  decoder_.SetMaxFrameSize(logged_in ? options_.max_frame_size : kMaxPreloginFrameSize);
  if (!logged_in) logged_out_since_ms_ = now_ms;
}

void WireSession::Reply(std::uint32_t request_id, Message message, Bytes& out) {
  const Status status = EncodeFrame({request_id, std::move(message)}, out);
  if (!status.ok()) {
    // Only reachable through a bug: tell the peer rather than send a broken frame.
    ReplyError(request_id, Status(ErrorCode::kInternal, "reply could not be encoded"), out);
  }
}

void WireSession::ReplyError(std::uint32_t request_id, const Status& status, Bytes& out,
                             bool close) {
  // Framing errors cannot name the frame they came from.
  const bool framing =
      status.code() == ErrorCode::kFrameTooLarge || status.code() == ErrorCode::kMalformedFrame;
  messenger_.metrics().errors(Transport::kWire, status.code()).Add();
  std::string message = status.message();
  if (!IsValidUtf8(message)) message = std::string(ErrorCodeName(status.code()));
  EncodeFrame({framing ? 0u : request_id, Error{status.code(), std::move(message)}}, out);
  if (close || status.fatal()) closing_ = true;
}

void WireSession::Push(Message message, Bytes& out) {
  EncodeFrame({0, std::move(message)}, out);
  closing_ = true;  // Only SESSION_ENDED is pushed from here, and it ends the connection.
}

}  // namespace messenger

// The field layout of every message, written once and walked by three visitors: the encoder
// (Writer), the decoder (Reader) and Describe (Printer). Because all three walk the same list, the
// encoding, the decoding and the spec's one-line descriptions cannot disagree.
//
// A visitor provides U8/U16/U32/U64/Bool/Str/Enum(name, field) and List(name, vector, element_fn).
#ifndef MESSENGER_CODEC_SRC_FIELDS_H_
#define MESSENGER_CODEC_SRC_FIELDS_H_

#include <concepts>
#include <type_traits>

#include "messenger/codec/messages.h"

namespace messenger::codec_internal {

// M is T or const T: one Fields() serves both the reading and the writing visitors.
template <typename M, typename T>
concept Is = std::same_as<std::remove_const_t<M>, T>;

template <typename IO, Is<Hello> M>
void Fields(IO& io, M& m) {
  io.U16("protocol_version", m.protocol_version);
}
template <typename IO, Is<CreateAccount> M>
void Fields(IO& io, M& m) {
  io.Str("username", m.username);
  io.Str("password", m.password);
}
template <typename IO, Is<Login> M>
void Fields(IO& io, M& m) {
  io.Str("username", m.username);
  io.Str("password", m.password);
}
template <typename IO, Is<Logout> M>
void Fields(IO&, M&) {}
template <typename IO, Is<ListAccounts> M>
void Fields(IO& io, M& m) {
  io.Str("pattern", m.pattern);
  io.Str("cursor", m.cursor);
  io.U16("limit", m.limit);
}
template <typename IO, Is<Send> M>
void Fields(IO& io, M& m) {
  io.Str("recipient", m.recipient);
  io.U64("client_message_id", m.client_message_id);
  io.Str("text", m.text);
}
template <typename IO, Is<FetchUndelivered> M>
void Fields(IO& io, M& m) {
  io.U16("limit", m.limit);
}
template <typename IO, Is<Ack> M>
void Fields(IO& io, M& m) {
  io.List("message_ids", m.message_ids, [&io](auto& id) { io.U64("", id); });
}
template <typename IO, Is<DeleteAccount> M>
void Fields(IO& io, M& m) {
  io.Bool("confirm", m.confirm);
}
template <typename IO, Is<Ping> M>
void Fields(IO& io, M& m) {
  io.U64("nonce", m.nonce);
}
template <typename IO, Is<HelloOk> M>
void Fields(IO& io, M& m) {
  io.U16("protocol_version", m.protocol_version);
  io.U32("max_frame_size", m.max_frame_size);
  io.U32("max_prelogin_frame_size", m.max_prelogin_frame_size);
  io.U32("max_text_bytes", m.max_text_bytes);
  io.U32("max_queued_per_user", m.max_queued_per_user);
  io.Str("server_name", m.server_name);
}
template <typename IO, Is<Ok> M>
void Fields(IO&, M&) {}
template <typename IO, Is<LoginOk> M>
void Fields(IO& io, M& m) {
  io.U32("unread_count", m.unread_count);
}
template <typename IO, Is<AccountList> M>
void Fields(IO& io, M& m) {
  io.List("usernames", m.usernames, [&io](auto& name) { io.Str("", name); });
  io.Str("next_cursor", m.next_cursor);
}
template <typename IO, Is<SendOk> M>
void Fields(IO& io, M& m) {
  io.U64("message_id", m.message_id);
  io.U64("timestamp_ms", m.timestamp_ms);
  io.Enum("delivery", m.delivery);
}
template <typename IO, Is<StoredMessage> M>
void Fields(IO& io, M& m) {
  io.U64("message_id", m.message_id);
  io.Str("sender", m.sender);
  io.U64("timestamp_ms", m.timestamp_ms);
  io.Str("text", m.text);
}
template <typename IO, Is<MessageBatch> M>
void Fields(IO& io, M& m) {
  io.List("messages", m.messages, [&io](auto& message) { io.Nested(message); });
  io.U32("remaining", m.remaining);
}
template <typename IO, Is<ConfirmRequired> M>
void Fields(IO& io, M& m) {
  io.U32("unread_count", m.unread_count);
}
template <typename IO, Is<Pong> M>
void Fields(IO& io, M& m) {
  io.U64("nonce", m.nonce);
}
template <typename IO, Is<Error> M>
void Fields(IO& io, M& m) {
  io.Enum("code", m.code);
  io.Str("message", m.message);
}
template <typename IO, Is<Deliver> M>
void Fields(IO& io, M& m) {
  Fields(io, m.message);  // Flattened: a DELIVER body is exactly one stored message.
}
template <typename IO, Is<SessionEnded> M>
void Fields(IO& io, M& m) {
  io.Enum("reason", m.reason);
  io.Str("message", m.message);
}

// Range checks and names for the enums that travel in bodies.
inline bool IsValidEnum(Delivery v) { return v == Delivery::kQueued || v == Delivery::kDelivered; }
inline bool IsValidEnum(EndReason v) {
  return v == EndReason::kTakeover || v == EndReason::kServerShutdown ||
         v == EndReason::kIdleTimeout || v == EndReason::kLoginTimeout;
}
inline bool IsValidEnum(ErrorCode v) { return IsKnownErrorCode(static_cast<std::uint16_t>(v)); }

std::string_view EnumName(Delivery v);
std::string_view EnumName(EndReason v);
inline std::string_view EnumName(ErrorCode v) { return ErrorCodeName(v); }

}  // namespace messenger::codec_internal

#endif  // MESSENGER_CODEC_SRC_FIELDS_H_

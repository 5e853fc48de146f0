// What the two Store implementations share: the send-log text fingerprint and the refusals of
// store.h, worded once so both stores answer alike. Private to server/store.
#ifndef MESSENGER_SERVER_STORE_STORE_INTERNAL_H_
#define MESSENGER_SERVER_STORE_STORE_INTERNAL_H_

#include <cstdint>
#include <string_view>

#include "messenger/codec/status.h"

namespace messenger::store_internal {

// 64-bit FNV-1a of a message text, kept in the send log so that a retried SEND can be told apart
// from a different message reusing its client id without keeping every text for the whole dedupe
// window. Stable across builds and platforms because the SQLite store keeps it on disk. Not
// collision resistant, which is acceptable: a sender who crafts a collision only gets their own
// second message answered as a retry of the first.
inline std::uint64_t TextFingerprint(std::string_view text) {
  constexpr std::uint64_t kOffsetBasis = 0xcbf29ce484222325ull;
  constexpr std::uint64_t kPrime = 0x100000001b3ull;
  std::uint64_t hash = kOffsetBasis;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= kPrime;
  }
  return hash;
}

inline Status UsernameTaken() {
  return Status(ErrorCode::kUsernameTaken, "the name is taken or retired");
}
inline Status NoSuchAccount() { return Status(ErrorCode::kUnknownRecipient, "no such account"); }
inline Status ClientIdReused() {
  return Status(ErrorCode::kClientIdReused,
                "client_message_id was already used for a different recipient or text");
}
inline Status NotAcceptingNew() {
  return Status(ErrorCode::kRateLimited, "too many messages; try again later");
}
inline Status QueueFull() { return Status(ErrorCode::kQueueFull, "the recipient's queue is full"); }

}  // namespace messenger::store_internal

#endif  // MESSENGER_SERVER_STORE_STORE_INTERNAL_H_

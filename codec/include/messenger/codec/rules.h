// The protocol's argument rules (docs/PROTOCOL.md, "Limits and rules"), shared by server and
// client so both judge a name or text the same way. Pure functions; thread-safe.
#ifndef MESSENGER_CODEC_RULES_H_
#define MESSENGER_CODEC_RULES_H_

#include <string>
#include <string_view>

#include "messenger/codec/status.h"

namespace messenger {

// Returns true iff `bytes` is well-formed UTF-8 (no overlong forms, surrogates or values above
// U+10FFFF).
bool IsValidUtf8(std::string_view bytes);

// OK, or kInvalidUsername saying which rule `name` breaks: 1 to kMaxUsernameBytes characters from
// [A-Za-z0-9._-], starting with a letter or digit.
Status CheckUsername(std::string_view name);

// OK, or kInvalidPassword: kMinPasswordBytes to kMaxPasswordBytes bytes of valid UTF-8.
Status CheckPassword(std::string_view password);

// OK, or kInvalidText: 1 to kMaxTextBytes bytes of valid UTF-8.
Status CheckText(std::string_view text);

// The key under which a name is unique: ASCII lower case, so "Alice" and "alice" are one account.
// REQUIRES: CheckUsername(name).ok().
std::string CanonicalUsername(std::string_view name);

}  // namespace messenger

#endif  // MESSENGER_CODEC_RULES_H_

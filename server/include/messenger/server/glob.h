// fnmatch-style glob matching for LIST_ACCOUNTS (docs/PROTOCOL.md, "Patterns").
#ifndef MESSENGER_SERVER_GLOB_H_
#define MESSENGER_SERVER_GLOB_H_

#include <string_view>

#include "messenger/codec/status.h"

namespace messenger {

// OK, or kInvalidPattern: longer than kMaxPatternBytes, or an unterminated `[`.
Status CheckPattern(std::string_view pattern);

// True iff `name` matches `pattern` (`*`, `?`, `[seq]`, `[!seq]`, ranges), both read by code
// point, ASCII case-insensitively. Runs in O(|pattern| * |name|) time with no backtracking blow-up.
// REQUIRES: CheckPattern(pattern).ok().
bool GlobMatch(std::string_view pattern, std::string_view name);

}  // namespace messenger

#endif  // MESSENGER_SERVER_GLOB_H_

#include "messenger/server/glob.h"

#include <string>
#include <vector>

#include "messenger/codec/limits.h"

namespace messenger {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// One pattern element, matching a single character unless it is a star.
struct Token {
  enum Kind { kLiteral, kAny, kStar, kSet } kind = kLiteral;
  char literal = 0;
  bool negated = false;
  std::vector<std::pair<char, char>> ranges;  // Inclusive, lower-cased.

  bool Matches(char c) const {
    switch (kind) {
      case kLiteral:
        return c == literal;
      case kAny:
        return true;
      case kStar:
        return false;
      case kSet: {
        bool in = false;
        for (const auto& [lo, hi] : ranges) in = in || (lo <= c && c <= hi);
        return in != negated;
      }
    }
    return false;
  }
};

// Parses `pattern`; false on an unterminated `[`.
bool Parse(std::string_view pattern, std::vector<Token>& tokens) {
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    Token token;
    if (c == '*') {
      // Consecutive stars are one star: keeps the matcher's work independent of their number.
      if (!tokens.empty() && tokens.back().kind == Token::kStar) continue;
      token.kind = Token::kStar;
    } else if (c == '?') {
      token.kind = Token::kAny;
    } else if (c == '[') {
      token.kind = Token::kSet;
      std::size_t j = i + 1;
      if (j < pattern.size() && pattern[j] == '!') {
        token.negated = true;
        ++j;
      }
      const std::size_t first = j;
      // `]` right after `[` or `[!` is a member, not the end.
      while (j < pattern.size() && (pattern[j] != ']' || j == first)) {
        const char lo = Lower(pattern[j]);
        if (j + 2 < pattern.size() && pattern[j + 1] == '-' && pattern[j + 2] != ']') {
          token.ranges.emplace_back(lo, Lower(pattern[j + 2]));
          j += 3;
        } else {
          token.ranges.emplace_back(lo, lo);
          ++j;
        }
      }
      if (j >= pattern.size()) return false;
      i = j;
    } else {
      token.literal = Lower(c);
    }
    tokens.push_back(std::move(token));
  }
  return true;
}

}  // namespace

Status CheckPattern(std::string_view pattern) {
  if (pattern.size() > kMaxPatternBytes) {
    return Status(ErrorCode::kInvalidPattern,
                  "a pattern has at most " + std::to_string(kMaxPatternBytes) + " bytes");
  }
  std::vector<Token> tokens;
  if (!Parse(pattern, tokens)) {
    return Status(ErrorCode::kInvalidPattern, "unterminated '[' in pattern");
  }
  return Status::Ok();
}

bool GlobMatch(std::string_view pattern, std::string_view name) {
  std::vector<Token> tokens;
  if (!Parse(pattern, tokens)) return false;
  // Greedy match remembering only the last star: when a later part fails, the last star absorbs
  // one more character and matching resumes after it. A star never needs to revisit an earlier
  // star's choice, so this is O(|pattern| * |name|) without exponential backtracking.
  std::size_t t = 0, n = 0;
  std::size_t star_t = std::string_view::npos, star_n = 0;
  while (n < name.size()) {
    const char c = Lower(name[n]);
    if (t < tokens.size() && tokens[t].kind == Token::kStar) {
      star_t = t++;
      star_n = n;
    } else if (t < tokens.size() && tokens[t].Matches(c)) {
      ++t;
      ++n;
    } else if (star_t != std::string_view::npos) {
      t = star_t + 1;
      n = ++star_n;
    } else {
      return false;
    }
  }
  while (t < tokens.size() && tokens[t].kind == Token::kStar) ++t;
  return t == tokens.size();
}

}  // namespace messenger

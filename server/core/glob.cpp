#include "messenger/server/glob.h"

#include <string>
#include <utility>
#include <vector>

#include "messenger/codec/limits.h"

namespace messenger {
namespace {

char32_t Lower(char32_t c) { return (c >= U'A' && c <= U'Z') ? c - U'A' + U'a' : c; }

// The code points of `text`, ASCII lower-cased (section 9.4 reads patterns by code point). Bytes
// that do not start a well-formed sequence count as one character each, so any input is safe;
// the codec has already rejected such text on the wire.
std::u32string LowerCodePoints(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const std::size_t length = byte < 0xC0 ? 1 : byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4;
    char32_t c = length == 1   ? byte
                 : length == 2 ? byte & 0x1Fu
                 : length == 3 ? byte & 0x0Fu
                               : byte & 0x07u;
    bool well_formed = i + length <= text.size();
    for (std::size_t k = 1; well_formed && k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      well_formed = (next & 0xC0u) == 0x80u;
      c = (c << 6) | (next & 0x3Fu);
    }
    if (!well_formed || length == 1) {
      out.push_back(Lower(byte));
      ++i;
    } else {
      out.push_back(c);
      i += length;
    }
  }
  return out;
}

// One pattern element, matching a single character unless it is a star.
struct Token {
  enum Kind { kLiteral, kAny, kStar, kSet } kind = kLiteral;
  char32_t literal = 0;
  bool negated = false;
  std::vector<std::pair<char32_t, char32_t>> ranges;  // Inclusive, lower-cased.

  bool Matches(char32_t c) const {
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

// Parses `pattern` (lower-cased code points); false on an unterminated `[`.
bool Parse(const std::u32string& pattern, std::vector<Token>& tokens) {
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char32_t c = pattern[i];
    Token token;
    if (c == U'*') {
      // Consecutive stars are one star: keeps the matcher's work independent of their number.
      if (!tokens.empty() && tokens.back().kind == Token::kStar) continue;
      token.kind = Token::kStar;
    } else if (c == U'?') {
      token.kind = Token::kAny;
    } else if (c == U'[') {
      token.kind = Token::kSet;
      std::size_t j = i + 1;
      if (j < pattern.size() && pattern[j] == U'!') {
        token.negated = true;
        ++j;
      }
      const std::size_t first = j;
      // `]` right after `[` or `[!` is a member, not the end.
      while (j < pattern.size() && (pattern[j] != U']' || j == first)) {
        if (j + 2 < pattern.size() && pattern[j + 1] == U'-' && pattern[j + 2] != U']') {
          token.ranges.emplace_back(pattern[j], pattern[j + 2]);
          j += 3;
        } else {
          token.ranges.emplace_back(pattern[j], pattern[j]);
          ++j;
        }
      }
      if (j >= pattern.size()) return false;
      i = j;
    } else {
      token.literal = c;
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
  if (!Parse(LowerCodePoints(pattern), tokens)) {
    return Status(ErrorCode::kInvalidPattern, "unterminated '[' in pattern");
  }
  return Status::Ok();
}

bool GlobMatch(std::string_view pattern, std::string_view name) {
  std::vector<Token> tokens;
  if (!Parse(LowerCodePoints(pattern), tokens)) return false;
  const std::u32string chars = LowerCodePoints(name);
  // Greedy match remembering only the last star: when a later part fails, the last star absorbs
  // one more character and matching resumes after it. A star never needs to revisit an earlier
  // star's choice, so this is O(|pattern| * |name|) without exponential backtracking.
  std::size_t t = 0, n = 0;
  std::size_t star_t = std::string_view::npos, star_n = 0;
  while (n < chars.size()) {
    const char32_t c = chars[n];
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

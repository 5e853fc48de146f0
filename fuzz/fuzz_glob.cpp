// Fuzzes the LIST_ACCOUNTS glob (CheckPattern, GlobMatch) against a reference matcher written from
// docs/PROTOCOL.md section 9.4 alone.
//
// Input: [pattern length n][n pattern bytes][name bytes]. Name bytes are masked to 7 bits: the
// server only ever matches account keys, which are ASCII, so every input yields a name it could
// meet. Invariants, each aborting on violation so libFuzzer keeps the input:
//   - CheckPattern accepts exactly the patterns the reference can parse (at most 128 bytes, every
//     `[` closed);
//   - for a pattern that is valid UTF-8 (the codec rejects any other), GlobMatch equals the
//     reference, which reads the pattern by code point and runs a memoised DP in
//     O(|pattern| * |name|);
//   - every call returns within libFuzzer's -timeout, so no pattern makes GlobMatch backtrack
//     exponentially (inputs like `*a*a*a*a*b` against long names are in the seed corpus).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/codec/limits.h"
#include "messenger/codec/rules.h"
#include "messenger/server/glob.h"

namespace messenger {
namespace {

// Longest name tried: far beyond the 32 bytes of a username, so a matcher that is superlinear
// in the name shows up as a timeout.
constexpr std::size_t kMaxNameBytes = 4096;

[[noreturn]] void Violation(const char* invariant, std::string_view pattern, std::string_view name,
                            const std::string& detail) {
  std::fprintf(stderr, "fuzz_glob: invariant violated: %s\n  pattern: ", invariant);
  for (const char c : pattern) std::fprintf(stderr, "\\x%02X", static_cast<unsigned char>(c));
  std::fprintf(stderr, "\n  name: ");
  for (const char c : name) std::fprintf(stderr, "\\x%02X", static_cast<unsigned char>(c));
  std::fprintf(stderr, "\n  %s\n", detail.c_str());
  std::abort();
}

char32_t Lower(char32_t c) { return (c >= U'A' && c <= U'Z') ? c - U'A' + U'a' : c; }

// The code points of `text`. REQUIRES: IsValidUtf8(text).
std::u32string CodePoints(std::string_view text) {
  std::u32string out;
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const std::size_t length = byte < 0x80 ? 1 : byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4;
    char32_t c = length == 1   ? byte
                 : length == 2 ? byte & 0x1Fu
                 : length == 3 ? byte & 0x0Fu
                               : byte & 0x07u;
    for (std::size_t k = 1; k < length; ++k) {
      c = (c << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3Fu);
    }
    out.push_back(c);
    i += length;
  }
  return out;
}

// One element of a pattern, as section 9.4 describes it.
struct Element {
  enum Kind { kChar, kAny, kStar, kSet } kind = kChar;
  char32_t c = 0;                                     // kChar
  bool negated = false;                               // kSet
  std::vector<std::pair<char32_t, char32_t>> ranges;  // kSet; single members are (c, c)

  bool Matches(char32_t x) const {
    switch (kind) {
      case kChar:
        return x == c;
      case kAny:
        return true;
      case kStar:
        return false;
      case kSet: {
        bool in = false;
        // A range "with x after y matches nothing": lo > hi contains no x.
        for (const auto& [lo, hi] : ranges) in = in || (lo <= x && x <= hi);
        return in != negated;
      }
    }
    return false;
  }
};

// The pattern's elements, with pattern and name both in ASCII lower case (section 9.4); nullopt
// when a `[` has no closing `]`.
//
// Inside a set: `]` right after `[` or `[!` is a member; `x-y` is a range when `-` is neither
// the first nor the last member (a `-` right before the closing `]` is literal); everything else,
// `*`, `?`, `[` and `!` included, is a literal member. Outside a set only `*`, `?` and `[` are
// special. No escapes.
std::optional<std::vector<Element>> ParseReference(const std::u32string& pattern) {
  std::vector<Element> elements;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    Element element;
    switch (pattern[i]) {
      case U'*':
        element.kind = Element::kStar;
        break;
      case U'?':
        element.kind = Element::kAny;
        break;
      case U'[': {
        element.kind = Element::kSet;
        std::size_t j = i + 1;
        if (j < pattern.size() && pattern[j] == U'!') {
          element.negated = true;
          ++j;
        }
        const std::size_t first = j;
        for (;;) {
          if (j >= pattern.size()) return std::nullopt;
          if (pattern[j] == U']' && j != first) break;
          const char32_t lo = Lower(pattern[j]);
          const bool range =
              j + 2 < pattern.size() && pattern[j + 1] == U'-' && pattern[j + 2] != U']';
          if (range) {
            element.ranges.emplace_back(lo, Lower(pattern[j + 2]));
            j += 3;
          } else {
            element.ranges.emplace_back(lo, lo);
            j += 1;
          }
        }
        i = j;  // The closing `]`.
        break;
      }
      default:
        element.c = Lower(pattern[i]);
        break;
    }
    elements.push_back(std::move(element));
  }
  return elements;
}

// Whole-name match by dynamic programming: matches[e][n] says whether elements[e..] match
// name[n..]. Filled from the end, so each cell is computed once from cells already known.
bool ReferenceMatch(const std::vector<Element>& elements, const std::u32string& name) {
  const std::size_t rows = elements.size() + 1;
  const std::size_t columns = name.size() + 1;
  std::vector<std::uint8_t> matches(rows * columns, 0);
  const auto at = [&](std::size_t e, std::size_t n) -> std::uint8_t& {
    return matches[e * columns + n];
  };
  at(elements.size(), name.size()) = 1;
  for (std::size_t e = elements.size(); e-- > 0;) {
    for (std::size_t n = columns; n-- > 0;) {
      const Element& element = elements[e];
      if (element.kind == Element::kStar) {
        // None of the name, or one character more.
        at(e, n) = at(e + 1, n) || (n < name.size() && at(e, n + 1));
      } else {
        at(e, n) = n < name.size() && element.Matches(Lower(name[n])) && at(e + 1, n + 1);
      }
    }
  }
  return at(0, 0) != 0;
}

}  // namespace
}  // namespace messenger

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace messenger;
  if (size == 0) return 0;
  const std::size_t pattern_size = std::min<std::size_t>(data[0], size - 1);
  const std::string pattern(reinterpret_cast<const char*>(data + 1), pattern_size);
  std::string name;
  for (std::size_t i = 1 + pattern_size; i < size && name.size() < kMaxNameBytes; ++i) {
    name.push_back(static_cast<char>(data[i] & 0x7F));
  }

  const bool accepted = CheckPattern(pattern).ok();
  if (!IsValidUtf8(pattern)) {
    // The server never sees such a pattern (the codec answers INVALID_UTF8), but the functions
    // must still be safe and bounded on any bytes.
    if (accepted) GlobMatch(pattern, name);
    return 0;
  }
  const std::optional<std::vector<Element>> elements = ParseReference(CodePoints(pattern));
  const bool valid = elements.has_value() && pattern.size() <= kMaxPatternBytes;
  if (accepted != valid) {
    Violation(
        "CheckPattern accepts exactly the patterns of at most 128 bytes with every `[` closed",
        pattern, name,
        std::string("CheckPattern ") + (accepted ? "accepted" : "rejected") +
            ", the reference says " + (valid ? "valid" : "invalid"));
  }
  if (!accepted) return 0;
  const bool got = GlobMatch(pattern, name);
  const bool want = ReferenceMatch(*elements, CodePoints(name));
  if (got != want) {
    Violation("GlobMatch agrees with the reference matcher of section 9.4", pattern, name,
              std::string("GlobMatch says ") + (got ? "match" : "no match") +
                  ", the reference says " + (want ? "match" : "no match"));
  }
  return 0;
}

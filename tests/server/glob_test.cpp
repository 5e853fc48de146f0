#include "messenger/server/glob.h"

#include <fnmatch.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

namespace messenger {
namespace {

TEST(GlobTest, StarMatchesAnyRunIncludingEmpty) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*", "alice"));
  EXPECT_TRUE(GlobMatch("al*", "al"));
  EXPECT_TRUE(GlobMatch("a*e", "alice"));
  EXPECT_FALSE(GlobMatch("a*x", "alice"));
}

TEST(GlobTest, QuestionMarkMatchesExactlyOneCharacter) {
  EXPECT_TRUE(GlobMatch("b?b", "bob"));
  EXPECT_FALSE(GlobMatch("b?b", "bb"));
  EXPECT_FALSE(GlobMatch("b?b", "boob"));
}

TEST(GlobTest, SetsRangesAndNegation) {
  EXPECT_TRUE(GlobMatch("[abc]*", "bob"));
  EXPECT_FALSE(GlobMatch("[abc]*", "dave"));
  EXPECT_TRUE(GlobMatch("user[0-9]", "user7"));
  EXPECT_FALSE(GlobMatch("user[0-9]", "userx"));
  EXPECT_TRUE(GlobMatch("[!a]*", "bob"));
  EXPECT_FALSE(GlobMatch("[!a]*", "alice"));
  EXPECT_TRUE(GlobMatch("[]x]", "]"));   // `]` first in a set is a member.
  EXPECT_TRUE(GlobMatch("[!]x]", "a"));  // ... also after `!`.
  EXPECT_TRUE(GlobMatch("[a-]", "-"));   // A trailing `-` is literal.
}

TEST(GlobTest, PatternsAreReadByCodePointNotByte) {
  // "é" is two bytes (C3 A9) but one character: one `?`, one range end.
  EXPECT_FALSE(GlobMatch("[\u00e9-z]", "a")) << "a range from U+00E9 holds no ASCII letter";
  EXPECT_FALSE(GlobMatch("[\u00e9-z]*", "bob"));
  EXPECT_TRUE(GlobMatch("[a-\u00e9]", "z"));
  EXPECT_TRUE(GlobMatch("[!\u00e9]ob", "bob"));
  EXPECT_FALSE(GlobMatch("\u00e9", "a"));
  EXPECT_TRUE(GlobMatch("?", "\u00e9"));
}

TEST(GlobTest, MatchingIgnoresAsciiCase) {
  EXPECT_TRUE(GlobMatch("ALICE", "alice"));
  EXPECT_TRUE(GlobMatch("a*", "Alice"));
  EXPECT_TRUE(GlobMatch("[A-C]*", "bob"));
}

TEST(GlobTest, PathologicalStarsDoNotBacktrackExponentially) {
  // A naive recursive matcher needs ~C(60, 8) steps here; this one is O(|p| * |n|).
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*b", std::string(60, 'a')));
  EXPECT_TRUE(GlobMatch("*a*a*a*a*a*a*a*a*b", std::string(60, 'a') + "b"));
}

TEST(GlobTest, CheckPatternRejectsUnterminatedSetAndOverlongPatterns) {
  EXPECT_TRUE(CheckPattern("a*[bc]").ok());
  EXPECT_EQ(CheckPattern("a[bc").code(), ErrorCode::kInvalidPattern);
  EXPECT_EQ(CheckPattern("[!").code(), ErrorCode::kInvalidPattern);
  EXPECT_EQ(CheckPattern("[]").code(), ErrorCode::kInvalidPattern);  // `]` is a member here.
  EXPECT_TRUE(CheckPattern(std::string(128, '*')).ok());
  EXPECT_EQ(CheckPattern(std::string(129, '*')).code(), ErrorCode::kInvalidPattern);
}

// libc's fnmatch (case-folding, no escapes) is the reference for every well-formed pattern.
TEST(GlobTest, AgreesWithFnmatchOnRandomPatterns) {
  std::mt19937 rng(20261124);
  const std::string pattern_alphabet = "abAB*?[]!-";
  const std::string name_alphabet = "abAB-";
  int compared = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string pattern, name;
    for (int n = static_cast<int>(rng() % 7); n > 0; --n) {
      pattern += pattern_alphabet[rng() % pattern_alphabet.size()];
    }
    for (int n = static_cast<int>(rng() % 7); n > 0; --n) {
      name += name_alphabet[rng() % name_alphabet.size()];
    }
    if (!CheckPattern(pattern).ok()) continue;
    const bool expected = fnmatch(pattern.c_str(), name.c_str(), FNM_NOESCAPE | FNM_CASEFOLD) == 0;
    ASSERT_EQ(GlobMatch(pattern, name), expected)
        << "pattern '" << pattern << "' name '" << name << "'";
    ++compared;
  }
  EXPECT_GT(compared, 10000);
}

}  // namespace
}  // namespace messenger

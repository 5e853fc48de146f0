// The scenario language without a server: frame templates match, capture and report differences
// as documented, and scenario files are checked completely before anything runs.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "frame_template.h"
#include "scenario.h"

namespace messenger::conformance {
namespace {

// Matches `expected` (with holes) against the frame description `actual`.
std::optional<std::string> MatchLines(const std::string& expected, const std::string& actual,
                                      Bindings& captures) {
  const Result<FrameTemplate> e = ParseTemplate(expected, /*holes=*/true);
  const Result<FrameTemplate> a = ParseTemplate(actual, /*holes=*/false);
  if (!e.ok()) return "expected line: " + e.status().message();
  if (!a.ok()) return "actual line: " + a.status().message();
  return Match(*e, expected, *a, actual, captures);
}

TEST(FrameTemplateTest, WildcardsMatchAnySingleValueIncludingListsAndTheRequestId) {
  Bindings captures;
  EXPECT_EQ(
      MatchLines("SEND_OK #* message_id=* timestamp_ms=* delivery=*",
                 "SEND_OK #7 message_id=1001 timestamp_ms=1735732800000 delivery=QUEUED", captures),
      std::nullopt);
  EXPECT_EQ(MatchLines("ACCOUNT_LIST #4 usernames=* next_cursor=\"\"",
                       "ACCOUNT_LIST #4 usernames=[\"alice\",\"Bob\"] next_cursor=\"\"", captures),
            std::nullopt);
  EXPECT_TRUE(captures.empty());
}

TEST(FrameTemplateTest, CapturesTakeTheArrivedValueInOneLineForm) {
  Bindings captures;
  ASSERT_EQ(
      MatchLines("ACCOUNT_LIST #4 usernames=[$first,*] next_cursor=$cursor",
                 "ACCOUNT_LIST #4 usernames=[\"alice\",\"Bob\"] next_cursor=\"bob\"", captures),
      std::nullopt);
  EXPECT_EQ(captures.at("first"), "\"alice\"");
  EXPECT_EQ(captures.at("cursor"), "\"bob\"");
  // Used again, a capture stands for its value: in requests and in later expectations.
  EXPECT_EQ(Substitute("LIST_ACCOUNTS #5 pattern=\"$first\" cursor=$cursor limit=2", captures),
            "LIST_ACCOUNTS #5 pattern=\"$first\" cursor=\"bob\" limit=2");
}

TEST(FrameTemplateTest, ACaptureUsedTwiceInOneLineMustSeeTheSameValue) {
  Bindings captures;
  const std::optional<std::string> difference = MatchLines(
      "MESSAGE_BATCH #3 messages=[{message_id=$m sender=* timestamp_ms=* text=*},"
      "{message_id=$m sender=* timestamp_ms=* text=*}] remaining=0",
      "MESSAGE_BATCH #3 messages=[{message_id=1 sender=\"a\" timestamp_ms=2 text=\"x\"},"
      "{message_id=3 sender=\"a\" timestamp_ms=4 text=\"y\"}] remaining=0",
      captures);
  ASSERT_TRUE(difference.has_value());
  EXPECT_NE(difference->find("field 'messages[1].message_id'"), std::string::npos) << *difference;
  EXPECT_TRUE(captures.empty()) << "a failed match must not capture anything";
}

TEST(FrameTemplateTest, DifferencesNameTheFieldAndShowBothValues) {
  Bindings captures;
  EXPECT_EQ(MatchLines("DELIVER #0 message_id=* sender=\"alice\" timestamp_ms=* text=\"hi\"",
                       "DELIVER #0 message_id=5 sender=\"alice\" timestamp_ms=6 text=\"hello\"",
                       captures),
            "field 'text': expected \"hi\", got \"hello\"");
  EXPECT_EQ(MatchLines("OK #3", "OK #4", captures), "request id: expected 3, got 4");
  EXPECT_EQ(MatchLines("OK #3", "ERROR #3 code=NOT_LOGGED_IN message=\"\"", captures),
            "expected OK, got ERROR");
  EXPECT_EQ(MatchLines("ACK #1 message_ids=[1]", "ACK #1 message_ids=[1,2]", captures),
            "field 'message_ids': expected 1 item(s), got 2: [1,2]");
}

TEST(FrameTemplateTest, StringsAreComparedByTheirBytesNotTheirSpelling) {
  Bindings captures;
  // \x0a and \x0A are the same byte; the codec writes the second.
  EXPECT_EQ(MatchLines("SEND #1 recipient=\"b\" client_message_id=1 text=\"a\\x0ab\"",
                       "SEND #1 recipient=\"b\" client_message_id=1 text=\"a\\x0Ab\"", captures),
            std::nullopt);
}

TEST(FrameTemplateTest, DollarSignsInsideStringsAreText) {
  EXPECT_EQ(Variables("SEND #1 recipient=$who client_message_id=$id text=\"costs $5 \\\" $x\""),
            (std::vector<std::string>{"who", "id"}));
  EXPECT_EQ(Substitute("PING #1 nonce=$n text=\"$n\"", {{"n", "7"}}),
            "PING #1 nonce=7 text=\"$n\"");
}

TEST(FrameTemplateTest, CheckTemplateRefusesWhatNoFrameCouldMatch) {
  EXPECT_TRUE(CheckTemplate("SEND_OK #3 message_id=$m timestamp_ms=* delivery=QUEUED", true).ok());
  EXPECT_TRUE(CheckTemplate("OK #2", false).ok());

  const Status unknown_type = CheckTemplate("SEND_OKAY #3", true);
  EXPECT_NE(unknown_type.message().find("'SEND_OKAY' is not a message type"), std::string::npos)
      << unknown_type.message();
  const Status missing = CheckTemplate("SEND_OK #3 message_id=* delivery=QUEUED", true);
  EXPECT_NE(missing.message().find("SEND_OK has the fields message_id timestamp_ms delivery"),
            std::string::npos)
      << missing.message();
  const Status bad_enum =
      CheckTemplate("SEND_OK #3 message_id=* timestamp_ms=* delivery=SENT", true);
  EXPECT_NE(bad_enum.message().find("field 'delivery'"), std::string::npos) << bad_enum.message();
  EXPECT_NE(bad_enum.message().find("'SENT' is not a value"), std::string::npos)
      << bad_enum.message();
  const Status leading_zero = CheckTemplate("PING #1 nonce=01", true);
  EXPECT_NE(leading_zero.message().find("field 'nonce' is not in the canonical one-line form"),
            std::string::npos)
      << leading_zero.message();
  EXPECT_FALSE(CheckTemplate("PONG #1 nonce=*", false).ok()) << "holes need holes=true";
}

Result<Scenario> Parse(const std::string& text) { return ParseScenario(text, "test.scn"); }

// The error of a scenario that must not parse.
std::string ErrorOf(const std::string& text) {
  const Result<Scenario> scenario = Parse(text);
  return scenario.ok() ? std::string("(it parsed)") : scenario.status().message();
}

TEST(ScenarioTest, HeaderLinesGiveTitleTagsAndServerOptions) {
  const Result<Scenario> scenario = Parse(
      "# The title.\n# More words.\ntags: a, b c\nserver-args: --max-connections 4\n"
      "connect x\nx > PING #1 nonce=2\nx < PONG #1 nonce=2\n");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_EQ(scenario->title, "The title.");
  EXPECT_EQ(scenario->tags, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(scenario->server_args, (std::vector<std::string>{"--max-connections", "4"}));
  ASSERT_EQ(scenario->steps.size(), 3u);
  EXPECT_EQ(scenario->steps[2].kind, Step::Kind::kExpect);
  EXPECT_EQ(scenario->steps[2].line, 7);
  EXPECT_FALSE(scenario->restarts_server);
}

TEST(ScenarioTest, LoginMacroExpandsToTheHandshakeAndALoginItChecks) {
  const Result<Scenario> scenario = Parse("login second as Alice unread=2\n");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  std::vector<std::string> expansion;
  for (const Step& step : scenario->steps) {
    EXPECT_EQ(step.line, 1);
    expansion.push_back(ShowStep(step));
  }
  EXPECT_EQ(expansion,
            (std::vector<std::string>{
                "connect second",
                "second > HELLO #1 protocol_version=1",
                "second < HELLO_OK #1 protocol_version=1 max_frame_size=* "
                "max_prelogin_frame_size=1024 max_text_bytes=4096 max_queued_per_user=* "
                "server_name=*",
                "second > LOGIN #2 username=\"Alice\" password=\"correct horse battery staple\"",
                "second < LOGIN_OK #2 unread_count=2",
            }));
}

TEST(ScenarioTest, MacroRequestIdsFollowTheIdsTheScenarioUsed) {
  const Result<Scenario> scenario = Parse(
      "connect a\na > HELLO #40 protocol_version=1\na < HELLO_OK #40 protocol_version=1 "
      "max_frame_size=* max_prelogin_frame_size=* max_text_bytes=* max_queued_per_user=* "
      "server_name=*\nclose a\naccounts bob\n");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_EQ(ShowStep(scenario->steps[5]), "accounts > HELLO #1 protocol_version=1")
      << "a new connection counts from 1";
  EXPECT_EQ(ShowStep(scenario->steps[7]),
            "accounts > CREATE_ACCOUNT #2 username=\"bob\" password=\"correct horse battery "
            "staple\"");
}

TEST(ScenarioTest, RawBytesAcceptPairsRunsAndRepeats) {
  const Result<Scenario> scenario = Parse("connect a\na > raw 00 0102 ff*3\n");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_EQ(scenario->steps[1].bytes, (Bytes{0x00, 0x01, 0x02, 0xff, 0xff, 0xff}));
  EXPECT_NE(ErrorOf("connect a\na > raw 0\n").find("test.scn:2: '0' is not whole bytes"),
            std::string::npos);
  EXPECT_NE(ErrorOf("connect a\na > raw 00*0\n").find("a repeated byte is written HH*N"),
            std::string::npos);
}

TEST(ScenarioTest, MistakesAreReportedWithFileAndLineBeforeAnythingRuns) {
  EXPECT_EQ(ErrorOf("alice > PING #1 nonce=1\n"),
            "test.scn:1: alice is not connected here (write 'connect alice' first)");
  EXPECT_NE(ErrorOf("connect a\na > ACK #1 message_ids=[$m]\n")
                .find("test.scn:2: $m is used before an expectation captures it"),
            std::string::npos);
  EXPECT_NE(ErrorOf("connect a\na > PING #1 nonce=*\n").find("'*' matches values in expectations"),
            std::string::npos);
  EXPECT_NE(ErrorOf("connect a\na > PING #0 nonce=1\n").find("cannot be encoded"),
            std::string::npos)
      << "a request with id 0 can only be sent raw";
  EXPECT_NE(ErrorOf("connect a\na < PONG #1 nonse=1\n").find("test.scn:2: PONG has the fields"),
            std::string::npos);
  EXPECT_NE(ErrorOf("connect a\nconnect a\n").find("a is already connected"), std::string::npos);
  EXPECT_NE(ErrorOf("connect a\na < closed\na > PING #1 nonce=1\n").find("a is not connected"),
            std::string::npos)
      << "a connection the server closed cannot be used";
  EXPECT_NE(ErrorOf("connect a\na !< soon\n").find("expected a duration"), std::string::npos);
  EXPECT_NE(ErrorOf("jump\n").find("test.scn:1: expected a step"), std::string::npos);
  EXPECT_NE(ErrorOf("swarm 1 clients 10 messages\n").find("usage: swarm"), std::string::npos);
  EXPECT_NE(ErrorOf("connect a\ntags: late\n").find("tags: must come before the first step"),
            std::string::npos);
  EXPECT_NE(ErrorOf("# only a comment\n").find("the scenario has no steps"), std::string::npos);
}

TEST(ScenarioTest, RestartAndCrashAreNoted) {
  const Result<Scenario> scenario = Parse("restart\ncrash\n");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_TRUE(scenario->restarts_server);
}

TEST(ScenarioTest, ClientsTakeTheDefaultTransportUnlessTheyNameOne) {
  const Result<Scenario> scenario = ParseScenario(
      "connect a\nhello b over grpc\nlogin c as b over wire unread=1\n", "t.scn", Transport::kWire);
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_EQ(scenario->steps[0].transport, Transport::kWire);
  EXPECT_EQ(scenario->steps[1].transport, Transport::kGrpc);
  EXPECT_EQ(scenario->steps[1].kind, Step::Kind::kConnect);
  EXPECT_EQ(scenario->steps.back().transport, Transport::kWire);
  EXPECT_TRUE(scenario->uses_grpc);

  const Result<Scenario> all_grpc = ParseScenario("connect a\n", "t.scn", Transport::kGrpc);
  ASSERT_TRUE(all_grpc.ok());
  EXPECT_EQ(all_grpc->steps[0].transport, Transport::kGrpc);
  EXPECT_TRUE(all_grpc->uses_grpc);
  EXPECT_FALSE(Parse("connect a\n")->uses_grpc);
  EXPECT_NE(ErrorOf("connect a over pigeon\n").find("'pigeon' is not a transport"),
            std::string::npos);
}

TEST(ScenarioTest, TlsRefusedNamesHowTheClientFailsAndUsesTheDefaultTransport) {
  const Result<Scenario> scenario = ParseScenario(
      "tls-refused a untrusted-ca\ntls-refused b wrong-name\ntls-refused c plaintext\n", "t.scn",
      Transport::kGrpc);
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  ASSERT_EQ(scenario->steps.size(), 3u);
  EXPECT_EQ(scenario->steps[0].kind, Step::Kind::kTlsRefused);
  EXPECT_EQ(scenario->steps[0].refusal, TlsRefusal::kUntrustedCa);
  EXPECT_EQ(scenario->steps[1].refusal, TlsRefusal::kWrongName);
  EXPECT_EQ(scenario->steps[2].refusal, TlsRefusal::kPlaintext);
  EXPECT_EQ(scenario->steps[2].transport, Transport::kGrpc);
  EXPECT_TRUE(scenario->uses_grpc);
  EXPECT_NE(ErrorOf("tls-refused a expired\n").find("usage: tls-refused"), std::string::npos);
  // A refused client is never connected: using it afterwards is a mistake.
  EXPECT_NE(ErrorOf("tls-refused a plaintext\na > PING #1 nonce=1\n").find("not connected"),
            std::string::npos);
}

TEST(ScenarioTest, HelloOverGrpcDoesNotExpectAPreLoginLimit) {
  const Result<Scenario> scenario = ParseScenario("hello a over grpc\n", "t.scn");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_EQ(ShowStep(scenario->steps[2]),
            "a < HELLO_OK #1 protocol_version=1 max_frame_size=* max_prelogin_frame_size=* "
            "max_text_bytes=4096 max_queued_per_user=* server_name=*");
}

TEST(ScenarioTest, MarkedStepsApplyOnlyWhereTheirClientUsesThatTransport) {
  const std::string text =
      "connect a\nconnect b over grpc\na > PING #1 nonce=1\nwire: a < PONG #1 nonce=1\n"
      "grpc: a < ERROR #1 code=NOT_LOGGED_IN message=*\ngrpc: b > PING #1 nonce=1\n"
      "wire: restart\n";
  const Result<Scenario> on_wire = ParseScenario(text, "t.scn", Transport::kWire);
  ASSERT_TRUE(on_wire.ok()) << on_wire.status().message();
  std::vector<std::string> shown;
  for (const Step& step : on_wire->steps) shown.push_back(ShowStep(step));
  EXPECT_EQ(shown, (std::vector<std::string>{"connect a", "connect b over grpc",
                                             "a > PING #1 nonce=1", "wire: a < PONG #1 nonce=1",
                                             "grpc: b > PING #1 nonce=1", "wire: restart"}));
  const Result<Scenario> on_grpc = ParseScenario(text, "t.scn", Transport::kGrpc);
  ASSERT_TRUE(on_grpc.ok()) << on_grpc.status().message();
  shown.clear();
  for (const Step& step : on_grpc->steps) shown.push_back(ShowStep(step));
  EXPECT_EQ(shown,
            (std::vector<std::string>{"connect a", "connect b over grpc", "a > PING #1 nonce=1",
                                      "grpc: a < ERROR #1 code=NOT_LOGGED_IN message=*",
                                      "grpc: b > PING #1 nonce=1"}));
  EXPECT_FALSE(on_grpc->restarts_server);
}

TEST(ScenarioTest, WhatGrpcCannotCarryIsRefusedOnGrpcClients) {
  const auto on_grpc = [](const std::string& text) {
    const Result<Scenario> scenario = ParseScenario(text, "t.scn", Transport::kGrpc);
    return scenario.ok() ? std::string("(it parsed)") : scenario.status().message();
  };
  EXPECT_NE(on_grpc("connect a\na > raw 00\n").find("raw bytes have no gRPC counterpart"),
            std::string::npos);
  EXPECT_NE(on_grpc("connect a\na > OK #1\n").find("OK is not a request"), std::string::npos);
  EXPECT_NE(on_grpc("connect a\na > HELLO #1 protocol_version=2\n")
                .find("another protocol version has no gRPC counterpart"),
            std::string::npos);
  // The same lines are fine on wire clients, and a wire-only tag makes every client one.
  EXPECT_TRUE(ParseScenario("connect a\na > raw 00\n", "t.scn", Transport::kWire).ok());
  const Result<Scenario> wire_only =
      ParseScenario("tags: wire-only\nconnect a\na > raw 00\n", "t.scn", Transport::kGrpc);
  ASSERT_TRUE(wire_only.ok()) << wire_only.status().message();
  EXPECT_EQ(wire_only->default_transport, Transport::kWire);
}

TEST(ScenarioTest, EndReasonsOnlyGrpcHasAreExpectedOnGrpcClientsOnly) {
  EXPECT_TRUE(ParseScenario("connect a over grpc\na < SESSION_ENDED #0 reason=LOGGED_OUT "
                            "message=*\n",
                            "t.scn")
                  .ok());
  EXPECT_NE(ErrorOf("connect a\na < SESSION_ENDED #0 reason=SLOW_CONSUMER message=*\n")
                .find("an end reason only gRPC has; a is a wire client"),
            std::string::npos);
}

}  // namespace
}  // namespace messenger::conformance

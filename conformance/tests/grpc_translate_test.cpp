// The gRPC binding read backwards, without a server: RPC results become the frames a wire server
// would send, nothing is made up, and results that break section 15 match no expectation.
#include "grpc_translate.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "frame_template.h"

namespace messenger::conformance {
namespace {

std::string Detail(ErrorCode code, const std::string& name) {
  v1::ErrorDetail detail;
  detail.set_code(static_cast<std::uint32_t>(code));
  detail.set_name(name);
  return detail.SerializeAsString();
}

// True iff the expectation `expected` (with holes) matches what arrived.
bool Matches(const std::string& expected, const Arrival& arrival) {
  if (!arrival.matchable) return false;
  const Result<FrameTemplate> e = ParseTemplate(expected, /*holes=*/true);
  const Result<FrameTemplate> a = ParseTemplate(arrival.text, /*holes=*/false);
  if (!e.ok() || !a.ok()) return false;
  Bindings captures;
  return !Match(*e, expected, *a, arrival.text, captures).has_value();
}

TEST(GrpcTranslateTest, StatusCodesFollowTheTableOfSection15_3) {
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kNotLoggedIn), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kAuthFailed), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kClientIdReused), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kSelfSend), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kUsernameTaken), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kUnknownRecipient), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kLoginThrottled), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kServerBusy), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kInternal), grpc::StatusCode::INTERNAL);
  // Framing, handshake and body errors have no gRPC counterpart.
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kFrameTooLarge), std::nullopt);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kMalformedBody), std::nullopt);
  EXPECT_EQ(GrpcStatusFor(ErrorCode::kInvalidUtf8), std::nullopt);
}

TEST(GrpcTranslateTest, AFailedCallIsTheErrorOfItsTrailerWithTheRequestsId) {
  const Arrival arrival = ErrorArrival(5, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such user"),
                                       Detail(ErrorCode::kUnknownRecipient, "UNKNOWN_RECIPIENT"));
  EXPECT_TRUE(arrival.matchable);
  EXPECT_EQ(arrival.text, "ERROR #5 code=UNKNOWN_RECIPIENT message=\"no such user\"");
  EXPECT_TRUE(Matches("ERROR #5 code=UNKNOWN_RECIPIENT message=*", arrival));
}

TEST(GrpcTranslateTest, AFailureWithoutTheTrailerMatchesNothing) {
  const Arrival arrival =
      ErrorArrival(5, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such user"), std::nullopt);
  EXPECT_FALSE(arrival.matchable);
  EXPECT_NE(arrival.text.find("no messenger-error-bin trailer"), std::string::npos) << arrival.text;
  EXPECT_FALSE(Matches("ERROR #5 code=* message=*", arrival));

  const Arrival garbage =
      ErrorArrival(5, grpc::Status(grpc::StatusCode::NOT_FOUND, ""), std::string("\xff\xff", 2));
  EXPECT_FALSE(garbage.matchable);
  EXPECT_NE(garbage.text.find("not a serialized ErrorDetail"), std::string::npos) << garbage.text;
}

TEST(GrpcTranslateTest, AStatusCodeOtherThanTheTablesMatchesNothing) {
  const Arrival arrival =
      ErrorArrival(7, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "nobody"),
                   Detail(ErrorCode::kUnknownRecipient, "UNKNOWN_RECIPIENT"));
  EXPECT_FALSE(arrival.matchable);
  EXPECT_NE(arrival.text.find("section 15.3 maps UNKNOWN_RECIPIENT to NOT_FOUND"),
            std::string::npos)
      << arrival.text;
}

TEST(GrpcTranslateTest, ATrailerMustNameItsCodeAsSection8Does) {
  const Arrival misnamed = ErrorArrival(7, grpc::Status(grpc::StatusCode::NOT_FOUND, ""),
                                        Detail(ErrorCode::kUnknownRecipient, "NO_SUCH_USER"));
  EXPECT_FALSE(misnamed.matchable);
  const Arrival unknown = ErrorArrival(7, grpc::Status(grpc::StatusCode::NOT_FOUND, ""),
                                       Detail(static_cast<ErrorCode>(99), "SOMETHING"));
  EXPECT_FALSE(unknown.matchable);
  const Arrival wire_only = ErrorArrival(7, grpc::Status(grpc::StatusCode::INTERNAL, ""),
                                         Detail(ErrorCode::kMalformedBody, "MALFORMED_BODY"));
  EXPECT_FALSE(wire_only.matchable);
  EXPECT_NE(wire_only.text.find("no gRPC counterpart"), std::string::npos) << wire_only.text;
}

TEST(GrpcTranslateTest, ServerInfoIsHelloOkWithoutAPreLoginLimit) {
  v1::ServerInfo info;
  info.set_protocol_version(1);
  info.set_max_frame_size(262144);
  info.set_max_text_bytes(4096);
  info.set_max_queued_per_user(10000);
  info.set_server_name("poco-messenger");
  const Arrival arrival = HelloOkArrival(1, info);
  EXPECT_EQ(arrival.text,
            "HELLO_OK #1 protocol_version=1 max_frame_size=262144 max_prelogin_frame_size=absent "
            "max_text_bytes=4096 max_queued_per_user=10000 server_name=\"poco-messenger\"");
  EXPECT_TRUE(
      Matches("HELLO_OK #1 protocol_version=1 max_frame_size=* max_prelogin_frame_size=* "
              "max_text_bytes=4096 max_queued_per_user=* server_name=*",
              arrival));
  EXPECT_FALSE(
      Matches("HELLO_OK #1 protocol_version=1 max_frame_size=* max_prelogin_frame_size=1024 "
              "max_text_bytes=4096 max_queued_per_user=* server_name=*",
              arrival))
      << "no number may stand for a limit gRPC does not announce";
}

TEST(GrpcTranslateTest, PushesArePushFramesWithIdZero) {
  v1::ServerPush deliver;
  deliver.mutable_deliver()->set_message_id(1001);
  deliver.mutable_deliver()->set_sender("alice");
  deliver.mutable_deliver()->set_timestamp_ms(1735732800000);
  deliver.mutable_deliver()->set_text("hi\n");
  EXPECT_EQ(PushArrival(deliver).text,
            "DELIVER #0 message_id=1001 sender=\"alice\" timestamp_ms=1735732800000 "
            "text=\"hi\\x0A\"");

  v1::ServerPush takeover;
  takeover.mutable_session_ended()->set_reason(v1::END_REASON_TAKEOVER);
  takeover.mutable_session_ended()->set_message("elsewhere");
  EXPECT_EQ(PushArrival(takeover).text, "SESSION_ENDED #0 reason=TAKEOVER message=\"elsewhere\"");
}

TEST(GrpcTranslateTest, EndReasonsOnlyGrpcHasKeepTheProtosNames) {
  v1::ServerPush logged_out;
  logged_out.mutable_session_ended()->set_reason(v1::END_REASON_LOGGED_OUT);
  logged_out.mutable_session_ended()->set_message("bye \"now\"");
  const Arrival arrival = PushArrival(logged_out);
  EXPECT_EQ(arrival.text, "SESSION_ENDED #0 reason=LOGGED_OUT message=\"bye \\\"now\\\"\"");
  EXPECT_TRUE(Matches("SESSION_ENDED #0 reason=LOGGED_OUT message=*", arrival));
  EXPECT_FALSE(Matches("SESSION_ENDED #0 reason=TAKEOVER message=*", arrival));
  EXPECT_TRUE(CheckTemplate("SESSION_ENDED #0 reason=SLOW_CONSUMER message=*", true).ok());
  EXPECT_FALSE(CheckTemplate("SESSION_ENDED #0 reason=LOGGED_OFF message=*", true).ok());

  v1::ServerPush unspecified;
  unspecified.mutable_session_ended()->set_message("why?");
  EXPECT_FALSE(PushArrival(unspecified).matchable);
  EXPECT_FALSE(PushArrival(v1::ServerPush()).matchable);
}

}  // namespace
}  // namespace messenger::conformance

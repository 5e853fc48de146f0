// The gRPC binding (PROTOCOL.md section 15) read backwards: what an RPC result means in the
// scenario language. Each function turns one result into the Arrival the equivalent wire frame
// would be, with the request id of the request it answers, so that a scenario expects the same
// lines over either transport.
//
// Nothing is made up: a value the RPC does not carry (HELLO_OK's max_prelogin_frame_size) shows
// as the atom `absent`, which only `*` matches, and a result that breaks the binding (an error
// without its `messenger-error-bin` trailer, a status code other than section 15.3's) arrives as
// an Arrival that matches no expectation and says what is wrong. Free functions; thread-safe.
#ifndef MESSENGER_CONFORMANCE_GRPC_TRANSLATE_H_
#define MESSENGER_CONFORMANCE_GRPC_TRANSLATE_H_

#include <grpcpp/support/status.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"
#include "messenger/v1/messenger.pb.h"
#include "scenario_client.h"

namespace messenger::conformance {

// The trailing metadata key that carries a serialized v1::ErrorDetail (section 15.3).
inline constexpr char kErrorDetailKey[] = "messenger-error-bin";
// How a value the RPC does not carry is shown.
inline constexpr char kAbsent[] = "absent";

// The gRPC status code section 15.3 gives `code`; nullopt for the codes it says have no gRPC
// counterpart (framing, handshake, UNKNOWN_TYPE, MALFORMED_BODY, INVALID_UTF8).
std::optional<grpc::StatusCode> GrpcStatusFor(ErrorCode code);

// "NOT_FOUND", "UNAUTHENTICATED", ...
std::string GrpcStatusName(grpc::StatusCode code);

// An Arrival of `frame` (which the codec can describe): matchable.
Arrival FrameArrival(const Frame& frame);

// An Arrival that matches nothing; `what` says what arrived and what is wrong with it.
Arrival Unmatchable(std::string what);

// HELLO_OK for a GetServerInfo answer: max_prelogin_frame_size is `absent`.
Arrival HelloOkArrival(std::uint32_t request_id, const v1::ServerInfo& info);

// The ERROR a failed RPC stands for: code from the `messenger-error-bin` trailer (`detail`, its
// bytes; nullopt when absent), message from the status. Unmatchable when the trailer is missing
// or unreadable, names a code the protocol does not have or under another name, or when the
// status code is not the one section 15.3 gives that code.
Arrival ErrorArrival(std::uint32_t request_id, const grpc::Status& status,
                     const std::optional<std::string>& detail);

// DELIVER #0 or SESSION_ENDED #0 for a Subscribe push. The gRPC-only end reasons are named as in
// the proto without its prefix: reason=LOGGED_OUT, reason=SLOW_CONSUMER.
Arrival PushArrival(const v1::ServerPush& push);

// The end reason name a SESSION_ENDED push carries ("TAKEOVER", "LOGGED_OUT", ...); empty for
// reasons the binding does not define.
std::string EndReasonName(v1::EndReason reason);

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_GRPC_TRANSLATE_H_

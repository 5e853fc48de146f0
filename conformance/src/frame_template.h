// Frame templates: the spec's one-line frame form (docs/PROTOCOL.md, section 1) with holes.
//
// A scenario's expectation is a one-line description in which any value, the request id
// included, may be `*` (matches any single value) or `$name` (a capture: the first time it is seen
// it takes the value that arrived; afterwards it stands for that value). Templates are parsed
// without knowing the message type, into a small value tree, and compared field by field with the
// Describe() of the frame that arrived. Plain values and free functions; thread-compatible.
#ifndef MESSENGER_CONFORMANCE_FRAME_TEMPLATE_H_
#define MESSENGER_CONFORMANCE_FRAME_TEMPLATE_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/codec/status.h"

namespace messenger::conformance {

// One value of a one-line description.
struct Value {
  enum class Kind {
    kAtom,     // A number or a name (enum value, true/false), compared as written.
    kString,   // A quoted string; `text` holds its bytes with the escapes resolved.
    kList,     // [a,b]: `items`.
    kRecord,   // {name=value ...}: `names` and `items` in parallel.
    kAny,      // `*`
    kCapture,  // `$name`: `text` holds the name.
  };
  Kind kind = Kind::kAtom;
  std::string text;
  std::vector<std::string> names;
  std::vector<Value> items;
  std::size_t begin = 0;  // The value's characters in the parsed line: [begin, end).
  std::size_t end = 0;
};

struct FrameTemplate {
  std::string type;                // e.g. "SEND_OK"
  Value request_id;                // kAtom, or a hole
  std::vector<std::string> names;  // The fields, in the order written.
  std::vector<Value> values;
};

// Capture name (without `$`) -> the captured value in one-line form, e.g. "1001" or "\"bob\"".
using Bindings = std::map<std::string, std::string>;

// Parses `line`. With `holes`, `*` and `$name` may stand for any value or the request id; without,
// they are errors. Fields may be separated by more than one space. Errors: kInvalidArgument with
// the 1-based column.
Result<FrameTemplate> ParseTemplate(std::string_view line, bool holes);

// Returns `line` with each `$name` outside string literals that `bindings` holds replaced by its
// value; names not bound are left in place.
std::string Substitute(std::string_view line, const Bindings& bindings);

// The `$name`s outside string literals of `line`, in order of appearance (names only).
std::vector<std::string> Variables(std::string_view line);

// Compares a frame that arrived (`actual`, parsed from `actual_line`, its Describe()) with
// `expected` (parsed from `expected_line`). Returns nullopt on a match, with the values of
// captures not bound before added to `captures`; otherwise the first difference, e.g.
// "field 'text': expected \"hi\", got \"hello\"".
std::optional<std::string> Match(const FrameTemplate& expected, std::string_view expected_line,
                                 const FrameTemplate& actual, std::string_view actual_line,
                                 Bindings& captures);

// Checks what can be checked before a run: `line` parses, names a message type, gives exactly its
// fields in order, and every value it gives (holes aside) is one that type accepts, written in the
// canonical form ParseDescription reads. SESSION_ENDED's reason may also be LOGGED_OUT or
// SLOW_CONSUMER, the end reasons only gRPC has (PROTOCOL.md 15.2). Errors: kInvalidArgument
// saying what to write instead.
Status CheckTemplate(std::string_view line, bool holes);

}  // namespace messenger::conformance

#endif  // MESSENGER_CONFORMANCE_FRAME_TEMPLATE_H_

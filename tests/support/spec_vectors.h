// The protocol's test vectors, read from docs/PROTOCOL.md: the one place they are written down.
//
// The spec shows them, the codec tests check them, and the fuzz corpus is generated from them, so
// none of the three can drift from the others. Recognised fenced blocks (fence at column 0):
//
//   ```frame       first line: Describe() of the frame, exactly; then the hex of the whole frame
//                  (length prefix, header, body).
//   ```bad-frame   first line: `EXPECT <ERROR_NAME> limit=<max frame size>`; then the hex of an
//                  input stream that a FrameDecoder with that limit must reject with that error.
//   ```session     one frame per line, `<from> -> <to>: <Describe() of a frame vector>`; lines
//                  that are blank or start with `#` are ignored.
//
// Hex lines hold byte pairs separated by whitespace; `;` starts a comment to the end of the line.
// Other code blocks are ignored. Plain functions over values; thread-compatible.
#ifndef MESSENGER_TESTS_SUPPORT_SPEC_VECTORS_H_
#define MESSENGER_TESTS_SUPPORT_SPEC_VECTORS_H_

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/status.h"

namespace messenger::spec {

struct FrameVector {
  int line = 0;             // 1-based line of the opening fence.
  std::string description;  // Must equal Describe() of the decoded frame.
  Bytes bytes;              // The complete frame, length prefix included.
};

struct BadFrameVector {
  int line = 0;
  ErrorCode expected = ErrorCode::kOk;
  std::uint32_t limit = 0;  // Maximum frame size of the decoder that reads `bytes`.
  Bytes bytes;              // The input stream.
};

struct SessionLine {
  int line = 0;
  std::string from;
  std::string to;
  std::string description;
};

struct SpecVectors {
  std::vector<FrameVector> frames;  // In document order, as are the lists below.
  std::vector<BadFrameVector> bad_frames;
  std::vector<SessionLine> session_lines;
};

// Returns the vectors in `markdown`, or nullopt with `error` set to "<source>:<line>: <problem>"
// for the first block that breaks the format above (unterminated, bad hex, unknown error name,
// missing bytes, ...). Only the format is checked here, not whether the bytes decode.
std::optional<SpecVectors> ParseSpecVectors(std::string_view markdown, std::string_view source,
                                            std::string& error);

// Reads `path` and parses it as ParseSpecVectors does; `error` also covers an unreadable file.
std::optional<SpecVectors> LoadSpecVectors(const std::filesystem::path& path, std::string& error);

// Absolute paths in the source tree this library was configured from.
std::filesystem::path SourceProtocolPath();  // docs/PROTOCOL.md
std::filesystem::path SourceCorpusDir();     // fuzz/corpus

// The shell command that regenerates the committed corpus from the committed spec.
std::string RegenerateCorpusCommand();

// Corpus directories (one per fuzz target) that receive generated files, and the prefix that marks
// a file as generated. Files without the prefix are never touched.
inline constexpr std::array<std::string_view, 2> kCorpusTargets = {"fuzz_frame_decoder",
                                                                   "fuzz_roundtrip"};
inline constexpr std::string_view kGeneratedPrefix = "spec-";

struct CorpusFile {
  std::string path;  // Relative to the corpus directory, '/'-separated, e.g. "fuzz_roundtrip/...".
  Bytes contents;
  friend bool operator==(const CorpusFile&, const CorpusFile&) = default;
};

// The generated corpus, sorted by path. Names are deterministic: vector numbers count from 1 in
// document order.
//   fuzz_frame_decoder/spec-<nnn>-<type>      each frame vector, length prefix included;
//   fuzz_frame_decoder/spec-all-frames        every frame vector, concatenated in order;
//   fuzz_frame_decoder/spec-bad-<nnn>-<error> each bad-frame input stream;
//   fuzz_roundtrip/spec-<nnn>-<type>          each frame vector without its length prefix.
std::vector<CorpusFile> BuildCorpus(const SpecVectors& vectors);

// The generated (kGeneratedPrefix) files currently under `corpus_dir`, sorted by path.
std::vector<CorpusFile> ReadCorpus(const std::filesystem::path& corpus_dir);

// Deletes every generated file under `corpus_dir`, then writes `files`, creating directories as
// needed. Returns false with `error` set if the file system refuses.
bool WriteCorpus(const std::filesystem::path& corpus_dir, const std::vector<CorpusFile>& files,
                 std::string& error);

}  // namespace messenger::spec

#endif  // MESSENGER_TESTS_SUPPORT_SPEC_VECTORS_H_

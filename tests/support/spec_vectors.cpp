#include "spec_vectors.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>
#include <utility>

#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"

#ifndef MESSENGER_SOURCE_DIR
#error "MESSENGER_SOURCE_DIR must name the source tree (set in tests/support/CMakeLists.txt)"
#endif
#ifndef MESSENGER_WRITE_CORPUS_PATH
#error "MESSENGER_WRITE_CORPUS_PATH must name the corpus writer (set in CMakeLists.txt)"
#endif

namespace messenger::spec {
namespace {

constexpr std::string_view kFrameInfo = "frame";
constexpr std::string_view kBadFrameInfo = "bad-frame";
constexpr std::string_view kSessionInfo = "session";

std::string_view Trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::size_t CountBackticks(std::string_view s) {
  std::size_t n = 0;
  while (n < s.size() && s[n] == '`') ++n;
  return n;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<ErrorCode> ErrorCodeByName(std::string_view name) {
  for (std::uint32_t value = 1; value <= 0xFFFF; ++value) {
    const auto code = static_cast<ErrorCode>(value);
    if (IsKnownErrorCode(static_cast<std::uint16_t>(value)) && ErrorCodeName(code) == name) {
      return code;
    }
  }
  return std::nullopt;
}

// "SESSION_ENDED" -> "session-ended": file-name friendly and still recognisable.
std::string FileNamePart(std::string_view name) {
  std::string out;
  for (const char c : name) {
    out += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Zero-padded to three digits so that file listings sort in document order.
std::string Numbered(std::size_t n) {
  std::string digits = std::to_string(n);
  if (digits.size() < 3) digits.insert(0, 3 - digits.size(), '0');
  return digits;
}

// One fenced block as found in the document, before its contents are interpreted.
struct Block {
  std::string_view info;
  int line = 0;  // Of the opening fence.
  std::vector<std::pair<int, std::string_view>> lines;
};

class Parser {
 public:
  Parser(std::string_view source, std::string& error) : source_(source), error_(error) {}

  std::optional<SpecVectors> Parse(std::string_view markdown) {
    std::vector<std::string_view> lines;
    for (std::size_t start = 0; start <= markdown.size();) {
      const std::size_t end = std::min(markdown.find('\n', start), markdown.size());
      lines.push_back(markdown.substr(start, end - start));
      start = end + 1;
    }
    std::optional<Block> block;
    std::size_t fence_length = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const int number = static_cast<int>(i) + 1;
      const std::string_view line = lines[i];
      if (!block) {
        const std::string_view stripped = Trim(line);
        const std::size_t ticks = CountBackticks(stripped);
        if (ticks < 3) continue;
        const std::string_view info = InfoWord(stripped.substr(ticks));
        // An indented fence belongs to a list item; refusing it beats silently skipping a vector.
        if (IsVectorInfo(info) && line.front() != '`') {
          Fail(number, "a '" + std::string(info) + "' fence must start at column 0");
          return std::nullopt;
        }
        block = Block{info, number, {}};
        fence_length = ticks;
        continue;
      }
      const std::string_view stripped = Trim(line);
      const std::size_t ticks = CountBackticks(stripped);
      if (ticks >= fence_length && ticks == stripped.size()) {
        if (!Interpret(*block)) return std::nullopt;
        block.reset();
        continue;
      }
      block->lines.emplace_back(number, line);
    }
    if (block) {
      Fail(block->line, "code block is never closed");
      return std::nullopt;
    }
    return std::move(vectors_);
  }

 private:
  static std::string_view InfoWord(std::string_view info) {
    info = Trim(info);
    return info.substr(0, std::min(info.find_first_of(" \t"), info.size()));
  }
  static bool IsVectorInfo(std::string_view info) {
    return info == kFrameInfo || info == kBadFrameInfo || info == kSessionInfo;
  }

  bool Interpret(const Block& block) {
    if (block.info == kFrameInfo) return InterpretFrame(block);
    if (block.info == kBadFrameInfo) return InterpretBadFrame(block);
    if (block.info == kSessionInfo) return InterpretSession(block);
    return true;  // Some other code block: not ours.
  }

  bool InterpretFrame(const Block& block) {
    if (block.lines.empty() || Trim(block.lines.front().second).empty()) {
      return Fail(block.line, "a 'frame' block starts with the frame's description");
    }
    FrameVector vector;
    vector.line = block.line;
    vector.description = std::string(block.lines.front().second);
    if (!vector.description.empty() && vector.description.back() == '\r') {
      vector.description.pop_back();
    }
    if (!ReadHex(block, vector.bytes)) return false;
    vectors_.frames.push_back(std::move(vector));
    return true;
  }

  bool InterpretBadFrame(const Block& block) {
    if (block.lines.empty()) {
      return Fail(block.line, "a 'bad-frame' block starts with 'EXPECT <ERROR_NAME> limit=<n>'");
    }
    const auto [number, header] = block.lines.front();
    std::istringstream words{std::string(Trim(header))};
    std::string expect, name, limit, extra;
    words >> expect >> name >> limit >> extra;
    if (expect != "EXPECT" || name.empty() || limit.rfind("limit=", 0) != 0 || !extra.empty()) {
      return Fail(number, "expected 'EXPECT <ERROR_NAME> limit=<max frame size>', got '" +
                              std::string(Trim(header)) + "'");
    }
    BadFrameVector vector;
    vector.line = block.line;
    const std::optional<ErrorCode> code = ErrorCodeByName(name);
    if (!code) return Fail(number, "'" + name + "' is not an error code name");
    vector.expected = *code;
    const std::string digits = limit.substr(6);
    std::uint64_t value = 0;
    for (const char c : digits) {
      if (c < '0' || c > '9' || value > 0xFFFFFFFFu) {
        value = 0;
        break;
      }
      value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (digits.empty() || value < kFrameHeaderSize || value > 0xFFFFFFFFu) {
      return Fail(number, "limit '" + digits + "' is not a whole number from " +
                              std::to_string(kFrameHeaderSize) + " to 4294967295");
    }
    vector.limit = static_cast<std::uint32_t>(value);
    if (!ReadHex(block, vector.bytes)) return false;
    vectors_.bad_frames.push_back(std::move(vector));
    return true;
  }

  bool InterpretSession(const Block& block) {
    for (const auto& [number, raw] : block.lines) {
      const std::string_view line = Trim(raw);
      if (line.empty() || line.front() == '#') continue;
      const std::size_t arrow = line.find(" -> ");
      const std::size_t colon = line.find(": ");
      if (arrow == std::string_view::npos || colon == std::string_view::npos || colon < arrow) {
        return Fail(number, "expected '<from> -> <to>: <frame description>'");
      }
      SessionLine session;
      session.line = number;
      session.from = std::string(Trim(line.substr(0, arrow)));
      session.to = std::string(Trim(line.substr(arrow + 4, colon - arrow - 4)));
      session.description = std::string(line.substr(colon + 2));
      if (session.from.empty() || session.to.empty() || session.description.empty()) {
        return Fail(number, "expected '<from> -> <to>: <frame description>'");
      }
      vectors_.session_lines.push_back(std::move(session));
    }
    return true;
  }

  // Reads the byte lines after a block's first line into `out`.
  bool ReadHex(const Block& block, Bytes& out) {
    for (std::size_t i = 1; i < block.lines.size(); ++i) {
      const auto [number, raw] = block.lines[i];
      const std::string_view data = raw.substr(0, std::min(raw.find(';'), raw.size()));
      std::istringstream tokens{std::string(data)};
      std::string token;
      while (tokens >> token) {
        if (token.size() != 2 || HexDigit(token[0]) < 0 || HexDigit(token[1]) < 0) {
          return Fail(number, "'" + token + "' is not a byte as two hex digits");
        }
        out.push_back(static_cast<std::uint8_t>(HexDigit(token[0]) * 16 + HexDigit(token[1])));
      }
    }
    if (out.empty()) return Fail(block.line, "block holds no bytes");
    return true;
  }

  // Records the first problem; returns false so callers can `return Fail(...)`.
  bool Fail(int line, const std::string& problem) {
    if (error_.empty()) error_ = std::string(source_) + ":" + std::to_string(line) + ": " + problem;
    return false;
  }

  std::string_view source_;
  std::string& error_;
  SpecVectors vectors_;
};

}  // namespace

std::optional<SpecVectors> ParseSpecVectors(std::string_view markdown, std::string_view source,
                                            std::string& error) {
  error.clear();
  return Parser(source, error).Parse(markdown);
}

std::optional<SpecVectors> LoadSpecVectors(const std::filesystem::path& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path.string() + ": cannot be read";
    return std::nullopt;
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParseSpecVectors(text, path.string(), error);
}

std::filesystem::path SourceProtocolPath() {
  return std::filesystem::path(MESSENGER_SOURCE_DIR) / "docs" / "PROTOCOL.md";
}

std::filesystem::path SourceCorpusDir() {
  return std::filesystem::path(MESSENGER_SOURCE_DIR) / "fuzz" / "corpus";
}

std::string RegenerateCorpusCommand() {
  return std::string(MESSENGER_WRITE_CORPUS_PATH) + " " + SourceProtocolPath().string() + " " +
         SourceCorpusDir().string();
}

std::vector<CorpusFile> BuildCorpus(const SpecVectors& vectors) {
  const std::string decoder_dir = std::string(kCorpusTargets[0]) + "/";
  const std::string roundtrip_dir = std::string(kCorpusTargets[1]) + "/";
  const std::string prefix(kGeneratedPrefix);
  std::vector<CorpusFile> files;
  Bytes all;
  for (std::size_t i = 0; i < vectors.frames.size(); ++i) {
    const Bytes& bytes = vectors.frames[i].bytes;
    const std::string_view type =
        bytes.size() > kLengthPrefixSize
            ? MessageTypeName(static_cast<MessageType>(bytes[kLengthPrefixSize]))
            : std::string_view("short");
    const std::string name = prefix + Numbered(i + 1) + "-" + FileNamePart(type);
    files.push_back({decoder_dir + name, bytes});
    const auto body_start =
        bytes.begin() + static_cast<std::ptrdiff_t>(std::min(kLengthPrefixSize, bytes.size()));
    files.push_back({roundtrip_dir + name, Bytes(body_start, bytes.end())});
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  if (!all.empty()) files.push_back({decoder_dir + prefix + "all-frames", std::move(all)});
  for (std::size_t i = 0; i < vectors.bad_frames.size(); ++i) {
    const BadFrameVector& bad = vectors.bad_frames[i];
    files.push_back({decoder_dir + prefix + "bad-" + Numbered(i + 1) + "-" +
                         FileNamePart(ErrorCodeName(bad.expected)),
                     bad.bytes});
  }
  std::sort(files.begin(), files.end(),
            [](const CorpusFile& a, const CorpusFile& b) { return a.path < b.path; });
  return files;
}

std::vector<CorpusFile> ReadCorpus(const std::filesystem::path& corpus_dir) {
  std::vector<CorpusFile> files;
  for (const std::string_view target : kCorpusTargets) {
    const std::filesystem::path dir = corpus_dir / target;
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(kGeneratedPrefix, 0) != 0 || !entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      Bytes contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      files.push_back({std::string(target) + "/" + name, std::move(contents)});
    }
  }
  std::sort(files.begin(), files.end(),
            [](const CorpusFile& a, const CorpusFile& b) { return a.path < b.path; });
  return files;
}

bool WriteCorpus(const std::filesystem::path& corpus_dir, const std::vector<CorpusFile>& files,
                 std::string& error) {
  std::error_code ec;
  for (const CorpusFile& stale : ReadCorpus(corpus_dir)) {
    std::filesystem::remove(corpus_dir / stale.path, ec);
    if (ec) {
      error = (corpus_dir / stale.path).string() + ": cannot be removed: " + ec.message();
      return false;
    }
  }
  for (const CorpusFile& file : files) {
    const std::filesystem::path path = corpus_dir / file.path;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      error = path.parent_path().string() + ": cannot be created: " + ec.message();
      return false;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(file.contents.data()),
              static_cast<std::streamsize>(file.contents.size()));
    out.close();
    if (!out) {
      error = path.string() + ": cannot be written";
      return false;
    }
  }
  return true;
}

}  // namespace messenger::spec

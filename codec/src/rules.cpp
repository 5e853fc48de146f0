#include "messenger/codec/rules.h"

#include <cstdint>

#include "messenger/codec/limits.h"

namespace messenger {
namespace {

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

bool IsValidUtf8(std::string_view bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const auto b0 = static_cast<std::uint8_t>(bytes[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t min = 0;
    std::uint32_t cp = 0;
    if ((b0 & 0xE0) == 0xC0) {
      length = 2, min = 0x80, cp = b0 & 0x1Fu;
    } else if ((b0 & 0xF0) == 0xE0) {
      length = 3, min = 0x800, cp = b0 & 0x0Fu;
    } else if ((b0 & 0xF8) == 0xF0) {
      length = 4, min = 0x10000, cp = b0 & 0x07u;
    } else {
      return false;  // Continuation byte or 0xF8..0xFF as a lead byte.
    }
    if (bytes.size() - i < length) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto b = static_cast<std::uint8_t>(bytes[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

Status CheckUsername(std::string_view name) {
  if (name.empty() || name.size() > kMaxUsernameBytes) {
    return Status(ErrorCode::kInvalidUsername,
                  "a username has 1 to " + std::to_string(kMaxUsernameBytes) + " characters");
  }
  if (!IsAsciiAlnum(name.front())) {
    return Status(ErrorCode::kInvalidUsername, "a username starts with a letter or digit");
  }
  for (const char c : name) {
    if (!IsAsciiAlnum(c) && c != '.' && c != '_' && c != '-') {
      return Status(ErrorCode::kInvalidUsername,
                    "a username may contain only letters, digits, '.', '_' and '-'");
    }
  }
  return Status::Ok();
}

Status CheckPassword(std::string_view password) {
  if (password.size() < kMinPasswordBytes || password.size() > kMaxPasswordBytes) {
    return Status(ErrorCode::kInvalidPassword, "a password has " +
                                                   std::to_string(kMinPasswordBytes) + " to " +
                                                   std::to_string(kMaxPasswordBytes) + " bytes");
  }
  if (!IsValidUtf8(password)) {
    return Status(ErrorCode::kInvalidPassword, "a password must be valid UTF-8");
  }
  return Status::Ok();
}

Status CheckText(std::string_view text) {
  if (text.empty() || text.size() > kMaxTextBytes) {
    return Status(ErrorCode::kInvalidText,
                  "a message text has 1 to " + std::to_string(kMaxTextBytes) + " bytes");
  }
  if (!IsValidUtf8(text)) return Status(ErrorCode::kInvalidText, "text must be valid UTF-8");
  return Status::Ok();
}

std::string CanonicalUsername(std::string_view name) {
  std::string key(name);
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return key;
}

}  // namespace messenger

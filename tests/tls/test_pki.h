// A throwaway PKI for the TLS tests: tests/support/make-test-certs run into a fresh temporary
// directory (removed again by the destructor). Keys are never committed.
#ifndef MESSENGER_TESTS_TLS_TEST_PKI_H_
#define MESSENGER_TESTS_TLS_TEST_PKI_H_

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace messenger::testing {

class TestPki {
 public:
  TestPki() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "messenger-tls-test.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) return;
    dir_ = pattern;
    const std::string command =
        std::string(MESSENGER_MAKE_TEST_CERTS) + " '" + dir_.string() + "' >/dev/null 2>&1";
    ok_ = std::system(command.c_str()) == 0 && std::filesystem::exists(File("server.pem"));
  }
  ~TestPki() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  // True iff every file below was made.
  bool ok() const { return ok_; }
  const std::filesystem::path& dir() const { return dir_; }
  // ca.pem, other-ca.pem, server.pem/.key, wrong-host.pem/.key, expired.pem/.key.
  std::string File(const std::string& name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

// One PKI per test program, made on first use (a second or so) and removed at exit.
inline const TestPki& Pki() {
  static const TestPki pki;
  return pki;
}

}  // namespace messenger::testing

#endif  // MESSENGER_TESTS_TLS_TEST_PKI_H_

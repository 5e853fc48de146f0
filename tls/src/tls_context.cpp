#include "messenger/tls/tls_context.h"

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "tls_internal.h"

namespace messenger {
namespace {

// TLS 1.2 suites: ECDHE key exchange (forward secrecy) with an AEAD cipher only; the TLS 1.3
// suites (all AEAD) are OpenSSL's defaults and are set separately by OpenSSL.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
// Key exchange groups, fastest first; every current TLS stack offers at least one of them.
constexpr char kGroups[] = "X25519:P-256:P-384";
// Bigger PEM files than this are not certificates or keys of a server.
constexpr long kMaxPemBytes = 1024 * 1024;

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// The passphrase callback: encrypted keys are refused rather than asked about (POCO's default
// callback would consult its SSLManager and an application configuration we do not have).
int NoPassphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*user*/) { return -1; }

// Reads `path` whole into `text`; on failure returns why, for "cannot read <what> 'path': ...".
std::string ReadSmallFile(const std::string& path, std::string& text) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::strerror(errno);
  if (S_ISDIR(info.st_mode)) return "it is a directory";
  if (info.st_size > kMaxPemBytes) return "it is larger than 1 MiB";
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return std::strerror(errno);
  text.resize(static_cast<std::size_t>(info.st_size));
  const std::size_t got = std::fread(text.data(), 1, text.size(), file);
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return "read error";
  text.resize(got);
  return "";
}

std::string NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || name == nullptr) return "?";
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : "(empty name)";
}

std::string TimeText(const ASN1_TIME* time) {
  std::tm tm{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1) return "?";
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buffer;
}

std::string Summarize(const std::string& file, X509* certificate) {
  std::string text = "certificate " + file + ": " + NameText(X509_get_subject_name(certificate)) +
                     ", issued by " + NameText(X509_get_issuer_name(certificate)) +
                     ", valid until " + TimeText(X509_get0_notAfter(certificate));
  if (X509_cmp_current_time(X509_get0_notAfter(certificate)) < 0) {
    text += " (EXPIRED: clients will refuse it)";
  }
  return text;
}

// The settings both sides share. Throws Poco::Exception.
Poco::Net::Context::Ptr NewContext(Poco::Net::Context::Usage usage) {
  Poco::Net::Context::Params params;
  params.verificationMode = Poco::Net::Context::VERIFY_NONE;  // Set below, without POCO's hooks.
  params.cipherList = kTls12Ciphers;
  params.ecdhCurve = kGroups;
  params.dhUse2048Bits = true;  // Unused (no DHE suite); 1024-bit parameters fail security checks.
  Poco::Net::Context::Ptr context = new Poco::Net::Context(usage, params);
  context->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
  SSL_CTX* ctx = context->sslContext();
  // POCO's verification callback reports to its SSLManager singleton; OpenSSL's own checks are
  // what is wanted, and their outcome is read with SSL_get_verify_result().
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_default_passwd_cb(ctx, &NoPassphrase);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  (void)SSL_CTX_set_num_tickets(ctx, 0);  // TLS 1.3: no tickets sent after the handshake.
  // Partial writes and a buffer that may move between retries: the callers write from growing
  // queues. Released buffers: an idle connection keeps no 34 KiB of TLS buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    throw Poco::Exception("cannot select the TLS 1.2 cipher suites",
                          tls_internal::TakeErrorText("no cipher suite available"));
  }
  ERR_clear_error();  // POCO leaves errors of calls it does not check.
  return context;
}

}  // namespace

// ---- TlsServerContext ----

TlsServerContext::TlsServerContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsServerContext::~TlsServerContext() = default;

const std::string& TlsServerContext::summary() const { return impl_->summary; }

Result<std::shared_ptr<const TlsServerContext>> TlsServerContext::Load(
    const std::string& certificate_file, const std::string& key_file) {
  ERR_clear_error();
  std::string certificate_text;
  if (std::string why = ReadSmallFile(certificate_file, certificate_text); !why.empty()) {
    return Status(ErrorCode::kInvalidArgument,
                  "cannot read the TLS certificate file '" + certificate_file + "': " + why);
  }
  if (certificate_text.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Status(ErrorCode::kInvalidArgument,
                  "the TLS certificate file '" + certificate_file +
                      "' holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line)");
  }
  std::string key_text;
  if (std::string why = ReadSmallFile(key_file, key_text); !why.empty()) {
    return Status(ErrorCode::kInvalidArgument,
                  "cannot read the TLS key file '" + key_file + "': " + why);
  }
  if (key_text.find("ENCRYPTED") != std::string::npos) {
    return Status(ErrorCode::kInvalidArgument,
                  "the TLS key file '" + key_file +
                      "' holds an encrypted private key; give the key unencrypted (readable by "
                      "the server's user only)");
  }
  if (key_text.find("PRIVATE KEY-----") == std::string::npos) {
    return Status(ErrorCode::kInvalidArgument,
                  "the TLS key file '" + key_file +
                      "' holds no PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line)");
  }

  auto impl = std::make_unique<Impl>();
  try {
    impl->context = NewContext(Poco::Net::Context::TLS_SERVER_USE);
  } catch (const Poco::Exception& e) {
    return Status(ErrorCode::kInternal, "cannot set up TLS: " + e.displayText());
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal, std::string("cannot set up TLS: ") + e.what());
  }
  SSL_CTX* ctx = impl->context->sslContext();

  if (SSL_CTX_use_certificate_chain_file(ctx, certificate_file.c_str()) != 1) {
    return Status(ErrorCode::kInvalidArgument,
                  "cannot load the TLS certificate chain from '" + certificate_file +
                      "': " + tls_internal::TakeErrorText("not a valid PEM certificate"));
  }
  BioPtr key_bio(BIO_new_mem_buf(key_text.data(), static_cast<int>(key_text.size())), &BIO_free);
  KeyPtr key(
      key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, &NoPassphrase, nullptr) : nullptr,
      &EVP_PKEY_free);
  if (!key) {
    return Status(ErrorCode::kInvalidArgument,
                  "cannot read the private key in '" + key_file +
                      "': " + tls_internal::TakeErrorText("not a valid PEM private key"));
  }
  X509* certificate = SSL_CTX_get0_certificate(ctx);
  if (certificate == nullptr || X509_check_private_key(certificate, key.get()) != 1) {
    ERR_clear_error();
    return Status(ErrorCode::kInvalidArgument, "the private key in '" + key_file +
                                                   "' does not match the certificate in '" +
                                                   certificate_file + "'");
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return Status(ErrorCode::kInvalidArgument,
                  "cannot use the private key in '" + key_file +
                      "': " + tls_internal::TakeErrorText("unsuitable key"));
  }
  impl->summary = Summarize(certificate_file, certificate);
  ERR_clear_error();
  return std::shared_ptr<const TlsServerContext>(new TlsServerContext(std::move(impl)));
}

// ---- TlsClientContext ----

TlsClientContext::TlsClientContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsClientContext::~TlsClientContext() = default;

bool TlsClientContext::insecure() const { return impl_->insecure; }

Result<std::shared_ptr<const TlsClientContext>> TlsClientContext::Create(const std::string& ca_file,
                                                                         bool insecure) {
  ERR_clear_error();
  if (!insecure && !ca_file.empty()) {
    std::string text;
    if (std::string why = ReadSmallFile(ca_file, text); !why.empty()) {
      return Status(ErrorCode::kTlsFailed, "cannot read the CA file '" + ca_file + "': " + why);
    }
    if (text.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return Status(ErrorCode::kTlsFailed,
                    "the CA file '" + ca_file +
                        "' holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line)");
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->insecure = insecure;
  try {
    impl->context = NewContext(Poco::Net::Context::TLS_CLIENT_USE);
  } catch (const Poco::Exception& e) {
    return Status(ErrorCode::kInternal, "cannot set up TLS: " + e.displayText());
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal, std::string("cannot set up TLS: ") + e.what());
  }
  SSL_CTX* ctx = impl->context->sslContext();
  if (!insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (ca_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return Status(ErrorCode::kTlsFailed, "cannot use the system's trusted certificates: " +
                                                 tls_internal::TakeErrorText("unknown error"));
      }
    } else if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
      return Status(ErrorCode::kTlsFailed,
                    "cannot load the CA file '" + ca_file +
                        "': " + tls_internal::TakeErrorText("no usable certificate in it"));
    }
  }
  ERR_clear_error();
  return std::shared_ptr<const TlsClientContext>(new TlsClientContext(std::move(impl)));
}

}  // namespace messenger

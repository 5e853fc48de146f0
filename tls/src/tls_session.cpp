#include "messenger/tls/tls_session.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "tls_internal.h"

namespace messenger {
namespace tls_internal {
namespace {

int Descriptor(BIO* bio) {
  return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
}

int BioWrite(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  ssize_t n;
  do {
    n = ::send(Descriptor(bio), data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(bio);
  return static_cast<int>(n);
}

int BioRead(BIO* bio, char* data, int size) {
  BIO_clear_retry_flags(bio);
  ssize_t n;
  do {
    n = ::recv(Descriptor(bio), data, static_cast<std::size_t>(size), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(bio);
  return static_cast<int>(n);
}

int BioPuts(BIO* bio, const char* text) {
  return BioWrite(bio, text, static_cast<int>(std::strlen(text)));
}

long BioCtrl(BIO* bio, int command, long /*number*/, void* pointer) {
  switch (command) {
    case BIO_CTRL_FLUSH:
      return 1;  // Nothing is buffered here.
    case BIO_C_GET_FD:
      if (pointer != nullptr) *static_cast<int*>(pointer) = Descriptor(bio);
      return Descriptor(bio);
    default:
      return 0;
  }
}

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int BioDestroy(BIO* /*bio*/) { return 1; }  // The descriptor belongs to the caller.

BIO_METHOD* SocketMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "messenger socket");
    if (m == nullptr) return m;
    BIO_meth_set_write(m, &BioWrite);
    BIO_meth_set_read(m, &BioRead);
    BIO_meth_set_puts(m, &BioPuts);
    BIO_meth_set_ctrl(m, &BioCtrl);
    BIO_meth_set_create(m, &BioCreate);
    BIO_meth_set_destroy(m, &BioDestroy);
    return m;
  }();
  return method;
}

std::string ReasonText(unsigned long code) {
  if (const char* text = ERR_reason_error_string(code)) return text;
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof buffer);
  return buffer;
}

std::string VerifyFailure(SSL* ssl, std::string_view server_name) {
  const long result = SSL_get_verify_result(ssl);
  const std::string name(server_name);
  switch (result) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return "the server's certificate is not valid for the host name '" + name +
             "' (hostname mismatch)";
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "the server's certificate is not valid for the address " + name +
             " (IP address mismatch)";
    default:
      return std::string("the server's certificate could not be verified: ") +
             X509_verify_cert_error_string(result);
  }
}

}  // namespace

BIO* NewSocketBio(int fd) {
  BIO_METHOD* method = SocketMethod();
  if (method == nullptr) return nullptr;
  BIO* bio = BIO_new(method);
  if (bio != nullptr) BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
  return bio;
}

std::string TakeErrorText(std::string_view fallback) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  return code == 0 ? std::string(fallback) : ReasonText(code);
}

std::string DescribeFailure(SSL* ssl, int ssl_error, int saved_errno, bool handshake,
                            std::string_view peer, std::string_view server_name) {
  const std::string who(peer);
  const std::string closed = who + " closed the connection" +
                             (handshake ? " during the TLS handshake" : " without a TLS close");
  if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return closed;
  }
  const unsigned long code = ERR_get_error();  // The oldest: the cause, not its consequences.
  ERR_clear_error();
  if (code == 0) {
    if (ssl_error == SSL_ERROR_SYSCALL && saved_errno != 0) return std::strerror(saved_errno);
    if (ssl_error == SSL_ERROR_SYSCALL) return closed;
    return "TLS error " + std::to_string(ssl_error);
  }
  const std::string text = ReasonText(code);
  if (ERR_GET_LIB(code) != ERR_LIB_SSL) return text;
  switch (ERR_GET_REASON(code)) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      return VerifyFailure(ssl, server_name);
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
      return handshake ? who + " does not speak TLS (" + text + ")" : text;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      return "no TLS version in common with " + who + " (" + text +
             "): TLS 1.2 or later is required";
    case SSL_R_NO_SHARED_CIPHER:
      return "no cipher suite in common with " + who + " (" + text + ")";
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return closed;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      return who + " rejected our certificate (" + text + ")";
    default:
      if (ERR_GET_REASON(code) >= SSL_AD_REASON_OFFSET) {
        return who + " ended the connection with an alert (" + text + ")";
      }
      return text;
  }
}

}  // namespace tls_internal

namespace {

bool IsIpAddress(const std::string& name) {
  unsigned char address[16];
  return ::inet_pton(AF_INET, name.c_str(), address) == 1 ||
         ::inet_pton(AF_INET6, name.c_str(), address) == 1;
}

}  // namespace

struct TlsSession::Impl {
  ~Impl() {
    if (ssl != nullptr) SSL_free(ssl);
  }
  std::shared_ptr<const void> context;  // Keeps the SSL_CTX's owner alive.
  SSL* ssl = nullptr;
  std::string server_name;  // The client's; empty on the server.
};

namespace {

Result<std::unique_ptr<TlsSession::Impl>> NewImpl(SSL_CTX* ctx, std::shared_ptr<const void> owner,
                                                  int fd) {
  auto impl = std::make_unique<TlsSession::Impl>();
  impl->context = std::move(owner);
  ERR_clear_error();
  impl->ssl = SSL_new(ctx);
  BIO* bio = impl->ssl != nullptr ? tls_internal::NewSocketBio(fd) : nullptr;
  if (bio == nullptr) {
    return Status(ErrorCode::kInternal,
                  "cannot start a TLS session: " + tls_internal::TakeErrorText("out of memory"));
  }
  SSL_set_bio(impl->ssl, bio, bio);  // The session owns the BIO (not the descriptor).
  return impl;
}

}  // namespace

TlsSession::TlsSession(std::unique_ptr<Impl> impl, bool client)
    : impl_(std::move(impl)), client_(client) {}

TlsSession::~TlsSession() = default;

Result<std::unique_ptr<TlsSession>> TlsSession::Accept(
    std::shared_ptr<const TlsServerContext> context, int fd) {
  SSL_CTX* ctx = context->impl().context->sslContext();
  Result<std::unique_ptr<Impl>> impl = NewImpl(ctx, std::move(context), fd);
  if (!impl.ok()) return impl.status();
  SSL_set_accept_state(impl.value()->ssl);
  return std::unique_ptr<TlsSession>(new TlsSession(std::move(impl).value(), false));
}

Result<std::unique_ptr<TlsSession>> TlsSession::Connect(
    std::shared_ptr<const TlsClientContext> context, int fd, const std::string& server_name) {
  const bool insecure = context->insecure();
  SSL_CTX* ctx = context->impl().context->sslContext();
  Result<std::unique_ptr<Impl>> created = NewImpl(ctx, std::move(context), fd);
  if (!created.ok()) return created.status();
  std::unique_ptr<Impl> impl = std::move(created).value();
  std::string name = server_name;
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);  // "[::1]"
  }
  impl->server_name = name;
  SSL* ssl = impl->ssl;
  const bool ip = IsIpAddress(name);
  bool ok = true;
  if (!insecure) {
    // OpenSSL checks the name while verifying the chain; a mismatch fails the handshake with
    // X509_V_ERR_HOSTNAME_MISMATCH or X509_V_ERR_IP_ADDRESS_MISMATCH.
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1
            : SSL_set1_host(ssl, name.c_str()) == 1;
  }
  // SNI carries host names only (RFC 6066).
  if (ok && !ip && !name.empty()) ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  if (!ok) {
    return Status(ErrorCode::kInternal, "cannot set the TLS server name '" + name +
                                            "': " + tls_internal::TakeErrorText("invalid name"));
  }
  SSL_set_connect_state(ssl);
  return std::unique_ptr<TlsSession>(new TlsSession(std::move(impl), true));
}

TlsIo TlsSession::Fail(int ssl_result, int saved_errno, bool handshake) {
  failed_ = true;
  error_ = tls_internal::DescribeFailure(impl_->ssl, SSL_get_error(impl_->ssl, ssl_result),
                                         saved_errno, handshake,
                                         client_ ? "the server" : "the client", impl_->server_name);
  return TlsIo::kError;
}

TlsIo TlsSession::Handshake() {
  if (failed_) return TlsIo::kError;
  if (established_) return TlsIo::kDone;
  ERR_clear_error();
  errno = 0;
  const int result = SSL_do_handshake(impl_->ssl);
  const int saved_errno = errno;
  if (result == 1) {
    established_ = true;
    return TlsIo::kDone;
  }
  switch (SSL_get_error(impl_->ssl, result)) {
    case SSL_ERROR_WANT_READ:
      return TlsIo::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return TlsIo::kWantWrite;
    default:
      return Fail(result, saved_errno, /*handshake=*/true);
  }
}

TlsIo TlsSession::Read(std::span<std::uint8_t> buffer, std::size_t& read) {
  read = 0;
  if (failed_) return TlsIo::kError;
  ERR_clear_error();
  errno = 0;
  const int result = SSL_read_ex(impl_->ssl, buffer.data(), buffer.size(), &read);
  const int saved_errno = errno;
  if (result == 1) {
    read_wants_write_ = false;
    return TlsIo::kDone;
  }
  read = 0;
  switch (SSL_get_error(impl_->ssl, result)) {
    case SSL_ERROR_WANT_READ:
      read_wants_write_ = false;
      return TlsIo::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      read_wants_write_ = true;
      return TlsIo::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      read_closed_ = true;
      return TlsIo::kClosed;  // close_notify, or the end of the stream (IGNORE_UNEXPECTED_EOF).
    default:
      return Fail(result, saved_errno, /*handshake=*/false);
  }
}

TlsIo TlsSession::Write(std::span<const std::uint8_t> bytes, std::size_t& written) {
  written = 0;
  if (failed_) return TlsIo::kError;
  if (bytes.empty()) return TlsIo::kDone;
  ERR_clear_error();
  errno = 0;
  const int result = SSL_write_ex(impl_->ssl, bytes.data(), bytes.size(), &written);
  const int saved_errno = errno;
  if (result == 1) {
    write_blocked_ = false;
    write_wants_read_ = false;
    return TlsIo::kDone;
  }
  written = 0;
  switch (SSL_get_error(impl_->ssl, result)) {
    case SSL_ERROR_WANT_READ:
      write_blocked_ = true;
      write_wants_read_ = true;
      return TlsIo::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      write_blocked_ = true;
      write_wants_read_ = false;
      return TlsIo::kWantWrite;
    default:
      return Fail(result, saved_errno, /*handshake=*/false);
  }
}

void TlsSession::Close() {
  if (!established_ || failed_ || write_blocked_) return;
  ERR_clear_error();
  (void)SSL_shutdown(impl_->ssl);  // Queues and tries to send close_notify; never waits.
  ERR_clear_error();
}

bool TlsSession::HasBufferedInput() const {
  // An end already taken off the socket leaves nothing for poll() to report either.
  return failed_ || read_closed_ || SSL_pending(impl_->ssl) > 0;
}

std::string TlsSession::Description() const {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(impl_->ssl);
  return std::string(SSL_get_version(impl_->ssl)) + " " +
         (cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "(no cipher)");
}

}  // namespace messenger

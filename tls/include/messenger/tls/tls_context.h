// TLS configuration for the wire protocol: what a server presents (TlsServerContext) and what a
// client trusts (TlsClientContext). Both allow TLS 1.2 and 1.3 only; TLS 1.2 with forward-secret
// AEAD suites only (ECDHE with AES-GCM or ChaCha20-Poly1305), TLS 1.3 with OpenSSL's defaults.
// No session resumption (no cache, no tickets): a connection is long-lived and resumption would
// only add state. Built on POCO NetSSL's Context over OpenSSL; no OpenSSL or POCO type appears
// here.
//
// Thread-safety: a context is immutable once created and may be shared by any number of
// sessions on any threads (hence shared_ptr<const>).
#ifndef MESSENGER_TLS_TLS_CONTEXT_H_
#define MESSENGER_TLS_TLS_CONTEXT_H_

#include <memory>
#include <string>

#include "messenger/codec/status.h"

namespace messenger {

class TlsServerContext {
 public:
  // Loads the server's certificate chain (PEM: the server certificate first, then any
  // intermediates) from `certificate_file` and its private key (PEM, unencrypted) from
  // `key_file`. Errors: kInvalidArgument naming the file and the cause (missing or unreadable,
  // not PEM, an encrypted key, a key that does not match the certificate); kInternal when the
  // TLS library cannot set up a context at all.
  static Result<std::shared_ptr<const TlsServerContext>> Load(const std::string& certificate_file,
                                                              const std::string& key_file);

  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // For a startup log line, e.g. "certificate server.pem: CN=example.org, issued by CN=My CA,
  // valid until 2026-05-01 12:00:00 UTC".
  const std::string& summary() const;

  struct Impl;  // Private to the tls library (src/tls_internal.h).
  const Impl& impl() const { return *impl_; }

 private:
  explicit TlsServerContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class TlsClientContext {
 public:
  // Trusts the CA certificates (PEM) in `ca_file`, or the system trust store (OpenSSL's default
  // paths, which honour SSL_CERT_FILE and SSL_CERT_DIR) when it is empty. With `insecure` the
  // server's certificate is not verified at all (neither chain nor name) and `ca_file` is unused.
  // Errors: kTlsFailed naming the CA file and the cause (missing, unreadable, no certificate in
  // it); kInternal when the TLS library cannot set up a context at all.
  static Result<std::shared_ptr<const TlsClientContext>> Create(const std::string& ca_file,
                                                                bool insecure);

  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  bool insecure() const;

  struct Impl;  // Private to the tls library (src/tls_internal.h).
  const Impl& impl() const { return *impl_; }

 private:
  explicit TlsClientContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace messenger

#endif  // MESSENGER_TLS_TLS_CONTEXT_H_

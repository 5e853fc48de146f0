// Private to the tls library: the contexts' insides, the socket BIO and error texts.
#ifndef MESSENGER_TLS_SRC_TLS_INTERNAL_H_
#define MESSENGER_TLS_SRC_TLS_INTERNAL_H_

#include <Poco/Net/Context.h>
#include <openssl/ssl.h>

#include <string>
#include <string_view>

#include "messenger/tls/tls_context.h"

namespace messenger {

struct TlsServerContext::Impl {
  Poco::Net::Context::Ptr context;
  std::string summary;
};

struct TlsClientContext::Impl {
  Poco::Net::Context::Ptr context;
  bool insecure = false;
};

namespace tls_internal {

// A BIO on `fd` that sends with MSG_NOSIGNAL (OpenSSL's socket BIO uses write(), which raises
// SIGPIPE when the peer has gone) and never closes `fd`. nullptr when out of memory.
BIO* NewSocketBio(int fd);

// Why the last OpenSSL call on `ssl` failed, for people, from SSL_get_error()'s `ssl_error`,
// the errno right after the call, and this thread's OpenSSL error queue (which it empties).
// `peer` is "the server" or "the client"; `handshake` says whether the handshake was running.
// `server_name` is the name a client checks the certificate against (empty on a server).
std::string DescribeFailure(SSL* ssl, int ssl_error, int saved_errno, bool handshake,
                            std::string_view peer, std::string_view server_name);

// The reason text of the oldest error in this thread's OpenSSL error queue (emptied), or
// `fallback` when it is empty.
std::string TakeErrorText(std::string_view fallback);

}  // namespace tls_internal
}  // namespace messenger

#endif  // MESSENGER_TLS_SRC_TLS_INTERNAL_H_

// TlsClientStream: blocking TLS over a connected TCP socket, for clients with one reader thread
// and any number of writer threads (the wire client; the conformance suite).
//
// Thread-safety contract:
// - Receive: one thread at a time (the reader).
// - Send: any threads; calls are serialised, so the bytes of one call are never interleaved
//   with another's.
// - Shutdown: any thread, any time, also while Receive or Send are blocked; idempotent.
// - Receive, Send and Shutdown may run at the same time: OpenSSL forbids concurrent use of one
//   connection, so each OpenSSL call is made under a mutex and the waiting (poll) is done outside
//   it. The socket is made non-blocking for that.
// The stream does not own the descriptor; close it after destroying the stream.
#ifndef MESSENGER_TLS_TLS_CLIENT_STREAM_H_
#define MESSENGER_TLS_TLS_CLIENT_STREAM_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "messenger/codec/status.h"
#include "messenger/tls/tls_context.h"

namespace messenger {

class TlsClientStream {
 public:
  // Performs the TLS handshake over `fd` (connected) with `server_name` (see
  // TlsSession::Connect), waiting at most `timeout`. Errors: kTlsFailed with the reason (e.g.
  // "the server's certificate is not valid for the host name 'example.org' (hostname
  // mismatch)"), kTimeout when the handshake did not complete in time, kInternal.
  static Result<std::unique_ptr<TlsClientStream>> Connect(
      int fd, std::shared_ptr<const TlsClientContext> context, const std::string& server_name,
      std::chrono::milliseconds timeout);

  ~TlsClientStream();
  TlsClientStream(const TlsClientStream&) = delete;
  TlsClientStream& operator=(const TlsClientStream&) = delete;

  // Sends all of `bytes`, waiting at most `timeout` at a time for the socket to take more (0:
  // only what it takes at once). Errors: kTimeout (the peer took nothing for `timeout`),
  // kDisconnected (the connection failed or was shut down; the message says why). After an error
  // every later Send fails: a record may be half sent.
  Status Send(std::span<const std::uint8_t> bytes, std::chrono::milliseconds timeout);

  // Waits for decrypted bytes and returns how many were put in `buffer` (> 0); 0 when the
  // server closed the connection or Shutdown() was called. Errors: kDisconnected with the
  // cause. REQUIRES: buffer is not empty.
  Result<std::size_t> Receive(std::span<std::uint8_t> buffer);

  // Ends the stream: sends close_notify when it can do so at once, shuts the socket down in both
  // directions and wakes a blocked Receive (which returns 0) and Send (which fails).
  void Shutdown();

  // The negotiated protocol and cipher suite, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384".
  std::string Description() const;

  struct Impl;

 private:
  explicit TlsClientStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace messenger

#endif  // MESSENGER_TLS_TLS_CLIENT_STREAM_H_

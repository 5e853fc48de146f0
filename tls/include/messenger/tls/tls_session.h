// TlsSession: TLS over one connected, non-blocking TCP socket, driven by the caller's own poll()
// loop. No call blocks: each returns what it achieved or what it waits for (kWantRead: poll the
// socket for POLLIN, then call again; kWantWrite: for POLLOUT). Either direction may wait for
// the other: a Write can need to read and a Read to write.
//
// The session does not own the descriptor (the caller closes it after destroying the session)
// and never raises SIGPIPE (it sends with MSG_NOSIGNAL).
//
// Thread-safety: none. One thread at a time; TlsClientStream serialises a shared session.
#ifndef MESSENGER_TLS_TLS_SESSION_H_
#define MESSENGER_TLS_TLS_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "messenger/codec/status.h"
#include "messenger/tls/tls_context.h"

namespace messenger {

enum class TlsIo {
  kDone,       // Completed (or transferred at least one byte).
  kWantRead,   // Nothing done: call again when the socket is readable.
  kWantWrite,  // Nothing done: call again when the socket is writable.
  kClosed,     // The peer ended the connection (close_notify or end of stream).
  kError,      // Failed for good; error() says why. Only the destructor may follow.
};

class TlsSession {
 public:
  // The server side of a connection accepted on `fd`. Errors: kInternal (out of memory).
  static Result<std::unique_ptr<TlsSession>> Accept(std::shared_ptr<const TlsServerContext> context,
                                                    int fd);
  // The client side of a connection to `server_name`: a DNS name (checked against the
  // certificate's names and sent as SNI) or an IPv4/IPv6 address (checked against its IP
  // addresses; no SNI). Unless the context is insecure, the handshake fails when the chain or
  // the name does not verify. REQUIRES: server_name is not empty. Errors: kInternal.
  static Result<std::unique_ptr<TlsSession>> Connect(
      std::shared_ptr<const TlsClientContext> context, int fd, const std::string& server_name);

  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Advances the handshake: kDone once complete (and on every call after), kWantRead/kWantWrite,
  // or kError (the handshake failed, also when the peer closed; error() says why, e.g. "the
  // server's certificate could not be verified: certificate has expired" or "the client does
  // not speak TLS (wrong version number)").
  TlsIo Handshake();

  // Reads decrypted bytes into `buffer`: kDone with `read` > 0, kWantRead/kWantWrite, kClosed,
  // kError. REQUIRES: the handshake is done; buffer is not empty.
  TlsIo Read(std::span<std::uint8_t> buffer, std::size_t& read);

  // Encrypts and sends a prefix of `bytes`: kDone with `written` > 0 (possibly fewer than all),
  // kWantRead/kWantWrite, kError. After a kWant* the next Write must start with the same bytes
  // (they may have moved in memory and more may follow them). REQUIRES: the handshake is done.
  TlsIo Write(std::span<const std::uint8_t> bytes, std::size_t& written);

  // Sends close_notify if the session is established and no write is half done; never waits for
  // the socket or for the peer's close_notify. Best effort: the caller closes the socket next.
  void Close();

  // True iff the next Read returns without the socket: decrypted bytes wait inside the session
  // (a Read stopped by a full buffer), or the session has already seen the end (kClosed) or
  // failed (kError), e.g. while a Read was still returning the data before it. poll() can see
  // none of these: Read must be called before waiting for the socket. (A partial record does
  // not count: its rest must come from the socket.)
  bool HasBufferedInput() const;
  // What the last Read / Write waited for: true iff it was the other direction.
  bool read_wants_write() const { return read_wants_write_; }
  bool write_wants_read() const { return write_wants_read_; }
  bool established() const { return established_; }

  // Why the session failed; empty until kError.
  const std::string& error() const { return error_; }
  // The negotiated protocol and cipher suite, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384".
  std::string Description() const;

  struct Impl;

 private:
  TlsSession(std::unique_ptr<Impl> impl, bool client);
  TlsIo Fail(int ssl_result, int saved_errno, bool handshake);

  std::unique_ptr<Impl> impl_;
  const bool client_;
  bool established_ = false;
  bool failed_ = false;
  bool write_blocked_ = false;  // A Write returned kWant*: a record is half sent.
  bool read_closed_ = false;    // A Read returned kClosed.
  bool read_wants_write_ = false;
  bool write_wants_read_ = false;
  std::string error_;
};

}  // namespace messenger

#endif  // MESSENGER_TLS_TLS_SESSION_H_

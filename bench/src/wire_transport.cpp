// The wire transport: blocking sockets, one thread per connection. Requests are batched into one
// write() per window refill and responses are parsed in place from a reused buffer, so a worker
// makes no allocation and few system calls per message.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "bench.h"
#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "wire_frames.h"

namespace messenger::bench {
namespace {

// How long a blocking read waits before the worker looks at the run's phase again.
constexpr int kReadTimeoutMs = 100;
// How long a setup request (HELLO, CREATE_ACCOUNT, LOGIN) may take.
constexpr auto kSetupTimeout = std::chrono::seconds(30);
// Receive buffer of a worker: a read takes whatever has arrived, up to this much at once.
constexpr std::size_t kWorkerBufferBytes = 256 * 1024;
// Receive buffer of a connection that only logs in and then idles: thousands of them are held.
constexpr std::size_t kIdleBufferBytes = 1024;

Status Failure(std::string message) { return Status(ErrorCode::kInternal, std::move(message)); }

// Describes an ERROR frame (or any unexpected frame) for a failure message.
std::string DescribeFrame(const FrameView& view) {
  DecodeResult decoded = DecodeFrame(view.frame);
  if (!decoded.status.ok()) return "undecodable frame: " + decoded.status.ToString();
  return Describe(Frame{decoded.request_id, std::move(decoded.message)});
}

class WireConnection {
 public:
  explicit WireConnection(std::size_t buffer_bytes = kWorkerBufferBytes)
      : in_(buffer_bytes), read_chunk_(buffer_bytes) {}
  WireConnection(const WireConnection&) = delete;
  WireConnection& operator=(const WireConnection&) = delete;
  ~WireConnection() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Connects, from the IPv4 address `source` if it is not empty (its port is chosen at connect
  // time, per destination, thanks to IP_BIND_ADDRESS_NO_PORT).
  Status Connect(const Endpoint& endpoint, const std::string& source = {}) {
    sockaddr_in local{};
    if (!source.empty()) {
      local.sin_family = AF_INET;
      if (::inet_pton(AF_INET, source.c_str(), &local.sin_addr) != 1) {
        return Failure("not an IPv4 address: " + source);
      }
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(endpoint.port);
    if (const int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found);
        rc != 0) {
      return Failure("cannot resolve " + endpoint.host + ": " + ::gai_strerror(rc));
    }
    std::string error = "no address";
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
      if (!source.empty() && a->ai_family != AF_INET) continue;
      fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd_ < 0) {
        error = std::strerror(errno);
        continue;
      }
      const int one = 1;
      if (source.empty() ||
          (::setsockopt(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) == 0 &&
           ::bind(fd_, reinterpret_cast<const sockaddr*>(&local), sizeof local) == 0)) {
        if (::connect(fd_, a->ai_addr, a->ai_addrlen) == 0) break;
      }
      error = std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
    ::freeaddrinfo(found);
    if (fd_ < 0) {
      return Failure("cannot connect to " + endpoint.host + ":" + port + ": " + error);
    }
    // Requests are written whole, so Nagle's delay would only add latency.
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval timeout{0, kReadTimeoutMs * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return Status::Ok();
  }

  Status WriteAll(const Bytes& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Failure(std::string("send: ") + std::strerror(errno));
      }
      done += static_cast<std::size_t>(n);
    }
    bytes_ += bytes.size();
    return Status::Ok();
  }

  enum class ReadResult { kData, kTimeout, kClosed, kError };

  // One recv() into the frame buffer.
  ReadResult ReadMore() {
    const std::span<std::uint8_t> space = in_.WriteSpace(read_chunk_);
    const ssize_t n = ::recv(fd_, space.data(), space.size(), 0);
    if (n > 0) {
      in_.Commit(static_cast<std::size_t>(n));
      bytes_ += static_cast<std::size_t>(n);
      return ReadResult::kData;
    }
    if (n == 0) return ReadResult::kClosed;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return ReadResult::kTimeout;
    read_error_ = errno;
    return ReadResult::kError;
  }

  std::string ReadFailure(ReadResult result) const {
    if (result == ReadResult::kClosed) return "the server closed the connection";
    return std::string("recv: ") + std::strerror(read_error_);
  }

  // Next complete frame, or false. A stream that cannot be delimited is a failure.
  bool NextFrame(FrameView& view, Status& status) {
    bool malformed = false;
    const bool got = in_.Next(view, malformed);
    if (malformed) status = Failure("the server sent a frame shorter than its header");
    return got;
  }

  // Sends `request` and waits for the response with its request id, skipping pushes.
  Result<Message> Call(const Frame& request) {
    Bytes out;
    if (Status s = EncodeFrame(request, out); !s.ok()) return s;
    if (Status s = WriteAll(out); !s.ok()) return s;
    const auto deadline = SteadyClock::now() + kSetupTimeout;
    for (;;) {
      FrameView view;
      Status status;
      while (NextFrame(view, status)) {
        // An ERROR with request id 0 concerns the connection (SERVER_BUSY, framing): it ends it.
        const bool connection_error =
            view.request_id == 0 && view.type == static_cast<std::uint8_t>(MessageType::kError);
        if (view.request_id != request.request_id && !connection_error) continue;
        DecodeResult decoded = DecodeFrame(view.frame);
        if (!decoded.status.ok()) return decoded.status;
        return std::move(decoded.message);
      }
      if (!status.ok()) return status;
      if (SteadyClock::now() > deadline) return Failure("no response within the setup timeout");
      const ReadResult r = ReadMore();
      if (r == ReadResult::kClosed || r == ReadResult::kError) return Failure(ReadFailure(r));
    }
  }

  // Expects the response to be of type T, else a failure naming `what`.
  template <typename T>
  Status Expect(const Frame& request, const char* what, T* out = nullptr) {
    Result<Message> response = Call(request);
    if (!response.ok()) return Failure(std::string(what) + ": " + response.status().ToString());
    if (const T* value = std::get_if<T>(&*response)) {
      if (out != nullptr) *out = *value;
      return Status::Ok();
    }
    return Failure(std::string(what) + ": unexpected response " +
                   Describe(Frame{request.request_id, std::move(*response)}));
  }

  Status Hello() {
    return Expect<HelloOk>(Frame{NextId(), messenger::Hello{kProtocolVersion}}, "HELLO");
  }

  Status Login(const std::string& user, const std::string& password, LoginOk* login_ok) {
    if (Status s = Hello(); !s.ok()) return s;
    return Expect<LoginOk>(Frame{NextId(), messenger::Login{user, password}},
                           ("LOGIN " + user).c_str(), login_ok);
  }

  std::uint32_t NextId() {
    if (++next_id_ == 0) next_id_ = 1;
    return next_id_;
  }

  // Bytes moved since the last call.
  std::uint64_t TakeBytes() { return std::exchange(bytes_, 0); }

  // Hands the socket over to the caller, who closes it. REQUIRES: nothing is left unread.
  int ReleaseFd() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
  FrameBuffer in_;
  std::size_t read_chunk_;
  std::uint32_t next_id_ = 0;
  std::uint64_t bytes_ = 0;
  int read_error_ = 0;
};

// Idle connections held by their descriptors alone: no thread and no buffer per session.
class WireIdleSessions final : public IdleSessions {
 public:
  explicit WireIdleSessions(std::size_t count) : fds_(count, -1) {}
  ~WireIdleSessions() override {
    for (const int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

  int CountLost() override {
    int lost = 0;
    for (const int fd : fds_) {
      // Nothing may be readable: a byte would be a SESSION_ENDED, end of file a closed session.
      char byte;
      const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) ++lost;
    }
    return lost;
  }

  int source_addresses() const override { return source_addresses_; }

  std::vector<int> fds_;
  int source_addresses_ = 1;
};

// The local address of idle connection `index` (empty: the default one), see IdleSpec.
std::string SourceAddress(const IdleSpec& spec, const Endpoint& endpoint, std::size_t index) {
  if (spec.per_source_address <= 0 || endpoint.host.rfind("127.", 0) != 0) return {};
  const std::size_t block = index / static_cast<std::size_t>(spec.per_source_address);
  if (block == 0) return {};
  return "127.0.0." + std::to_string(1 + block);
}

class WireTransport final : public Transport {
 public:
  WireTransport(Endpoint endpoint, std::size_t text_bytes)
      : endpoint_(std::move(endpoint)), text_(MakeText(text_bytes)) {}

  Status CreateAccounts(const std::vector<std::string>& names,
                        const std::string& password) override {
    WireConnection connection;
    if (Status s = connection.Connect(endpoint_); !s.ok()) return s;
    if (Status s = connection.Hello(); !s.ok()) return s;
    for (const std::string& name : names) {
      Status s = connection.Expect<Ok>(Frame{connection.NextId(), CreateAccount{name, password}},
                                       ("CREATE_ACCOUNT " + name).c_str());
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Status RunSender(const SenderSpec& spec, RunControl& control, WorkerStats& stats) override {
    Status s = Sender(spec, control, stats);
    if (!s.ok()) control.Fail(s);
    return s;
  }

  Status RunReceiver(const ReceiverSpec& spec, RunControl& control, WorkerStats& stats) override {
    Status s = Receiver(spec, control, stats);
    if (!s.ok()) control.Fail(s);
    return s;
  }

  Status RunDrainer(const DrainSpec& spec, RunControl& control, DrainResult& result) override {
    Status s = Drainer(spec, control, result);
    if (!s.ok()) control.Fail(s);
    return s;
  }

  Result<std::unique_ptr<IdleSessions>> OpenIdleSessions(const IdleSpec& spec) override {
    const std::size_t count = spec.users.size();
    auto sessions = std::make_unique<WireIdleSessions>(count);
    if (spec.per_source_address > 0 && count > 0) {
      const std::size_t per = static_cast<std::size_t>(spec.per_source_address);
      if ((count - 1) / per + 1 > 253) return Failure("too many idle sessions for 127.0.0.0/24");
      if (!SourceAddress(spec, endpoint_, count - 1).empty()) {
        sessions->source_addresses_ = static_cast<int>((count - 1) / per + 1);
      }
    }
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;
    Status first_failure;
    const auto login = [&] {
      for (std::size_t i = next++; i < count && !failed.load(); i = next++) {
        WireConnection connection(kIdleBufferBytes);
        Status s = connection.Connect(endpoint_, SourceAddress(spec, endpoint_, i));
        if (s.ok()) s = connection.Login(spec.users[i], spec.password, nullptr);
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!failed.exchange(true)) {
            first_failure = Failure("idle session " + std::to_string(i) + ": " + s.message());
          }
          return;
        }
        sessions->fds_[i] = connection.ReleaseFd();
      }
    };
    std::vector<std::thread> threads;
    const std::size_t parallel =
        std::clamp<std::size_t>(static_cast<std::size_t>(std::max(1, spec.parallelism)), 1,
                                std::max<std::size_t>(1, count));
    for (std::size_t t = 0; t < parallel; ++t) threads.emplace_back(login);
    for (std::thread& t : threads) t.join();
    if (failed.load()) return first_failure;
    return std::unique_ptr<IdleSessions>(std::move(sessions));
  }

 private:
  Status Sender(const SenderSpec& spec, RunControl& control, WorkerStats& stats) {
    WireConnection connection;
    if (Status s = connection.Connect(endpoint_); !s.ok()) return s;
    if (Status s = connection.Login(spec.user, spec.password, nullptr); !s.ok()) return s;
    const SendTemplate send(spec.recipient, text_);
    const auto depth = static_cast<std::size_t>(std::max(1, spec.depth));
    // Send times of the requests in flight, oldest first: responses come in request order.
    std::vector<std::int64_t> sent_at(depth);
    std::size_t oldest = 0;
    std::size_t in_flight = 0;
    Bytes out;
    out.reserve(depth * send.size());
    std::uint64_t client_id = 0;
    std::uint64_t accepted = 0;
    const std::int64_t interval_ns = spec.rate > 0 ? static_cast<std::int64_t>(1e9 / spec.rate) : 0;
    if (!control.ReadyAndWait()) return Status::Ok();
    std::int64_t next_due =
        NowNs() + static_cast<std::int64_t>(spec.phase * static_cast<double>(interval_ns));
    while (!control.stopping()) {
      const bool limited = spec.limit != 0;
      out.clear();
      std::int64_t now = NowNs();
      while (in_flight < depth && (!limited || client_id < spec.limit)) {
        if (interval_ns > 0) {
          if (now < next_due) {
            if (in_flight > 0 || !out.empty()) break;
            std::this_thread::sleep_for(std::chrono::nanoseconds(next_due - now));
            now = NowNs();
          }
          next_due += interval_ns;
        }
        send.AppendTo(out, connection.NextId(), ++client_id, now);
        sent_at[(oldest + in_flight) % depth] = now;
        ++in_flight;
      }
      if (!out.empty()) {
        if (Status s = connection.WriteAll(out); !s.ok()) return s;
      }
      if (in_flight == 0) {
        if (limited && accepted >= spec.limit) break;
        continue;
      }
      const auto r = connection.ReadMore();
      if (r == WireConnection::ReadResult::kClosed || r == WireConnection::ReadResult::kError) {
        return Failure("sender " + spec.user + ": " + connection.ReadFailure(r));
      }
      const bool measuring = control.measuring();
      FrameView view;
      Status status;
      now = NowNs();
      while (connection.NextFrame(view, status)) {
        std::uint64_t message_id = 0;
        if (view.type == static_cast<std::uint8_t>(MessageType::kSendOk) &&
            ParseSendOk(view.body, message_id) && in_flight > 0) {
          if (measuring) {
            ++stats.replies;
            if (spec.record_reply_latency) stats.latency.Record(now - sent_at[oldest]);
          }
          oldest = (oldest + 1) % depth;
          --in_flight;
          ++accepted;
        } else if (view.type != static_cast<std::uint8_t>(MessageType::kDeliver)) {
          return Failure("sender " + spec.user + " got " + DescribeFrame(view));
        }
      }
      if (!status.ok()) return status;
      const std::uint64_t bytes = connection.TakeBytes();
      if (measuring) stats.app_bytes += bytes;
    }
    return Status::Ok();
  }

  Status Receiver(const ReceiverSpec& spec, RunControl& control, WorkerStats& stats) {
    WireConnection connection;
    if (Status s = connection.Connect(endpoint_); !s.ok()) return s;
    if (Status s = connection.Login(spec.user, spec.password, nullptr); !s.ok()) return s;
    std::vector<std::uint64_t> pending;
    pending.reserve(4 * kMaxAckIds);
    Bytes out;
    out.reserve(kLengthPrefixSize + kFrameHeaderSize + 2 + 8 * kMaxAckIds);
    int acks_in_flight = 0;
    if (!control.ReadyAndWait()) return Status::Ok();
    while (!control.stopping()) {
      const auto r = connection.ReadMore();
      if (r == WireConnection::ReadResult::kClosed || r == WireConnection::ReadResult::kError) {
        return Failure("receiver " + spec.user + ": " + connection.ReadFailure(r));
      }
      const bool measuring = control.measuring();
      const std::int64_t now = NowNs();
      FrameView view;
      Status status;
      while (connection.NextFrame(view, status)) {
        if (view.type == static_cast<std::uint8_t>(MessageType::kDeliver)) {
          MessageView message;
          std::size_t offset = 0;
          if (!ParseStoredMessage(view.body, offset, message) || offset != view.body.size()) {
            return Failure("receiver " + spec.user + " got a malformed DELIVER");
          }
          if (measuring) {
            ++stats.delivered;
            const std::int64_t stamp = ReadStamp(message.text, message.text_size);
            if (stamp >= 0) stats.latency.Record(now - stamp);
          }
          pending.push_back(message.message_id);
        } else if (view.type == static_cast<std::uint8_t>(MessageType::kOk)) {
          --acks_in_flight;
        } else {
          return Failure("receiver " + spec.user + " got " + DescribeFrame(view));
        }
      }
      if (!status.ok()) return status;
      // One ACK in flight at a time: under load the ids of many DELIVERs share one ACK, at low
      // rates each is acknowledged at once.
      if (!pending.empty() && acks_in_flight == 0) {
        out.clear();
        for (std::size_t at = 0; at < pending.size(); at += kMaxAckIds) {
          const std::size_t n = std::min(kMaxAckIds, pending.size() - at);
          AppendAck(out, connection.NextId(), {pending.data() + at, n});
          ++acks_in_flight;
        }
        pending.clear();
        if (Status s = connection.WriteAll(out); !s.ok()) return s;
      }
      const std::uint64_t bytes = connection.TakeBytes();
      if (measuring) stats.app_bytes += bytes;
    }
    return Status::Ok();
  }

  Status Drainer(const DrainSpec& spec, RunControl& control, DrainResult& result) {
    WireConnection connection;
    if (Status s = connection.Connect(endpoint_); !s.ok()) return s;
    LoginOk login_ok;
    if (Status s = connection.Login(spec.user, spec.password, &login_ok); !s.ok()) return s;
    result.unread_at_login = login_ok.unread_count;
    result.ids.reserve(result.unread_at_login + kMaxFetchLimit);
    const auto depth = std::max(1, spec.depth);
    std::vector<std::uint64_t> ids;
    ids.reserve(kMaxFetchLimit);
    // Ids per ACK in flight, oldest first, to count what the server confirmed.
    std::vector<std::size_t> ack_sizes;
    std::size_t ack_oldest = 0;
    Bytes out;
    int fetches_in_flight = 0;
    bool exhausted = false;
    (void)connection.TakeBytes();
    const std::int64_t start = NowNs();
    for (;;) {
      while (!exhausted && fetches_in_flight < depth) {
        AppendFetch(out, connection.NextId(), kMaxFetchLimit);
        ++fetches_in_flight;
      }
      if (!out.empty()) {
        if (Status s = connection.WriteAll(out); !s.ok()) return s;
        out.clear();
      }
      if (exhausted && fetches_in_flight == 0 && ack_oldest == ack_sizes.size()) break;
      if (control.stopping()) return Status::Ok();
      const auto r = connection.ReadMore();
      if (r == WireConnection::ReadResult::kClosed || r == WireConnection::ReadResult::kError) {
        return Failure("drainer: " + connection.ReadFailure(r));
      }
      FrameView view;
      Status status;
      while (connection.NextFrame(view, status)) {
        if (view.type == static_cast<std::uint8_t>(MessageType::kMessageBatch)) {
          --fetches_in_flight;
          ids.clear();
          std::uint32_t remaining = 0;
          if (!ParseMessageBatch(view.body, remaining,
                                 [&ids](const MessageView& m) { ids.push_back(m.message_id); })) {
            return Failure("drainer got a malformed MESSAGE_BATCH");
          }
          if (!ids.empty()) {
            result.ids.insert(result.ids.end(), ids.begin(), ids.end());
            AppendAck(out, connection.NextId(), ids);
            ack_sizes.push_back(ids.size());
          }
          if (remaining == 0) exhausted = true;
        } else if (view.type == static_cast<std::uint8_t>(MessageType::kOk) &&
                   ack_oldest < ack_sizes.size()) {
          result.acknowledged += ack_sizes[ack_oldest++];
        } else if (view.type != static_cast<std::uint8_t>(MessageType::kDeliver)) {
          return Failure("drainer got " + DescribeFrame(view));
        }
      }
      if (!status.ok()) return status;
    }
    result.elapsed_ns = NowNs() - start;
    result.app_bytes = connection.TakeBytes();
    return Status::Ok();
  }

  Endpoint endpoint_;
  std::string text_;
};

}  // namespace

std::unique_ptr<Transport> MakeWireTransport(Endpoint endpoint, std::size_t text_bytes) {
  return std::make_unique<WireTransport>(std::move(endpoint), text_bytes);
}

}  // namespace messenger::bench

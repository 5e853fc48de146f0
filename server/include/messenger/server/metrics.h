// Metrics: the server's operational counters, gauges and histograms, and their Prometheus text
// exposition (format 0.0.4, docs/OPERATIONS.md lists every metric).
//
// One Metrics object serves a process. The application creates it before anything else and hands
// it to the store, the password hasher and the Messenger; the front doors reach it through
// Messenger::metrics(). Updates are meant for hot paths: each is one relaxed atomic operation (a
// histogram observation: a short scan of its bounds and two), and nothing locks or allocates
// after construction. Thread-safe. A scrape reads each value at some moment during the scrape,
// not one snapshot of all of them; within one histogram the buckets, +Inf and _count agree.
#ifndef MESSENGER_SERVER_METRICS_H_
#define MESSENGER_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "messenger/codec/status.h"

namespace messenger {

// The front door a session or connection came through: the `transport` label.
enum class Transport : std::uint8_t { kWire = 0, kGrpc = 1 };
inline constexpr std::size_t kTransportCount = 2;

// Why a front door turned a connection away: the `reason` label.
enum class RefuseReason : std::uint8_t {
  kServerBusy = 0,    // At --max-connections (SERVER_BUSY).
  kFdExhausted = 1,   // accept() failed for want of file descriptors; shed with the reserve one.
  kTlsHandshake = 2,  // The TLS handshake of an admitted (accepted) connection failed.
};
inline constexpr std::size_t kRefuseReasonCount = 3;

// Label values as exported.
std::string_view TransportLabel(Transport transport);
std::string_view RefuseReasonLabel(RefuseReason reason);

// A monotonically increasing count.
class Counter {
 public:
  void Add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Add(std::int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void Sub(std::int64_t n = 1) { value_.fetch_sub(n, std::memory_order_relaxed); }
  void Set(std::int64_t value) { value_.store(value, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// Observations counted into fixed buckets. Bucket i counts observations v with
// upper_bounds[i-1] < v <= upper_bounds[i]; a last, implicit bucket counts those above every
// bound (and NaN). Exported cumulatively, as Prometheus wants.
class Histogram {
 public:
  // REQUIRES: `upper_bounds` is non-empty, finite and strictly increasing, and outlives this
  // object (a static array).
  explicit Histogram(std::span<const double> upper_bounds);

  void Observe(double value);

  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // Per upper bound, then +Inf (== count).
    std::uint64_t count = 0;
    double sum = 0;
  };
  // The cumulative counts, consistent among themselves.
  Snapshot Read() const;
  std::span<const double> upper_bounds() const { return bounds_; }

 private:
  std::span<const double> bounds_;
  // bounds_.size() + 1 buckets, not cumulative; the last one is +Inf.
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

// One `name="value"` pair of a sample.
struct Label {
  std::string_view name;
  std::string_view value;
};

// Writes a text exposition (format 0.0.4) family by family: a family's HELP and TYPE lines,
// then its samples. Label values are escaped (\\, \", \n), as is HELP text (\\, \n). Values are
// written exactly: integers as integers, other values in the shortest form that reads back the
// same, infinities as +Inf/-Inf. The caller keeps names valid ([a-zA-Z_:][a-zA-Z0-9_:]*).
class ExpositionWriter {
 public:
  // REQUIRES: `type` is counter, gauge, histogram or untyped; each family is begun once.
  void BeginFamily(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, std::span<const Label> labels, std::uint64_t value);
  void Sample(std::string_view name, std::span<const Label> labels, std::int64_t value);
  void Sample(std::string_view name, std::span<const Label> labels, double value);
  // The _bucket (with an `le` label after `labels`), _sum and _count samples of `family`.
  void HistogramSamples(std::string_view family, std::span<const Label> labels,
                        std::span<const double> upper_bounds, const Histogram::Snapshot& snapshot);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

  // `value` escaped for use between the quotes of a label value.
  static std::string EscapeLabelValue(std::string_view value);
  // `value` as the exposition writes a sample value.
  static std::string FormatValue(double value);

 private:
  void SampleStart(std::string_view name, std::span<const Label> labels);
  std::string out_;
};

class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // ---- Front doors ----
  // Connections being served (gRPC: sessions held by the gRPC front door). The wire door's are
  // counted by WireSession for as long as it exists.
  Gauge& connections_open(Transport transport) { return connections_open_[Index(transport)]; }
  // Connections admitted: each one also raises connections_open until it ends.
  Counter& connections_accepted(Transport transport) {
    return connections_accepted_[Index(transport)];
  }
  Counter& connections_refused(Transport transport, RefuseReason reason) {
    return connections_refused_[Index(transport)][static_cast<std::size_t>(reason)];
  }
  // Clients disconnected for not reading what was queued for them.
  Counter& slow_consumer_disconnects(Transport transport) {
    return slow_consumer_disconnects_[Index(transport)];
  }
  // Every ERROR (wire) or failed call carrying the protocol's code (gRPC) sent to a client.
  // Codes that never reach a client (kOk, client-local ones) are counted nowhere visible.
  Counter& errors(Transport transport, ErrorCode code);

  // ---- The core ----
  Gauge& sessions_logged_in(Transport transport) { return sessions_logged_in_[Index(transport)]; }
  Counter& messages_accepted() { return messages_accepted_; }
  Counter& messages_delivered_live() { return messages_delivered_live_; }
  Counter& messages_queued() { return messages_queued_; }
  Counter& messages_fetched() { return messages_fetched_; }
  Counter& login_failures() { return login_failures_; }
  Counter& login_throttles() { return login_throttles_; }

  // ---- The store ----
  Counter& messages_acked() { return messages_acked_; }
  Gauge& stored_messages() { return stored_messages_; }
  Histogram& commit_batch_size() { return commit_batch_size_; }
  Histogram& commit_duration_seconds() { return commit_duration_seconds_; }

  // ---- Password hashing ----
  Histogram& password_hash_wait_seconds() { return password_hash_wait_seconds_; }

  // Every metric in the text exposition format 0.0.4, families in a fixed order.
  std::string RenderPrometheus() const;

 private:
  // Wire values are 1..kMaxWireErrorCode; index 0 collects the codes no client ever sees.
  static constexpr std::size_t kMaxWireErrorCode = 61;
  static std::size_t Index(Transport transport) { return static_cast<std::size_t>(transport); }

  std::array<Gauge, kTransportCount> connections_open_;
  std::array<Counter, kTransportCount> connections_accepted_;
  std::array<std::array<Counter, kRefuseReasonCount>, kTransportCount> connections_refused_;
  std::array<Counter, kTransportCount> slow_consumer_disconnects_;
  std::array<std::array<Counter, kMaxWireErrorCode + 1>, kTransportCount> errors_;
  std::array<Gauge, kTransportCount> sessions_logged_in_;
  Counter messages_accepted_;
  Counter messages_delivered_live_;
  Counter messages_queued_;
  Counter messages_fetched_;
  Counter messages_acked_;
  Counter login_failures_;
  Counter login_throttles_;
  Gauge stored_messages_;
  Histogram commit_batch_size_;
  Histogram commit_duration_seconds_;
  Histogram password_hash_wait_seconds_;
};

}  // namespace messenger

#endif  // MESSENGER_SERVER_METRICS_H_

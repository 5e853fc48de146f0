#include "messenger/server/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace messenger {
namespace {

// Writes a group-commit batch: 1 to kMaxBatch (1024) writes, by powers of two.
constexpr double kBatchSizeBounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
// One commit: well under a millisecond without fsync, a few milliseconds with it on an SSD,
// far more on a slow or saturated disk.
constexpr double kCommitSecondsBounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                           1,      2.5,     5,      10};
// Waiting for a hashing slot: nothing when idle; a queue of Argon2 runs (tens of milliseconds
// each) under a login flood.
constexpr double kHashWaitSecondsBounds[] = {0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,   0.5,   1,     2.5,  5,     10,   30};

constexpr Transport kTransports[] = {Transport::kWire, Transport::kGrpc};

void AppendEscaped(std::string& out, std::string_view value, bool quotes) {
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

}  // namespace

std::string_view TransportLabel(Transport transport) {
  return transport == Transport::kGrpc ? "grpc" : "wire";
}

std::string_view RefuseReasonLabel(RefuseReason reason) {
  switch (reason) {
    case RefuseReason::kServerBusy:
      return "server_busy";
    case RefuseReason::kFdExhausted:
      return "fd_exhausted";
    case RefuseReason::kTlsHandshake:
      return "tls_handshake";
  }
  return "unknown";
}

// ---- Histogram ----

Histogram::Histogram(std::span<const double> upper_bounds)
    : bounds_(upper_bounds),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(upper_bounds.size() + 1)) {}

void Histogram::Observe(double value) {
  // The first bound >= value; past the end (the +Inf bucket) for larger values and NaN.
  std::size_t i = 0;
  while (i < bounds_.size() && !(value <= bounds_[i])) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  if (std::isnan(value)) return;
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.cumulative.resize(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative[i] = running;
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

// ---- ExpositionWriter ----

std::string ExpositionWriter::EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  AppendEscaped(out, value, /*quotes=*/true);
  return out;
}

std::string ExpositionWriter::FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Shortest form that reads back exactly; positional in the range where people expect it
  // (le="0.0001", not "1e-04"), as Prometheus's own clients write bounds.
  const double magnitude = std::fabs(value);
  const bool positional = value == 0 || (magnitude >= 1e-4 && magnitude < 1e21);
  char buffer[64];
  const std::to_chars_result result =
      positional ? std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed)
                 : std::to_chars(buffer, buffer + sizeof buffer, value);
  if (result.ec != std::errc()) return "NaN";  // Unreachable: 64 bytes hold either form.
  return std::string(buffer, result.ptr);
}

void ExpositionWriter::BeginFamily(std::string_view name, std::string_view type,
                                   std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  AppendEscaped(out_, help, /*quotes=*/false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void ExpositionWriter::SampleStart(std::string_view name, std::span<const Label> labels) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const Label& label : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += label.name;
      out_ += "=\"";
      AppendEscaped(out_, label.value, /*quotes=*/true);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
}

void ExpositionWriter::Sample(std::string_view name, std::span<const Label> labels,
                              std::uint64_t value) {
  SampleStart(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void ExpositionWriter::Sample(std::string_view name, std::span<const Label> labels,
                              std::int64_t value) {
  SampleStart(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void ExpositionWriter::Sample(std::string_view name, std::span<const Label> labels, double value) {
  SampleStart(name, labels);
  out_ += FormatValue(value);
  out_ += '\n';
}

void ExpositionWriter::HistogramSamples(std::string_view family, std::span<const Label> labels,
                                        std::span<const double> upper_bounds,
                                        const Histogram::Snapshot& snapshot) {
  const std::string bucket = std::string(family) + "_bucket";
  std::vector<Label> with_le(labels.begin(), labels.end());
  with_le.push_back({"le", ""});
  for (std::size_t i = 0; i <= upper_bounds.size(); ++i) {
    const std::string le = i < upper_bounds.size() ? FormatValue(upper_bounds[i]) : "+Inf";
    with_le.back().value = le;
    const std::uint64_t count = i < snapshot.cumulative.size() ? snapshot.cumulative[i] : 0;
    Sample(bucket, with_le, count);
  }
  Sample(std::string(family) + "_sum", labels, snapshot.sum);
  Sample(std::string(family) + "_count", labels, snapshot.count);
}

// ---- Metrics ----

Metrics::Metrics()
    : commit_batch_size_(kBatchSizeBounds),
      commit_duration_seconds_(kCommitSecondsBounds),
      password_hash_wait_seconds_(kHashWaitSecondsBounds) {}

Counter& Metrics::errors(Transport transport, ErrorCode code) {
  const auto value = static_cast<std::uint16_t>(code);
  const std::size_t slot =
      value <= kMaxWireErrorCode && IsKnownErrorCode(value) ? std::size_t{value} : 0;
  return errors_[Index(transport)][slot];
}

std::string Metrics::RenderPrometheus() const {
  ExpositionWriter w;
  const auto per_transport = [&](std::string_view name, std::string_view type,
                                 std::string_view help, const auto& values) {
    w.BeginFamily(name, type, help);
    for (const Transport transport : kTransports) {
      const Label labels[] = {{"transport", TransportLabel(transport)}};
      w.Sample(name, labels, values[Index(transport)].value());
    }
  };
  const auto single = [&](std::string_view name, std::string_view type, std::string_view help,
                          const auto& metric) {
    w.BeginFamily(name, type, help);
    w.Sample(name, {}, metric.value());
  };
  const auto histogram = [&](std::string_view name, std::string_view help,
                             const Histogram& metric) {
    w.BeginFamily(name, "histogram", help);
    w.HistogramSamples(name, {}, metric.upper_bounds(), metric.Read());
  };

  per_transport("messenger_connections_open", "gauge",
                "Connections being served (gRPC: sessions held by the gRPC front door).",
                connections_open_);
  per_transport("messenger_connections_accepted_total", "counter",
                "Connections admitted (gRPC: sessions started by Login).", connections_accepted_);

  w.BeginFamily("messenger_connections_refused_total", "counter",
                "Connections turned away, by reason.");
  for (const Transport transport : kTransports) {
    for (std::size_t r = 0; r < kRefuseReasonCount; ++r) {
      const auto reason = static_cast<RefuseReason>(r);
      // gRPC manages its own connections: it can only refuse a session for being full.
      if (transport == Transport::kGrpc && reason != RefuseReason::kServerBusy) continue;
      const Label labels[] = {{"transport", TransportLabel(transport)},
                              {"reason", RefuseReasonLabel(reason)}};
      w.Sample("messenger_connections_refused_total", labels,
               connections_refused_[Index(transport)][r].value());
    }
  }
  per_transport("messenger_slow_consumer_disconnects_total", "counter",
                "Clients disconnected for not reading what was queued for them.",
                slow_consumer_disconnects_);
  per_transport("messenger_sessions_logged_in", "gauge", "Sessions with a user logged in.",
                sessions_logged_in_);

  w.BeginFamily("messenger_errors_total", "counter",
                "Errors sent to clients (wire ERROR frames, failed gRPC calls), by protocol code.");
  for (const Transport transport : kTransports) {
    for (std::uint16_t value = 1; value <= kMaxWireErrorCode; ++value) {
      if (!IsKnownErrorCode(value)) continue;
      const Label labels[] = {{"transport", TransportLabel(transport)},
                              {"code", ErrorCodeName(static_cast<ErrorCode>(value))}};
      w.Sample("messenger_errors_total", labels, errors_[Index(transport)][value].value());
    }
  }

  single("messenger_messages_accepted_total", "counter",
         "Messages stored by SEND (a retried SEND answered from its dedupe record is not counted).",
         messages_accepted_);
  single("messenger_messages_delivered_live_total", "counter",
         "Messages pushed (DELIVER) to a recipient's live session.", messages_delivered_live_);
  single("messenger_messages_queued_total", "counter",
         "Messages accepted while their recipient was offline (SEND_OK delivery QUEUED).",
         messages_queued_);
  single("messenger_messages_fetched_total", "counter", "Messages handed out by FETCH_UNDELIVERED.",
         messages_fetched_);
  single("messenger_messages_acked_total", "counter",
         "Stored messages removed by their recipient's ACK.", messages_acked_);
  single("messenger_stored_messages", "gauge",
         "Messages stored and not yet acknowledged, all recipients.", stored_messages_);
  single("messenger_login_failures_total", "counter",
         "LOGINs refused with AUTH_FAILED (wrong password or unknown name).", login_failures_);
  single("messenger_login_throttles_total", "counter",
         "Times a name reached the failed-login limit and was throttled.", login_throttles_);

  histogram("messenger_store_commit_batch_size", "Writes committed together by one group commit.",
            commit_batch_size_);
  histogram("messenger_store_commit_duration_seconds",
            "Time to apply and commit one group-commit batch, fsync included.",
            commit_duration_seconds_);
  histogram("messenger_password_hash_wait_seconds",
            "Time a password hash or check waited for a free hashing slot.",
            password_hash_wait_seconds_);
  return w.Take();
}

}  // namespace messenger

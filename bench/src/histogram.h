// A fixed-size latency histogram: log-linear buckets (64 per power of two above 128 ns, so any
// recorded value is reported within 1.6 %), no allocation after construction, so a worker can
// record every message without touching the heap. Not thread-safe: one per worker, merged at the
// end.
#ifndef MESSENGER_BENCH_HISTOGRAM_H_
#define MESSENGER_BENCH_HISTOGRAM_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace messenger::bench {

class Histogram {
 public:
  // Adds one value in nanoseconds; negative values (clock skew cannot happen with one steady
  // clock, but a bug could) count as 0.
  void Record(std::int64_t nanoseconds);

  // Adds every value recorded in `other`.
  void Merge(const Histogram& other);

  std::uint64_t count() const { return count_; }

  // Returns the smallest bucket value v such that at least `quantile` (0..1] of the recorded
  // values are <= v, in nanoseconds; 0 when empty.
  std::int64_t Quantile(double quantile) const;

 private:
  // Values below 2^7 have a bucket each; above, each power of two has 64 buckets.
  static constexpr int kLinearBits = 7;
  static constexpr int kSubBuckets = 64;
  static constexpr std::size_t kBuckets =
      (std::size_t{1} << kLinearBits) + (64 - kLinearBits) * kSubBuckets;

  static std::size_t BucketOf(std::uint64_t value);
  static std::uint64_t ValueOf(std::size_t bucket);

  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
};

}  // namespace messenger::bench

#endif  // MESSENGER_BENCH_HISTOGRAM_H_

#include "histogram.h"

#include <bit>
#include <cmath>

namespace messenger::bench {

std::size_t Histogram::BucketOf(std::uint64_t value) {
  constexpr std::uint64_t kLinear = std::uint64_t{1} << kLinearBits;
  if (value < kLinear) return static_cast<std::size_t>(value);
  const int exponent = 63 - std::countl_zero(value);  // >= kLinearBits
  const int shift = exponent - 6;                     // keeps the top 7 bits: 64..127
  const std::uint64_t mantissa = (value >> shift) - kSubBuckets;
  return static_cast<std::size_t>(
      kLinear + static_cast<std::uint64_t>(exponent - kLinearBits) * kSubBuckets + mantissa);
}

std::uint64_t Histogram::ValueOf(std::size_t bucket) {
  constexpr std::size_t kLinear = std::size_t{1} << kLinearBits;
  if (bucket < kLinear) return bucket;
  const std::size_t rest = bucket - kLinear;
  const int exponent = kLinearBits + static_cast<int>(rest / kSubBuckets);
  const std::uint64_t mantissa = kSubBuckets + rest % kSubBuckets;
  const int shift = exponent - 6;
  // The middle of the bucket, so the error is at most half a bucket either way.
  return (mantissa << shift) + ((std::uint64_t{1} << shift) >> 1);
}

void Histogram::Record(std::int64_t nanoseconds) {
  ++buckets_[BucketOf(nanoseconds < 0 ? 0 : static_cast<std::uint64_t>(nanoseconds))];
  ++count_;
}

void Histogram::Merge(const Histogram& other) {
  for (std::size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
}

std::int64_t Histogram::Quantile(double quantile) const {
  if (count_ == 0) return 0;
  const double wanted = std::ceil(quantile * static_cast<double>(count_));
  const std::uint64_t rank = wanted < 1 ? 1 : static_cast<std::uint64_t>(wanted);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return static_cast<std::int64_t>(ValueOf(i));
  }
  return static_cast<std::int64_t>(ValueOf(kBuckets - 1));
}

}  // namespace messenger::bench

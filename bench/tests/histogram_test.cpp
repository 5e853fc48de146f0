#include "histogram.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

namespace messenger::bench {
namespace {

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (int v = 0; v < 100; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.Quantile(0.5), 49);
  EXPECT_EQ(h.Quantile(1.0), 99);
}

TEST(HistogramTest, LargeValuesStayWithinTwoPercent) {
  for (const std::int64_t value : {std::int64_t{128}, std::int64_t{1000}, std::int64_t{123456},
                                   std::int64_t{987654321}, std::int64_t{1} << 50}) {
    Histogram h;
    h.Record(value);
    const double got = static_cast<double>(h.Quantile(0.5));
    EXPECT_LT(std::abs(got - static_cast<double>(value)) / static_cast<double>(value), 0.02)
        << value << " reported as " << got;
  }
}

TEST(HistogramTest, QuantilesFollowTheDistributionAndMergeAddsCounts) {
  Histogram low;
  Histogram high;
  for (int i = 0; i < 990; ++i) low.Record(1000);
  for (int i = 0; i < 10; ++i) high.Record(1'000'000);
  low.Merge(high);
  EXPECT_EQ(low.count(), 1000u);
  EXPECT_NEAR(static_cast<double>(low.Quantile(0.99)), 1000, 20);
  EXPECT_NEAR(static_cast<double>(low.Quantile(0.999)), 1'000'000, 20'000);
}

TEST(HistogramTest, NegativeValuesCountAsZeroAndEmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.Quantile(0.99), 0);
  h.Record(-5);
  EXPECT_EQ(h.Quantile(0.5), 0);
}

}  // namespace
}  // namespace messenger::bench

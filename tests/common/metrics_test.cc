#include "common/metrics.h"

#include <gtest/gtest.h>

namespace spool {
namespace {

TEST(MetricsTest, HistogramBucketsAreCumulativeInTheOutput) {
  Histogram h({0.1, 1.0});
  h.Observe(0.05);
  h.Observe(0.1);  // a bound belongs to its own bucket (le = less or equal)
  h.Observe(0.5);
  h.Observe(7);
  MetricsWriter out;

  out.Family("x_seconds", "histogram", "Example.");
  out.HistogramSamples("x_seconds", {{"method", "Get"}}, h);
  const std::string text = out.Take();

  EXPECT_NE(text.find("# TYPE x_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("x_seconds_bucket{method=\"Get\",le=\"0.1\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("x_seconds_bucket{method=\"Get\",le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("x_seconds_bucket{method=\"Get\",le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("x_seconds_count{method=\"Get\"} 4\n"), std::string::npos);
  EXPECT_NEAR(h.sum(), 7.65, 1e-6);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  MetricsWriter out;

  out.Sample("y_total", {{"topic", "a\"b\\c\nd"}}, 3);

  EXPECT_EQ(out.Take(), "y_total{topic=\"a\\\"b\\\\c\\nd\"} 3\n");
}

TEST(MetricsTest, CountersAdd) {
  Counter c;
  c.Add();
  c.Add(41);
  EXPECT_EQ(c.value(), 42u);
}

}  // namespace
}  // namespace spool

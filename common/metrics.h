#pragma once

// Minimal Prometheus instrumentation: lock-free counters and histograms, and a writer for
// the text exposition format (version 0.0.4). Each owner keeps its own metrics and renders
// them on scrape; there is no global registry.
//
// Thread-safety: Counter and Histogram are safe from any thread; a MetricsWriter is used by
// one thread.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spool {

class Counter {
 public:
  void Add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Histogram {
 public:
  // `bounds` are the upper bounds of the buckets, ascending; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Per-bucket (not cumulative) counts, the last one for +Inf.
  std::vector<std::uint64_t> BucketCounts() const;
  double sum() const;

  // Latency buckets in seconds, 50 us to 10 s.
  static std::vector<double> LatencyBounds();

 private:
  const std::vector<double> bounds_;
  std::vector<std::atomic<std::uint64_t>> buckets_;
  std::atomic<std::uint64_t> sum_nanos_{0};  // sum in units of 1e-9, to stay lock-free
};

using Labels = std::vector<std::pair<std::string, std::string>>;

class MetricsWriter {
 public:
  // Starts a metric family; its samples must follow before the next family.
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, const Labels& labels, double value);
  void HistogramSamples(std::string_view name, const Labels& labels, const Histogram& h);

  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace spool

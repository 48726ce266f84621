#include "protocol/metrics_endpoint.h"

#include <functional>

#include "common/metrics.h"

namespace spool::protocol {
namespace {

struct PartitionSeries {
  const char* name;
  const char* type;
  const char* help;
  std::function<std::uint64_t(const broker::PartitionInfo&)> value;
};

}  // namespace

std::string RenderMetrics(const broker::Broker& broker, const storage::Store& store,
                          const CallCounter& calls) {
  MetricsWriter out;

  std::vector<broker::TopicInfo> topics;
  for (const broker::TopicMetadata& t : broker.ListTopics()) {
    if (auto info = broker.DescribeTopic(t.config.name)) topics.push_back(std::move(*info));
  }
  const PartitionSeries series[] = {
      {"spool_partition_log_start_offset", "gauge", "First offset still stored.",
       [](const broker::PartitionInfo& p) { return p.start_offset; }},
      {"spool_partition_log_end_offset", "gauge", "Offset the next record will get.",
       [](const broker::PartitionInfo& p) { return p.end_offset; }},
      {"spool_partition_size_bytes", "gauge", "Encoded bytes of the stored records.",
       [](const broker::PartitionInfo& p) { return p.size_bytes; }},
      {"spool_published_records_total", "counter", "Records published (durable) since start.",
       [](const broker::PartitionInfo& p) { return p.published_records; }},
      {"spool_published_bytes_total", "counter",
       "Key and value bytes of the records published since start.",
       [](const broker::PartitionInfo& p) { return p.published_bytes; }},
      {"spool_fetched_records_total", "counter", "Records returned by fetches since start.",
       [](const broker::PartitionInfo& p) { return p.fetched_records; }},
      {"spool_fetched_bytes_total", "counter",
       "Key and value bytes of the records returned by fetches since start.",
       [](const broker::PartitionInfo& p) { return p.fetched_bytes; }},
  };
  for (const PartitionSeries& s : series) {
    out.Family(s.name, s.type, s.help);
    for (const broker::TopicInfo& topic : topics) {
      for (const broker::PartitionInfo& p : topic.partitions) {
        out.Sample(
            s.name,
            {{"topic", topic.metadata.config.name}, {"partition", std::to_string(p.partition)}},
            static_cast<double>(s.value(p)));
      }
    }
  }

  const storage::StoreStats stats = store.Stats();
  out.Family("spool_store_wal_syncs_total", "counter", "fsyncs of the write-ahead log.");
  out.Sample("spool_store_wal_syncs_total", {}, static_cast<double>(stats.wal_syncs));
  out.Family("spool_store_batches_written_total", "counter",
             "Write batches written to the WAL (several share one fsync).");
  out.Sample("spool_store_batches_written_total", {}, static_cast<double>(stats.batches_written));
  out.Family("spool_store_write_groups_total", "counter", "RocksDB writes by the group commit.");
  out.Sample("spool_store_write_groups_total", {}, static_cast<double>(stats.write_groups));
  out.Family("spool_rocksdb_pending_compaction_bytes", "gauge",
             "Bytes RocksDB estimates compaction still has to rewrite.");
  out.Sample("spool_rocksdb_pending_compaction_bytes", {},
             static_cast<double>(stats.pending_compaction_bytes));
  out.Family("spool_rocksdb_write_stall_seconds_total", "counter",
             "Time writes were stalled by RocksDB.");
  out.Sample("spool_rocksdb_write_stall_seconds_total", {},
             static_cast<double>(stats.write_stall_micros) / 1e6);
  out.Family("spool_rocksdb_write_stopped", "gauge", "1 while RocksDB stops writes.");
  out.Sample("spool_rocksdb_write_stopped", {}, stats.write_stopped ? 1 : 0);

  // Consumer groups.
  const auto groups = broker.GroupMetrics();
  out.Family("spool_group_members", "gauge", "Live members of a consumer group.");
  for (const auto& g : groups)
    out.Sample("spool_group_members", {{"group", g.group}}, g.members);
  out.Family("spool_group_rebalances_total", "counter",
             "Times a group's target assignment was recomputed since start.");
  for (const auto& g : groups) {
    out.Sample("spool_group_rebalances_total", {{"group", g.group}},
               static_cast<double>(g.rebalances));
  }
  // One family at a time: a family's samples must follow its TYPE line.
  const struct {
    const char* name;
    const char* help;
    std::function<double(const broker::PartitionPosition&)> value;
  } offset_series[] = {
      {"spool_group_committed_offset", "A group's committed offset (the next to read).",
       [](const broker::PartitionPosition& p) { return static_cast<double>(p.committed->offset); }},
      {"spool_group_lag", "Log end offset minus the group's committed offset.",
       [](const broker::PartitionPosition& p) {
         return static_cast<double>(
             p.log_end > p.committed->offset ? p.log_end - p.committed->offset : 0);
       }},
  };
  for (const auto& series : offset_series) {
    out.Family(series.name, "gauge", series.help);
    for (const auto& g : groups) {
      for (const auto& p : g.partitions) {
        if (!p.committed) continue;
        out.Sample(series.name,
                   {{"group", g.group},
                    {"topic", p.tp.topic},
                    {"partition", std::to_string(p.tp.partition)}},
                   series.value(p));
      }
    }
  }

  calls.Render(out);
  return out.Take();
}

}  // namespace spool::protocol

#include "protocol/metrics_endpoint.h"

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>

#include "common/metrics.h"

namespace spool::protocol {
namespace {

struct PartitionSeries {
  const char* name;
  const char* type;
  const char* help;
  std::function<std::uint64_t(const broker::PartitionInfo&)> value;
};

// Every queue's description, gathered in parallel; those not answered in time are left out.
std::map<std::string, broker::QueueInfo> DescribeQueues(broker::Broker& broker,
                                                        std::chrono::milliseconds timeout) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::size_t pending = 0;
    std::map<std::string, broker::QueueInfo> described;
  };
  auto shared = std::make_shared<Shared>();
  const auto names = broker.ListQueues("", "", SIZE_MAX);
  shared->pending = names.size();
  for (const std::string& name : names) {
    broker.DescribeQueue(name, [shared, name](Result<broker::QueueInfo> info) {
      std::lock_guard lock(shared->mu);
      if (info) shared->described.emplace(name, std::move(*info));
      if (--shared->pending == 0) shared->cv.notify_all();
    });
  }
  std::unique_lock lock(shared->mu);
  shared->cv.wait_for(lock, timeout, [&] { return shared->pending == 0; });
  return shared->described;
}

}  // namespace

std::string RenderMetrics(broker::Broker& broker, const storage::Store& store,
                          const CallCounter& calls, std::chrono::milliseconds queue_timeout) {
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

  // Queues.
  const auto queues = DescribeQueues(broker, queue_timeout);
  out.Family("spool_queue_messages", "gauge",
             "Approximate messages of a queue by state: visible (receivable now), in_flight "
             "(leased) or delayed.");
  for (const auto& [name, q] : queues) {
    out.Sample("spool_queue_messages", {{"queue", name}, {"state", "visible"}},
               static_cast<double>(q.counts.visible));
    out.Sample("spool_queue_messages", {{"queue", name}, {"state", "in_flight"}},
               static_cast<double>(q.counts.in_flight));
    out.Sample("spool_queue_messages", {{"queue", name}, {"state", "delayed"}},
               static_cast<double>(q.counts.delayed));
  }
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  out.Family("spool_queue_oldest_visible_age_seconds", "gauge",
             "Age of the oldest message a receive could return now; 0 when there is none.");
  for (const auto& [name, q] : queues) {
    const double age = q.oldest_visible_sent_ms
                           ? std::max<double>(0, (now_ms - *q.oldest_visible_sent_ms) / 1e3)
                           : 0;
    out.Sample("spool_queue_oldest_visible_age_seconds", {{"queue", name}}, age);
  }
  out.Family("spool_queue_dead_letter_messages", "gauge",
             "Messages in the dead-letter queue of a queue with a redrive policy, in every "
             "state.");
  for (const auto& [name, q] : queues) {
    const auto& policy = q.metadata.attributes.redrive_policy;
    if (!policy) continue;
    auto dlq = queues.find(policy->dead_letter_queue);
    if (dlq == queues.end()) continue;
    const broker::QueueCounts& c = dlq->second.counts;
    out.Sample("spool_queue_dead_letter_messages",
               {{"queue", name}, {"dead_letter_queue", policy->dead_letter_queue}},
               static_cast<double>(c.visible + c.in_flight + c.delayed));
  }
  const struct {
    const char* name;
    const char* help;
    std::uint64_t broker::QueueActivity::*field;
  } activity_series[] = {
      {"spool_queue_sent_messages_total", "Messages sent to a queue (duplicates not) since start.",
       &broker::QueueActivity::sent},
      {"spool_queue_received_messages_total", "Messages returned by receives since start.",
       &broker::QueueActivity::received},
      {"spool_queue_redelivered_messages_total",
       "Received messages that had been received before, since start.",
       &broker::QueueActivity::redelivered},
      {"spool_queue_deleted_messages_total", "Messages deleted by receipt handle since start.",
       &broker::QueueActivity::deleted},
      {"spool_queue_dead_lettered_messages_total",
       "Messages moved to the dead-letter queue since start.",
       &broker::QueueActivity::dead_lettered},
      {"spool_queue_redriven_messages_total",
       "Messages redrive tasks moved out of a queue (a dead-letter queue) since start.",
       &broker::QueueActivity::redriven},
  };
  for (const auto& series : activity_series) {
    out.Family(series.name, "counter", series.help);
    for (const auto& [name, q] : queues) {
      out.Sample(series.name, {{"queue", name}}, static_cast<double>(q.activity.*series.field));
    }
  }

  calls.Render(out);
  return out.Take();
}

}  // namespace spool::protocol

// Broker: redrive tasks. A task's control (start, steps, cancel, end) runs on the admin
// strand; each step takes up to a batch of visible messages from the dead-letter queue's
// partitions on their strands, locking them like dead letters, and moves them with
// MoveLocked: appended to their destination and deleted from the dead-letter queue in one
// write per destination partition, so a message is never in both and never lost. A crash
// between steps loses nothing: the locks were never stored, and the task resumes from its
// stored record, covering the same offsets.

#include <algorithm>

#include <boost/asio/bind_executor.hpp>

#include "broker/broker.h"
#include "broker/broker_internal.h"
#include "common/coding.h"
#include "storage/keys.h"

namespace spool::broker {
using namespace internal;  // NOLINT(google-build-using-namespace)
namespace {

using storage::ColumnFamily;
using storage::MetaKey;
using storage::MetaTag;

const std::string kNextRedriveIdCounter = "next_redrive_task_id";

std::string RedriveKey(std::uint64_t id) {
  std::string suffix;
  PutFixed64BE(suffix, id);
  return MetaKey(MetaTag::kRedriveTask, suffix);
}

// A step moves `batch` messages; steps are `period` apart, so that the rate holds over time
// while a step stays small (at most a tenth of a second's worth).
struct Pace {
  std::size_t batch;
  std::chrono::milliseconds period;
};
Pace PaceOf(std::uint32_t per_second) {
  const std::size_t batch = (per_second + 9) / 10;
  return {batch, std::chrono::milliseconds(batch * 1000 / per_second)};
}

}  // namespace

struct Broker::RedriveStepOp {
  std::shared_ptr<RedriveRun> run;
  std::shared_ptr<const QueueMetadata> queue;
  std::shared_ptr<const Topic> topic;
  std::string destination;
  std::vector<std::uint64_t> ends;
  std::size_t budget = 0;
  std::size_t first = 0;
  std::vector<DeadLetter> letters;
  bool more_to_scan = false;
  std::optional<std::string> failure;
};

Status Broker::StoreRedriveTask(const RedriveTask& task, storage::WriteBatch batch) {
  batch.Put(ColumnFamily::kMeta, RedriveKey(task.id), EncodeRedriveTask(task));
  return store_.WriteSync(std::move(batch));
}

Status Broker::LoadRedriveTasks() {
  auto next = LoadCounter(store_, kNextRedriveIdCounter, 1);
  if (!next) return next.error();
  next_redrive_id_ = *next;
  auto it = MetaEntries(store_, MetaTag::kRedriveTask);
  std::map<std::uint64_t, std::shared_ptr<RedriveRun>> loaded;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto task = DecodeRedriveTask(it->value());
    if (!task) return task.error();
    next_redrive_id_ = std::max(next_redrive_id_, task->id + 1);
    const std::uint64_t id = task->id;
    loaded.emplace(id, std::make_shared<RedriveRun>(admin_strand_, std::move(*task)));
  }
  if (Status s = it->status(); !s) return s;
  std::lock_guard lock(redrive_mu_);
  redrive_runs_ = std::move(loaded);
  return Ok();
}

void Broker::ResumeRedriveTasks() {
  boost::asio::post(admin_strand_, [this] {
    std::vector<std::shared_ptr<RedriveRun>> runs;
    {
      std::lock_guard lock(redrive_mu_);
      for (const auto& [id, run] : redrive_runs_) {
        if (run->task.active()) runs.push_back(run);
      }
    }
    for (const auto& run : runs) {
      RedriveStatus status;
      {
        std::lock_guard lock(redrive_mu_);
        status = run->task.status;
      }
      if (status == RedriveStatus::kCancelling) {
        EndRedrive(*run, RedriveStatus::kCancelled);
      } else {
        Log().info("resuming redrive task {} of queue '{}'", run->task.id, run->task.source);
        ScheduleRedriveStep(run, std::chrono::milliseconds(0));
      }
    }
  });
}

void Broker::StartRedrive(RedriveRequest request, Callback<RedriveTask> done) {
  if (request.max_per_second < kMinRedriveRate || request.max_per_second > kMaxRedriveRate) {
    return done(InvalidArgument("the redrive rate must be within " +
                                std::to_string(kMinRedriveRate) + "-" +
                                std::to_string(kMaxRedriveRate) + " messages per second"));
  }
  for (const std::string* name : {&request.source, &request.destination}) {
    if (name->empty() && name == &request.destination) continue;
    if (Status s = ValidateQueueName(*name, name->ends_with(".fifo")); !s) return done(s.error());
  }
  if (request.destination == request.source) {
    return done(InvalidArgument("a redrive cannot move messages to the queue they are in"));
  }
  // The count comes from the partitions' strands; the start itself from the admin strand.
  DescribeQueue(request.source, [this, request, done](Result<QueueInfo> info) {
    if (!info) return done(info.error());
    if (!Enter()) return done(ShuttingDown());
    const QueueCounts& c = info->counts;
    boost::asio::post(admin_strand_,
                      [this, request, done, n = c.visible + c.delayed + c.in_flight] {
                        StartRedriveOnAdminStrand(request, n, done);
                        Leave();
                      });
  });
}

void Broker::StartRedriveOnAdminStrand(const RedriveRequest& request, std::uint64_t to_move,
                                       Callback<RedriveTask> done) {
  auto source = FindQueue(request.source);
  if (!source) return done(NotFound("queue '" + request.source + "' does not exist"));
  auto topic = FindTopic(source->topic);
  if (!topic) return done(UnknownTopic(source->topic));
  auto sources = DeadLetterSourceQueues(request.source, "", 1);
  if (!sources) return done(sources.error());
  if (sources->empty()) {
    return done(FailedPrecondition("queue '" + request.source +
                                   "' is not the dead-letter queue of any queue"));
  }
  if (!request.destination.empty()) {
    auto destination = FindQueue(request.destination);
    if (!destination) return done(NotFound("queue '" + request.destination + "' does not exist"));
    if (destination->attributes.fifo != source->attributes.fifo) {
      return done(FailedPrecondition("a redrive moves messages between queues of one type; '" +
                                     request.source + "' is " +
                                     (source->attributes.fifo ? "FIFO" : "standard") + ", '" +
                                     request.destination + "' is not"));
    }
  }
  std::vector<std::uint64_t> stale;  // finished tasks of this source beyond those kept
  {
    std::lock_guard lock(redrive_mu_);
    std::size_t kept = 0;
    for (auto it = redrive_runs_.rbegin(); it != redrive_runs_.rend(); ++it) {
      const RedriveTask& t = it->second->task;
      if (t.source != request.source) continue;
      if (t.active()) {
        return done(FailedPrecondition("redrive task " + std::to_string(t.id) +
                                       " is still running for queue '" + request.source + "'"));
      }
      if (++kept >= kRedriveTasksKept) stale.push_back(t.id);
    }
  }
  RedriveTask task;
  task.id = next_redrive_id_;
  task.source = request.source;
  task.source_subscription = source->subscription;
  task.destination = request.destination;
  task.max_per_second = request.max_per_second;
  task.to_move = to_move;
  task.started_ms = clock_.WallMillis();
  for (const auto& slot : topic->partitions)
    task.ends.push_back(slot->end.load(std::memory_order_relaxed));
  storage::WriteBatch batch;
  std::string counter;
  PutFixed64BE(counter, next_redrive_id_ + 1);
  batch.Put(ColumnFamily::kMeta, MetaKey(MetaTag::kCounter, kNextRedriveIdCounter),
            std::move(counter));
  for (std::uint64_t id : stale)
    batch.Delete(ColumnFamily::kMeta, RedriveKey(id));
  if (Status s = StoreRedriveTask(task, std::move(batch)); !s) return done(s.error());
  ++next_redrive_id_;
  auto run = std::make_shared<RedriveRun>(admin_strand_, task);
  {
    std::lock_guard lock(redrive_mu_);
    for (std::uint64_t id : stale)
      redrive_runs_.erase(id);
    redrive_runs_.emplace(task.id, run);
  }
  Log().info("redrive task {} started: queue '{}' to {} at {}/s", task.id, task.source,
             task.destination.empty() ? "the source queues" : "'" + task.destination + "'",
             task.max_per_second);
  ScheduleRedriveStep(run, std::chrono::milliseconds(0));
  done(std::move(task));
}

Result<std::vector<RedriveTask>> Broker::ListRedriveTasks(const std::string& source,
                                                          std::size_t max) const {
  if (!FindQueue(source)) return NotFound("queue '" + source + "' does not exist");
  std::vector<RedriveTask> out;
  std::lock_guard lock(redrive_mu_);
  for (auto it = redrive_runs_.rbegin(); it != redrive_runs_.rend() && out.size() < max; ++it) {
    if (it->second->task.source == source) out.push_back(it->second->task);
  }
  return out;
}

void Broker::CancelRedrive(std::uint64_t id, Callback<RedriveTask> done) {
  if (!Enter()) return done(ShuttingDown());
  boost::asio::post(admin_strand_, [this, id, done = std::move(done)] {
    std::shared_ptr<RedriveRun> run;
    {
      std::lock_guard lock(redrive_mu_);
      auto it = redrive_runs_.find(id);
      if (it != redrive_runs_.end()) run = it->second;
    }
    if (!run) {
      done(NotFound("there is no redrive task " + std::to_string(id)));
      return Leave();
    }
    RedriveTask task;
    {
      std::lock_guard lock(redrive_mu_);
      if (run->task.status != RedriveStatus::kRunning) {
        done(FailedPrecondition("redrive task " + std::to_string(id) + " is " +
                                std::string(RedriveStatusName(run->task.status)) +
                                ", not RUNNING"));
        return Leave();
      }
      run->task.status = RedriveStatus::kCancelling;
      task = run->task;
    }
    if (!run->stepping) {
      // Between steps: nothing is in progress, so it ends now.
      run->timer.cancel();
      done(EndRedrive(*run, RedriveStatus::kCancelled));
      return Leave();
    }
    if (Status s = StoreRedriveTask(task); !s)
      Log().error("redrive task {}: {}", id, s.error().ToString());
    done(std::move(task));
    Leave();
  });
}

RedriveTask Broker::EndRedrive(RedriveRun& run, RedriveStatus status, std::string failure) {
  RedriveTask task;
  {
    std::lock_guard lock(redrive_mu_);
    run.task.status = status;
    run.task.failure = std::move(failure);
    run.task.finished_ms = clock_.WallMillis();
    task = run.task;
  }
  if (Status s = StoreRedriveTask(task); !s) {
    // Found active after a restart, it runs on or ends again then.
    Log().error("redrive task {}: {}", task.id, s.error().ToString());
  }
  Log().info("redrive task {} of queue '{}' {} after moving {} messages{}", task.id, task.source,
             RedriveStatusName(task.status), task.moved,
             task.failure.empty() ? "" : ": " + task.failure);
  return task;
}

void Broker::ScheduleRedriveStep(std::shared_ptr<RedriveRun> run, std::chrono::milliseconds after) {
  {
    // Shutdown() cancels the timers on this strand after setting stopping_.
    std::lock_guard lock(inflight_mu_);
    if (stopping_) return;
  }
  run->timer.expires_after(after);
  run->timer.async_wait(
      boost::asio::bind_executor(admin_strand_, [this, run](boost::system::error_code ec) {
        if (!ec) RedriveStep(run);
      }));
}

void Broker::RedriveStep(std::shared_ptr<RedriveRun> run) {
  RedriveTask task;
  {
    std::lock_guard lock(redrive_mu_);
    task = run->task;
  }
  if (task.status == RedriveStatus::kCancelling) {
    EndRedrive(*run, RedriveStatus::kCancelled);
    return;
  }
  if (task.status != RedriveStatus::kRunning) return;
  auto queue = FindQueue(task.source);
  auto topic = queue ? FindTopic(queue->topic) : nullptr;
  if (!topic || queue->subscription != task.source_subscription) {
    EndRedrive(*run, RedriveStatus::kFailed, "queue '" + task.source + "' was deleted");
    return;
  }
  if (!task.destination.empty() && !FindQueue(task.destination)) {
    EndRedrive(*run, RedriveStatus::kFailed, "queue '" + task.destination + "' was deleted");
    return;
  }
  if (!Enter()) return;  // resumed after the restart
  run->stepping = true;
  auto step = std::make_shared<RedriveStepOp>();
  step->run = run;
  step->queue = queue;
  step->topic = topic;
  step->destination = task.destination;
  step->ends = task.ends;
  step->budget = PaceOf(task.max_per_second).batch;
  step->first = run->next_partition++;
  RedriveTake(std::move(step), 0);
}

void Broker::RedriveTake(std::shared_ptr<RedriveStepOp> step, std::size_t index) {
  // Partitions added after the start hold nothing the task covers.
  const std::size_t n = std::min(step->topic->partitions.size(), step->ends.size());
  if (index == n || step->letters.size() >= step->budget || step->failure) {
    return RedriveMove(std::move(step));
  }
  const std::size_t p = (step->first + index) % n;
  auto slot = step->topic->partitions[p];
  boost::asio::post(slot->strand, [this, step = std::move(step), slot, p, index]() mutable {
    auto state = slot->Queue(store_, step->queue->subscription);
    if (slot->deleted || !state) {
      step->failure = "queue '" + step->queue->name + "' was deleted";
      return RedriveTake(std::move(step), index + 1);
    }
    QueueReceiveOptions options;
    options.max_messages = step->budget - step->letters.size();
    options.max_dead_letters = options.max_messages;
    options.max_receive_count = 0;
    options.redrive = true;
    options.fifo = step->queue->attributes.fifo;
    options.max_in_flight = SIZE_MAX;
    options.generation_floor = generation_floor_;
    options.end_offset = step->ends[p];
    storage::WriteBatch floor;
    auto got = (*state)->Receive(clock_.WallMillis(), options, floor);
    store_.Write(std::move(floor), [](Status) {});
    if (!got) {
      step->failure = got.error().ToString();
      return RedriveTake(std::move(step), index + 1);
    }
    // Its locks count in flight until the move deletes them.
    CountersOf(step->queue->subscription)
        ->SetInFlight(static_cast<std::uint32_t>(p), got->in_flight);
    if (got->error) step->failure = got->error->ToString();
    if (got->more_to_scan) step->more_to_scan = true;
    for (auto& m : got->dead_letters) {
      DeadLetter d;
      d.partition = static_cast<std::uint32_t>(p);
      if (Status s = (*state)->PrepareDeadLetterDelete(m.offset, m.generation, d.source_delete);
          !s) {
        step->failure = s.error().ToString();
        continue;
      }
      d.message = std::move(m);
      step->letters.push_back(std::move(d));
    }
    RedriveTake(std::move(step), index + 1);
  });
}

void Broker::RedriveMove(std::shared_ptr<RedriveStepOp> step) {
  auto fail = [&](std::string why) {
    std::vector<QueueReceipt> receipts;
    for (const DeadLetter& d : step->letters)
      receipts.push_back({d.partition, d.message.offset, d.message.generation});
    UnlockDeadLetters(step->topic, step->queue->subscription, std::move(receipts));
    boost::asio::post(admin_strand_, [this, run = step->run, why = std::move(why)] {
      FinishRedriveStep(run, 0, false, why);
      Leave();
    });
  };
  if (step->failure) return fail(*step->failure);
  // Where each message goes; every destination is checked before anything moves.
  std::map<std::string, std::vector<DeadLetter>> by_destination;
  for (auto& d : step->letters) {
    std::string to = step->destination;
    if (to.empty()) {
      for (const auto& [key, value] : d.message.record.headers) {
        if (key == "spool.dlq.source_queue") to = value;
      }
    }
    if (to.empty()) {
      return fail("the message at partition " + std::to_string(d.partition) + ", offset " +
                  std::to_string(d.message.offset) +
                  " was not moved here by a redrive policy, so it has no source queue; start a "
                  "redrive with a destination queue");
    }
    by_destination[to];
  }
  std::vector<std::pair<std::shared_ptr<const QueueMetadata>, std::shared_ptr<const Topic>>>
      targets;
  for (const auto& [name, unused] : by_destination) {
    auto queue = FindQueue(name);
    auto topic = queue ? FindTopic(queue->topic) : nullptr;
    if (!topic) return fail("queue '" + name + "' does not exist");
    if (queue->attributes.fifo != step->queue->attributes.fifo) {
      return fail("queue '" + name + "' is not of the dead-letter queue's type");
    }
    targets.emplace_back(queue, topic);
  }
  for (auto& d : step->letters) {
    std::string to = step->destination;
    if (to.empty()) {
      for (const auto& [key, value] : d.message.record.headers) {
        if (key == "spool.dlq.source_queue") to = value;
      }
    }
    by_destination[to].push_back(std::move(d));
  }
  const bool exhausted = step->letters.empty() && !step->more_to_scan;
  step->letters.clear();
  auto total = std::make_shared<Gather<std::uint64_t>>(
      std::max<std::size_t>(targets.size(), 1), 0,
      [this, step, exhausted](Result<std::uint64_t> moved) {
        boost::asio::post(admin_strand_, [this, step, exhausted, moved] {
          if (moved) {
            CountersOf(step->queue->subscription)
                ->redriven.fetch_add(*moved, std::memory_order_relaxed);
          }
          if (!moved && moved.error().code == ErrorCode::kUnavailable) {
            // Shutting down: the task stays RUNNING, stored so, and resumes after the restart.
            step->run->stepping = false;
            return Leave();
          }
          // What moved before a failure stays moved; the count is of the writes that ended well.
          FinishRedriveStep(
              step->run, moved ? *moved : 0, exhausted,
              moved ? std::nullopt : std::optional<std::string>(moved.error().ToString()));
          Leave();
        });
      },
      [] {});
  if (targets.empty()) return total->Finish();
  std::size_t i = 0;
  for (auto& [name, letters] : by_destination) {
    MoveLocked(
        step->queue, step->topic, targets[i++].second, std::move(letters),
        [](storage::Record& r, const DeadLetter&) {
          // A new message at the destination: its dead-letter history stays behind.
          std::erase_if(r.headers,
                        [](const auto& h) { return h.first.rfind("spool.dlq.", 0) == 0; });
        },
        [total](Result<std::uint64_t> moved) {
          if (!moved) return total->Fail(moved.error());
          total->Update([&](std::uint64_t& sum) { sum += *moved; });
          total->Finish();
        });
  }
}

void Broker::FinishRedriveStep(std::shared_ptr<RedriveRun> run, std::uint64_t moved, bool exhausted,
                               std::optional<std::string> failure) {
  run->stepping = false;
  RedriveTask task;
  {
    std::lock_guard lock(redrive_mu_);
    run->task.moved += moved;
    task = run->task;
  }
  if (failure) {
    EndRedrive(*run, RedriveStatus::kFailed, std::move(*failure));
  } else if (task.status == RedriveStatus::kCancelling) {
    EndRedrive(*run, RedriveStatus::kCancelled);
  } else if (exhausted) {
    EndRedrive(*run, RedriveStatus::kCompleted);
  } else {
    // Progress is informational: after a crash the count restarts from the last stored one.
    if (moved > 0) {
      storage::WriteBatch batch;
      batch.Put(ColumnFamily::kMeta, RedriveKey(task.id), EncodeRedriveTask(task));
      store_.Write(std::move(batch), [](Status) {});
    }
    ScheduleRedriveStep(run, PaceOf(task.max_per_second).period);
  }
}

}  // namespace spool::broker

#pragma once

// One queue subscription's state on one partition of its topic (design §1, "Queue
// subscriptions"): the ack floor, below which every message is done, and above it the
// messages that have been received (leased, released, or acknowledged out of order) or that
// wait for their delivery time.
//
// A message's life: delayed until its deliver-after time, then visible. Receive leases it
// until `visible_at_ms`, counts the receive and bumps its generation; only that generation
// (carried by the receipt handle) may delete it or change its visibility. A lease that ends
// makes the message visible again. Generations never repeat for a message, across restarts
// too: a receive may be answered before its lease is durable (BrokerOptions::
// defer_receive_fsync, or a power loss under FsyncMode::kInterval), so a crash can forget
// one, and each run of the broker starts its generations above every earlier run's
// (`generation_floor`). FIFO: a message group is locked while any earlier message of it is
// not done and not receivable, so each group is delivered in order, one lease at a time.
//
// Changes are applied here at once and added to a WriteBatch that the caller writes; the
// caller answers a delete, visibility change or receive when that write is durable (a
// deferred receive as soon as it is queued). Nobody else can take what changed (a lease, a
// delete), and if the write fails the store refuses every later write, so memory and disk
// never disagree about anything acknowledged.
//
// Thread-safety: not thread-safe; owned by the partition's strand, like the PartitionLog it
// reads (which must outlive it).

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <memory_resource>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

#include "common/error.h"
#include "storage/partition_log.h"
#include "storage/store.h"

namespace spool::broker {

struct QueueMessageState {
  std::uint32_t receive_count = 0;  // 0: never received (delayed, waiting, or a redrive's)
  std::uint64_t generation = 0;     // the receive that holds the message now
  std::int64_t visible_at_ms = 0;   // lease end, release time or delivery time
  std::int64_t first_receive_ms = 0;
  std::int64_t last_receive_ms = 0;
  // Only in the stored form: in memory a deleted message has no state, and one deleted out of
  // order (above the floor) is in an acknowledged range.
  bool acked = false;
  // Nacked (memory only): the receive's lease ended early (a stream's window frees its place),
  // but the message stays in flight until the nack's delay ends.
  bool released = false;
  // Memory only: the message has a stored state of its own, or its state is that of a lease
  // run (the messages one receive took for the first time), or neither (never received).
  bool own_key = false;
  bool in_run = false;
  // FIFO message group (memory only): known once the record was read after a (re)load.
  std::optional<std::string> group;
  bool group_known = false;

  bool operator==(const QueueMessageState&) const = default;
};

std::string EncodeQueueMessageState(const QueueMessageState& state);
Result<QueueMessageState> DecodeQueueMessageState(std::string_view in);

struct ReceivedMessage {
  std::uint64_t offset = 0;
  storage::Record record;
  std::uint32_t receive_count = 0;
  std::uint64_t generation = 0;
  std::int64_t first_receive_ms = 0;
  std::int64_t visibility_deadline_ms = 0;  // when this lease ends
};

struct QueueReceiveOptions {
  std::size_t max_messages = 1;
  std::int64_t visibility_ms = 30'000;
  // With a redrive policy: a message already received this often is not received again but
  // handed back in `dead_letters`.
  std::optional<std::uint32_t> max_receive_count;
  bool fifo = false;
  std::size_t max_in_flight = 120'000;
  // FIFO reads ahead of what it delivers to find other groups' messages, and stops once this
  // many examined messages that are not done are not in flight either (received with the
  // lease over, or never received): a deep backlog in a few groups costs bounded memory, and
  // groups further on wait until the front moves.
  std::size_t max_fifo_examined = 100'000;
  // Only messages below this offset (a redrive covers what was there when it started).
  std::uint64_t end_offset = UINT64_MAX;
  // A receive's generation is at least this: the broker's run number << 32, so that no
  // receive repeats the receipt of one a crash made it forget.
  std::uint64_t generation_floor = 0;
  // The most dead letters one call hands back; 0: ten times max_messages, at least 100.
  std::size_t max_dead_letters = 0;
  // A redrive: every receivable message is a dead letter (max_receive_count 0), and a FIFO
  // group gives several at once, in order, since they move together.
  bool redrive = false;
};

struct QueueReceiveResult {
  std::vector<ReceivedMessage> messages;
  // Messages past their max receive count. They stay locked here (not receivable, and in
  // FIFO their group too) until the caller moves them and calls Delete with their generation
  // in the same write, or the partition's state is loaded again.
  std::vector<ReceivedMessage> dead_letters;
  // The earliest time at which something not receivable now becomes receivable (a lease or
  // a delay ending), for long polls.
  std::optional<std::int64_t> next_visible_ms;
  // Fewer leased than asked (perhaps none) because max_in_flight messages are leased.
  bool in_flight_limit = false;
  std::size_t in_flight = 0;  // leases that have not ended, after this receive
  // The receive stopped at its scan budget with records left to examine.
  bool more_to_scan = false;
  // A message could not be read (e.g. a checksum failure): what was taken before it is in
  // `messages` (and leased); the rest of this receive was not attempted.
  std::optional<Error> error;
};

// The delivery times of records appended to one partition whose delivery is still ahead, so
// that counts can tell delayed messages from visible ones without reading records no receive
// has examined: those the log's delay index listed when the partition was opened, and those
// appended since. Shared by the partition's queue subscriptions. Strand only.
// A count costs O(log n) plus the records it forgets, each once: the records are ordered by
// offset in a tree that knows every subtree's size, and by delivery time in a heap.
class AppendedDelays {
 public:
  static constexpr std::size_t kMaxNoted = 1'000'000;

  explicit AppendedDelays(std::uint64_t from) : from_(from) {}
  // Starts again from the log's delay index (storage::PartitionLog::ListPendingDelays, at
  // most kMaxNoted), in place: the tree has no move, only a deep copy.
  void Reset(const storage::PendingDelays& pending);
  // Every record from this offset on was noted (until kMaxNoted were): where the delay index
  // starts, or the log end when the partition was opened if it did not cover the log.
  std::uint64_t from() const { return from_; }
  // Past kMaxNoted records still delayed, more are not noted (memory stays bounded) and
  // count as visible until a receive examines them, as before a restart.
  void Note(std::uint64_t offset, std::int64_t deliver_after_ms);
  // How many records in [begin, end) are delayed at now_ms. Forgets every record whose time
  // has come (it stays visible until examined, for every subscription).
  std::uint64_t CountDelayed(std::uint64_t begin, std::uint64_t end, std::int64_t now_ms);
  // The first offset in [begin, end) that is not delayed at now_ms, looking at most `max`
  // delayed records past `begin`; nullopt if there is none or the walk was cut short.
  std::optional<std::uint64_t> FirstNotDelayed(std::uint64_t begin, std::uint64_t end,
                                               std::int64_t now_ms, std::size_t max) const;

 private:
  std::uint64_t from_;
  // offset -> deliver_after_ms, with order statistics (how many keys are below a key).
  __gnu_pbds::tree<std::uint64_t, std::int64_t, std::less<>, __gnu_pbds::rb_tree_tag,
                   __gnu_pbds::tree_order_statistics_node_update>
      delays_;
  // (deliver_after_ms, offset), soonest on top: what to forget next.
  std::priority_queue<std::pair<std::int64_t, std::uint64_t>,
                      std::vector<std::pair<std::int64_t, std::uint64_t>>, std::greater<>>
      due_;
};

struct QueueCounts {
  std::uint64_t visible = 0;    // approximate: log messages not yet examined count as visible
  std::uint64_t in_flight = 0;  // leased, or nacked and waiting out the delay
  std::uint64_t delayed = 0;    // never received, waiting for their delivery time
  // The lowest offset that a receive could return now.
  std::optional<std::uint64_t> oldest_visible;
};

class QueuePartition {
 public:
  // Reads the floor and message states of `subscription` on `log`'s partition.
  // `delays` (optional; it must outlive this) tells which records from its from() on are
  // delayed, so Counts need not examine them.
  static Result<QueuePartition> Load(const storage::Store& store, std::uint32_t subscription,
                                     const storage::PartitionLog& log,
                                     AppendedDelays* delays = nullptr);
  QueuePartition(QueuePartition&&) = default;
  // Not member by member: the old containers' nodes must go back to the old pool first.
  QueuePartition& operator=(QueuePartition&& other) noexcept;

  // Leases receivable messages, oldest first (FIFO: a group at a time, never one while
  // another message of its group is in flight). The caller bounds options.visibility_ms
  // (12 h), as it does the times given to ChangeVisibility.
  Result<QueueReceiveResult> Receive(std::int64_t now_ms, const QueueReceiveOptions& options,
                                     storage::WriteBatch& batch);

  // Acknowledges a message. OK if it is done already (deleted, purged, dropped by retention).
  // FailedPrecondition if it was received again since `generation`.
  Status Delete(std::uint64_t offset, std::uint64_t generation, storage::WriteBatch& batch);
  // Deletes several messages, a status each, as Delete would one by one; but the messages it
  // acknowledges out of order are stored as acknowledged runs (a key per stretch of
  // consecutive offsets) instead of a state each.
  struct Deletion {
    std::uint64_t offset;
    std::uint64_t generation;
  };
  std::vector<Status> DeleteMany(const std::vector<Deletion>& deletions,
                                 storage::WriteBatch& batch);
  // Whether the lease of receive `generation` is over with the message not received again
  // and not deleted (it is receivable or waiting out a nack's delay).
  bool LeaseEnded(std::uint64_t offset, std::uint64_t generation, std::int64_t now_ms) const;
  // For moving a dead letter: adds to `batch` the stored form of the message as deleted,
  // without changing this state (the move's write carries it with the dead-letter append;
  // Delete applies it here once that write is durable), except that the message now counts
  // as having a stored state of its own, for the floor to delete. FailedPrecondition unless
  // the message is a dead letter locked with `generation`.
  Status PrepareDeadLetterDelete(std::uint64_t offset, std::uint64_t generation,
                                 storage::WriteBatch& batch);
  // Gives a dead letter that could not be moved back: receivable at once. FailedPrecondition
  // unless it is locked with `generation`.
  Status UnlockDeadLetter(std::uint64_t offset, std::uint64_t generation, std::int64_t now_ms);
  // Ends the lease of `generation` `visible_in_ms` from now (0: receivable at once), at most
  // `max_lease_ms` after that receive. FailedPrecondition if the message is done or was
  // received again; InvalidArgument past the lease limit.
  // With `release` (a nack) the lease of `generation` counts as ended (LeaseEnded) while the
  // message stays in flight until the delay ends.
  Status ChangeVisibility(std::uint64_t offset, std::uint64_t generation, std::int64_t now_ms,
                          std::int64_t visible_in_ms, std::int64_t max_lease_ms,
                          storage::WriteBatch& batch, bool release = false);

  // Everything below `end` (at most the log end) is done: a purge.
  void AckBelow(std::uint64_t end, storage::WriteBatch& batch);

  // Examines the messages no receive has looked at yet that AppendedDelays does not cover
  // (those below its from(): appended by a spoold without the delay index, or past its
  // kMaxNoted at a restart), when there are at most `max` of them, so that Counts sees which
  // are delayed (it counts those it cannot tell as visible).
  Status Examine(std::size_t max);
  // Not const: it lets AppendedDelays forget the records whose delivery time has come.
  QueueCounts Counts(std::int64_t now_ms);
  // Leases that have not ended (dead letters waiting to move included). Not const: the
  // leases that ended since the last call move to the receivable set (each once).
  std::size_t InFlight(std::int64_t now_ms);
  std::uint64_t floor() const { return floor_; }
  // The state of a message above the floor that has one (tests, descriptions); of one
  // deleted out of order, only `acked`.
  std::optional<QueueMessageState> State(std::uint64_t offset) const;
  // Message states, acknowledged ranges and runs held in memory (tests, capacity checks).
  std::size_t HeldInMemory() const {
    return states_.size() + acked_.size() + lease_runs_.size() + acked_runs_.size();
  }
  // Bytes the containers' pool holds from the heap (tests).
  std::size_t PooledBytes() const { return memory_->held; }

 private:
  QueuePartition(std::uint32_t subscription, const storage::PartitionLog& log,
                 AppendedDelays* delays)
      : subscription_(subscription), log_(&log), delays_(delays) {}

  using Index = std::pmr::set<std::pair<std::int64_t, std::uint64_t>>;  // (visible_at_ms, offset)
  using AckedRanges = std::pmr::map<std::uint64_t, std::uint64_t>;
  // visible_at_ms of a dead letter locked (in memory only) until it is moved.
  static constexpr std::int64_t kLocked = std::numeric_limits<std::int64_t>::max();

  struct Candidate {
    std::uint64_t offset;
    std::optional<storage::Record> record;  // when just read from the log
  };
  // Receivable messages, up to `want`; FIFO skips the `locked` groups and ends each group at
  // its first message that is not receivable. Reads at most `scan_budget` new records (and
  // lowers it); FIFO stops reading once `examined_limit` examined messages are not done.
  Result<std::vector<Candidate>> Collect(std::int64_t now_ms, bool fifo, std::size_t want,
                                         std::uint64_t end, std::size_t examined_limit,
                                         const std::set<std::string>& locked,
                                         std::size_t& scan_budget);
  // Reads the records of candidates that have none (examined before) in runs, one log read
  // per run instead of one per message; those it cannot fill Take reads alone.
  void FillRecords(std::vector<Candidate>& candidates) const;
  // Reads a loaded state's record for its FIFO group.
  Status LearnGroup(std::uint64_t offset, QueueMessageState& state);
  // Examines up to `max` log records from scanned_, creating their states.
  Result<std::vector<storage::StoredRecord>> Scan(std::size_t max);
  // FIFO: builds the group index from the states examined so far, once.
  void IndexGroups();
  void AddToGroup(std::uint64_t offset, const QueueMessageState& state);
  // FIFO part of Collect: receivable messages group by group, oldest group first.
  void CollectExamined(std::int64_t now_ms, std::size_t want, std::uint64_t end,
                       const std::set<std::string>& locked, std::set<std::string>& stopped,
                       std::vector<Candidate>& out);
  // Leases `offset` (or locks it as a dead letter) and reports it in `result`.
  Status Take(std::uint64_t offset, std::optional<storage::Record> record, std::int64_t now_ms,
              const QueueReceiveOptions& options, QueueReceiveResult& result,
              storage::WriteBatch& batch);
  // A locked dead letter counts as in flight even if it was never received (a redrive's).
  // A nacked message does too until its delay ends, as in SQS and as after a restart, which
  // forgets the nack: it holds its state like a lease, and the in-flight limit bounds those.
  Index& IndexOf(const QueueMessageState& state) {
    const bool locked = state.visible_at_ms == kLocked;
    return !locked && state.receive_count == 0 ? waiting_ : leases_;
  }
  void Unindex(std::uint64_t offset, const QueueMessageState& state);
  bool IsAcked(std::uint64_t offset) const;
  // The acknowledged range holding `offset`, else the first one after it.
  AckedRanges::const_iterator AckedRangeAtOrAfter(std::uint64_t offset) const;
  void AddAcked(std::uint64_t offset);
  // Moves the entries of leases_ and waiting_ whose time has come to receivable_.
  void Settle(std::int64_t now_ms);
  void AddToIndex(std::uint64_t offset, const QueueMessageState& state);
  // Load: the messages of a stored lease run that have no state of their own.
  Status LoadLeaseRun(std::uint64_t first, std::string_view value);
  // Load: a stored acknowledged run.
  Status LoadAckedRun(std::uint64_t first, std::string_view value);
  // Stores what DeleteMany acknowledged out of order (pending_acks_).
  void PersistAcks(storage::WriteBatch& batch);
  // Moves the floor to at least `at_least`, retention's cut, and over acknowledged messages.
  void AdvanceFloor(storage::WriteBatch& batch, std::uint64_t at_least = 0);
  void PutFloor(storage::WriteBatch& batch);
  void Persist(std::uint64_t offset, QueueMessageState& state, storage::WriteBatch& batch);
  // The message's state is no longer its lease run's (if it was).
  void LeaveRun(std::uint64_t offset, QueueMessageState& state, storage::WriteBatch& batch);
  // Stores the states of the messages this receive took for the first time: a lease run per
  // stretch of consecutive offsets with the same state, instead of a state each.
  void PersistFirstReceipts(storage::WriteBatch& batch);

  // The tree nodes of the containers below come from a pool of this partition's own: a
  // receive and a delete insert and erase several per message, and glibc's malloc, shared
  // with the gRPC threads, was the largest single cost of the queue cycle. Only the
  // partition's strand touches it, so the pool takes no lock. On the heap, so that a moved
  // QueuePartition keeps it; declared before the containers, so that it outlives them.
  struct Memory : std::pmr::memory_resource {
    std::size_t held = 0;  // bytes the pool took from the heap
    std::pmr::unsynchronized_pool_resource pool{this};

    void* do_allocate(std::size_t bytes, std::size_t align) override;
    void do_deallocate(void* p, std::size_t bytes, std::size_t align) override;
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
      return this == &other;
    }
  };
  std::unique_ptr<Memory> memory_ = std::make_unique<Memory>();
  // A pool never hands its blocks back while anything is allocated from it, so when it holds
  // more than kKeepPoolBytes and over four times what the containers use (a backlog or a
  // burst of leases went), the containers move to a fresh pool and the old one is freed;
  // when they are all empty it just lets go. A past peak does not stay with the partition,
  // and the copying is paid once per fourfold shrink. Callers hold no iterator or pointer
  // into the containers across a call.
  static constexpr std::size_t kKeepPoolBytes = 1 << 20;
  void ReleaseIdleMemory();
  // Bytes the pooled containers' nodes take (an estimate: value and tree links).
  std::size_t PooledNodeBytes() const;

  std::uint32_t subscription_;
  const storage::PartitionLog* log_;
  AppendedDelays* delays_;  // may be null
  std::uint64_t floor_ = 0;
  // Every offset in [floor_, scanned_) that is not done has a state. States above scanned_
  // are those loaded at startup, whose records have not been examined again yet.
  std::uint64_t scanned_ = 0;
  std::uint64_t loaded_end_ = 0;  // past the last state loaded at startup
  // Load met stored states below the floor; the next floor move deletes them.
  bool stale_below_floor_ = false;
  // Messages above the floor that are not done (those at or above scanned_ only if loaded).
  std::pmr::map<std::uint64_t, QueueMessageState> states_{&memory_->pool};
  // Messages above the floor deleted out of order, as ranges [first, second): a message held
  // in flight (or delayed) at the floor keeps every later deleted one above it, and a range
  // per run of them is what that costs, not a state each.
  AckedRanges acked_{&memory_->pool};
  // Stored lease runs by first offset. A later change of one of a run's messages is stored as
  // that message's own state, which wins over the run; once none of its messages is left to
  // it (changed, deleted, or below the floor), the run's key is deleted.
  struct LeaseRun {
    std::uint64_t end;
    std::uint64_t live;  // messages whose state is the run's
  };
  std::pmr::map<std::uint64_t, LeaseRun> lease_runs_{&memory_->pool};
  // Messages the receive in progress took for the first time (PersistFirstReceipts), with
  // their states (nothing leaves states_ during a receive, so the pointers hold).
  std::vector<std::pair<std::uint64_t, QueueMessageState*>> first_receipts_;
  // Stored acknowledged runs [first, end), each inside an acknowledged range; deleted when
  // the floor passes them. At most kMaxAckedRuns (then DeleteMany stores a state each), so a
  // message held at the floor cannot make them take memory without bound.
  static constexpr std::size_t kMaxAckedRuns = 10'000;
  struct AckedRun {
    std::uint64_t end;
    // Found at a load over messages that also had states of their own (never written so):
    // the floor deletes those too.
    bool own_keys = false;
  };
  std::pmr::map<std::uint64_t, AckedRun> acked_runs_{&memory_->pool};
  // While DeleteMany runs: messages it acknowledged out of order, with their states.
  bool deferring_acks_ = false;
  // While DeleteMany runs: the floor moved, and is stored once at its end.
  bool floor_moved_ = false;
  std::vector<std::pair<std::uint64_t, QueueMessageState>> pending_acks_;
  // FIFO only, built by the first FIFO receive: the examined offsets below scanned_ of each
  // group (messages without a group under ""), in order, and the groups ordered by their
  // first such offset. A receive walks groups, not messages, so a deep backlog in a locked
  // group costs nothing. Offsets that are done leave lazily, when a receive meets them.
  bool groups_indexed_ = false;
  std::map<std::string, std::set<std::uint64_t>> group_offsets_;
  std::set<std::pair<std::uint64_t, std::string>> group_heads_;
  // Every examined message that is not done is in exactly one of these three. The indexes by
  // time hold those whose time had not come at the last Settle; receivable_ holds, by offset,
  // those whose time had, so that a receive takes the oldest without sorting every lease
  // that ended (all of them, when a consumer fleet stopped), and counts are sizes. (A message
  // found receivable stays so if the wall clock then steps back.)
  Index leases_{&memory_->pool};   // received at least once and not acknowledged; or locked
  Index waiting_{&memory_->pool};  // examined and never received (delayed, or not taken yet)
  std::pmr::set<std::uint64_t> receivable_{&memory_->pool};
};

}  // namespace spool::broker

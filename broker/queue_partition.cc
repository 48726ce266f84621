#include "broker/queue_partition.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <type_traits>

#include "common/coding.h"
#include "storage/keys.h"

namespace spool::broker {
namespace {

// Version 2 allows generations of 2^32 and more (see QueueReceiveOptions::generation_floor);
// version 1 states read the same way. A spoold that knows only version 1 refuses version 2.
constexpr std::uint8_t kStateVersion = 2;
// Records examined per log read while looking for receivable messages, and per receive.
constexpr std::size_t kScanChunk = 256;
constexpr std::size_t kMaxScanPerReceive = 10'000;
constexpr std::size_t kScanBytes = 4 << 20;
// Counts: the most delayed records it steps over looking for the oldest visible one.
constexpr std::size_t kOldestWalkLimit = 10'000;

}  // namespace

std::string EncodeQueueMessageState(const QueueMessageState& state) {
  std::string out;
  out.push_back(static_cast<char>(kStateVersion));
  out.push_back(state.acked ? 1 : 0);
  PutVarint64(out, state.receive_count);
  PutVarint64(out, state.generation);
  PutVarsint64(out, state.visible_at_ms);
  PutVarsint64(out, state.first_receive_ms);
  PutVarsint64(out, state.last_receive_ms);
  return out;
}

Result<QueueMessageState> DecodeQueueMessageState(std::string_view in) {
  if (in.size() < 2 || (static_cast<std::uint8_t>(in[0]) != kStateVersion &&
                        static_cast<std::uint8_t>(in[0]) != 1)) {
    return DataLoss("queue message state: unknown version");
  }
  QueueMessageState state;
  state.acked = in[1] != 0;
  in.remove_prefix(2);
  std::uint64_t count = 0, generation = 0;
  if (!GetVarint64(in, &count) || !GetVarint64(in, &generation) ||
      !GetVarsint64(in, &state.visible_at_ms) || !GetVarsint64(in, &state.first_receive_ms) ||
      !GetVarsint64(in, &state.last_receive_ms) || !in.empty() || count > UINT32_MAX) {
    return DataLoss("queue message state: corrupt");
  }
  state.receive_count = static_cast<std::uint32_t>(count);
  state.generation = generation;
  return state;
}

Result<QueuePartition> QueuePartition::Load(const storage::Store& store, std::uint32_t subscription,
                                            const storage::PartitionLog& log,
                                            AppendedDelays* delays) {
  QueuePartition q(subscription, log, delays);
  const std::uint32_t partition = log.partition();
  auto floor = store.Get(storage::ColumnFamily::kQueueState,
                         storage::QueueFloorKey(subscription, partition));
  if (!floor) return floor.error();
  if (*floor) {
    std::string_view v = **floor;
    if (!GetFixed64BE(v, &q.floor_) || !v.empty()) return DataLoss("queue floor: corrupt");
  }
  auto it = store.NewIterator(storage::ColumnFamily::kQueueState,
                              storage::QueueMessageKey(subscription, partition, 0),
                              storage::QueuePartitionEnd(subscription, partition));
  // Lease runs are applied last: a message's own state and an acknowledgement (its own or an
  // acknowledged run's) are newer than the run that leased it first.
  std::vector<std::pair<std::uint64_t, std::string>> lease_runs;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::uint64_t offset = 0;
    if (storage::ParseQueueLeaseRunKey(it->key(), &offset)) {
      lease_runs.emplace_back(offset, std::string(it->value()));
      continue;
    }
    if (storage::ParseQueueAckedRunKey(it->key(), &offset)) {
      if (Status s = q.LoadAckedRun(offset, it->value()); !s) return s.error();
      continue;
    }
    if (!storage::ParseQueueMessageKey(it->key(), &offset)) return DataLoss("queue state key");
    // Left behind (a dead-letter move's write landing after a purge passed the message):
    // the next floor move deletes it.
    if (offset < q.floor_) {
      q.stale_below_floor_ = true;
      continue;
    }
    auto state = DecodeQueueMessageState(it->value());
    if (!state) return state.error();
    if (state->acked) {
      q.AddAcked(offset);
    } else {
      state->own_key = true;
      q.states_[offset] = *state;
      q.AddToIndex(offset, *state);
    }
    q.loaded_end_ = std::max(q.loaded_end_, offset + 1);
  }
  if (Status s = it->status(); !s) return s.error();
  for (const auto& [first, value] : lease_runs) {
    if (Status s = q.LoadLeaseRun(first, value); !s) return s.error();
  }
  q.scanned_ = q.floor_;
  return q;
}

namespace {

// A run holds received messages, so it ends within the log (which bounds a load's loop).
bool GetRunLength(std::string_view& value, std::uint64_t first, std::uint64_t log_end,
                  std::uint64_t* length) {
  return GetVarint64(value, length) && *length > 0 && *length <= log_end &&
         first <= log_end - *length;
}

}  // namespace

Status QueuePartition::LoadAckedRun(std::uint64_t first, std::string_view value) {
  std::uint64_t length = 0;
  if (!GetRunLength(value, first, log_->end_offset(), &length) || !value.empty()) {
    return DataLoss("queue acknowledged run " + std::to_string(first) + ": corrupt");
  }
  const std::uint64_t end = first + length;
  // Kept even when the floor has passed it: the next floor move deletes it.
  AckedRun& run = acked_runs_[first];
  run = {end, false};
  for (std::uint64_t offset = std::max(first, floor_); offset < end; ++offset) {
    // An acknowledgement is final, so it wins over a state of the message's own (which
    // DeleteMany never leaves beside a run; its key goes when the floor passes).
    if (auto it = states_.find(offset); it != states_.end()) {
      Unindex(offset, it->second);
      states_.erase(it);
      run.own_keys = true;
    }
    AddAcked(offset);
  }
  if (end > floor_) loaded_end_ = std::max(loaded_end_, end);
  return Ok();
}

Status QueuePartition::LoadLeaseRun(std::uint64_t first, std::string_view value) {
  std::uint64_t length = 0;
  if (!GetRunLength(value, first, log_->end_offset(), &length)) {
    return DataLoss("queue lease run " + std::to_string(first) + ": corrupt");
  }
  auto state = DecodeQueueMessageState(value);
  if (!state) return state.error();
  if (state->acked) return DataLoss("queue lease run " + std::to_string(first) + ": acknowledged");
  const std::uint64_t end = first + length;
  LeaseRun& run = lease_runs_[first];
  run = {end, 0};
  state->in_run = true;
  for (std::uint64_t offset = std::max(first, floor_); offset < end; ++offset) {
    if (states_.count(offset) > 0 || IsAcked(offset)) continue;  // changed since
    states_[offset] = *state;
    AddToIndex(offset, *state);
    ++run.live;
  }
  // A run left with no message (a crash between the last change and the run's deletion, or
  // the floor past it) stays until the floor passes its end.
  loaded_end_ = std::max(loaded_end_, end);
  return Ok();
}

QueuePartition& QueuePartition::operator=(QueuePartition&& other) noexcept {
  if (this != &other) {
    std::destroy_at(this);
    std::construct_at(this, std::move(other));
  }
  return *this;
}

void* QueuePartition::Memory::do_allocate(std::size_t bytes, std::size_t align) {
  void* p = std::pmr::new_delete_resource()->allocate(bytes, align);
  held += bytes;
  return p;
}

void QueuePartition::Memory::do_deallocate(void* p, std::size_t bytes, std::size_t align) {
  std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  held -= bytes;
}

std::size_t QueuePartition::PooledNodeBytes() const {
  constexpr std::size_t kLinks = 32;  // a red-black tree node's colour and three pointers
  auto bytes = [](const auto& c) {
    return c.size() * (sizeof(typename std::remove_reference_t<decltype(c)>::value_type) + kLinks);
  };
  return bytes(states_) + bytes(acked_) + bytes(lease_runs_) + bytes(acked_runs_) + bytes(leases_) +
         bytes(waiting_) + bytes(receivable_);
}

void QueuePartition::ReleaseIdleMemory() {
  if (memory_->held <= kKeepPoolBytes) return;
  const std::size_t used = PooledNodeBytes();
  if (used == 0) {
    memory_->pool.release();
    return;
  }
  if (memory_->held / 4 < used) return;
  auto fresh = std::make_unique<Memory>();
  // Each container is rebuilt in place with the fresh pool (its allocator cannot change by
  // assignment); the old nodes go back to the old pool, which is freed last.
  auto move_to_fresh = [&fresh](auto& container) {
    using Container = std::remove_reference_t<decltype(container)>;
    Container moved(std::make_move_iterator(container.begin()),
                    std::make_move_iterator(container.end()), &fresh->pool);
    std::destroy_at(&container);
    std::construct_at(&container, std::move(moved));
  };
  move_to_fresh(states_);
  move_to_fresh(acked_);
  move_to_fresh(lease_runs_);
  move_to_fresh(acked_runs_);
  move_to_fresh(leases_);
  move_to_fresh(waiting_);
  move_to_fresh(receivable_);
  memory_ = std::move(fresh);
}

void QueuePartition::AddToIndex(std::uint64_t offset, const QueueMessageState& state) {
  IndexOf(state).insert({state.visible_at_ms, offset});
}

void QueuePartition::Unindex(std::uint64_t offset, const QueueMessageState& state) {
  if (IndexOf(state).erase({state.visible_at_ms, offset}) == 0) receivable_.erase(offset);
}

bool QueuePartition::IsAcked(std::uint64_t offset) const {
  auto it = acked_.upper_bound(offset);
  return it != acked_.begin() && std::prev(it)->second > offset;
}

QueuePartition::AckedRanges::const_iterator QueuePartition::AckedRangeAtOrAfter(
    std::uint64_t offset) const {
  auto it = acked_.upper_bound(offset);
  if (it != acked_.begin() && std::prev(it)->second > offset) return std::prev(it);
  return it;
}

void QueuePartition::AddAcked(std::uint64_t offset) {
  auto next = acked_.upper_bound(offset);
  if (next != acked_.begin()) {
    auto prev = std::prev(next);
    if (prev->second > offset) return;  // already in it
    if (prev->second == offset) {
      prev->second = offset + 1;
      if (next != acked_.end() && next->first == offset + 1) {
        prev->second = next->second;
        acked_.erase(next);
      }
      return;
    }
  }
  if (next != acked_.end() && next->first == offset + 1) {
    const std::uint64_t end = next->second;
    acked_.erase(next);
    acked_.emplace(offset, end);
    return;
  }
  acked_.emplace(offset, offset + 1);
}

void QueuePartition::Settle(std::int64_t now_ms) {
  for (Index* index : {&leases_, &waiting_}) {
    while (!index->empty() && index->begin()->first <= now_ms) {
      receivable_.insert(index->begin()->second);
      index->erase(index->begin());
    }
  }
}

void QueuePartition::Persist(std::uint64_t offset, QueueMessageState& state,
                             storage::WriteBatch& batch) {
  LeaveRun(offset, state, batch);
  state.own_key = true;
  batch.Put(storage::ColumnFamily::kQueueState,
            storage::QueueMessageKey(subscription_, log_->partition(), offset),
            EncodeQueueMessageState(state));
}

void QueuePartition::LeaveRun(std::uint64_t offset, QueueMessageState& state,
                              storage::WriteBatch& batch) {
  if (!state.in_run) return;
  state.in_run = false;
  auto run = lease_runs_.upper_bound(offset);
  if (run == lease_runs_.begin()) return;
  --run;
  if (run->second.end <= offset || run->second.live == 0) return;
  if (--run->second.live == 0) {
    batch.Delete(storage::ColumnFamily::kQueueState,
                 storage::QueueLeaseRunKey(subscription_, log_->partition(), run->first));
    lease_runs_.erase(run);
  }
}

void QueuePartition::PersistFirstReceipts(storage::WriteBatch& batch) {
  if (first_receipts_.empty()) return;
  // FIFO takes group by group, not in offset order.
  std::sort(first_receipts_.begin(), first_receipts_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  auto same = [](const QueueMessageState& a, const QueueMessageState& b) {
    return a.receive_count == b.receive_count && a.generation == b.generation &&
           a.visible_at_ms == b.visible_at_ms && a.first_receive_ms == b.first_receive_ms &&
           a.last_receive_ms == b.last_receive_ms;
  };
  for (std::size_t i = 0; i < first_receipts_.size();) {
    const auto [first, state] = first_receipts_[i];
    std::size_t j = i + 1;
    while (j < first_receipts_.size() && first_receipts_[j].first == first + (j - i) &&
           same(*first_receipts_[j].second, *state)) {
      ++j;
    }
    if (j - i == 1) {
      Persist(first, *state, batch);
    } else {
      std::string value;
      PutVarint64(value, j - i);
      value += EncodeQueueMessageState(*state);
      batch.Put(storage::ColumnFamily::kQueueState,
                storage::QueueLeaseRunKey(subscription_, log_->partition(), first),
                std::move(value));
      lease_runs_[first] = {first + (j - i), j - i};
      for (std::size_t k = i; k < j; ++k)
        first_receipts_[k].second->in_run = true;
    }
    i = j;
  }
  first_receipts_.clear();
}

Result<std::vector<storage::StoredRecord>> QueuePartition::Scan(std::size_t max) {
  if (scanned_ < log_->start_offset()) scanned_ = log_->start_offset();
  if (scanned_ >= log_->end_offset()) return std::vector<storage::StoredRecord>();
  auto records = log_->Read(scanned_, max, kScanBytes);
  if (!records) return records.error();
  for (const auto& r : *records) {
    scanned_ = r.offset + 1;
    if (IsAcked(r.offset)) continue;  // deleted out of order before a restart
    auto [it, fresh] = states_.try_emplace(r.offset);
    QueueMessageState& state = it->second;
    state.group = r.record.message_group_id;
    state.group_known = true;
    if (fresh) {
      state.visible_at_ms = r.record.deliver_after_ms.value_or(0);
      AddToIndex(r.offset, state);
    }
    if (groups_indexed_) AddToGroup(r.offset, state);
  }
  return records;
}

Status QueuePartition::Take(std::uint64_t offset, std::optional<storage::Record> record,
                            std::int64_t now_ms, const QueueReceiveOptions& options,
                            QueueReceiveResult& result, storage::WriteBatch& batch) {
  if (!record) {
    auto read = log_->Read(offset, 1, 1);
    if (!read) return read.error();
    if (read->empty() || read->front().offset != offset) {
      return Internal("queue: message " + std::to_string(offset) + " is not in the log");
    }
    record = std::move(read->front().record);
  }
  QueueMessageState& state = states_.at(offset);
  Unindex(offset, state);
  state.released = false;
  ReceivedMessage m;
  m.offset = offset;
  if (options.max_receive_count && state.receive_count >= *options.max_receive_count) {
    // Locked (in memory only) until the caller moves it and deletes it with this generation.
    state.generation = std::max(state.generation + 1, options.generation_floor);
    state.visible_at_ms = kLocked;
    AddToIndex(offset, state);
    m.record = std::move(*record);
    m.receive_count = state.receive_count;
    m.generation = state.generation;
    m.first_receive_ms = state.first_receive_ms;
    result.dead_letters.push_back(std::move(m));
    return Ok();
  }
  const bool first_receipt = state.receive_count == 0;
  if (first_receipt) state.first_receive_ms = now_ms;
  ++state.receive_count;
  state.generation = std::max(state.generation + 1, options.generation_floor);
  state.last_receive_ms = now_ms;
  state.visible_at_ms = now_ms + options.visibility_ms;
  AddToIndex(offset, state);
  // A message received for the first time has no stored state to override, so it can share a
  // lease run with the others this receive takes (one key instead of one each).
  if (first_receipt && !state.own_key) {
    first_receipts_.emplace_back(offset, &state);
  } else {
    Persist(offset, state, batch);
  }
  m.record = std::move(*record);
  m.receive_count = state.receive_count;
  m.generation = state.generation;
  m.first_receive_ms = state.first_receive_ms;
  m.visibility_deadline_ms = state.visible_at_ms;
  result.messages.push_back(std::move(m));
  return Ok();
}

void QueuePartition::IndexGroups() {
  if (groups_indexed_) return;
  groups_indexed_ = true;
  for (const auto& [offset, s] : states_) {
    if (offset >= scanned_) break;
    AddToGroup(offset, s);
  }
}

void QueuePartition::AddToGroup(std::uint64_t offset, const QueueMessageState& state) {
  const std::string& group = state.group ? *state.group : std::string();
  std::set<std::uint64_t>& offsets = group_offsets_[group];
  if (offsets.empty() || offset < *offsets.begin()) {
    if (!offsets.empty()) group_heads_.erase({*offsets.begin(), group});
    group_heads_.insert({offset, group});
  }
  offsets.insert(offset);
}

void QueuePartition::CollectExamined(std::int64_t now_ms, std::size_t want, std::uint64_t end,
                                     const std::set<std::string>& locked,
                                     std::set<std::string>& stopped, std::vector<Candidate>& out) {
  // Heads only move forward, and are re-keyed after the walk so that none is met twice.
  std::vector<std::pair<std::uint64_t, std::string>> moved;
  for (auto head = group_heads_.begin(); head != group_heads_.end() && out.size() < want; ++head) {
    const auto& [first, group] = *head;
    if (first >= end) break;
    const bool ordered = !group.empty();  // messages without a group are not held in order
    if (ordered && (locked.count(group) > 0 || stopped.count(group) > 0)) continue;
    std::set<std::uint64_t>& offsets = group_offsets_.at(group);
    for (auto it = offsets.begin(); it != offsets.end() && *it < end && out.size() < want;) {
      auto state = states_.find(*it);
      if (state == states_.end()) {  // done
        it = offsets.erase(it);
        continue;
      }
      if (state->second.visible_at_ms > now_ms) {
        if (ordered) {
          stopped.insert(group);  // nothing of the group after it, in order
          break;
        }
        ++it;
        continue;
      }
      out.push_back({*it, std::nullopt});
      ++it;
    }
    if (offsets.empty() || *offsets.begin() != first) moved.push_back(*head);
  }
  for (const auto& [first, group] : moved) {
    group_heads_.erase({first, group});
    auto offsets = group_offsets_.find(group);
    if (offsets->second.empty()) {
      group_offsets_.erase(offsets);
    } else {
      group_heads_.insert({*offsets->second.begin(), group});
    }
  }
}

void QueuePartition::FillRecords(std::vector<Candidate>& candidates) const {
  // A run spans at most this many offsets, so gaps (messages done or leased) cost little.
  constexpr std::uint64_t kMaxRun = 256;
  constexpr std::size_t kMaxRunBytes = 8 << 20;
  std::vector<Candidate*> missing;
  for (Candidate& c : candidates)
    if (!c.record) missing.push_back(&c);
  std::sort(missing.begin(), missing.end(),
            [](const Candidate* a, const Candidate* b) { return a->offset < b->offset; });
  for (std::size_t i = 0; i < missing.size();) {
    std::size_t j = i + 1;
    while (j < missing.size() && missing[j]->offset - missing[i]->offset < kMaxRun)
      ++j;
    if (j - i > 1) {
      const std::uint64_t from = missing[i]->offset;
      auto read = log_->Read(from, missing[j - 1]->offset - from + 1, kMaxRunBytes);
      if (!read) {
        // Take reads them one by one and stops at the one that fails.
        i = j;
        continue;
      }
      std::size_t k = i;
      for (auto& r : *read) {
        while (k < j && missing[k]->offset < r.offset)
          ++k;
        if (k == j) break;
        if (missing[k]->offset == r.offset) missing[k]->record = std::move(r.record);
      }
    }
    i = j;
  }
}

Status QueuePartition::LearnGroup(std::uint64_t offset, QueueMessageState& state) {
  if (state.group_known) return Ok();
  auto read = log_->Read(offset, 1, 1);
  if (!read) return read.error();
  if (read->empty() || read->front().offset != offset) {
    return Internal("queue: message " + std::to_string(offset) + " is not in the log");
  }
  state.group = read->front().record.message_group_id;
  state.group_known = true;
  return Ok();
}

Result<std::vector<QueuePartition::Candidate>> QueuePartition::Collect(
    std::int64_t now_ms, bool fifo, std::size_t want, std::uint64_t end, std::size_t examined_limit,
    const std::set<std::string>& locked, std::size_t& scan_budget) {
  std::vector<Candidate> out;
  // FIFO groups met at a message that is not receivable (delayed; one nacked with a delay is
  // in flight, so its group is `locked`): none of their later messages is a candidate. Their
  // earlier ones already chosen still are, so this is not `locked`, which drops a group's
  // candidates altogether.
  std::set<std::string> stopped;
  auto blocked = [&](const QueueMessageState& s) {
    return fifo && s.group && (locked.count(*s.group) > 0 || stopped.count(*s.group) > 0);
  };
  auto stop_group = [&](const QueueMessageState& s) {
    if (fifo && s.group) stopped.insert(*s.group);
  };
  // 1. Messages examined before, oldest first.
  if (fifo) {
    IndexGroups();
    CollectExamined(now_ms, want, end, locked, stopped, out);
  } else {
    Settle(now_ms);
    const std::uint64_t below = std::min(scanned_, end);
    for (auto it = receivable_.begin(); it != receivable_.end() && *it < below && out.size() < want;
         ++it) {
      out.push_back({*it, std::nullopt});
    }
  }
  // 2. Messages not examined yet, from the log; a bounded number per receive, so one call
  // cannot hold the strand for a whole backlog of delayed or locked messages. A standard
  // queue reads only as many as it still wants: a record examined and not taken would be
  // read again by the receive that takes it. FIFO reads ahead for other groups.
  // FIFO stops reading ahead once it holds `examined_limit` messages that are not done (the
  // indexes hold exactly those); what a restart loaded is always read again first, or a
  // partition that stored that many could never be read again.
  auto fifo_room = [&]() -> std::size_t {
    if (scanned_ < loaded_end_) return kScanChunk;
    const std::size_t pending = waiting_.size() + leases_.size() + receivable_.size();
    return pending >= examined_limit ? 0 : std::min(kScanChunk, examined_limit - pending);
  };
  const std::uint64_t scan_end = std::min(end, log_->end_offset());
  while (out.size() < want && scanned_ < scan_end && scan_budget > 0 &&
         (!fifo || fifo_room() > 0)) {
    const std::size_t chunk = fifo ? fifo_room() : want - out.size();
    auto records = Scan(std::min({chunk, scan_budget, scan_end - scanned_}));
    if (!records) return records.error();
    if (records->empty()) break;
    scan_budget -= std::min(scan_budget, records->size());
    for (auto& r : *records) {
      if (IsAcked(r.offset)) continue;
      const QueueMessageState& s = states_.at(r.offset);
      if (blocked(s)) continue;
      if (s.visible_at_ms > now_ms) {
        stop_group(s);  // nothing of the group after it, in order
        continue;
      }
      // Examined and left for a later receive.
      if (out.size() >= want) continue;
      out.push_back({r.offset, std::move(r.record)});
    }
  }
  return out;
}

Result<QueueReceiveResult> QueuePartition::Receive(std::int64_t now_ms,
                                                   const QueueReceiveOptions& options,
                                                   storage::WriteBatch& batch) {
  QueueReceiveResult result;
  AdvanceFloor(batch);
  // Leases that have not ended are in flight.
  const std::size_t in_flight = InFlight(now_ms);
  result.in_flight = in_flight;
  if (in_flight >= options.max_in_flight) {
    result.in_flight_limit = true;
    if (!leases_.empty() && leases_.begin()->first != kLocked) {
      result.next_visible_ms = leases_.begin()->first;
    }
    return result;
  }
  const std::size_t room = std::min(options.max_messages, options.max_in_flight - in_flight);
  // A dead letter takes no room but costs a read; bound them per call.
  const std::size_t dead_room = options.max_dead_letters > 0
                                    ? options.max_dead_letters
                                    : std::max<std::size_t>(options.max_messages, 10) * 10;

  // FIFO: no message of a group is delivered while another of it is in flight.
  std::set<std::string> locked;
  if (options.fifo) {
    for (auto it = leases_.begin(); it != leases_.end(); ++it) {
      QueueMessageState& s = states_.at(it->second);
      if (Status st = LearnGroup(it->second, s); !st) return st.error();
      if (s.group) locked.insert(*s.group);
    }
  }

  std::size_t scan_budget = kMaxScanPerReceive;
  std::optional<Error> failed;
  // A later round would meet a message taken with a zero visibility timeout as receivable.
  // Sorted at the start of each round; a round's own candidates are distinct, so only the
  // offsets of earlier rounds need a search (a set would cost an allocation per message).
  std::vector<std::uint64_t> taken;
  while (result.messages.size() < room && result.dead_letters.size() < dead_room && !failed) {
    const std::size_t need = room - result.messages.size();
    // FIFO looks further ahead, to fill the answer from one group before taking the next.
    const std::size_t want = options.fifo ? need + std::min<std::size_t>(need, 100) * 3 : need;
    auto candidates = Collect(now_ms, options.fifo, want, options.end_offset,
                              in_flight + options.max_fifo_examined, locked, scan_budget);
    if (!candidates) {
      failed = candidates.error();
      break;
    }
    if (candidates->empty()) break;
    FillRecords(*candidates);
    if (options.fifo) {
      // Group by group, in order of each group's first candidate; offset order within one.
      std::map<std::string, std::size_t> rank;
      for (const auto& c : *candidates) {
        const auto& g = states_.at(c.offset).group;
        rank.try_emplace(g.value_or(""), rank.size());
      }
      std::stable_sort(candidates->begin(), candidates->end(),
                       [&](const Candidate& a, const Candidate& b) {
                         return rank.at(states_.at(a.offset).group.value_or("")) <
                                rank.at(states_.at(b.offset).group.value_or(""));
                       });
    }
    const std::size_t dead_before = result.dead_letters.size();
    std::sort(taken.begin(), taken.end());
    const auto earlier_end = taken.end() - taken.begin();
    for (auto& c : *candidates) {
      if (result.messages.size() >= room || result.dead_letters.size() >= dead_room) break;
      const QueueMessageState& s = states_.at(c.offset);
      if (options.fifo && s.group && locked.count(*s.group)) continue;  // behind a dead letter
      if (std::binary_search(taken.begin(), taken.begin() + earlier_end, c.offset)) continue;
      taken.push_back(c.offset);
      const std::size_t dead = result.dead_letters.size();
      if (Status st = Take(c.offset, std::move(c.record), now_ms, options, result, batch); !st) {
        failed = st.error();
        break;
      }
      // The group waits for the move: nothing after a dead letter before it is gone.
      if (result.dead_letters.size() > dead && options.fifo && s.group && !options.redrive) {
        locked.insert(*s.group);
      }
    }
    // Another round only if dead letters used up candidates meant to fill the answer.
    if (result.dead_letters.size() == dead_before) break;
  }
  PersistFirstReceipts(batch);
  if (failed) {
    // What was taken stays taken (it is in `batch`); the caller gets it with the error.
    if (result.messages.empty() && result.dead_letters.empty()) return *failed;
    result.error = std::move(failed);
  }

  // The limit, not a lack of receivable messages, cut this answer short.
  if (room < options.max_messages && result.messages.size() == room) result.in_flight_limit = true;
  result.in_flight = in_flight + result.messages.size() + result.dead_letters.size();
  result.more_to_scan =
      scan_budget == 0 && scanned_ < std::min(options.end_offset, log_->end_offset());
  // When does something become receivable? (Taken messages went back into the indexes.)
  for (const Index* index : {&leases_, &waiting_}) {
    auto it = index->lower_bound({now_ms + 1, 0});
    if (it != index->end() && it->first != kLocked &&
        (!result.next_visible_ms || it->first < *result.next_visible_ms)) {
      result.next_visible_ms = it->first;
    }
  }
  return result;
}

Status QueuePartition::Delete(std::uint64_t offset, std::uint64_t generation,
                              storage::WriteBatch& batch) {
  if (offset < floor_ || offset < log_->start_offset() || IsAcked(offset)) return Ok();
  auto it = states_.find(offset);
  if (it == states_.end() || it->second.generation == 0) {
    return FailedPrecondition("message " + std::to_string(offset) + " has not been received");
  }
  QueueMessageState& state = it->second;
  if (state.generation != generation) {
    return FailedPrecondition("message " + std::to_string(offset) +
                              " was received again since this receipt handle was issued");
  }
  Unindex(offset, state);
  LeaveRun(offset, state, batch);
  QueueMessageState done = std::move(state);
  done.acked = true;
  states_.erase(it);
  if (offset == floor_ && !done.own_key) {
    // Passed at once, with nothing stored of its own to delete (its lease was in a run).
    AdvanceFloor(batch, offset + 1);
  } else {
    AddAcked(offset);
    AdvanceFloor(batch);
  }
  // Usually the floor has just passed it (deleting its stored state); only a message
  // deleted out of order keeps a stored state, now marked acknowledged, and in memory a
  // place in an acknowledged range.
  if (offset >= floor_) {
    if (deferring_acks_) {
      pending_acks_.emplace_back(offset, std::move(done));
    } else {
      Persist(offset, done, batch);
    }
  }
  return Ok();
}

std::vector<Status> QueuePartition::DeleteMany(const std::vector<Deletion>& deletions,
                                               storage::WriteBatch& batch) {
  std::vector<Status> results;
  results.reserve(deletions.size());
  deferring_acks_ = true;
  floor_moved_ = false;
  for (const Deletion& d : deletions)
    results.push_back(Delete(d.offset, d.generation, batch));
  deferring_acks_ = false;
  if (floor_moved_) PutFloor(batch);  // once, not once per message deleted in order
  PersistAcks(batch);
  return results;
}

void QueuePartition::PersistAcks(storage::WriteBatch& batch) {
  // A later deletion of the same call may have moved the floor past some: nothing to store.
  std::erase_if(pending_acks_, [&](const auto& p) { return p.first < floor_; });
  std::sort(pending_acks_.begin(), pending_acks_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::size_t i = 0; i < pending_acks_.size();) {
    const std::uint64_t first = pending_acks_[i].first;
    // A message with a stored state of its own is acknowledged in it: a run beside it would
    // leave that state unacknowledged, and the floor would not delete it.
    auto in_run = [&](std::size_t k) { return !pending_acks_[k].second.own_key; };
    std::size_t j = i + 1;
    while (j < pending_acks_.size() && pending_acks_[j].first == first + (j - i) && in_run(i) &&
           in_run(j)) {
      ++j;
    }
    if (j - i > 1 && acked_runs_.size() < kMaxAckedRuns) {
      std::string value;
      PutVarint64(value, j - i);
      batch.Put(storage::ColumnFamily::kQueueState,
                storage::QueueAckedRunKey(subscription_, log_->partition(), first),
                std::move(value));
      acked_runs_[first] = {first + (j - i), false};
    } else {
      for (std::size_t k = i; k < j; ++k)
        Persist(pending_acks_[k].first, pending_acks_[k].second, batch);
    }
    i = j;
  }
  pending_acks_.clear();
}

bool QueuePartition::LeaseEnded(std::uint64_t offset, std::uint64_t generation,
                                std::int64_t now_ms) const {
  auto it = states_.find(offset);
  if (it == states_.end() || it->second.generation != generation) return false;
  return it->second.visible_at_ms != kLocked &&
         (it->second.released || it->second.visible_at_ms <= now_ms);
}

Status QueuePartition::PrepareDeadLetterDelete(std::uint64_t offset, std::uint64_t generation,
                                               storage::WriteBatch& batch) {
  auto it = states_.find(offset);
  if (it == states_.end() || it->second.visible_at_ms != kLocked ||
      it->second.generation != generation) {
    return FailedPrecondition("message " + std::to_string(offset) +
                              " is not a dead letter waiting to be moved");
  }
  QueueMessageState done = it->second;
  done.acked = true;
  batch.Put(storage::ColumnFamily::kQueueState,
            storage::QueueMessageKey(subscription_, log_->partition(), offset),
            EncodeQueueMessageState(done));
  // If the move is not written after all, the floor deletes a key that is not there.
  it->second.own_key = true;
  return Ok();
}

Status QueuePartition::UnlockDeadLetter(std::uint64_t offset, std::uint64_t generation,
                                        std::int64_t now_ms) {
  auto it = states_.find(offset);
  if (it == states_.end() || it->second.visible_at_ms != kLocked ||
      it->second.generation != generation) {
    return FailedPrecondition("message " + std::to_string(offset) +
                              " is not a dead letter waiting to be moved");
  }
  // The lock was never stored, so neither is its end.
  Unindex(offset, it->second);
  it->second.visible_at_ms = now_ms;
  AddToIndex(offset, it->second);
  return Ok();
}

Status QueuePartition::ChangeVisibility(std::uint64_t offset, std::uint64_t generation,
                                        std::int64_t now_ms, std::int64_t visible_in_ms,
                                        std::int64_t max_lease_ms, storage::WriteBatch& batch,
                                        bool release) {
  if (visible_in_ms < 0) return InvalidArgument("the visibility timeout must not be negative");
  auto it = states_.find(offset);
  if (offset < floor_ || offset < log_->start_offset() || IsAcked(offset)) {
    return FailedPrecondition("message " + std::to_string(offset) + " was deleted");
  }
  // No state above the floor: never received (or past the log's end), as Delete says.
  if (it == states_.end() || it->second.receive_count == 0 || it->second.visible_at_ms == kLocked) {
    return FailedPrecondition("message " + std::to_string(offset) + " has not been received");
  }
  QueueMessageState& state = it->second;
  if (state.generation != generation) {
    return FailedPrecondition("message " + std::to_string(offset) +
                              " was received again since this receipt handle was issued");
  }
  const std::int64_t at = now_ms + visible_in_ms;
  if (at - state.last_receive_ms > max_lease_ms) {
    return InvalidArgument("the lease would end more than " + std::to_string(max_lease_ms / 1000) +
                           " seconds after the message was received");
  }
  Unindex(offset, state);
  state.visible_at_ms = at;
  state.released = release;
  AddToIndex(offset, state);
  Persist(offset, state, batch);
  return Ok();
}

void QueuePartition::AckBelow(std::uint64_t end, storage::WriteBatch& batch) {
  AdvanceFloor(batch, std::min(end, log_->end_offset()));
  // A purge leaves the group index full of done messages: rebuild it at the next receive
  // from what is left rather than drop them one by one on the strand.
  groups_indexed_ = false;
  group_offsets_.clear();
  group_heads_.clear();
}

void QueuePartition::AdvanceFloor(storage::WriteBatch& batch, std::uint64_t at_least) {
  // Beyond this many stored states, one range deletion is cheaper than a point deletion
  // each; below it, point deletions, because a range tombstone per floor move (one per
  // delete call) makes every flush and compaction of queue_state re-fragment them all.
  constexpr std::size_t kMaxPointDeletes = 256;
  std::uint64_t to = std::max({floor_, log_->start_offset(), at_least});
  const std::uint32_t partition = log_->partition();
  std::vector<std::uint64_t> stored;
  bool range = false;
  auto note_stored = [&](std::uint64_t offset) {
    if (range) return;
    stored.push_back(offset);
    range = stored.size() > kMaxPointDeletes;
  };
  // Below `to` everything is done (purged, or dropped by retention); from `to` on, a run of
  // acknowledged messages carries it further.
  for (bool moved = true; moved;) {
    moved = false;
    for (auto it = states_.begin(); it != states_.end() && it->first < to;) {
      Unindex(it->first, it->second);
      // Only a message with a state of its own (Persist) has a key to delete, besides
      // acknowledged ones; a lease run's goes with the last message that was left to it.
      if (it->second.own_key) note_stored(it->first);
      LeaveRun(it->first, it->second, batch);
      it = states_.erase(it);
    }
    // Every acknowledged offset above the floor has a stored state (Delete's Persist, or the
    // dead-letter move's PrepareDeadLetterDelete), or is in an acknowledged run (below).
    while (!acked_.empty() && acked_.begin()->first <= to) {
      const auto [begin, end] = *acked_.begin();
      auto run = acked_runs_.upper_bound(begin);
      if (run != acked_runs_.begin() && std::prev(run)->second.end > begin) --run;
      for (std::uint64_t offset = begin; offset < end && !range; ++offset) {
        if (run != acked_runs_.end() && run->first <= offset && !run->second.own_keys) {
          offset = run->second.end - 1;
          ++run;
          continue;
        }
        if (run != acked_runs_.end() && run->second.end <= offset + 1) ++run;
        note_stored(offset);
      }
      acked_.erase(acked_.begin());
      if (end > to) {
        to = end;
        moved = true;
      }
    }
  }
  if (to == floor_) {
    // Also when the floor stays: a message held there must not keep the memory of everything
    // deleted above it.
    ReleaseIdleMemory();
    return;
  }
  // Acknowledged runs the floor passed, and lease runs the load found with no message left.
  // Runs of a kind are disjoint, so ordered by first they are ordered by end too.
  while (!acked_runs_.empty() && acked_runs_.begin()->second.end <= to) {
    batch.Delete(storage::ColumnFamily::kQueueState,
                 storage::QueueAckedRunKey(subscription_, partition, acked_runs_.begin()->first));
    acked_runs_.erase(acked_runs_.begin());
  }
  while (!lease_runs_.empty() && lease_runs_.begin()->second.end <= to) {
    batch.Delete(storage::ColumnFamily::kQueueState,
                 storage::QueueLeaseRunKey(subscription_, partition, lease_runs_.begin()->first));
    lease_runs_.erase(lease_runs_.begin());
  }
  if (stale_below_floor_) {
    batch.DeleteRange(storage::ColumnFamily::kQueueState,
                      storage::QueueMessageKey(subscription_, partition, 0),
                      storage::QueueMessageKey(subscription_, partition, floor_));
    stale_below_floor_ = false;
  }
  if (range) {
    batch.DeleteRange(storage::ColumnFamily::kQueueState,
                      storage::QueueMessageKey(subscription_, partition, floor_),
                      storage::QueueMessageKey(subscription_, partition, to));
  } else {
    for (std::uint64_t offset : stored) {
      batch.Delete(storage::ColumnFamily::kQueueState,
                   storage::QueueMessageKey(subscription_, partition, offset));
    }
  }
  floor_ = to;
  scanned_ = std::max(scanned_, floor_);
  if (deferring_acks_) {
    floor_moved_ = true;
  } else {
    PutFloor(batch);
  }
  ReleaseIdleMemory();
}

void QueuePartition::PutFloor(storage::WriteBatch& batch) {
  std::string value;
  PutFixed64BE(value, floor_);
  batch.Put(storage::ColumnFamily::kQueueState,
            storage::QueueFloorKey(subscription_, log_->partition()), std::move(value));
}

Status QueuePartition::Examine(std::size_t max) {
  const std::uint64_t from = std::max(scanned_, log_->start_offset());
  // AppendedDelays knows the records from its start on.
  const std::uint64_t end =
      delays_ ? std::min(log_->end_offset(), delays_->from()) : log_->end_offset();
  if (end <= from || end - from > max) return Ok();
  while (scanned_ < end) {
    auto records = Scan(kScanChunk);
    if (!records) return records.error();
    if (records->empty()) break;
  }
  return Ok();
}

QueueCounts QueuePartition::Counts(std::int64_t now_ms) {
  // The index sizes are the counts: nothing is walked but the states loaded at startup that
  // no receive has read again, and what became receivable since the last Settle (once).
  QueueCounts c;
  auto consider = [&c](std::uint64_t offset) {
    if (!c.oldest_visible || offset < *c.oldest_visible) c.oldest_visible = offset;
  };
  Settle(now_ms);
  c.in_flight = leases_.size();
  c.delayed = waiting_.size();
  // Receivable examined messages; those at or above scanned_ (loaded at startup, not read
  // again yet) count with the unexamined ones below.
  if (!receivable_.empty() && *receivable_.begin() < scanned_) consider(*receivable_.begin());
  c.visible =
      receivable_.size() - std::distance(receivable_.lower_bound(scanned_), receivable_.end());
  // Not examined yet: visible, except what loaded states say is done or leased.
  const std::uint64_t from = std::max(scanned_, log_->start_offset());
  const std::uint64_t end = log_->end_offset();
  std::uint64_t unexamined = end > from ? end - from : 0;
  for (auto it = states_.lower_bound(from); it != states_.end() && it->first < end; ++it) {
    if (it->second.visible_at_ms > now_ms) --unexamined;
  }
  for (auto it = AckedRangeAtOrAfter(from); it != acked_.end() && it->first < end; ++it) {
    unexamined -= std::min(it->second, end) - std::max(it->first, from);
  }
  // The first unexamined offset that is neither leased nor acknowledged.
  std::uint64_t first_free = from;
  while (first_free < end) {
    if (auto s = states_.find(first_free); s != states_.end() && s->second.visible_at_ms > now_ms) {
      ++first_free;
    } else if (auto r = AckedRangeAtOrAfter(first_free);
               r != acked_.end() && r->first <= first_free) {
      first_free = r->second;
    } else {
      break;
    }
  }
  // Records the delay index covers are known delayed or not without reading them. A record
  // with a loaded state was received, so its delivery time had come: nothing counts twice
  // (unless the clock went back).
  if (delays_ && from < end) {
    const std::uint64_t delayed = delays_->CountDelayed(from, end, now_ms);
    unexamined -= std::min(delayed, unexamined);
    c.delayed += delayed;
    if (first_free >= delays_->from()) {
      // Past a long run of delayed records the oldest visible one is not looked for.
      const auto free = delays_->FirstNotDelayed(first_free, end, now_ms, kOldestWalkLimit);
      first_free = free.value_or(end);
    }
  }
  c.visible += unexamined;
  if (first_free < end) consider(first_free);
  return c;
}

void AppendedDelays::Reset(const storage::PendingDelays& pending) {
  from_ = pending.from;
  delays_.clear();
  due_ = {};
  for (const auto& [offset, deliver_after_ms] : pending.delays)
    Note(offset, deliver_after_ms);
}

void AppendedDelays::Note(std::uint64_t offset, std::int64_t deliver_after_ms) {
  if (delays_.size() >= kMaxNoted) return;
  if (delays_.insert({offset, deliver_after_ms}).second) due_.emplace(deliver_after_ms, offset);
}

std::uint64_t AppendedDelays::CountDelayed(std::uint64_t begin, std::uint64_t end,
                                           std::int64_t now_ms) {
  while (!due_.empty() && due_.top().first <= now_ms) {
    delays_.erase(due_.top().second);
    due_.pop();
  }
  if (end <= begin) return 0;
  return delays_.order_of_key(end) - delays_.order_of_key(begin);
}

std::optional<std::uint64_t> AppendedDelays::FirstNotDelayed(std::uint64_t begin, std::uint64_t end,
                                                             std::int64_t now_ms,
                                                             std::size_t max) const {
  std::uint64_t offset = begin;
  std::size_t walked = 0;
  for (auto it = delays_.lower_bound(begin); it != delays_.end() && it->first == offset; ++it) {
    if (it->second <= now_ms) break;
    if (++walked > max) return std::nullopt;
    ++offset;
  }
  if (offset >= end) return std::nullopt;
  return offset;
}

std::size_t QueuePartition::InFlight(std::int64_t now_ms) {
  Settle(now_ms);
  return leases_.size();
}

std::optional<QueueMessageState> QueuePartition::State(std::uint64_t offset) const {
  if (offset >= floor_ && IsAcked(offset)) {
    QueueMessageState acked;
    acked.acked = true;
    return acked;
  }
  auto it = states_.find(offset);
  if (it == states_.end()) return std::nullopt;
  return it->second;
}

}  // namespace spool::broker

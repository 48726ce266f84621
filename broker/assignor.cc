#include "broker/assignor.h"

#include <algorithm>
#include <vector>

namespace spool::broker {
namespace {

Assignment Empty(const AssignorInput& input) {
  Assignment out;
  for (const auto& [member, topics] : input.subscriptions)
    out[member];
  return out;
}

// Every partition of every subscribed, existing topic, with the members that may own it.
std::map<TopicPartition, std::vector<std::string>> Eligible(const AssignorInput& input) {
  std::map<std::string, std::vector<std::string>> subscribers;
  for (const auto& [member, topics] : input.subscriptions) {
    for (const auto& topic : topics)
      subscribers[topic].push_back(member);  // members are visited sorted
  }
  std::map<TopicPartition, std::vector<std::string>> out;
  for (const auto& [topic, members] : subscribers) {
    auto it = input.partitions.find(topic);
    if (it == input.partitions.end()) continue;
    for (std::uint32_t p = 0; p < it->second; ++p)
      out[{topic, p}] = members;
  }
  return out;
}

}  // namespace

Assignment AssignUniform(const AssignorInput& input) {
  Assignment out = Empty(input);
  const auto eligible = Eligible(input);
  auto may_own = [&](const std::string& member, const TopicPartition& tp) {
    const auto& members = eligible.at(tp);
    return std::binary_search(members.begin(), members.end(), member);
  };
  // Keep previous owners where still valid.
  std::vector<TopicPartition> unassigned;
  std::map<TopicPartition, std::string> owner;
  for (const auto& [member, partitions] : input.previous) {
    if (!out.count(member)) continue;
    for (const auto& tp : partitions) {
      if (eligible.count(tp) && may_own(member, tp) && !owner.count(tp)) {
        owner[tp] = member;
        out[member].insert(tp);
      }
    }
  }
  for (const auto& [tp, members] : eligible) {
    if (!owner.count(tp)) unassigned.push_back(tp);
  }
  // New partitions go to the least loaded eligible member (ties: the smaller id).
  for (const auto& tp : unassigned) {
    const std::string* best = nullptr;
    for (const auto& member : eligible.at(tp)) {
      if (best == nullptr || out[member].size() < out[*best].size()) best = &member;
    }
    out[*best].insert(tp);
    owner[tp] = *best;
  }
  // Then move single partitions from the most to the least loaded member that may take them
  // until no move narrows the gap; each move goes where it is needed, so no more move than
  // balance requires.
  for (std::size_t rounds = 0; rounds < eligible.size() + 1; ++rounds) {
    bool moved = false;
    // Members by load, most loaded first.
    std::vector<std::string> by_load;
    for (const auto& [member, partitions] : out)
      by_load.push_back(member);
    std::stable_sort(by_load.begin(), by_load.end(),
                     [&](const auto& a, const auto& b) { return out[a].size() > out[b].size(); });
    for (const auto& from : by_load) {
      for (auto it = by_load.rbegin(); it != by_load.rend() && !moved; ++it) {
        const std::string& to = *it;
        if (out[from].size() <= out[to].size() + 1) break;
        // The last movable partition (stable choice: the highest one).
        for (auto tp = out[from].rbegin(); tp != out[from].rend(); ++tp) {
          if (may_own(to, *tp)) {
            TopicPartition moving = *tp;
            out[from].erase(moving);
            out[to].insert(moving);
            moved = true;
            break;
          }
        }
      }
      if (moved) break;
    }
    if (!moved) break;
  }
  return out;
}

Assignment AssignRange(const AssignorInput& input) {
  Assignment out = Empty(input);
  std::map<std::string, std::vector<std::string>> subscribers;
  for (const auto& [member, topics] : input.subscriptions) {
    for (const auto& topic : topics)
      subscribers[topic].push_back(member);
  }
  for (const auto& [topic, members] : subscribers) {
    auto it = input.partitions.find(topic);
    if (it == input.partitions.end()) continue;
    const std::uint32_t count = it->second;
    const auto n = static_cast<std::uint32_t>(members.size());
    const std::uint32_t base = count / n, extra = count % n;
    std::uint32_t next = 0;
    for (std::uint32_t m = 0; m < n; ++m) {
      const std::uint32_t take = base + (m < extra ? 1 : 0);
      for (std::uint32_t k = 0; k < take; ++k)
        out[members[m]].insert({topic, next++});
    }
  }
  return out;
}

}  // namespace spool::broker

#include "server/core/preemption.h"

#include <algorithm>
#include <cstddef>
#include <utility>
#include <map>
#include <set>

namespace loratrf::server {
namespace {

// Every subset of this many victims at most is tried in preference order before the greedy
// fallback: enough for any gang a fleet runs, and bounded work per waiting job.
constexpr size_t kMaxExhaustiveVictims = 3;
constexpr size_t kMaxExhaustiveCandidates = 24;

// The workers `waiting` would get if `victims` were stopped (packing as the scheduler does:
// fewest available slots first, ties by name), or empty when it still does not fit.
std::vector<std::string> FitWith(const SchedulerJob& waiting,
                                 const std::vector<SchedulerWorker>& fleet,
                                 const std::vector<const PreemptionCandidate*>& victims) {
  std::map<std::string, uint32_t> freed;
  for (const PreemptionCandidate* victim : victims) {
    for (const std::string& worker : victim->workers) freed[worker] += victim->slots_per_worker;
  }
  std::vector<std::pair<uint32_t, std::string>> usable;  // (available, name)
  for (const SchedulerWorker& worker : fleet) {
    if (!worker.ready || worker.device != waiting.device) continue;
    auto it = freed.find(worker.name);
    uint32_t available = worker.free_slots + (it != freed.end() ? it->second : 0);
    available = std::min(available, worker.slots);
    if (available >= waiting.slots_per_worker) usable.emplace_back(available, worker.name);
  }
  if (usable.size() < waiting.workers) return {};
  std::sort(usable.begin(), usable.end());
  std::vector<std::string> picked;
  for (size_t i = 0; i < waiting.workers; ++i) picked.push_back(usable[i].second);
  return picked;
}

// Tries every subset of `size` candidates, in lexicographic (= preference) order.
bool TrySubsets(const SchedulerJob& waiting, const std::vector<SchedulerWorker>& fleet,
                const std::vector<const PreemptionCandidate*>& candidates, size_t size,
                PreemptionPlan& plan) {
  std::vector<size_t> index(size);
  for (size_t i = 0; i < size; ++i) index[i] = i;
  while (true) {
    std::vector<const PreemptionCandidate*> victims;
    for (size_t i : index) victims.push_back(candidates[i]);
    std::vector<std::string> workers = FitWith(waiting, fleet, victims);
    if (!workers.empty()) {
      for (const PreemptionCandidate* victim : victims) plan.victims.push_back(victim->id);
      plan.workers = std::move(workers);
      return true;
    }
    // Next combination.
    size_t i = size;
    while (i > 0 && index[i - 1] == candidates.size() - size + i - 1) --i;
    if (i == 0) return false;
    ++index[i - 1];
    for (size_t j = i; j < size; ++j) index[j] = index[j - 1] + 1;
  }
}

}  // namespace

std::optional<PreemptionPlan> PickVictims(const SchedulerJob& waiting,
                                          const std::vector<SchedulerWorker>& fleet,
                                          const std::vector<PreemptionCandidate>& running,
                                          absl::Duration min_run) {
  if (waiting.workers == 0 || waiting.slots_per_worker == 0) return std::nullopt;
  // Only jobs on READY workers of the waiting job's device can free slots it could use.
  std::set<std::string> useful_workers;
  for (const SchedulerWorker& worker : fleet) {
    if (worker.ready && worker.device == waiting.device) useful_workers.insert(worker.name);
  }
  std::vector<const PreemptionCandidate*> candidates;
  for (const PreemptionCandidate& job : running) {
    if (job.priority >= waiting.priority || job.never_preempt || job.ran_for < min_run) continue;
    bool useful = std::any_of(job.workers.begin(), job.workers.end(),
                              [&](const std::string& w) { return useful_workers.count(w) > 0; });
    if (useful) candidates.push_back(&job);
  }
  if (candidates.empty()) return std::nullopt;
  std::sort(candidates.begin(), candidates.end(),
            [](const PreemptionCandidate* a, const PreemptionCandidate* b) {
              if (a->priority != b->priority) return a->priority < b->priority;
              if (a->ran_for != b->ran_for) return a->ran_for < b->ran_for;
              return a->id < b->id;
            });
  // Not even all of them together would make room: evict nothing.
  if (FitWith(waiting, fleet, candidates).empty()) return std::nullopt;

  PreemptionPlan plan;
  if (candidates.size() <= kMaxExhaustiveCandidates) {
    for (size_t size = 1; size <= std::min(kMaxExhaustiveVictims, candidates.size()); ++size) {
      if (TrySubsets(waiting, fleet, candidates, size, plan)) return plan;
    }
  }
  // Greedy in preference order until it fits, then drop every victim the fit does not need
  // (trying the least preferred victims first), so that no job is stopped for nothing.
  std::vector<const PreemptionCandidate*> victims;
  for (const PreemptionCandidate* candidate : candidates) {
    victims.push_back(candidate);
    if (!FitWith(waiting, fleet, victims).empty()) break;
  }
  for (size_t i = victims.size(); i-- > 0;) {
    std::vector<const PreemptionCandidate*> fewer = victims;
    fewer.erase(fewer.begin() + static_cast<std::ptrdiff_t>(i));
    if (!FitWith(waiting, fleet, fewer).empty()) victims = std::move(fewer);
  }
  for (const PreemptionCandidate* victim : victims) plan.victims.push_back(victim->id);
  plan.workers = FitWith(waiting, fleet, victims);
  return plan;
}

}  // namespace loratrf::server

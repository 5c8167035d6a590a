#include "server/core/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace loratrf::server {
namespace {

std::string DeviceName(v1::Device device) { return device == v1::DEVICE_CUDA ? "cuda" : "cpu"; }

// Picks `job.workers` distinct workers that each have `job.slots_per_worker` slots by
// `available(worker)`, fewest available first (packing), ties by name. Empty if impossible.
template <typename Available>
std::vector<size_t> Pick(const SchedulerJob& job, const std::vector<SchedulerWorker>& fleet,
                         Available available) {
  std::vector<size_t> candidates;
  for (size_t i = 0; i < fleet.size(); ++i) {
    if (fleet[i].device == job.device && available(fleet[i]) >= job.slots_per_worker) {
      candidates.push_back(i);
    }
  }
  if (candidates.size() < job.workers) return {};
  std::sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) {
    uint32_t fa = available(fleet[a]), fb = available(fleet[b]);
    return fa != fb ? fa < fb : fleet[a].name < fleet[b].name;
  });
  candidates.resize(job.workers);
  return candidates;
}

}  // namespace

SchedulingDecision Schedule(std::vector<SchedulerJob> queue, std::vector<SchedulerWorker> fleet,
                            const std::map<std::string, int>& running_per_owner,
                            int max_running_per_owner, bool fail_unschedulable) {
  std::stable_sort(queue.begin(), queue.end(), [](const SchedulerJob& a, const SchedulerJob& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.order < b.order;
  });
  std::map<std::string, int> running = running_per_owner;
  SchedulingDecision decision;
  for (const SchedulerJob& job : queue) {
    if (job.workers == 0 || job.slots_per_worker == 0) {
      decision.unschedulable.push_back({job.id, "resources: workers and slots_per_worker must be > 0"});
      continue;
    }
    // Could it ever run on this fleet? Every non-lost worker counts, idle.
    if (!fleet.empty() &&
        Pick(job, fleet, [](const SchedulerWorker& w) { return w.slots; }).empty()) {
      if (!fail_unschedulable) continue;  // the fleet may still grow: wait
      decision.unschedulable.push_back(
          {job.id, absl::StrCat("unschedulable: needs ", job.workers, " ", DeviceName(job.device),
                                " worker(s) with ", job.slots_per_worker,
                                " slot(s) each; the fleet has ", fleet.size(),
                                " worker(s) and no such set")});
      continue;
    }
    if (max_running_per_owner > 0 && running[job.owner] >= max_running_per_owner) continue;
    std::vector<size_t> picked = Pick(job, fleet, [](const SchedulerWorker& w) {
      return w.ready ? w.free_slots : 0u;
    });
    if (picked.empty()) continue;  // backfill: later jobs may still fit
    Placement placement{job.id, {}};
    for (size_t index : picked) {
      fleet[index].free_slots -= job.slots_per_worker;
      placement.workers.push_back(fleet[index].name);
    }
    ++running[job.owner];
    decision.placements.push_back(std::move(placement));
  }
  return decision;
}

}  // namespace loratrf::server

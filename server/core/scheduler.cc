#include "server/core/scheduler.h"

#include <algorithm>
#include <array>
#include <optional>
#include <queue>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace loratrf::server {
namespace {

using google::protobuf::util::TimeUtil;

std::string DeviceName(v1::Device device) { return device == v1::DEVICE_CUDA ? "cuda" : "cpu"; }

// Per-device tables are indexed by the enum's value.
constexpr size_t kDevices = 3;
size_t DeviceIndex(v1::Device device) {
  return device == v1::DEVICE_CUDA ? 2 : 1;  // anything else schedules as cpu, as the core does
}

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

// What a pass knows about one job shape (device, workers, slots_per_worker): computed once per
// pass, since it is the same for every job of that shape.
struct Shape {
  v1::Device device;
  uint32_t workers;
  uint32_t slots_per_worker;
  uint32_t of_device = 0;  // workers of the device in the fleet
  uint32_t capable = 0;    // ... with at least slots_per_worker slots
  uint32_t ready = 0;      // ... of those, READY
  bool full_now = false;   // a placement of this shape failed in this pass: free slots only
                           // shrink during a pass, so every later one fails too
};

Shape& ShapeOf(std::vector<Shape>& shapes, const SchedulerJob& job,
               const std::vector<SchedulerWorker>& fleet) {
  for (Shape& shape : shapes) {
    if (shape.device == job.device && shape.workers == job.workers &&
        shape.slots_per_worker == job.slots_per_worker) {
      return shape;
    }
  }
  Shape shape{job.device, job.workers, job.slots_per_worker};
  for (const SchedulerWorker& worker : fleet) {
    if (worker.device != job.device) continue;
    ++shape.of_device;
    if (worker.slots >= job.slots_per_worker) {
      ++shape.capable;
      shape.ready += worker.ready;
    }
  }
  shapes.push_back(shape);
  return shapes.back();
}

// Running jobs' expected releases of one device, soonest first, with running sums.
struct Releases {
  std::vector<std::pair<absl::Duration, uint64_t>> by_time;  // (after, slots freed by then)

  // When at least `needed` slots will have been given back; nullopt: not known.
  std::optional<absl::Duration> When(uint64_t needed) const {
    auto it = std::lower_bound(
        by_time.begin(), by_time.end(), needed,
        [](const std::pair<absl::Duration, uint64_t>& r, uint64_t n) { return r.second < n; });
    if (it == by_time.end()) return std::nullopt;
    return it->first;
  }
};

void SetStatus(v1::QueueStatus& status, v1::QueueReason reason, std::string message,
               uint32_t position, uint64_t slots, std::optional<absl::Duration> eta) {
  status.set_reason(reason);
  status.set_message(std::move(message));
  status.set_position(position);
  status.set_slots_needed(static_cast<uint32_t>(std::min<uint64_t>(slots, UINT32_MAX)));
  if (eta.has_value()) {
    *status.mutable_eta() = TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(*eta));
  }
}

std::string Plural(uint64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

}  // namespace

// ---- JobQueue -------------------------------------------------------------------------------

void JobQueue::Add(SchedulerJob job) {
  Run& run = groups_[job.priority][job.owner];
  auto key = std::make_pair(job.order, job.id);
  const std::string owner = job.owner;
  auto [it, inserted] = run.insert_or_assign(std::move(key), std::move(job));
  if (inserted) {
    ++size_;
    ++per_owner_[owner];
  }
}

bool JobQueue::Remove(const SchedulerJob& job) {
  auto group = groups_.find(job.priority);
  if (group == groups_.end()) return false;
  auto run = group->second.find(job.owner);
  if (run == group->second.end()) return false;
  if (run->second.erase(std::make_pair(job.order, job.id)) == 0) return false;
  if (run->second.empty()) group->second.erase(run);
  if (group->second.empty()) groups_.erase(group);
  --size_;
  auto owner = per_owner_.find(job.owner);
  if (owner != per_owner_.end() && --owner->second <= 0) per_owner_.erase(owner);
  return true;
}

int64_t JobQueue::QueuedFor(const std::string& owner) const {
  auto it = per_owner_.find(owner);
  return it == per_owner_.end() ? 0 : it->second;
}

// ---- Schedule -------------------------------------------------------------------------------

SchedulingDecision Schedule(const JobQueue& queue, std::vector<SchedulerWorker> fleet,
                            const std::map<std::string, OwnerUsage>& running,
                            const std::vector<SlotRelease>& releases,
                            const SchedulerPolicy& policy) {
  SchedulingDecision decision;
  // Free slots on READY workers, per device and in all.
  std::array<uint64_t, kDevices> free{};
  uint64_t free_total = 0;
  for (const SchedulerWorker& worker : fleet) {
    if (!worker.ready) continue;
    free[DeviceIndex(worker.device)] += worker.free_slots;
    free_total += worker.free_slots;
  }
  if (!policy.full_walk && free_total == 0) return decision;

  std::array<Releases, kDevices> release_times;
  if (policy.full_walk) {
    std::array<std::vector<std::pair<absl::Duration, uint64_t>>, kDevices> raw;
    for (const SlotRelease& release : releases) {
      raw[DeviceIndex(release.device)].push_back(
          {std::max(release.after, absl::ZeroDuration()), release.slots});
    }
    for (size_t d = 0; d < kDevices; ++d) {
      std::sort(raw[d].begin(), raw[d].end());
      uint64_t sum = 0;
      for (auto& [after, slots] : raw[d]) {
        sum += slots;
        release_times[d].by_time.push_back({after, sum});
      }
    }
  }

  std::map<std::string, OwnerUsage> usage = running;
  // Fair-share standing: running slots plus the slots of the owner's jobs this pass has placed
  // or lined up ahead, per unit of weight.
  std::unordered_map<std::string, double> share;
  auto weight = [&](const std::string& owner) {
    auto it = policy.owner_weights.find(owner);
    return it != policy.owner_weights.end() && it->second > 0 ? it->second : 1.0;
  };
  auto standing = [&](const std::string& owner) -> double& {
    auto [it, inserted] = share.try_emplace(owner, 0.0);
    if (inserted) {
      auto used = usage.find(owner);
      it->second = used != usage.end() ? static_cast<double>(used->second.slots) : 0.0;
    }
    return it->second;
  };

  std::vector<Shape> shapes;
  std::array<uint64_t, kDevices> demand_ahead{};   // slots of waiting jobs walked so far
  std::array<uint64_t, kDevices> waiting_above{};  // waiting jobs of higher priorities
  uint32_t position = 0;

  for (const auto& [priority, owners] : queue.groups()) {
    // One cursor per owner, merged by fair-share standing, then order.
    struct Cursor {
      const std::string* owner;
      JobQueue::Run::const_iterator next, end;
    };
    std::vector<Cursor> cursors;
    cursors.reserve(owners.size());
    for (const auto& [owner, run] : owners) cursors.push_back({&owner, run.begin(), run.end()});
    // (standing / weight, order, cursor): orders are unique within a priority.
    using Entry = std::tuple<double, uint64_t, size_t>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    auto push = [&](size_t i) {
      const Cursor& c = cursors[i];
      heap.push({standing(*c.owner) / weight(*c.owner), c.next->first.first, i});
    };
    for (size_t i = 0; i < cursors.size(); ++i) push(i);
    std::array<uint64_t, kDevices> waiting_here{};
    uint64_t latest_order = 0;
    const std::string* latest_owner = nullptr;

    while (!heap.empty()) {
      if (!policy.full_walk && free_total == 0) return decision;
      if (policy.max_placements > 0 && decision.placements.size() >= policy.max_placements) {
        decision.capped = true;
        return decision;
      }
      const size_t index = std::get<2>(heap.top());
      heap.pop();
      Cursor& cursor = cursors[index];
      const SchedulerJob& job = cursor.next->second;
      ++cursor.next;
      const size_t d = DeviceIndex(job.device);
      const uint64_t slots = job.slots();
      // The job's turn is taken: advance its owner's standing before the owner goes back in.
      auto requeue = [&] {
        if (cursor.next != cursor.end) push(index);
      };

      if (job.workers == 0 || job.slots_per_worker == 0) {
        decision.unschedulable.push_back(
            {job.id, "resources: workers and slots_per_worker must be > 0"});
        requeue();
        continue;
      }
      const bool fair_share_passed = latest_owner != nullptr && latest_order > job.order &&
                                     *latest_owner != job.owner;
      if (job.order >= latest_order) latest_order = job.order, latest_owner = &job.owner;
      // The job waits: its status, at the next position (a full walk only).
      auto wait = [&](v1::QueueReason reason, const std::string& message,
                      std::optional<absl::Duration> eta) {
        if (!policy.full_walk) return;
        v1::QueueStatus status;
        SetStatus(status, reason, message, ++position, slots, eta);
        decision.waiting.push_back({&job, std::move(status)});
      };
      if (job.paused) {
        wait(v1::QUEUE_REASON_PAUSED, "paused: waits for `loratrf resume`", std::nullopt);
        requeue();
        continue;
      }
      if (job.held) {
        wait(v1::QUEUE_REASON_BEHIND_HIGHER_PRIORITY,
             "held: the higher-priority job it was preempted for is waiting for its slots",
             std::nullopt);
        requeue();
        continue;
      }
      Shape& shape = ShapeOf(shapes, job, fleet);
      const std::string device = DeviceName(job.device);
      // Could it ever run on this fleet? Every non-lost worker counts, idle.
      if (shape.capable < job.workers) {
        if (!fleet.empty() && policy.fail_unschedulable) {
          decision.unschedulable.push_back(
              {job.id, absl::StrCat("unschedulable: needs ", job.workers, " ", device,
                                    " worker(s) with ", job.slots_per_worker,
                                    " slot(s) each; the fleet has ", fleet.size(),
                                    " worker(s) and no such set")});
        } else if (!policy.full_walk) {
        } else if (shape.of_device == 0) {
          wait(v1::QUEUE_REASON_NO_WORKERS, absl::StrCat("no ", device, " worker is registered"),
               std::nullopt);
        } else {
          wait(v1::QUEUE_REASON_GANG,
               absl::StrCat("needs ", Plural(job.workers, "worker", "workers"), " with ",
                            job.slots_per_worker, " ", device, " slot(s) each; the fleet has ",
                            shape.capable, " such worker(s)"),
               std::nullopt);
        }
        requeue();
        continue;
      }
      OwnerUsage& owner = usage[job.owner];
      const bool jobs_limit =
          policy.max_running_per_owner > 0 && owner.jobs >= policy.max_running_per_owner;
      const bool slots_limit = policy.max_running_slots_per_owner > 0 &&
                               owner.slots + slots > policy.max_running_slots_per_owner;
      if (jobs_limit || slots_limit) {
        if (policy.full_walk) wait(v1::QUEUE_REASON_OWNER_LIMIT,
             jobs_limit ? absl::StrCat("owner ", job.owner, " runs ", owner.jobs,
                                       " job(s), the limit (max running jobs per owner ",
                                       policy.max_running_per_owner, ")")
                        : absl::StrCat("owner ", job.owner, " holds ", owner.slots,
                                       " slot(s); ", slots, " more would pass the limit",
                                       " (max running slots per owner ",
                                       policy.max_running_slots_per_owner, ")"),
             std::nullopt);
        requeue();
        continue;
      }
      standing(job.owner) += static_cast<double>(slots);
      requeue();
      if (shape.ready < job.workers) {
        if (policy.full_walk) wait(v1::QUEUE_REASON_GANG,
             absl::StrCat("needs ", Plural(job.workers, "worker", "workers"), " with ",
                          job.slots_per_worker, " ", device, " slot(s) each; ", shape.ready,
                          " of the ", shape.capable,
                          " such worker(s) take new jobs (the others drain or are cordoned)"),
             std::nullopt);
        continue;
      }
      if (!shape.full_now && free[d] >= slots) {
        std::vector<size_t> picked = Pick(job, fleet, [](const SchedulerWorker& w) {
          return w.ready ? w.free_slots : 0u;
        });
        if (!picked.empty()) {
          Placement placement{job.id, {}};
          for (size_t i : picked) {
            fleet[i].free_slots -= job.slots_per_worker;
            placement.workers.push_back(fleet[i].name);
          }
          free[d] -= slots;
          free_total -= slots;
          ++owner.jobs;
          owner.slots += slots;
          decision.placements.push_back(std::move(placement));
          continue;
        }
      }
      shape.full_now = true;  // backfill: later jobs of other shapes may still fit
      if (policy.full_walk) {
        std::optional<absl::Duration> eta;
        const uint64_t need = demand_ahead[d] + slots;
        if (need > free[d]) eta = release_times[d].When(need - free[d]);
        if (waiting_above[d] > 0) {
          wait(v1::QUEUE_REASON_BEHIND_HIGHER_PRIORITY,
               absl::StrCat("behind ",
                            Plural(waiting_above[d], "higher-priority job", "higher-priority jobs"),
                            " waiting for ", device, " slots"),
               eta);
        } else if (fair_share_passed) {
          wait(v1::QUEUE_REASON_FAIR_SHARE,
               absl::StrCat("owner ", job.owner, " is above its fair share (",
                            usage[job.owner].slots, " running slot(s), weight ",
                            weight(job.owner), "): jobs of other owners go first"),
               eta);
        } else {
          wait(v1::QUEUE_REASON_WAITING_FOR_SLOTS,
               absl::StrCat("waiting for ", slots, " free ", device, " slot(s)",
                            job.workers > 1 ? absl::StrCat(" (", job.workers, " workers x ",
                                                           job.slots_per_worker, ")")
                                            : "",
                            "; ", free[d], " free now"),
               eta);
        }
      }
      demand_ahead[d] += slots;
      ++waiting_here[d];
    }
    for (size_t d = 0; d < kDevices; ++d) waiting_above[d] += waiting_here[d];
  }
  decision.walked_all = true;
  return decision;
}

SchedulingDecision Schedule(std::vector<SchedulerJob> queue, std::vector<SchedulerWorker> fleet,
                            const std::map<std::string, int>& running_per_owner,
                            int max_running_per_owner, bool fail_unschedulable) {
  // Equal orders keep the list's order: renumber after a stable sort.
  std::stable_sort(queue.begin(), queue.end(), [](const SchedulerJob& a, const SchedulerJob& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.order < b.order;
  });
  JobQueue ordered;
  for (size_t i = 0; i < queue.size(); ++i) {
    queue[i].order = i;
    ordered.Add(queue[i]);
  }
  std::map<std::string, OwnerUsage> running;
  for (const auto& [owner, jobs] : running_per_owner) {
    running[owner] = {jobs, static_cast<uint64_t>(std::max(jobs, 0))};
  }
  SchedulerPolicy policy;
  policy.max_running_per_owner = max_running_per_owner;
  policy.fail_unschedulable = fail_unschedulable;
  return Schedule(ordered, std::move(fleet), running, {}, policy);
}

}  // namespace loratrf::server

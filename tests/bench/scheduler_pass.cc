// scheduler_pass: the cost of one scheduling pass over a long queue, in process (no gRPC, no
// store): the policy of server/core/scheduler.h over JobQueue, next to the policy as it was
// before the queue was kept ordered (every pass copied the queue, sorted it, and checked every
// job against an idle fleet), kept here verbatim as the reference.
//
//   scheduler_pass [--jobs N] [--workers N] [--passes N]
//
// Three passes are timed for each, over N queued one-slot jobs (8 owners, 3 priorities) and a
// fleet of 1-slot workers: "full" (nothing free: the old pass and the new full walk, which
// gives every job its status), "none free" (the new pass between status refreshes: stops at
// once) and "drain" (every worker free: the old pass against the new one that places as many
// jobs as there are free slots and stops). Prints the median microseconds per pass.
//
// Threading: single-threaded.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/command_line.h"
#include "server/core/scheduler.h"

namespace {

using loratrf::server::JobQueue;
using loratrf::server::OwnerUsage;
using loratrf::server::SchedulerJob;
using loratrf::server::SchedulerPolicy;
using loratrf::server::SchedulerWorker;
using loratrf::server::SchedulingDecision;
namespace v1 = loratrf::v1;

// ---- the pass before the ordered queue (the core built `queue` from its job table first) ----
std::vector<size_t> OldPick(const SchedulerJob& job, const std::vector<SchedulerWorker>& fleet,
                            bool idle) {
  std::vector<size_t> candidates;
  auto available = [&](const SchedulerWorker& w) {
    return idle ? w.slots : (w.ready ? w.free_slots : 0u);
  };
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

size_t OldSchedule(std::vector<SchedulerJob> queue, std::vector<SchedulerWorker> fleet) {
  std::stable_sort(queue.begin(), queue.end(), [](const SchedulerJob& a, const SchedulerJob& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.order < b.order;
  });
  std::map<std::string, int> running;
  size_t placed = 0;
  for (const SchedulerJob& job : queue) {
    if (!fleet.empty() && OldPick(job, fleet, true).empty()) continue;
    std::vector<size_t> picked = OldPick(job, fleet, false);
    if (picked.empty()) continue;
    for (size_t index : picked) fleet[index].free_slots -= job.slots_per_worker;
    ++running[job.owner];
    ++placed;
  }
  return placed;
}

template <typename F>
double MedianMicros(int passes, F pass) {
  std::vector<double> times;
  for (int i = 0; i < passes; ++i) {
    auto start = std::chrono::steady_clock::now();
    pass();
    times.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = loratrf::CommandLine::Parse(std::vector<std::string>(argv + 1, argv + argc),
                                           {{"--jobs", true}, {"--workers", true}, {"--passes", true}});
  if (!flags.ok()) {
    std::fprintf(stderr, "scheduler_pass: %s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  auto jobs = flags->GetInt("--jobs", 10000, 1, 10'000'000);
  auto workers = flags->GetInt("--workers", 50, 1, 100'000);
  auto passes = flags->GetInt("--passes", 21, 1, 100'000);
  if (!jobs.ok() || !workers.ok() || !passes.ok()) {
    std::fprintf(stderr, "scheduler_pass: bad flags\n");
    return 2;
  }
  std::vector<SchedulerJob> list;
  JobQueue queue;
  for (int64_t i = 0; i < *jobs; ++i) {
    SchedulerJob job;
    job.id = absl::StrCat("j-", i);
    job.owner = absl::StrCat("owner-", i % 8);
    job.priority = static_cast<int32_t>(i % 3);
    job.order = static_cast<uint64_t>(i);
    list.push_back(job);
    queue.Add(job);
  }
  std::vector<SchedulerWorker> busy, idle;
  for (int64_t i = 0; i < *workers; ++i) {
    busy.push_back({absl::StrCat("w-", i), v1::DEVICE_CPU, 1, 0, true});
    idle.push_back({absl::StrCat("w-", i), v1::DEVICE_CPU, 1, 1, true});
  }
  std::map<std::string, OwnerUsage> running;
  SchedulerPolicy full, quick;
  quick.full_walk = false;
  size_t sink = 0;
  const double old_busy = MedianMicros(*passes, [&] { sink += OldSchedule(list, busy); });
  const double new_full = MedianMicros(*passes, [&] {
    sink += Schedule(queue, busy, running, {}, full).waiting.size();
  });
  const double new_quick = MedianMicros(*passes, [&] {
    sink += Schedule(queue, busy, running, {}, quick).placements.size();
  });
  const double old_drain = MedianMicros(*passes, [&] { sink += OldSchedule(list, idle); });
  const double new_drain = MedianMicros(*passes, [&] {
    sink += Schedule(queue, idle, running, {}, quick).placements.size();
  });
  std::printf("scheduler pass, %lld queued 1-slot jobs (8 owners, 3 priorities), %lld 1-slot "
              "workers, median of %lld passes (microseconds):\n",
              static_cast<long long>(*jobs), static_cast<long long>(*workers),
              static_cast<long long>(*passes));
  std::printf("  none free:  before %10.0f   full walk with statuses %10.0f   between refreshes %8.1f\n",
              old_busy, new_full, new_quick);
  std::printf("  all free:   before %10.0f   after (places %lld, stops) %10.1f\n", old_drain,
              static_cast<long long>(*workers), new_drain);
  return sink == 0 ? 1 : 0;
}

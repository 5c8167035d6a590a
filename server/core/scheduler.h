// The scheduling policy (docs/control-plane.md, "Jobs" and "The queue"): a pure function from
// the queue and the fleet to placements and queue statuses, so that it is tested without a
// coordinator. The queue itself (JobQueue) is kept in scheduling order between passes, so that a
// pass never sorts and stops as soon as nothing more can be placed.
//
//   - queue order: priority (higher first); within a priority, fair share between owners (the
//     owner with the fewest running slots per unit of weight first: `owner_weights`, default
//     1, counting what this pass has placed or lined up ahead), ties by submission order
//     (`order`, lower first; a preempted job gets an order below every submission's);
//   - gang: a job gets `workers` distinct READY workers of its device, each with
//     `slots_per_worker` free slots, all at once or not at all;
//   - packing: among workers that fit, the one with the fewest free slots first (ties: name);
//   - backfill: a job that does not fit now does not stop a later one that does;
//   - per owner: at most `max_running_per_owner` SCHEDULED+RUNNING jobs and at most
//     `max_running_slots_per_owner` slots held by them (0: no limit);
//   - paused jobs are skipped;
//   - unschedulable: a job that would not fit even if every current worker were idle fails,
//     but only when the caller says the fleet has settled (`fail_unschedulable`; the core
//     waits two lease TTLs after the last worker joined or left, so that jobs submitted while
//     agents are still starting wait for them) and never when the fleet is empty;
//   - a pass places at most `max_placements` jobs (more are left for the next pass);
//   - queue status: a full walk (`full_walk`) gives every job left waiting a QueueStatus — the
//     reason, its 1-based position in this order, the slots it needs and an ETA — in the same
//     ordered walk; without it the walk ends once no ready worker has a free slot.
//
// ETA: for a job waiting for slots, the time at which the slots that running jobs give back
// (`releases`: their own estimate of the time left, from their measured step times) cover the
// slots needed by it and by the waiting jobs of its device ahead of it, minus the free ones.
// It ignores fragmentation (which worker the slots free on), jobs that will start and finish
// in between, and running jobs without an estimate yet (SCHEDULED, or before their first
// train report); when the known releases do not cover the need it is left unset (unknown).
//
// Threading: pure functions; JobQueue is a plain value, guarded by its owner (the core's mu).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::server {

struct SchedulerWorker {
  std::string name;
  v1::Device device = v1::DEVICE_CPU;
  uint32_t slots = 0;
  uint32_t free_slots = 0;
  bool ready = true;  // READY (not DRAINING, cordoned or LOST)
};

struct SchedulerJob {
  std::string id;
  std::string owner;
  int32_t priority = 0;
  uint64_t order = 0;  // submission order: lower first
  v1::Device device = v1::DEVICE_CPU;
  uint32_t workers = 1;
  uint32_t slots_per_worker = 1;
  bool paused = false;
  bool held = false;  // preempted for a job that still waits: stays out of its way
  void* context = nullptr;  // the caller's handle for this job, handed back in QueueVerdict

  uint64_t slots() const { return uint64_t{workers} * slots_per_worker; }
};

// The queued jobs in scheduling order: by priority (higher first), within a priority by owner,
// within an owner by (order, id). Add and Remove are O(log n); a pass walks it without sorting.
class JobQueue {
 public:
  // Adds `job`; a job with the same priority, owner, order and id is replaced.
  void Add(SchedulerJob job);
  // Removes the job added with these fields; false if there is none.
  bool Remove(const SchedulerJob& job);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Queued jobs of `owner` (paused ones included).
  int64_t QueuedFor(const std::string& owner) const;

  using Run = std::map<std::pair<uint64_t, std::string>, SchedulerJob>;  // (order, id)
  using Group = std::map<std::string, Run>;                             // by owner
  const std::map<int32_t, Group, std::greater<int32_t>>& groups() const { return groups_; }

 private:
  std::map<int32_t, Group, std::greater<int32_t>> groups_;  // by priority, high first
  std::unordered_map<std::string, int64_t> per_owner_;
  size_t size_ = 0;
};

struct Placement {
  std::string job_id;
  std::vector<std::string> workers;  // node rank order; node 0 hosts the rendezvous
};

struct Unschedulable {
  std::string job_id;
  std::string reason;
};

// A job left waiting, and why (a full walk only). `job` points into the JobQueue: valid until
// the queue next changes.
struct QueueVerdict {
  const SchedulerJob* job = nullptr;
  v1::QueueStatus status;
};

struct SchedulingDecision {
  std::vector<Placement> placements;
  std::vector<Unschedulable> unschedulable;
  std::vector<QueueVerdict> waiting;  // in scheduling order
  bool walked_all = false;            // every queued job was visited
  bool capped = false;                // ended at max_placements: the statuses are partial
};

// What an owner holds now: SCHEDULED+RUNNING jobs and their slots.
struct OwnerUsage {
  int jobs = 0;
  uint64_t slots = 0;
};

// Slots a running job is expected to give back, `after` from now.
struct SlotRelease {
  v1::Device device = v1::DEVICE_CPU;
  absl::Duration after;
  uint64_t slots = 0;
};

struct SchedulerPolicy {
  int max_running_per_owner = 0;             // 0: no limit
  uint64_t max_running_slots_per_owner = 0;  // 0: no limit
  std::map<std::string, double> owner_weights;  // > 0; an owner not named weighs 1
  bool fail_unschedulable = true;
  bool full_walk = true;
  // The pass ends after this many placements (0: no limit), even in a full walk: the caller
  // holds its lock for the pass and persists each placement, so a huge queue meeting a huge
  // fleet is handed out over several passes instead of one long one.
  size_t max_placements = 0;
};

SchedulingDecision Schedule(const JobQueue& queue, std::vector<SchedulerWorker> fleet,
                            const std::map<std::string, OwnerUsage>& running,
                            const std::vector<SlotRelease>& releases,
                            const SchedulerPolicy& policy);

// The same policy over a plain list (any order): jobs of one priority and owner keep the
// list's order among equal `order`s; each running job of `running_per_owner` counts as one
// slot for fair share.
SchedulingDecision Schedule(std::vector<SchedulerJob> queue, std::vector<SchedulerWorker> fleet,
                            const std::map<std::string, int>& running_per_owner,
                            int max_running_per_owner, bool fail_unschedulable = true);

}  // namespace loratrf::server

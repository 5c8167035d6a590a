// The scheduling policy (docs/control-plane.md, "Jobs"): a pure function from the queue and the
// fleet to placements, so that it is tested without a coordinator.
//
//   - queue order: priority (higher first), then submission order;
//   - gang: a job gets `workers` distinct READY workers of its device, each with
//     `slots_per_worker` free slots, all at once or not at all;
//   - packing: among workers that fit, the one with the fewest free slots first (ties: name);
//   - backfill: a job that does not fit now does not stop a later one that does;
//   - per owner: at most `max_running_per_owner` SCHEDULED+RUNNING jobs (0: no limit);
//   - unschedulable: a job that would not fit even if every current worker were idle fails,
//     but only when the caller says the fleet has settled (`fail_unschedulable`; the core
//     waits two lease TTLs after the last worker joined or left, so that jobs submitted while
//     agents are still starting wait for them) and never when the fleet is empty.
//
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::server {

struct SchedulerWorker {
  std::string name;
  v1::Device device = v1::DEVICE_CPU;
  uint32_t slots = 0;
  uint32_t free_slots = 0;
  bool ready = true;  // READY (not DRAINING or LOST)
};

struct SchedulerJob {
  std::string id;
  std::string owner;
  int32_t priority = 0;
  uint64_t order = 0;  // submission order: lower first
  v1::Device device = v1::DEVICE_CPU;
  uint32_t workers = 1;
  uint32_t slots_per_worker = 1;
};

struct Placement {
  std::string job_id;
  std::vector<std::string> workers;  // node rank order; node 0 hosts the rendezvous
};

struct Unschedulable {
  std::string job_id;
  std::string reason;
};

struct SchedulingDecision {
  std::vector<Placement> placements;
  std::vector<Unschedulable> unschedulable;
};

// `running_per_owner`: SCHEDULED+RUNNING jobs per owner now.
SchedulingDecision Schedule(std::vector<SchedulerJob> queue, std::vector<SchedulerWorker> fleet,
                            const std::map<std::string, int>& running_per_owner,
                            int max_running_per_owner, bool fail_unschedulable = true);

}  // namespace loratrf::server

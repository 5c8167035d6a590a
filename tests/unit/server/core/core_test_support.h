// What the core's unit tests (job_service_test, job_stops_test, gc_test) share: a job spec that
// validation accepts, and a CoreMetrics that counts nothing, for a test to override only what it
// looks at.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/time/time.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/spec/job_spec.h"
#include "server/core/job_service.h"

namespace loratrf::server::core_testing {

// A CPU classification job of `workers` x `slots` slots, one micro-batch of 8 per rank.
inline v1::JobSpec TestJobSpec(const std::string& name, uint32_t workers = 1, uint32_t slots = 1) {
  v1::JobSpec spec = spec::DefaultJobSpec();
  spec.set_name(name);
  spec.mutable_model()->set_path("/models/tiny");
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.mutable_data()->set_train("/data/train.jsonl");
  spec.mutable_adapter()->set_method(v1::ADAPTER_METHOD_LORATRF);
  spec.mutable_adapter()->add_target_modules("q_proj");
  spec.mutable_training()->set_batch_size(8 * workers * slots);
  spec.mutable_training()->set_micro_batch_size(8);
  spec.mutable_resources()->set_workers(workers);
  spec.mutable_resources()->set_slots_per_worker(slots);
  spec.mutable_resources()->set_device(v1::DEVICE_CPU);
  return spec;
}

class NullCoreMetrics : public CoreMetrics {
 public:
  void JobSubmitted() override {}
  void JobFinished(v1::JobState) override {}
  void JobRestarted() override {}
  void WorkerLost() override {}
  void SchedulingLatency(absl::Duration) override {}
  void Gauges(int64_t, int64_t, int64_t, int64_t, int64_t) override {}
  void CheckpointBytes(uint64_t) override {}
  void StoreWriteFailed() override {}
  void StoreWriteDuration(absl::Duration) override {}
  void JobRunDuration(v1::JobState, absl::Duration) override {}
  void SchedulerPass(absl::Duration) override {}
  void LeaseExpired() override {}
  void IdempotentReplay() override {}
  void QueueGauges(const std::map<int32_t, int64_t>&, absl::Duration) override {}
  void StoredCheckpoints(int64_t, uint64_t) override {}
  void JobPreempted(StopKind) override {}
};

}  // namespace loratrf::server::core_testing

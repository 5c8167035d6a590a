#include "server/metrics/coordinator_metrics.h"

#include <exception>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace loratrf::server {
namespace {

// RPCs: sub-millisecond unary calls up to streams that live for an hour.
const prometheus::Histogram::BucketBoundaries& RpcBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
      2.5,    5,     10,     30,    60,   300,   900,  3600};
  return *buckets;
}

// Time in the queue: from a tick to a day.
const prometheus::Histogram::BucketBoundaries& SchedulingBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400};
  return *buckets;
}

// "JOB_STATE_SUCCEEDED" → "succeeded": a fixed set of label values.
std::string StateLabel(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  constexpr absl::string_view kPrefix = "JOB_STATE_";
  if (name.rfind(kPrefix.data(), 0, kPrefix.size()) == 0) name = name.substr(kPrefix.size());
  if (name.empty()) name = "unknown";
  return absl::AsciiStrToLower(name);
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  prometheus::Registry& r = *registry_;
  jobs_submitted_ = &BuildCounter()
                         .Name("loratrf_jobs_submitted_total")
                         .Help("Jobs accepted by SubmitJob (not counting idempotent repeats)")
                         .Register(r)
                         .Add({});
  jobs_finished_ = &BuildCounter()
                        .Name("loratrf_jobs_finished_total")
                        .Help("Jobs that reached a final state, by that state")
                        .Register(r);
  for (v1::JobState state :
       {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    jobs_finished_->Add({{"state", StateLabel(state)}});  // present at 0 from the start
  }
  job_restarts_ = &BuildCounter()
                       .Name("loratrf_job_restarts_total")
                       .Help("Attempts requeued after a lost worker or a dead rank")
                       .Register(r)
                       .Add({});
  workers_lost_ = &BuildCounter()
                       .Name("loratrf_workers_lost_total")
                       .Help("Workers whose lease lapsed")
                       .Register(r)
                       .Add({});
  checkpoint_bytes_ = &BuildCounter()
                           .Name("loratrf_checkpoint_bytes_total")
                           .Help("Bytes of checkpoints uploaded and committed")
                           .Register(r)
                           .Add({});
  store_write_failures_ = &BuildCounter()
                              .Name("loratrf_store_write_failures_total")
                              .Help("Job store writes that failed (disk full, I/O error): what was "
                                    "not persisted is lost on a restart; alert on any increase")
                              .Register(r)
                              .Add({});
  scheduling_latency_ = &BuildHistogram()
                             .Name("loratrf_scheduling_latency_seconds")
                             .Help("Time from QUEUED to SCHEDULED")
                             .Register(r)
                             .Add({}, SchedulingBuckets());
  auto& jobs = BuildGauge().Name("loratrf_jobs").Help("Jobs by state, now").Register(r);
  jobs_queued_ = &jobs.Add({{"state", "queued"}});
  jobs_running_ = &jobs.Add({{"state", "running"}});
  workers_ready_ = &BuildGauge()
                        .Name("loratrf_workers_ready")
                        .Help("Workers holding a lease and taking assignments")
                        .Register(r)
                        .Add({});
  slots_ = &BuildGauge().Name("loratrf_slots").Help("Slots of READY workers").Register(r).Add({});
  slots_free_ = &BuildGauge()
                     .Name("loratrf_slots_free")
                     .Help("Free slots of READY workers")
                     .Register(r)
                     .Add({});
  rpc_requests_ = &BuildCounter()
                       .Name("loratrf_grpc_requests_total")
                       .Help("Finished RPCs by method and gRPC status code")
                       .Register(r);
  rpc_duration_ = &BuildHistogram()
                       .Name("loratrf_grpc_request_duration_seconds")
                       .Help("RPC latency by method and code (a stream's whole life)")
                       .Register(r);
}

CoordinatorMetrics::~CoordinatorMetrics() = default;

absl::Status CoordinatorMetrics::Serve(const std::string& listen) {
  if (exposer_) return absl::FailedPreconditionError("metrics: already serving");
  try {
    // civetweb throws when it cannot bind; nothing is thrown past this function.
    auto exposer = std::make_unique<prometheus::Exposer>(listen, 2);
    exposer->RegisterCollectable(registry_);
    std::vector<int> ports = exposer->GetListeningPorts();
    port_ = ports.empty() ? 0 : ports.front();
    exposer_ = std::move(exposer);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen ", listen, ": cannot serve metrics: ", e.what()));
  }
  return absl::OkStatus();
}

std::string CoordinatorMetrics::Text() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void CoordinatorMetrics::JobSubmitted() { jobs_submitted_->Increment(); }

void CoordinatorMetrics::JobFinished(v1::JobState final_state) {
  jobs_finished_->Add({{"state", StateLabel(final_state)}}).Increment();
}

void CoordinatorMetrics::JobRestarted() { job_restarts_->Increment(); }

void CoordinatorMetrics::WorkerLost() { workers_lost_->Increment(); }

void CoordinatorMetrics::SchedulingLatency(absl::Duration queued_for) {
  scheduling_latency_->Observe(absl::ToDoubleSeconds(queued_for));
}

void CoordinatorMetrics::Gauges(int64_t queued, int64_t running, int64_t workers_ready,
                                int64_t slots_total, int64_t slots_free) {
  jobs_queued_->Set(static_cast<double>(queued));
  jobs_running_->Set(static_cast<double>(running));
  workers_ready_->Set(static_cast<double>(workers_ready));
  slots_->Set(static_cast<double>(slots_total));
  slots_free_->Set(static_cast<double>(slots_free));
}

void CoordinatorMetrics::CheckpointBytes(uint64_t bytes) {
  checkpoint_bytes_->Increment(static_cast<double>(bytes));
}

void CoordinatorMetrics::StoreWriteFailed() { store_write_failures_->Increment(); }

void CoordinatorMetrics::RpcFinished(absl::string_view method, absl::string_view code,
                                     absl::Duration latency) {
  std::map<std::string, std::string> labels = {{"method", std::string(method)},
                                               {"code", std::string(code)}};
  rpc_requests_->Add(labels).Increment();
  rpc_duration_->Add(labels, RpcBuckets()).Observe(absl::ToDoubleSeconds(latency));
}

}  // namespace loratrf::server

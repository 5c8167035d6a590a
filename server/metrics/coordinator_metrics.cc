#include "server/metrics/coordinator_metrics.h"

#include <algorithm>
#include <exception>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/disk_space.h"
#include "common/logging.h"
#include "proto/contract/limits.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
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

// One job store write: SQLite with full sync commits in about a millisecond on a good disk;
// seconds mean a disk in trouble.
const prometheus::Histogram::BucketBoundaries& StoreWriteBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
      10};
  return *buckets;
}

// One scheduling pass: sorting the queue is microseconds; a pass that places jobs also writes
// each placement to the store.
const prometheus::Histogram::BucketBoundaries& SchedulerPassBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
  return *buckets;
}

// A job's run: a smoke test takes seconds, a fine-tuning run hours to days.
const prometheus::Histogram::BucketBoundaries& RunBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800};
  return *buckets;
}

constexpr v1::JobState kFinalStates[] = {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                                         v1::JOB_STATE_CANCELLED};

// The upper ends of the priority ranges of PriorityLabel, below kMaxPriority: small values,
// the ones people use, keep their own ranges; the rest are lumped.
constexpr int32_t kPriorityEdges[] = {-101, -11, -1, 0, 10, 100};

// "JOB_STATE_SUCCEEDED" → "succeeded": a fixed set of label values.
std::string StateLabel(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  constexpr absl::string_view kPrefix = "JOB_STATE_";
  if (name.rfind(kPrefix.data(), 0, kPrefix.size()) == 0) name = name.substr(kPrefix.size());
  if (name.empty()) name = "unknown";
  return absl::AsciiStrToLower(name);
}

}  // namespace

// What /metrics and Text() collect: the registry, after reading the data dir's file system, so
// that its gauges are as fresh as the scrape.
class CoordinatorMetrics::ScrapeView final : public prometheus::Collectable {
 public:
  explicit ScrapeView(const CoordinatorMetrics* metrics) : metrics_(metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    metrics_->RefreshDataDir();
    return metrics_->registry_->Collect();
  }

 private:
  const CoordinatorMetrics* const metrics_;
};

std::string CoordinatorMetrics::PriorityLabel(int32_t priority) {
  int32_t low = -limits::kMaxPriority;
  for (int32_t high : kPriorityEdges) {
    if (priority <= high) return low == high ? absl::StrCat(high) : absl::StrCat(low, "..", high);
    low = high + 1;
  }
  return absl::StrCat(low, "..", limits::kMaxPriority);
}

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      scrape_view_(std::make_shared<ScrapeView>(this)) {
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
  for (v1::JobState state : kFinalStates) {
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
  gc_checkpoints_deleted_ = &BuildCounter()
                                .Name("loratrf_gc_checkpoints_deleted_total")
                                .Help("Checkpoints deleted by garbage collection: retention as "
                                      "newer ones commit, loratrf delete, the finished-job TTL")
                                .Register(r)
                                .Add({});
  gc_bytes_freed_ = &BuildCounter()
                        .Name("loratrf_gc_bytes_freed_total")
                        .Help("Bytes of the checkpoint files garbage collection deleted")
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
  lease_expiries_ = &BuildCounter()
                         .Name("loratrf_lease_expiries_total")
                         .Help("Worker leases that lapsed without a heartbeat")
                         .Register(r)
                         .Add({});
  idempotent_replays_ =
      &BuildCounter()
           .Name("loratrf_idempotent_replays_total")
           .Help("Submits answered with the existing job their idempotency key named (same key, "
                 "same spec): client retries")
           .Register(r)
           .Add({});
  auto& preemptions = BuildCounter()
                          .Name("loratrf_preemptions_total")
                          .Help("Running attempts asked to checkpoint and stop, by why: a "
                                "higher-priority job, a pause, a worker drain")
                          .Register(r);
  for (auto [kind, label] : {std::pair{StopKind::kPriority, "priority"},
                             std::pair{StopKind::kPause, "pause"},
                             std::pair{StopKind::kDrain, "drain"}}) {
    preemptions_[kind] = &preemptions.Add({{"reason", label}});  // present at 0 from the start
  }
  auth_reloads_ = &BuildCounter()
                       .Name("loratrf_auth_reloads_total")
                       .Help("Token file reloads (SIGHUP) that replaced the credentials")
                       .Register(r)
                       .Add({});
  auth_reload_failures_ =
      &BuildCounter()
           .Name("loratrf_auth_reload_failures_total")
           .Help("Token file reloads that failed: the previous credentials stay in force")
           .Register(r)
           .Add({});
  store_write_duration_ = &BuildHistogram()
                               .Name("loratrf_store_write_duration_seconds")
                               .Help("Time of one job store write, failed or not")
                               .Register(r)
                               .Add({}, StoreWriteBuckets());
  job_run_duration_ = &BuildHistogram()
                           .Name("loratrf_job_run_duration_seconds")
                           .Help("Time from a job's first RUNNING to its final state, by that "
                                 "state (jobs that never ran are not observed)")
                           .Register(r);
  for (v1::JobState state : kFinalStates) {
    job_run_duration_->Add({{"state", StateLabel(state)}}, RunBuckets());
  }
  scheduler_pass_ = &BuildHistogram()
                         .Name("loratrf_scheduler_pass_duration_seconds")
                         .Help("Time of one scheduling pass over the queue")
                         .Register(r)
                         .Add({}, SchedulerPassBuckets());
  auto& by_priority = BuildGauge()
                          .Name("loratrf_jobs_queued_by_priority")
                          .Help("Queued jobs by spec priority, grouped into fixed ranges")
                          .Register(r);
  for (int32_t priority : kPriorityEdges) {
    std::string label = PriorityLabel(priority);
    queued_by_priority_[label] = &by_priority.Add({{"priority", label}});
  }
  std::string top = PriorityLabel(limits::kMaxPriority);
  queued_by_priority_[top] = &by_priority.Add({{"priority", top}});
  oldest_queued_ = &BuildGauge()
                        .Name("loratrf_oldest_queued_job_age_seconds")
                        .Help("How long the longest-waiting queued job has been queued (0 when "
                              "none is)")
                        .Register(r)
                        .Add({});
  checkpoint_stored_bytes_ = &BuildGauge()
                                  .Name("loratrf_checkpoint_stored_bytes")
                                  .Help("Bytes of committed checkpoint files in the data dir")
                                  .Register(r)
                                  .Add({});
  artifacts_ = &BuildGauge()
                    .Name("loratrf_artifacts")
                    .Help("Committed checkpoints held in the data dir")
                    .Register(r)
                    .Add({});
  data_dir_available_ = &BuildGauge()
                             .Name("loratrf_data_dir_available_bytes")
                             .Help("Bytes available to the coordinator on the --data-dir file "
                                   "system (statvfs, read at scrape time)")
                             .Register(r)
                             .Add({});
  data_dir_capacity_ = &BuildGauge()
                            .Name("loratrf_data_dir_capacity_bytes")
                            .Help("Size in bytes of the --data-dir file system (statvfs, read at "
                                  "scrape time)")
                            .Register(r)
                            .Add({});
  auto& streams = BuildGauge()
                      .Name("loratrf_open_streams")
                      .Help("Open server streams: WatchJob (watch) and StreamCommands (commands)")
                      .Register(r);
  open_watch_streams_ = &streams.Add({{"kind", "watch"}});
  open_command_streams_ = &streams.Add({{"kind", "commands"}});
}

CoordinatorMetrics::~CoordinatorMetrics() = default;

absl::Status CoordinatorMetrics::Serve(const std::string& listen) {
  if (exposer_) return absl::FailedPreconditionError("metrics: already serving");
  try {
    // civetweb throws when it cannot bind; nothing is thrown past this function.
    auto exposer = std::make_unique<prometheus::Exposer>(listen, 2);
    exposer->RegisterCollectable(scrape_view_);
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
  return prometheus::TextSerializer().Serialize(scrape_view_->Collect());
}

void CoordinatorMetrics::WatchDataDir(const std::string& data_dir) {
  data_dir_ = data_dir;
  RefreshDataDir();
}

void CoordinatorMetrics::RefreshDataDir() const {
  if (data_dir_.empty()) return;
  absl::StatusOr<DiskSpace> space = ReadDiskSpace(data_dir_);
  if (!space.ok()) {
    if (!data_dir_failing_.exchange(true)) {
      LOG_WARN("metrics: {}; the data dir gauges keep their last values", space.status().message());
    }
    return;
  }
  data_dir_failing_.store(false);
  data_dir_available_->Set(static_cast<double>(space->available_bytes));
  data_dir_capacity_->Set(static_cast<double>(space->capacity_bytes));
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

void CoordinatorMetrics::GcDeleted(int64_t checkpoints, uint64_t bytes) {
  gc_checkpoints_deleted_->Increment(static_cast<double>(checkpoints));
  gc_bytes_freed_->Increment(static_cast<double>(bytes));
}

void CoordinatorMetrics::StoreWriteDuration(absl::Duration took) {
  store_write_duration_->Observe(absl::ToDoubleSeconds(took));
}

void CoordinatorMetrics::JobRunDuration(v1::JobState final_state, absl::Duration ran_for) {
  job_run_duration_->Add({{"state", StateLabel(final_state)}}, RunBuckets())
      .Observe(absl::ToDoubleSeconds(std::max(ran_for, absl::ZeroDuration())));
}

void CoordinatorMetrics::SchedulerPass(absl::Duration took) {
  scheduler_pass_->Observe(absl::ToDoubleSeconds(took));
}

void CoordinatorMetrics::LeaseExpired() { lease_expiries_->Increment(); }

void CoordinatorMetrics::IdempotentReplay() { idempotent_replays_->Increment(); }

void CoordinatorMetrics::JobPreempted(StopKind why) { preemptions_.at(why)->Increment(); }
void CoordinatorMetrics::AuthReloaded(bool ok) {
  (ok ? auth_reloads_ : auth_reload_failures_)->Increment();
}

void CoordinatorMetrics::QueueGauges(const std::map<int32_t, int64_t>& queued_by_priority,
                                     absl::Duration oldest_queued) {
  std::map<std::string, int64_t> by_label;
  for (const auto& [priority, count] : queued_by_priority) by_label[PriorityLabel(priority)] += count;
  // Every range is set, so a range that emptied goes back to 0.
  for (const auto& [label, gauge] : queued_by_priority_) {
    auto it = by_label.find(label);
    gauge->Set(it == by_label.end() ? 0.0 : static_cast<double>(it->second));
  }
  oldest_queued_->Set(absl::ToDoubleSeconds(std::max(oldest_queued, absl::ZeroDuration())));
}

void CoordinatorMetrics::StoredCheckpoints(int64_t checkpoints, uint64_t bytes) {
  artifacts_->Set(static_cast<double>(checkpoints));
  checkpoint_stored_bytes_->Set(static_cast<double>(bytes));
}

prometheus::Gauge* CoordinatorMetrics::OpenStreams(StreamKind kind) const {
  return kind == StreamKind::kWatch ? open_watch_streams_ : open_command_streams_;
}

void CoordinatorMetrics::StreamOpened(StreamKind kind) { OpenStreams(kind)->Increment(); }

void CoordinatorMetrics::StreamClosed(StreamKind kind) { OpenStreams(kind)->Decrement(); }

void CoordinatorMetrics::RpcFinished(absl::string_view method, absl::string_view code,
                                     absl::Duration latency) {
  std::map<std::string, std::string> labels = {{"method", std::string(method)},
                                               {"code", std::string(code)}};
  rpc_requests_->Add(labels).Increment();
  rpc_duration_->Add(labels, RpcBuckets()).Observe(absl::ToDoubleSeconds(latency));
}

}  // namespace loratrf::server

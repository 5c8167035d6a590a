// The coordinator's metrics, all defined here (docs/architecture.md, convention 7): what the core
// counts (CoreMetrics) and what the gRPC layer counts (RpcMetrics), as Prometheus families with the
// `loratrf_` prefix, served on --metrics-listen by prometheus-cpp's Exposer. The names are a
// contract: Prometheus rules and Grafana dashboards (deploy/) query them as written here.
//
//   loratrf_jobs_submitted_total                          counter  new jobs (not idempotent repeats)
//   loratrf_jobs_finished_total{state}                    counter  succeeded|failed|cancelled
//   loratrf_job_restarts_total                            counter
//   loratrf_workers_lost_total                            counter
//   loratrf_lease_expiries_total                          counter  worker leases that lapsed
//   loratrf_idempotent_replays_total                      counter  submits answered with the job
//                                                                  their idempotency key named
//   loratrf_checkpoint_bytes_total                        counter  committed checkpoint bytes
//   loratrf_preemptions_total{reason}                     counter  stops with checkpoint asked,
//                                                                  priority|pause|drain
//   loratrf_store_write_failures_total                    counter  failed job store writes
//   loratrf_store_write_duration_seconds                  histogram  one job store write
//   loratrf_scheduling_latency_seconds                    histogram  QUEUED → SCHEDULED
//   loratrf_job_run_duration_seconds{state}               histogram  first RUNNING → final state,
//                                                                  succeeded|failed|cancelled
//   loratrf_scheduler_pass_duration_seconds               histogram  one scheduling pass
//   loratrf_jobs{state}                                   gauge    queued|running
//   loratrf_jobs_queued_by_priority{priority}             gauge    queued jobs by priority range
//                                                                  (PriorityLabel, 7 values)
//   loratrf_oldest_queued_job_age_seconds                 gauge    0 when nothing is queued
//   loratrf_workers_ready                                 gauge
//   loratrf_slots / loratrf_slots_free                    gauge    over READY workers
//   loratrf_gc_checkpoints_deleted_total                  counter  checkpoints garbage collection
//                                                                  deleted (retention, delete, TTL)
//   loratrf_gc_bytes_freed_total                          counter  their files' bytes
//   loratrf_checkpoint_stored_bytes                       gauge    committed checkpoint files held
//   loratrf_artifacts                                     gauge    committed checkpoints held
//   loratrf_data_dir_available_bytes                      gauge    statvfs of --data-dir, read at
//   loratrf_data_dir_capacity_bytes                       gauge    every scrape (WatchDataDir)
//   loratrf_open_streams{kind}                            gauge    watch|commands
//   loratrf_grpc_requests_total{method,code}              counter
//   loratrf_grpc_request_duration_seconds{method,code}    histogram  (a stream's whole life)
//
// Labels take values from fixed sets only: never a job id, a job name or a caller's string. Every
// series of a fixed label set exists (at 0) from the start, so that rate() and absent() work
// before the first event.
//
// Threading: thread-safe (prometheus-cpp's families and metrics are). WatchDataDir and Serve are
// called once, before the metrics are shared.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "server/core/job_service.h"
#include "server/grpc/rpc_metrics.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace loratrf::server {

class CoordinatorMetrics final : public CoreMetrics, public RpcMetrics {
 public:
  CoordinatorMetrics();
  ~CoordinatorMetrics() override;

  // Serves /metrics on `listen` (HOST:PORT, "[::1]:PORT" for IPv6; port 0 picks a free one).
  // Unavailable when the address cannot be bound.
  absl::Status Serve(const std::string& listen);
  // The port Serve() bound, or 0.
  int port() const { return port_; }
  // The text exposition format, as /metrics serves it (for tests and logs).
  std::string Text() const;
  // Reports the file system of `data_dir` (statvfs) as loratrf_data_dir_available_bytes and
  // loratrf_data_dir_capacity_bytes, read afresh at every scrape (and every Text()).
  void WatchDataDir(const std::string& data_dir);

  // The label value of loratrf_jobs_queued_by_priority for a spec.priority. Priorities range
  // over [-limits::kMaxPriority, limits::kMaxPriority] (2001 values), too many for one series
  // each, so they are grouped into 7 fixed ranges: "-1000..-101", "-100..-11", "-10..-1", "0",
  // "1..10", "11..100", "101..1000" (with kMaxPriority 1000). Out-of-range values (the spec
  // validation refuses them) fall into the outermost ranges.
  static std::string PriorityLabel(int32_t priority);

  // CoreMetrics
  void JobSubmitted() override;
  void JobFinished(v1::JobState final_state) override;
  void JobRestarted() override;
  void WorkerLost() override;
  void SchedulingLatency(absl::Duration queued_for) override;
  void Gauges(int64_t queued, int64_t running, int64_t workers_ready, int64_t slots_total,
              int64_t slots_free) override;
  void CheckpointBytes(uint64_t bytes) override;
  void StoreWriteFailed() override;
  void StoreWriteDuration(absl::Duration took) override;
  void JobRunDuration(v1::JobState final_state, absl::Duration ran_for) override;
  void SchedulerPass(absl::Duration took) override;
  void LeaseExpired() override;
  void IdempotentReplay() override;
  void QueueGauges(const std::map<int32_t, int64_t>& queued_by_priority,
                   absl::Duration oldest_queued) override;
  void StoredCheckpoints(int64_t checkpoints, uint64_t bytes) override;
  void GcDeleted(int64_t checkpoints, uint64_t bytes) override;
  void JobPreempted(StopKind why) override;

  // The token file was re-read (SIGHUP): `ok` false when it did not parse and the previous
  // credentials stayed (loratrf_auth_reloads_total, loratrf_auth_reload_failures_total).
  void AuthReloaded(bool ok);

  // RpcMetrics
  void RpcFinished(absl::string_view method, absl::string_view code,
                   absl::Duration latency) override;
  void StreamOpened(StreamKind kind) override;
  void StreamClosed(StreamKind kind) override;

 private:
  class ScrapeView;  // the registry, with the data dir read just before each collection

  // Reads statvfs(data_dir) into the data dir gauges; on failure keeps the last values and
  // logs (once until it works again).
  void RefreshDataDir() const;
  prometheus::Gauge* OpenStreams(StreamKind kind) const;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<ScrapeView> scrape_view_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  std::string data_dir_;  // set once by WatchDataDir before the metrics are shared; empty: none
  mutable std::atomic<bool> data_dir_failing_{false};

  // Families own their metrics; the pointers below are into them (stable for the registry's
  // life).
  prometheus::Counter* jobs_submitted_;
  prometheus::Family<prometheus::Counter>* jobs_finished_;
  prometheus::Counter* job_restarts_;
  prometheus::Counter* workers_lost_;
  prometheus::Counter* checkpoint_bytes_;
  prometheus::Counter* store_write_failures_;
  prometheus::Counter* gc_checkpoints_deleted_;
  prometheus::Counter* gc_bytes_freed_;
  prometheus::Histogram* scheduling_latency_;
  prometheus::Gauge* jobs_queued_;
  prometheus::Gauge* jobs_running_;
  prometheus::Gauge* workers_ready_;
  prometheus::Gauge* slots_;
  prometheus::Gauge* slots_free_;
  prometheus::Family<prometheus::Counter>* rpc_requests_;
  prometheus::Family<prometheus::Histogram>* rpc_duration_;
  prometheus::Counter* lease_expiries_;
  prometheus::Counter* idempotent_replays_;
  std::map<StopKind, prometheus::Counter*> preemptions_;  // by reason label
  prometheus::Counter* auth_reloads_;
  prometheus::Counter* auth_reload_failures_;
  prometheus::Histogram* store_write_duration_;
  prometheus::Family<prometheus::Histogram>* job_run_duration_;
  prometheus::Histogram* scheduler_pass_;
  std::map<std::string, prometheus::Gauge*> queued_by_priority_;  // by PriorityLabel
  prometheus::Gauge* oldest_queued_;
  prometheus::Gauge* checkpoint_stored_bytes_;
  prometheus::Gauge* artifacts_;
  prometheus::Gauge* data_dir_available_;
  prometheus::Gauge* data_dir_capacity_;
  prometheus::Gauge* open_watch_streams_;
  prometheus::Gauge* open_command_streams_;
};

}  // namespace loratrf::server

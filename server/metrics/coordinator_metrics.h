// The coordinator's metrics, all defined here (docs/architecture.md, convention 7): what the core
// counts (CoreMetrics) and what the gRPC layer counts (RpcMetrics), as Prometheus families with the
// `loratrf_` prefix, served on --metrics-listen by prometheus-cpp's Exposer.
//
//   loratrf_jobs_submitted_total                          counter
//   loratrf_jobs_finished_total{state}                    counter  succeeded|failed|cancelled
//   loratrf_job_restarts_total                            counter
//   loratrf_workers_lost_total                            counter
//   loratrf_checkpoint_bytes_total                        counter  committed checkpoint bytes
//   loratrf_store_write_failures_total                    counter  failed job store writes
//   loratrf_scheduling_latency_seconds                    histogram  QUEUED → SCHEDULED
//   loratrf_jobs{state}                                   gauge    queued|running
//   loratrf_workers_ready                                 gauge
//   loratrf_slots / loratrf_slots_free                    gauge    over READY workers
//   loratrf_grpc_requests_total{method,code}              counter
//   loratrf_grpc_request_duration_seconds{method,code}    histogram  (a stream's whole life)
//
// Labels take values from fixed sets only: never a job id, a job name or a caller's string.
//
// Threading: thread-safe (prometheus-cpp's families and metrics are). Serve() is called once,
// before the metrics are shared.
#pragma once

#include <cstdint>
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

  // RpcMetrics
  void RpcFinished(absl::string_view method, absl::string_view code,
                   absl::Duration latency) override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;

  // Families own their metrics; the pointers below are into them (stable for the registry's
  // life).
  prometheus::Counter* jobs_submitted_;
  prometheus::Family<prometheus::Counter>* jobs_finished_;
  prometheus::Counter* job_restarts_;
  prometheus::Counter* workers_lost_;
  prometheus::Counter* checkpoint_bytes_;
  prometheus::Counter* store_write_failures_;
  prometheus::Histogram* scheduling_latency_;
  prometheus::Gauge* jobs_queued_;
  prometheus::Gauge* jobs_running_;
  prometheus::Gauge* workers_ready_;
  prometheus::Gauge* slots_;
  prometheus::Gauge* slots_free_;
  prometheus::Family<prometheus::Counter>* rpc_requests_;
  prometheus::Family<prometheus::Histogram>* rpc_duration_;
};

}  // namespace loratrf::server

#include "worker/agent/agent_metrics.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "common/disk_space.h"

namespace loratrf::worker::agent {
namespace {

class NullAgentMetrics : public AgentMetrics {
 public:
  void SetSlots(int64_t) override {}
  void Registered() override {}
  void HeartbeatFailed() override {}
  void AttemptFinished(const std::string&) override {}
  void RanksRunning(int64_t) override {}
  void EventsReported(uint64_t) override {}
  void ReportFailed() override {}
  void CheckpointUploaded(uint64_t) override {}
  void CheckpointDownloaded(uint64_t) override {}
  void CheckpointUploadFailed() override {}
  std::unique_ptr<AttemptSeries> StartAttempt(const std::string&, uint32_t) override {
    return std::make_unique<NullSeries>();
  }

 private:
  class NullSeries : public AttemptSeries {
   public:
    void Observe(int, const contract::RankRow&) override {}
    void CheckpointUploaded(double) override {}
  };
};

// A minimal HTTP/1.0 responder for GET /metrics. prometheus-cpp's Exposer (civetweb) cannot be
// used in this binary: civetweb starts its threads with a small fixed stack, and libtorch's
// static TLS does not fit in it, so pthread_create fails.
//
// Threading: one serving thread; the constructor and destructor run on the owner's thread.
class MetricsHttpServer {
 public:
  // `refresh` runs before each scrape is collected (values read on demand).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Listen(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry,
      std::function<void()> refresh) {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--metrics-listen ", listen, ": expected HOST:PORT"));
    }
    std::string host = listen.substr(0, colon);
    const std::string port = listen.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
        rc != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metrics-listen ", listen, ": ", ::gai_strerror(rc)));
    }
    int fd = -1;
    std::string error = "no address";
    for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
      fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
        error = std::strerror(errno);
        ::close(fd);
        fd = -1;
      }
    }
    ::freeaddrinfo(found);
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--metrics-listen ", listen, ": ", error));
    }
    return std::unique_ptr<MetricsHttpServer>(
        new MetricsHttpServer(fd, std::move(registry), std::move(refresh)));
  }
  ~MetricsHttpServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

 private:
  MetricsHttpServer(int fd, std::shared_ptr<prometheus::Registry> registry,
                    std::function<void()> refresh)
      : fd_(fd), registry_(std::move(registry)), refresh_(std::move(refresh)),
        thread_([this] { Serve(); }) {}

  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      Answer(client);
      ::close(client);
    }
  }

  void Answer(int client) {
    std::string request;
    char buffer[2048];
    while (request.size() < 8192 && request.find("\r\n\r\n") == std::string::npos) {
      pollfd p{client, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return;
      ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
      if (n <= 0) return;
      request.append(buffer, static_cast<size_t>(n));
    }
    std::string status = "200 OK", body;
    if (request.rfind("GET /metrics", 0) == 0) {
      if (refresh_) refresh_();
      body = prometheus::TextSerializer().Serialize(registry_->Collect());
    } else {
      status = "404 Not Found";
      body = "try /metrics\n";
    }
    std::string response = absl::StrCat("HTTP/1.0 ", status,
                                        "\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                        "Content-Length: ", body.size(),
                                        "\r\nConnection: close\r\n\r\n", body);
    size_t sent = 0;
    while (sent < response.size()) {
      ssize_t n = ::send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  const int fd_;
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::function<void()> refresh_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Buckets for step times (10 ms to 2 minutes) and for checkpoint saves and uploads (100 ms to
// 10 minutes).
const prometheus::Histogram::BucketBoundaries kStepBuckets = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
const prometheus::Histogram::BucketBoundaries kTransferBuckets = {
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

// The training families, one series per running rank (labels job_id, attempt, rank).
struct TrainingFamilies {
  explicit TrainingFamilies(prometheus::Registry& r)
      : steps(prometheus::BuildCounter().Name("loratrf_train_steps_total")
                  .Help("Optimizer steps done by the rank in this attempt").Register(r)),
        tokens(prometheus::BuildCounter().Name("loratrf_train_tokens_total")
                   .Help("Input tokens the rank processed").Register(r)),
        samples(prometheus::BuildCounter().Name("loratrf_train_samples_total")
                    .Help("Examples the rank processed").Register(r)),
        step_duration(prometheus::BuildHistogram().Name("loratrf_train_step_duration_seconds")
                          .Help("Wall time of one optimizer step").Register(r)),
        data_wait(prometheus::BuildCounter().Name("loratrf_train_data_wait_seconds_total")
                      .Help("Time the rank spent collating and copying batches").Register(r)),
        allreduce(prometheus::BuildCounter().Name("loratrf_train_allreduce_seconds_total")
                      .Help("Time the rank waited for gradient all-reduce after backward")
                      .Register(r)),
        step(prometheus::BuildGauge().Name("loratrf_train_step")
                 .Help("The step the rank last finished").Register(r)),
        total_steps(prometheus::BuildGauge().Name("loratrf_train_total_steps")
                        .Help("Steps the job runs").Register(r)),
        last_step_time(prometheus::BuildGauge().Name("loratrf_train_last_step_timestamp_seconds")
                           .Help("Unix time the rank last finished a step").Register(r)),
        loss(prometheus::BuildGauge().Name("loratrf_train_loss")
                 .Help("Training loss of the last step (mean over the global batch)")
                 .Register(r)),
        learning_rate(prometheus::BuildGauge().Name("loratrf_train_learning_rate")
                          .Help("Learning rate of the last step").Register(r)),
        grad_norm(prometheus::BuildGauge().Name("loratrf_train_grad_norm")
                      .Help("Gradient norm of the last step, before clipping").Register(r)),
        eval_loss(prometheus::BuildGauge().Name("loratrf_train_eval_loss")
                      .Help("Loss of the last evaluation").Register(r)),
        eval_accuracy(prometheus::BuildGauge().Name("loratrf_train_eval_accuracy")
                          .Help("Accuracy of the last evaluation, 0 to 1").Register(r)),
        checkpoint_save(prometheus::BuildHistogram()
                            .Name("loratrf_train_checkpoint_save_duration_seconds")
                            .Help("Writing one checkpoint").Register(r)),
        memory(prometheus::BuildGauge().Name("loratrf_train_memory_bytes")
                   .Help("Memory in use and at peak: the GPU's (device=cuda) or the rank "
                         "process's resident set (device=cpu)")
                   .Register(r)),
        flops(prometheus::BuildGauge().Name("loratrf_train_model_flops_per_second")
                  .Help("Model FLOP/s of the last step (docs/metrics.md has the formula)")
                  .Register(r)),
        mfu(prometheus::BuildGauge().Name("loratrf_train_mfu_ratio")
                .Help("Model FLOP/s over the device's peak dense bf16 FLOP/s, where known")
                .Register(r)),
        upload(prometheus::BuildHistogram()
                   .Name("loratrf_agent_checkpoint_upload_duration_seconds")
                   .Help("Uploading one checkpoint to the coordinator").Register(r)) {}

  prometheus::Family<prometheus::Counter>& steps;
  prometheus::Family<prometheus::Counter>& tokens;
  prometheus::Family<prometheus::Counter>& samples;
  prometheus::Family<prometheus::Histogram>& step_duration;
  prometheus::Family<prometheus::Counter>& data_wait;
  prometheus::Family<prometheus::Counter>& allreduce;
  prometheus::Family<prometheus::Gauge>& step;
  prometheus::Family<prometheus::Gauge>& total_steps;
  prometheus::Family<prometheus::Gauge>& last_step_time;
  prometheus::Family<prometheus::Gauge>& loss;
  prometheus::Family<prometheus::Gauge>& learning_rate;
  prometheus::Family<prometheus::Gauge>& grad_norm;
  prometheus::Family<prometheus::Gauge>& eval_loss;
  prometheus::Family<prometheus::Gauge>& eval_accuracy;
  prometheus::Family<prometheus::Histogram>& checkpoint_save;
  prometheus::Family<prometheus::Gauge>& memory;
  prometheus::Family<prometheus::Gauge>& flops;
  prometheus::Family<prometheus::Gauge>& mfu;
  prometheus::Family<prometheus::Histogram>& upload;
};

// One attempt's series. Each metric is added on first use and removed from its family when
// the attempt's series are destroyed.
class PrometheusAttemptSeries : public AttemptSeries {
 public:
  PrometheusAttemptSeries(TrainingFamilies& families, std::string job_id, uint32_t attempt)
      : f_(families), job_id_(std::move(job_id)), attempt_(std::to_string(attempt)) {}
  ~PrometheusAttemptSeries() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& remove : removals_) remove();
  }

  void Observe(int rank, const contract::RankRow& row) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::map<std::string, std::string> labels = Labels(rank);
    if (const auto* step = std::get_if<contract::RankStepRow>(&row)) {
      Get(f_.steps, labels).Increment();
      Get(f_.tokens, labels).Increment(static_cast<double>(step->tokens));
      Get(f_.samples, labels).Increment(static_cast<double>(step->samples));
      Get(f_.step_duration, labels, kStepBuckets).Observe(step->step_seconds);
      Get(f_.data_wait, labels).Increment(std::max(0.0, step->data_wait_seconds));
      Get(f_.allreduce, labels).Increment(std::max(0.0, step->allreduce_seconds));
      Get(f_.step, labels).Set(static_cast<double>(step->step));
      Get(f_.total_steps, labels).Set(static_cast<double>(step->total_steps));
      Get(f_.last_step_time, labels).Set(step->time);
      Get(f_.loss, labels).Set(step->loss);
      Get(f_.learning_rate, labels).Set(step->learning_rate);
      Get(f_.grad_norm, labels).Set(step->grad_norm);
      std::map<std::string, std::string> in_use = labels, peak = labels;
      in_use.insert({{"kind", "in_use"}, {"device", step->memory_device}});
      peak.insert({{"kind", "peak"}, {"device", step->memory_device}});
      Get(f_.memory, in_use).Set(static_cast<double>(step->memory_bytes));
      Get(f_.memory, peak).Set(static_cast<double>(step->memory_peak_bytes));
      Get(f_.flops, labels).Set(step->model_flops_per_second);
      if (step->mfu) Get(f_.mfu, labels).Set(*step->mfu);
    } else if (const auto* eval = std::get_if<contract::RankEvalRow>(&row)) {
      Get(f_.eval_loss, labels).Set(eval->loss);
      Get(f_.eval_accuracy, labels).Set(eval->accuracy);
    } else if (const auto* checkpoint = std::get_if<contract::RankCheckpointRow>(&row)) {
      Get(f_.checkpoint_save, labels, kTransferBuckets).Observe(checkpoint->save_seconds);
    }
  }

  void CheckpointUploaded(double seconds) override {
    std::lock_guard<std::mutex> lock(mutex_);
    Get(f_.upload, {{"job_id", job_id_}, {"attempt", attempt_}}, kTransferBuckets)
        .Observe(seconds);
  }

 private:
  std::map<std::string, std::string> Labels(int rank) const {
    return {{"job_id", job_id_}, {"attempt", attempt_}, {"rank", std::to_string(rank)}};
  }

  // The family's metric with these labels, added (and its removal recorded) the first time.
  template <typename Metric, typename... Args>
  Metric& Get(prometheus::Family<Metric>& family, const std::map<std::string, std::string>& labels,
              Args&&... args) {
    const bool added = !family.Has(labels);
    Metric& metric = family.Add(labels, std::forward<Args>(args)...);
    if (added) removals_.push_back([&family, &metric] { family.Remove(&metric); });
    return metric;
  }

  TrainingFamilies& f_;
  const std::string job_id_;
  const std::string attempt_;
  std::mutex mutex_;
  std::vector<std::function<void()>> removals_;
};

// prometheus-cpp's metrics are thread-safe; the members are set up once in the constructor.
class PrometheusAgentMetrics : public AgentMetrics {
 public:
  explicit PrometheusAgentMetrics(std::shared_ptr<prometheus::Registry> registry)
      : registry_(std::move(registry)) {
    using prometheus::BuildCounter;
    using prometheus::BuildGauge;
    slots_ = &BuildGauge().Name("loratrf_agent_slots").Help("Slots this worker registers")
                  .Register(*registry_).Add({});
    ranks_ = &BuildGauge().Name("loratrf_agent_running_ranks").Help("Rank processes running")
                  .Register(*registry_).Add({});
    registrations_ = &BuildCounter().Name("loratrf_agent_registrations_total")
                          .Help("Successful registrations with the coordinator")
                          .Register(*registry_).Add({});
    heartbeat_failures_ = &BuildCounter().Name("loratrf_agent_heartbeat_failures_total")
                               .Help("Heartbeats that failed").Register(*registry_).Add({});
    auto& attempts = BuildCounter().Name("loratrf_agent_attempts_total")
                         .Help("Attempts that ended on this worker, by outcome")
                         .Register(*registry_);
    for (const char* outcome :
         {"succeeded", "failed", "restarting", "preempted", "cancelled", "stale", "stopped"}) {
      attempts_[outcome] = &attempts.Add({{"outcome", outcome}});
    }
    events_ = &BuildCounter().Name("loratrf_agent_events_reported_total")
                   .Help("Job events the coordinator accepted").Register(*registry_).Add({});
    report_failures_ = &BuildCounter().Name("loratrf_agent_report_failures_total")
                            .Help("ReportEvents calls that failed").Register(*registry_).Add({});
    uploaded_ = &BuildCounter().Name("loratrf_agent_checkpoint_upload_bytes_total")
                     .Help("Checkpoint bytes uploaded").Register(*registry_).Add({});
    downloaded_ = &BuildCounter().Name("loratrf_agent_checkpoint_download_bytes_total")
                       .Help("Checkpoint bytes downloaded").Register(*registry_).Add({});
    upload_failures_ = &BuildCounter().Name("loratrf_agent_checkpoint_upload_failures_total")
                            .Help("Checkpoint uploads that failed (retried or given up)")
                            .Register(*registry_).Add({});
    work_dir_available_ = &BuildGauge().Name("loratrf_agent_work_dir_available_bytes")
                               .Help("Bytes free for this agent in its --work-dir's file system")
                               .Register(*registry_).Add({});
    work_dir_capacity_ = &BuildGauge().Name("loratrf_agent_work_dir_capacity_bytes")
                              .Help("Size of the file system holding --work-dir")
                              .Register(*registry_).Add({});
    training_ = std::make_unique<TrainingFamilies>(*registry_);
  }
  // Reads the work dir's space now (at each scrape).
  // A failed read keeps the last values.
  void RefreshWorkDir(const std::string& work_dir) {
    absl::StatusOr<DiskSpace> space = ReadDiskSpace(work_dir);
    if (!space.ok()) return;
    work_dir_available_->Set(static_cast<double>(space->available_bytes));
    work_dir_capacity_->Set(static_cast<double>(space->capacity_bytes));
  }
  void Serve(std::unique_ptr<MetricsHttpServer> server) { server_ = std::move(server); }
  void SetSlots(int64_t slots) override { slots_->Set(static_cast<double>(slots)); }
  void Registered() override { registrations_->Increment(); }
  void HeartbeatFailed() override { heartbeat_failures_->Increment(); }
  void AttemptFinished(const std::string& outcome) override {
    auto it = attempts_.find(outcome);
    if (it != attempts_.end()) it->second->Increment();
  }
  void RanksRunning(int64_t delta) override { ranks_->Increment(static_cast<double>(delta)); }
  void EventsReported(uint64_t count) override { events_->Increment(static_cast<double>(count)); }
  void ReportFailed() override { report_failures_->Increment(); }
  void CheckpointUploaded(uint64_t bytes) override { uploaded_->Increment(static_cast<double>(bytes)); }
  void CheckpointDownloaded(uint64_t bytes) override {
    downloaded_->Increment(static_cast<double>(bytes));
  }
  void CheckpointUploadFailed() override { upload_failures_->Increment(); }
  std::unique_ptr<AttemptSeries> StartAttempt(const std::string& job_id,
                                              uint32_t attempt) override {
    return std::make_unique<PrometheusAttemptSeries>(*training_, job_id, attempt);
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> server_;  // last: stops before the metrics go
  prometheus::Gauge* slots_;
  prometheus::Gauge* ranks_;
  prometheus::Counter* registrations_;
  prometheus::Counter* heartbeat_failures_;
  std::map<std::string, prometheus::Counter*> attempts_;
  prometheus::Counter* events_;
  prometheus::Counter* report_failures_;
  prometheus::Counter* uploaded_;
  prometheus::Counter* downloaded_;
  prometheus::Counter* upload_failures_;
  prometheus::Gauge* work_dir_available_;
  prometheus::Gauge* work_dir_capacity_;
  std::unique_ptr<TrainingFamilies> training_;
};

}  // namespace

std::unique_ptr<AgentMetrics> MakeNullAgentMetrics() { return std::make_unique<NullAgentMetrics>(); }

absl::StatusOr<std::unique_ptr<AgentMetrics>> MakePrometheusAgentMetrics(
    const std::string& listen, const std::string& work_dir) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = std::make_unique<PrometheusAgentMetrics>(registry);
  PrometheusAgentMetrics* raw = metrics.get();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server = MetricsHttpServer::Listen(
      listen, registry, [raw, work_dir] { raw->RefreshWorkDir(work_dir); });
  if (!server.ok()) return server.status();
  metrics->Serve(*std::move(server));
  return std::unique_ptr<AgentMetrics>(std::move(metrics));
}

}  // namespace loratrf::worker::agent

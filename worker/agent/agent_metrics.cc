#include "worker/agent/agent_metrics.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"

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
};

// A minimal HTTP/1.0 responder for GET /metrics. prometheus-cpp's Exposer (civetweb) cannot be
// used in this binary: civetweb starts its threads with a small fixed stack, and libtorch's
// static TLS does not fit in it, so pthread_create fails.
//
// Threading: one serving thread; the constructor and destructor run on the owner's thread.
class MetricsHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Listen(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry) {
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
    return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(fd, std::move(registry)));
  }
  ~MetricsHttpServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

 private:
  MetricsHttpServer(int fd, std::shared_ptr<prometheus::Registry> registry)
      : fd_(fd), registry_(std::move(registry)), thread_([this] { Serve(); }) {}

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
  std::atomic<bool> stop_{false};
  std::thread thread_;
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
         {"succeeded", "failed", "restarting", "cancelled", "stale", "stopped"}) {
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
};

}  // namespace

std::unique_ptr<AgentMetrics> MakeNullAgentMetrics() { return std::make_unique<NullAgentMetrics>(); }

absl::StatusOr<std::unique_ptr<AgentMetrics>> MakePrometheusAgentMetrics(const std::string& listen) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = std::make_unique<PrometheusAgentMetrics>(registry);
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Listen(listen, registry);
  if (!server.ok()) return server.status();
  metrics->Serve(*std::move(server));
  return std::unique_ptr<AgentMetrics>(std::move(metrics));
}

}  // namespace loratrf::worker::agent

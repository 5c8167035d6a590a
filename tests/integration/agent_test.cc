// `loratrf-worker agent` against a fake coordinator: a small in-test WorkerService/JobService on
// 127.0.0.1 (the real coordinator has its own end-to-end tests). The agent is the real binary
// and runs real rank processes on a tiny model: it registers its slots, heartbeats, runs an
// assignment (RUNNING, train/eval rows, checkpoint uploads with correct sha256s, SUCCEEDED
// after the final upload), counts an upload answered ALREADY_EXISTS (a retry whose reply was
// lost) as uploaded, resumes from a downloaded checkpoint, supersedes a running attempt with a
// newer one without holding up other commands, kills its ranks on a Cancellation or a
// stale-attempt refusal, leaves no orphans when SIGKILLed, registers again when its lease is
// lost, and refuses bad flags. On SIGTERM it drains (heartbeats say so, the ranks commit a
// checkpoint, node 0 uploads it, RESTARTING preempted is reported, exit 0); a checkpoint_first
// Cancellation does the same for one attempt while the agent carries on; and it deletes a job's
// work dir after success or cancellation, or keep_failed_for after a failure.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "proto/spec/job_spec.h"
#include "tests/integration/subprocess.h"

namespace loratrf {
namespace {

namespace fs = std::filesystem;
using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::kPython;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::TempDir;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr char kToken[] = "worker-secret-1";

// ---------------------------------------------------------------------------------------------
// The fake coordinator.

struct Upload {
  v1::UploadCheckpointRequest::Header header;
  std::map<std::string, std::string> files;  // path → bytes
  bool verified = false;                      // every size and sha256 matched the header
  int order = 0;                              // position among uploads and reports
};

struct FakeState {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::RegisterRequest> registrations;
  uint64_t lease = 0;
  int heartbeats = 0;
  int draining_heartbeats = 0;  // heartbeats with draining set
  std::vector<v1::RunningAttempt> last_running;
  std::vector<uint64_t> stream_leases;  // lease of each StreamCommands call
  std::deque<v1::WorkerCommand> commands;
  // (job, attempt) → accepted events, in order
  std::map<std::pair<std::string, uint32_t>, std::vector<v1::JobEvent>> events;
  std::map<std::pair<std::string, uint32_t>, int> succeeded_order;
  std::map<std::pair<std::string, uint32_t>, int> restarting_order;
  std::vector<Upload> uploads;
  std::map<std::string, Upload> stored;  // checkpoint id → upload, for DownloadCheckpoint
  std::set<std::string> stale_jobs;      // ReportEvents answers FAILED_PRECONDITION
  // Uploads of these (step, final) are stored, then answered UNAVAILABLE as if the reply was
  // lost; a repeat of such an upload is answered ALREADY_EXISTS, as the coordinator does.
  std::set<std::pair<uint64_t, bool>> lose_upload_reply;
  std::set<std::string> reply_lost;      // checkpoint ids whose reply was lost
  std::vector<std::string> already_exists;  // ids answered ALREADY_EXISTS
  bool lose_lease = false;               // the next heartbeat answers FAILED_PRECONDITION
  int counter = 0;
  bool shutting_down = false;
  int unauthenticated = 0;

  std::vector<v1::JobEvent> Events(const std::string& job, uint32_t attempt) {
    std::lock_guard<std::mutex> lock(mu);
    return events[{job, attempt}];
  }
};

grpc::Status CheckToken(grpc::ServerContext* context, FakeState& state) {
  auto it = context->client_metadata().find("authorization");
  if (it == context->client_metadata().end() ||
      std::string(it->second.data(), it->second.size()) != std::string("Bearer ") + kToken) {
    std::lock_guard<std::mutex> lock(state.mu);
    ++state.unauthenticated;
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no or wrong token");
  }
  return grpc::Status::OK;
}

class FakeWorkerService final : public v1::WorkerService::Service {
 public:
  explicit FakeWorkerService(FakeState& state) : s_(state) {}

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override {
    if (grpc::Status auth = CheckToken(context, s_); !auth.ok()) return auth;
    std::lock_guard<std::mutex> lock(s_.mu);
    s_.registrations.push_back(*request);
    response->set_lease_id(++s_.lease * 100);
    response->mutable_lease_ttl()->set_seconds(3);
    response->mutable_heartbeat_interval()->set_nanos(200'000'000);
    s_.cv.notify_all();
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse*) override {
    if (grpc::Status auth = CheckToken(context, s_); !auth.ok()) return auth;
    std::lock_guard<std::mutex> lock(s_.mu);
    if (request->lease_id() != s_.lease * 100 || s_.lose_lease) {
      s_.lose_lease = false;
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the lease has lapsed");
    }
    ++s_.heartbeats;
    if (request->draining()) ++s_.draining_heartbeats;
    s_.last_running.assign(request->running().begin(), request->running().end());
    s_.cv.notify_all();
    return grpc::Status::OK;
  }

  grpc::Status StreamCommands(grpc::ServerContext* context,
                              const v1::StreamCommandsRequest* request,
                              grpc::ServerWriter<v1::WorkerCommand>* writer) override {
    if (grpc::Status auth = CheckToken(context, s_); !auth.ok()) return auth;
    std::unique_lock<std::mutex> lock(s_.mu);
    s_.stream_leases.push_back(request->lease_id());
    s_.cv.notify_all();
    while (!context->IsCancelled() && !s_.shutting_down) {
      if (request->lease_id() != s_.lease * 100) return grpc::Status::OK;  // replaced
      if (s_.commands.empty()) {
        s_.cv.wait_for(lock, std::chrono::milliseconds(50));
        continue;
      }
      v1::WorkerCommand command = s_.commands.front();
      s_.commands.pop_front();
      lock.unlock();
      writer->Write(command);
      lock.lock();
    }
    return grpc::Status::OK;
  }

  grpc::Status ReportEvents(grpc::ServerContext* context, const v1::ReportEventsRequest* request,
                            v1::ReportEventsResponse* response) override {
    if (grpc::Status auth = CheckToken(context, s_); !auth.ok()) return auth;
    std::lock_guard<std::mutex> lock(s_.mu);
    if (s_.stale_jobs.count(request->job_id())) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "attempt is not current");
    }
    std::vector<v1::JobEvent>& accepted = s_.events[{request->job_id(), request->attempt()}];
    // Deduplicate by the attempt-local index, as the coordinator does.
    for (int i = 0; i < request->events_size(); ++i) {
      const uint64_t index = request->first_report_index() + static_cast<uint64_t>(i);
      if (index < accepted.size()) continue;
      if (index > accepted.size()) break;  // a gap: not accepted
      accepted.push_back(request->events(i));
      if (request->events(i).has_state_change() &&
          request->events(i).state_change().to() == v1::JOB_STATE_SUCCEEDED) {
        s_.succeeded_order[{request->job_id(), request->attempt()}] = ++s_.counter;
      }
      if (request->events(i).has_state_change() &&
          request->events(i).state_change().to() == v1::JOB_STATE_RESTARTING) {
        s_.restarting_order[{request->job_id(), request->attempt()}] = ++s_.counter;
      }
    }
    response->set_next_report_index(accepted.size());
    s_.cv.notify_all();
    return grpc::Status::OK;
  }

  grpc::Status UploadCheckpoint(grpc::ServerContext* context,
                                grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
                                v1::UploadCheckpointResponse* response) override {
    if (grpc::Status auth = CheckToken(context, s_); !auth.ok()) return auth;
    Upload upload;
    v1::UploadCheckpointRequest part;
    if (!reader->Read(&part) || !part.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "header first");
    }
    upload.header = part.header();
    const std::string id = "ckpt-" + upload.header.job_id() + "-" +
                           std::to_string(upload.header.step()) +
                           (upload.header.final() ? "-final" : "");
    {
      std::lock_guard<std::mutex> lock(s_.mu);
      if (s_.reply_lost.count(id)) {  // answered at the header, before the chunks
        s_.already_exists.push_back(id);
        s_.cv.notify_all();
        return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                            "checkpoint " + id + " is already stored");
      }
    }
    bool in_order = true;
    while (reader->Read(&part)) {
      if (!part.has_chunk() || part.chunk().data().size() > (1u << 20)) in_order = false;
      std::string& bytes = upload.files[part.chunk().path()];
      if (part.chunk().offset() != bytes.size()) in_order = false;
      bytes += part.chunk().data();
    }
    upload.verified = in_order && upload.header.files_size() > 0;
    for (const v1::CheckpointFile& file : upload.header.files()) {
      const std::string& bytes = upload.files[file.path()];
      upload.verified &= bytes.size() == file.size_bytes() && Sha256Hex(bytes) == file.sha256();
    }
    std::lock_guard<std::mutex> lock(s_.mu);
    upload.order = ++s_.counter;
    response->mutable_checkpoint()->set_id(id);
    const bool lose_reply =
        s_.lose_upload_reply.count({upload.header.step(), upload.header.final()}) > 0;
    s_.stored[id] = upload;
    s_.uploads.push_back(std::move(upload));
    s_.cv.notify_all();
    if (lose_reply) {
      s_.reply_lost.insert(id);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the reply was lost");
    }
    return grpc::Status::OK;
  }

 private:
  FakeState& s_;
};

class FakeJobService final : public v1::JobService::Service {
 public:
  explicit FakeJobService(FakeState& state) : s_(state) {}

  grpc::Status DownloadCheckpoint(grpc::ServerContext* context,
                                  const v1::DownloadCheckpointRequest* request,
                                  grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) override {
    if (grpc::Status auth = CheckToken(context, s_); !auth.ok()) return auth;
    Upload upload;
    {
      std::lock_guard<std::mutex> lock(s_.mu);
      auto it = s_.stored.find(request->checkpoint_id());
      if (it == s_.stored.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such checkpoint");
      upload = it->second;
    }
    v1::DownloadCheckpointResponse first;
    v1::Checkpoint* checkpoint = first.mutable_checkpoint();
    checkpoint->set_id(request->checkpoint_id());
    checkpoint->set_job_id(request->job_id());
    checkpoint->set_step(upload.header.step());
    checkpoint->set_final(upload.header.final());
    *checkpoint->mutable_files() = upload.header.files();
    writer->Write(first);
    for (const v1::CheckpointFile& file : upload.header.files()) {
      const std::string& bytes = upload.files[file.path()];
      // Small chunks, so that files span several.
      for (size_t offset = 0; offset < bytes.size(); offset += 4096) {
        v1::DownloadCheckpointResponse chunk;
        chunk.mutable_chunk()->set_path(file.path());
        chunk.mutable_chunk()->set_offset(offset);
        chunk.mutable_chunk()->set_data(bytes.substr(offset, 4096));
        writer->Write(chunk);
      }
    }
    return grpc::Status::OK;
  }

 private:
  FakeState& s_;
};

class FakeCoordinator {
 public:
  FakeCoordinator() : workers_(state), jobs_(state) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&workers_);
    builder.RegisterService(&jobs_);
    server_ = builder.BuildAndStart();
  }
  ~FakeCoordinator() {
    {
      std::lock_guard<std::mutex> lock(state.mu);
      state.shutting_down = true;
      state.cv.notify_all();
    }
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void Send(v1::WorkerCommand command) {
    std::lock_guard<std::mutex> lock(state.mu);
    state.commands.push_back(std::move(command));
    state.cv.notify_all();
  }
  // Waits until `done` (called with state.mu held) is true.
  bool WaitFor(const std::function<bool()>& done, int seconds) {
    std::unique_lock<std::mutex> lock(state.mu);
    return state.cv.wait_for(lock, std::chrono::seconds(seconds), done);
  }

  FakeState state;

 private:
  FakeWorkerService workers_;
  FakeJobService jobs_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// ---------------------------------------------------------------------------------------------
// Helpers

void WriteData(const std::string& path, int examples, uint32_t seed) {
  std::mt19937 rng(seed);
  std::ofstream out(path);
  for (int i = 0; i < examples; ++i) {
    int first = 1 + static_cast<int>(rng() % 63);
    nlohmann::json ids = {first, 1 + static_cast<int>(rng() % 63)};
    out << nlohmann::json({{"input_ids", ids}, {"label", first >= 32 ? 1 : 0}}).dump() << "\n";
  }
}

// Live processes (not zombies) whose command line mentions `needle` and `--rank`.
std::vector<pid_t> RankProcesses(const std::string& needle) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) != std::string::npos && cmdline.find("--rank") != std::string::npos) {
      found.push_back(std::stoi(name));
    }
  }
  return found;
}

bool WaitUntil(const std::function<bool()>& done, int seconds) {
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  close(fd);
  return ntohs(addr.sin_port);
}

// GET http://127.0.0.1:PORT/metrics, the body.
std::string ScrapeMetrics(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\n\r\n";
    (void)!write(fd, request.data(), request.size());
    char buffer[4096];
    for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

bool HasState(const std::vector<v1::JobEvent>& events, v1::JobState state) {
  for (const v1::JobEvent& e : events) {
    if (e.has_state_change() && e.state_change().to() == state) return true;
  }
  return false;
}

std::vector<uint64_t> TrainSteps(const std::vector<v1::JobEvent>& events) {
  std::vector<uint64_t> steps;
  for (const v1::JobEvent& e : events) {
    if (e.has_train()) steps.push_back(e.train().step());
  }
  return steps;
}

class AgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new TempDir();
    ProcessResult made = RunProcess({kPython, std::string(LORATRF_SOURCE_DIR) +
                                                  "/tests/reference/make_tiny_model.py",
                                     "--arch", "llama", "--head", "causal_lm", "--output",
                                     *shared_ / "model"},
                                    "", 120);
    ASSERT_EQ(made.exit_code, 0) << made.err;
    WriteData(*shared_ / "train.jsonl", 64, 1);
    WriteData(*shared_ / "eval.jsonl", 16, 2);
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }

  void TearDown() override {
    if (agent_ > 0) {
      ::kill(agent_, SIGTERM);
      int status = 0;
      auto deadline = Clock::now() + std::chrono::seconds(15);
      while (::waitpid(agent_, &status, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
          ::kill(agent_, SIGKILL);
          ::waitpid(agent_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    if (HasFailure()) {
      std::ifstream log(dir_ / "agent.log");
      std::cerr << "---- agent log ----\n" << log.rdbuf() << "\n";
    }
  }

  v1::JobSpec Spec(const std::string& training, int slots) {
    std::string yaml = "name: tiny\nmodel: {path: " + (*shared_ / "model") +
                       "}\ntask: classification\ndata: {train: " + (*shared_ / "train.jsonl") +
                       ", eval: " + (*shared_ / "eval.jsonl") +
                       "}\nadapter: {method: loratrf, rank: 4, alpha: 8, target_modules: [q_proj, v_proj]}\n"
                       "training: {" + training + "}\nresources: {workers: 1, slots_per_worker: " +
                       std::to_string(slots) + ", device: cpu}\n";
    absl::StatusOr<v1::JobSpec> spec = spec::ParseJobSpecYaml(yaml);
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? *spec : v1::JobSpec();
  }

  v1::WorkerCommand Assignment(const std::string& job, uint32_t attempt, const v1::JobSpec& spec,
                               int ranks, const std::string& resume = "") {
    v1::WorkerCommand command;
    v1::Assignment* a = command.mutable_assign();
    a->set_job_id(job);
    a->set_attempt(attempt);
    *a->mutable_spec() = spec;
    a->set_node_rank(0);
    a->set_world_size(ranks);
    a->set_local_world_size(ranks);
    a->set_master_addr("127.0.0.1");
    a->set_master_port(ranks > 1 ? FreePort() : 0);
    a->set_resume_checkpoint_id(resume);
    return command;
  }

  // Starts the agent (stderr to agent.log) and waits for its registration.
  void StartAgent(const std::string& slots = "2", const std::vector<std::string>& extra = {}) {
    std::ofstream(dir_ / "token") << kToken << "\n";
    metrics_port_ = FreePort();
    std::vector<std::string> args = {BinaryPath("loratrf-worker"), "agent", "--coordinator",
                                     fake_.address(), "--slots", slots, "--work-dir",
                                     dir_ / "work", "--name", "node-a", "--token-file",
                                     dir_ / "token", "--device", "cpu", "--metrics-listen",
                                     "127.0.0.1:" + std::to_string(metrics_port_)};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string log = dir_ / "agent.log";
    agent_ = fork();
    if (agent_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      dup2(fd, 1);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.state.registrations.empty(); }, 30))
        << "the agent did not register";
  }

  bool RunningSeen(const std::string& job, uint32_t attempt) {
    return HasState(fake_.state.events[{job, attempt}], v1::JOB_STATE_RUNNING);
  }

  static TempDir* shared_;
  TempDir dir_;
  FakeCoordinator fake_;
  pid_t agent_ = -1;
  int metrics_port_ = 0;
};

TempDir* AgentTest::shared_ = nullptr;

// ---------------------------------------------------------------------------------------------
// The agent binary against the fake coordinator.

TEST_F(AgentTest, RunsAJobReportsMetricsUploadsCheckpointsAndResumes) {
  StartAgent("2");
  {
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    const v1::RegisterRequest& r = fake_.state.registrations[0];
    EXPECT_EQ(r.name(), "node-a");
    EXPECT_EQ(r.slots(), 2u);
    EXPECT_EQ(r.device(), v1::DEVICE_CPU);
    EXPECT_EQ(r.address(), "127.0.0.1");
    EXPECT_EQ(r.running_size(), 0);
  }
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.heartbeats >= 2; }, 10)) << "no heartbeats";

  const v1::JobSpec spec = Spec("epochs: 1, max_steps: 6, batch_size: 8, micro_batch_size: 8, "
                                "learning_rate: 1.0e-2, max_seq_len: 16, eval_every_steps: 3, "
                                "checkpoint_every_steps: 3", 1);
  fake_.Send(Assignment("job-1", 1, spec, 1));
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.succeeded_order.count({"job-1", 1}) > 0; }, 180))
      << "no SUCCEEDED";

  std::vector<v1::JobEvent> events = fake_.state.Events("job-1", 1);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().state_change().to(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(events.back().state_change().to(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_THAT(TrainSteps(events), ::testing::ElementsAre(1, 2, 3, 4, 5, 6));
  int evals = 0;
  for (const v1::JobEvent& e : events) {
    if (e.has_train()) {
      EXPECT_GT(e.train().loss(), 0);
    }
    if (e.has_eval()) {
      ++evals;
      EXPECT_EQ(e.eval().examples(), 16u);
    }
  }
  EXPECT_EQ(evals, 2) << "evaluations at steps 3 and 6";

  {
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    ASSERT_EQ(fake_.state.uploads.size(), 2u);
    const Upload& step3 = fake_.state.uploads[0];
    const Upload& final = fake_.state.uploads[1];
    EXPECT_EQ(step3.header.step(), 3u);
    EXPECT_FALSE(step3.header.final());
    EXPECT_TRUE(step3.verified);
    EXPECT_EQ(step3.header.worker(), "node-a");
    EXPECT_EQ(step3.header.lease_id(), fake_.state.lease * 100);
    EXPECT_EQ(step3.header.attempt(), 1u);
    EXPECT_EQ(step3.header.eval().step(), 3u);
    EXPECT_TRUE(final.header.final());
    EXPECT_EQ(final.header.step(), 6u);
    EXPECT_TRUE(final.verified);
    EXPECT_TRUE(final.files.count("MANIFEST.json"));
    EXPECT_TRUE(final.files.count("adapter_model.safetensors"));
    // The final checkpoint is committed before the attempt reports success.
    const int succeeded_at = fake_.state.succeeded_order[{"job-1", 1}];
    EXPECT_LT(final.order, succeeded_at);
    EXPECT_EQ(fake_.state.unauthenticated, 0);
  }
  const std::string job_dir = dir_ / "work/jobs/job-1";
  absl::StatusOr<v1::JobSpec> written =
      spec::LoadJobSpecFile(job_dir + "/attempt-1/job.json");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->SerializeAsString(), spec.SerializeAsString());
  EXPECT_TRUE(fake_.WaitFor([&] { return fake_.state.last_running.empty(); }, 5))
      << "heartbeats still list the finished attempt";
  const std::string metrics = ScrapeMetrics(metrics_port_);
  EXPECT_THAT(metrics, HasSubstr("200 OK"));
  EXPECT_THAT(metrics, HasSubstr("loratrf_agent_attempts_total{outcome=\"succeeded\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("loratrf_agent_slots 2"));

  // Attempt 2 resumes from the uploaded step-3 checkpoint: downloaded, verified, the newer local
  // state set aside, and only steps 4-6 run.
  fake_.Send(Assignment("job-1", 2, spec, 1, "ckpt-job-1-3"));
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.succeeded_order.count({"job-1", 2}) > 0; }, 180))
      << "attempt 2 did not succeed";
  events = fake_.state.Events("job-1", 2);
  EXPECT_THAT(TrainSteps(events), ::testing::ElementsAre(4, 5, 6));
  std::ifstream out(job_dir + "/attempt-2/rank-0.stdout.log");
  std::string printed((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_THAT(printed, HasSubstr("resumed at step 3"));
  std::lock_guard<std::mutex> lock(fake_.state.mu);
  ASSERT_EQ(fake_.state.uploads.size(), 3u) << "attempt 2 uploads only its final checkpoint";
  EXPECT_TRUE(fake_.state.uploads[2].header.final());
  EXPECT_EQ(fake_.state.uploads[2].header.attempt(), 2u);
  EXPECT_TRUE(fake_.state.uploads[2].verified);
  // Same data, same seed, exact resume: the same adapter.
  EXPECT_EQ(fake_.state.uploads[2].files["adapter_model.safetensors"],
            fake_.state.uploads[1].files["adapter_model.safetensors"]);
}

const char kLongTraining[] = "epochs: 10000, max_steps: 1000000, batch_size: 16, "
                             "micro_batch_size: 8, learning_rate: 1.0e-3, max_seq_len: 16";

TEST_F(AgentTest, CancellationKillsTheRanksWithinFiveSeconds) {
  StartAgent("2");
  fake_.Send(Assignment("job-c", 1, Spec(kLongTraining, 2), 2));
  ASSERT_TRUE(fake_.WaitFor([&] {
    auto& events = fake_.state.events[{"job-c", 1}];
    return !TrainSteps(events).empty();
  }, 120)) << "the job did not start training";
  const std::string work = dir_ / "work";
  EXPECT_EQ(RankProcesses(work).size(), 2u);
  {
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    EXPECT_EQ(fake_.state.last_running.size(), 1u);
  }

  v1::WorkerCommand cancel;
  cancel.mutable_cancel()->set_job_id("job-c");
  cancel.mutable_cancel()->set_attempt(1);
  cancel.mutable_cancel()->set_reason("by a user");
  const auto sent = Clock::now();
  fake_.Send(cancel);
  ASSERT_TRUE(WaitUntil([&] { return RankProcesses(work).empty(); }, 5))
      << "ranks still running 5 s after the Cancellation";
  std::cerr << "ranks gone "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent).count()
            << " ms after the Cancellation\n";
  EXPECT_TRUE(fake_.WaitFor([&] { return fake_.state.last_running.empty(); }, 10));
  EXPECT_FALSE(HasState(fake_.state.Events("job-c", 1), v1::JOB_STATE_SUCCEEDED));
  EXPECT_FALSE(HasState(fake_.state.Events("job-c", 1), v1::JOB_STATE_RESTARTING));
}

TEST_F(AgentTest, UploadAnsweredAlreadyExistsCountsAsUploaded) {
  StartAgent("1");
  {
    // The first uploads of checkpoint 2 and of final/ are recorded, but their replies are lost:
    // the retries are answered ALREADY_EXISTS.
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    fake_.state.lose_upload_reply = {{2, false}, {6, true}};
  }
  const v1::JobSpec spec = Spec("epochs: 1, max_steps: 6, batch_size: 8, micro_batch_size: 8, "
                                "learning_rate: 1.0e-2, max_seq_len: 16, eval_every_steps: 2, "
                                "checkpoint_every_steps: 2, keep_checkpoints: 5", 1);
  fake_.Send(Assignment("job-x", 1, spec, 1));
  ASSERT_TRUE(fake_.WaitFor([&] {
    return fake_.state.succeeded_order.count({"job-x", 1}) > 0 ||
           HasState(fake_.state.events[{"job-x", 1}], v1::JOB_STATE_RESTARTING);
  }, 180)) << "the attempt did not end";
  std::vector<v1::JobEvent> events = fake_.state.Events("job-x", 1);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state_change().to(), v1::JOB_STATE_SUCCEEDED)
      << events.back().state_change().reason();
  std::lock_guard<std::mutex> lock(fake_.state.mu);
  std::vector<std::pair<uint64_t, bool>> uploaded;
  for (const Upload& upload : fake_.state.uploads) {
    EXPECT_TRUE(upload.verified);
    uploaded.emplace_back(upload.header.step(), upload.header.final());
  }
  // Each recorded once; checkpoint 4 still follows the checkpoint whose reply was lost.
  EXPECT_THAT(uploaded, ::testing::ElementsAre(std::make_pair(uint64_t{2}, false),
                                               std::make_pair(uint64_t{4}, false),
                                               std::make_pair(uint64_t{6}, true)));
  EXPECT_THAT(fake_.state.already_exists,
              ::testing::UnorderedElementsAre("ckpt-job-x-2", "ckpt-job-x-6-final"));
  const int succeeded_at = fake_.state.succeeded_order[{"job-x", 1}];
  EXPECT_LT(fake_.state.uploads.back().order, succeeded_at);
}

TEST_F(AgentTest, ANewAttemptSupersedesTheRunningOneWithoutBlockingOtherCommands) {
  StartAgent("2");
  const std::string work = dir_ / "work";
  fake_.Send(Assignment("job-r", 1, Spec(kLongTraining, 1), 1));
  fake_.Send(Assignment("job-o", 1, Spec(kLongTraining, 1), 1));
  ASSERT_TRUE(fake_.WaitFor([&] { return RunningSeen("job-r", 1) && RunningSeen("job-o", 1); }, 120));
  ASSERT_TRUE(WaitUntil([&] { return RankProcesses(work + "/jobs/job-r/").size() == 1 &&
                                     RankProcesses(work + "/jobs/job-o/").size() == 1; }, 30));

  // Attempt 2 of job-r takes the slot attempt 1 holds (the node's two are busy until its rank
  // is gone); the Cancellation of job-o right behind it is not held up.
  const v1::JobSpec short_spec = Spec("epochs: 1, max_steps: 2, batch_size: 8, "
                                      "micro_batch_size: 8, max_seq_len: 16", 1);
  fake_.Send(Assignment("job-r", 2, short_spec, 1));
  v1::WorkerCommand cancel;
  cancel.mutable_cancel()->set_job_id("job-o");
  cancel.mutable_cancel()->set_attempt(1);
  fake_.Send(cancel);
  EXPECT_TRUE(WaitUntil([&] { return RankProcesses(work + "/jobs/job-o/").empty(); }, 5))
      << "the cancelled job's rank still runs";
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.succeeded_order.count({"job-r", 2}) > 0; }, 180))
      << "attempt 2 did not succeed";
  EXPECT_FALSE(HasState(fake_.state.Events("job-r", 1), v1::JOB_STATE_SUCCEEDED));
  EXPECT_TRUE(fake_.WaitFor([&] { return fake_.state.last_running.empty(); }, 10));
  EXPECT_TRUE(RankProcesses(work).empty());
  std::ifstream log(dir_ / "agent.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("superseded by attempt 2"));
  // Attempt 2 starts on its own thread, which waits for attempt 1's rank to be gone (that takes
  // a poll at least) before it prepares: the two never share the output directory.
  EXPECT_THAT(text, HasSubstr("waiting for the earlier attempt's ranks to stop"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("starting it anyway")));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("free GPU")));
}

TEST_F(AgentTest, StaleAttemptRefusalKillsTheRanks) {
  StartAgent("1");
  fake_.Send(Assignment("job-s", 1, Spec(kLongTraining, 1), 1));
  ASSERT_TRUE(fake_.WaitFor([&] { return RunningSeen("job-s", 1); }, 120));
  const std::string work = dir_ / "work";
  ASSERT_TRUE(WaitUntil([&] { return RankProcesses(work).size() == 1; }, 30));
  {
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    fake_.state.stale_jobs.insert("job-s");
  }
  // The next report (a train row) is refused; the lease checks out, so the attempt is stale.
  ASSERT_TRUE(WaitUntil([&] { return RankProcesses(work).empty(); }, 60))
      << "ranks of a stale attempt still running";
  EXPECT_TRUE(fake_.WaitFor([&] { return fake_.state.last_running.empty(); }, 10));
  std::lock_guard<std::mutex> lock(fake_.state.mu);
  EXPECT_EQ(fake_.state.registrations.size(), 1u) << "a valid lease needs no new registration";
}

TEST_F(AgentTest, SigkillOfTheAgentLeavesNoOrphanRanks) {
  StartAgent("2");
  fake_.Send(Assignment("job-k", 1, Spec(kLongTraining, 2), 2));
  ASSERT_TRUE(fake_.WaitFor([&] { return RunningSeen("job-k", 1); }, 120));
  const std::string work = dir_ / "work";
  ASSERT_TRUE(WaitUntil([&] { return RankProcesses(work).size() == 2; }, 30));
  ::kill(agent_, SIGKILL);
  int status = 0;
  ::waitpid(agent_, &status, 0);
  agent_ = -1;
  EXPECT_TRUE(WaitUntil([&] { return RankProcesses(work).empty(); }, 5))
      << "rank processes outlived the agent";
}

// The end of an attempt's events: its last state change.
const v1::StateChange* LastStateChange(const std::vector<v1::JobEvent>& events) {
  for (auto it = events.rbegin(); it != events.rend(); ++it) {
    if (it->has_state_change()) return &it->state_change();
  }
  return nullptr;
}

// The agent log so far.
std::string AgentLog(const TempDir& dir) {
  std::ifstream log(dir / "agent.log");
  return std::string((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
}

// SIGTERM (a Kubernetes drain or eviction): the agent says it is draining, its ranks finish the
// step they are in and commit a checkpoint, node 0 uploads it, the attempt ends RESTARTING with
// preempted set (after the upload), and the agent exits 0.
TEST_F(AgentTest, SigtermDrainsTheRanksAfterACheckpointAndReportsPreempted) {
  StartAgent("2");
  // Two ranks, no periodic checkpoint: the one uploaded is the drain's.
  fake_.Send(Assignment("job-t", 1, Spec(kLongTraining, 2), 2));
  ASSERT_TRUE(fake_.WaitFor([&] { return TrainSteps(fake_.state.events[{"job-t", 1}]).size() >= 2; }, 120))
      << "the job did not start training";
  uint64_t reported_before = 0;
  {
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    reported_before = TrainSteps(fake_.state.events[{"job-t", 1}]).back();
  }
  ::kill(agent_, SIGTERM);
  int status = 0;
  ASSERT_TRUE(WaitUntil([&] { return ::waitpid(agent_, &status, WNOHANG) == agent_; }, 60))
      << "the agent did not exit after SIGTERM";
  agent_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(RankProcesses(dir_ / "work").empty());

  std::vector<v1::JobEvent> events = fake_.state.Events("job-t", 1);
  const v1::StateChange* last = LastStateChange(events);
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->to(), v1::JOB_STATE_RESTARTING) << last->reason();
  EXPECT_TRUE(last->preempted()) << last->reason();
  EXPECT_THAT(last->reason(), HasSubstr("draining"));
  std::lock_guard<std::mutex> lock(fake_.state.mu);
  EXPECT_GE(fake_.state.draining_heartbeats, 1);
  ASSERT_EQ(fake_.state.uploads.size(), 1u);
  const Upload& upload = fake_.state.uploads[0];
  EXPECT_FALSE(upload.header.final());
  EXPECT_TRUE(upload.verified);
  EXPECT_TRUE(upload.files.count("trainer_state.safetensors"));
  // The step it was at when told, or the one after: nothing done is lost.
  EXPECT_GE(upload.header.step(), reported_before);
  EXPECT_EQ(upload.header.step(), TrainSteps(events).back());
  EXPECT_LT(upload.order, fake_.state.restarting_order[std::make_pair(std::string("job-t"), 1u)]);
}

// A Cancellation with checkpoint_first (pause, priority preemption, an operator's drain) does
// the same for that attempt alone; the agent goes on and runs the next assignment, which
// resumes from that checkpoint.
TEST_F(AgentTest, CheckpointFirstCancellationStopsAfterACheckpointAndTheAgentCarriesOn) {
  StartAgent("1");
  fake_.Send(Assignment("job-p", 1, Spec(kLongTraining, 1), 1));
  ASSERT_TRUE(fake_.WaitFor([&] { return TrainSteps(fake_.state.events[{"job-p", 1}]).size() >= 2; }, 120))
      << "the job did not start training";
  v1::WorkerCommand cancel;
  cancel.mutable_cancel()->set_job_id("job-p");
  cancel.mutable_cancel()->set_attempt(1);
  cancel.mutable_cancel()->set_reason("paused by alice");
  cancel.mutable_cancel()->set_checkpoint_first(true);
  fake_.Send(cancel);
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.restarting_order.count({"job-p", 1}) > 0; }, 60))
      << "no RESTARTING after the checkpoint_first Cancellation";
  std::vector<v1::JobEvent> events = fake_.state.Events("job-p", 1);
  const v1::StateChange* last = LastStateChange(events);
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->to(), v1::JOB_STATE_RESTARTING);
  EXPECT_TRUE(last->preempted());
  EXPECT_THAT(last->reason(), HasSubstr("paused by alice"));
  uint64_t step = 0;
  {
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    ASSERT_EQ(fake_.state.uploads.size(), 1u);
    step = fake_.state.uploads[0].header.step();
    EXPECT_EQ(step, TrainSteps(events).back());
    EXPECT_LT(fake_.state.uploads[0].order, fake_.state.restarting_order[std::make_pair(std::string("job-p"), 1u)]);
    EXPECT_EQ(fake_.state.draining_heartbeats, 0) << "the agent itself is not draining";
  }
  EXPECT_TRUE(WaitUntil([&] { return RankProcesses(dir_ / "work").empty(); }, 10));

  // Still serving: the next attempt resumes from that checkpoint and runs to the end.
  const std::string id = "ckpt-job-p-" + std::to_string(step);
  const v1::JobSpec spec = Spec("epochs: 10000, max_steps: " + std::to_string(step + 2) +
                                ", batch_size: 16, micro_batch_size: 8, learning_rate: 1.0e-3, "
                                "max_seq_len: 16", 1);
  fake_.Send(Assignment("job-p", 2, spec, 1, id));
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.succeeded_order.count({"job-p", 2}) > 0; }, 180))
      << "the resumed attempt did not succeed";
  EXPECT_THAT(TrainSteps(fake_.state.Events("job-p", 2)), ::testing::ElementsAre(step + 1, step + 2));
  EXPECT_EQ(::waitpid(agent_, nullptr, WNOHANG), 0) << "the agent exited";
}

// A job's work dir goes once its attempt succeeded (final checkpoint uploaded, report taken) or
// was cancelled; after a failure it stays for --keep-failed-for, then goes too.
TEST_F(AgentTest, WorkDirsGoAfterSuccessOrCancelAndAfterTheirTimeAfterAFailure) {
  StartAgent("2", {"--keep-failed-for", "3s"});
  const std::string jobs = dir_ / "work/jobs";
  fake_.Send(Assignment("job-ok", 1, Spec("epochs: 1, max_steps: 2, batch_size: 8, "
                                          "micro_batch_size: 8, max_seq_len: 16", 1), 1));
  v1::JobSpec bad = Spec("epochs: 1, max_steps: 2, batch_size: 8, micro_batch_size: 8, "
                         "max_seq_len: 16", 1);
  bad.mutable_data()->set_train(dir_ / "missing.jsonl");
  fake_.Send(Assignment("job-bad", 1, bad, 1));
  ASSERT_TRUE(fake_.WaitFor([&] {
    return fake_.state.succeeded_order.count({"job-ok", 1}) > 0 &&
           HasState(fake_.state.events[{"job-bad", 1}], v1::JOB_STATE_FAILED);
  }, 180)) << "the jobs did not end";
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(jobs + "/job-ok"); }, 30))
      << "the succeeded job's work dir is still there";
  // The failed one is kept (for debugging), then deleted once its time is up.
  EXPECT_TRUE(WaitUntil([&] {
    return AgentLog(dir_).find("keeping the work dir of job job-bad") != std::string::npos;
  }, 30)) << "the failed job's work dir was not kept";
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(jobs + "/job-bad"); }, 60))
      << "the failed job's work dir outlived --keep-failed-for";
  const std::string log = AgentLog(dir_);
  EXPECT_LT(log.find("keeping the work dir of job job-bad"),
            log.find("deleted the work dir of job job-bad"));
  EXPECT_EQ(log.find("keeping the work dir of job job-ok"), std::string::npos);

  // Cancelled: deleted as soon as its ranks are gone.
  fake_.Send(Assignment("job-c", 1, Spec(kLongTraining, 1), 1));
  ASSERT_TRUE(fake_.WaitFor([&] { return RunningSeen("job-c", 1); }, 120));
  ASSERT_TRUE(fs::exists(jobs + "/job-c"));
  v1::WorkerCommand cancel;
  cancel.mutable_cancel()->set_job_id("job-c");
  fake_.Send(cancel);
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(jobs + "/job-c"); }, 30))
      << "the cancelled job's work dir is still there";
  EXPECT_TRUE(RankProcesses(dir_ / "work").empty());
}

TEST_F(AgentTest, RegistersAgainWhenTheLeaseIsLost) {
  StartAgent("1");
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.stream_leases.size() >= 1; }, 10));
  {
    std::lock_guard<std::mutex> lock(fake_.state.mu);
    fake_.state.lose_lease = true;
  }
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.state.registrations.size() >= 2; }, 10));
  // The command stream is reopened with the new lease.
  EXPECT_TRUE(fake_.WaitFor([&] {
    return !fake_.state.stream_leases.empty() && fake_.state.stream_leases.back() == fake_.state.lease * 100;
  }, 10));
  EXPECT_TRUE(fake_.WaitFor([&] { return fake_.state.heartbeats >= 3; }, 10));
}

TEST_F(AgentTest, UserErrorInARankIsFailedWithItsReason) {
  StartAgent("1");
  v1::JobSpec spec = Spec("epochs: 1, max_steps: 4, batch_size: 8, micro_batch_size: 8, "
                          "max_seq_len: 16", 1);
  spec.mutable_data()->set_train(dir_ / "missing.jsonl");
  fake_.Send(Assignment("job-u", 1, spec, 1));
  ASSERT_TRUE(fake_.WaitFor([&] { return HasState(fake_.state.events[{"job-u", 1}], v1::JOB_STATE_FAILED); }, 120));
  std::vector<v1::JobEvent> events = fake_.state.Events("job-u", 1);
  const v1::StateChange& failed = events.back().state_change();
  EXPECT_EQ(failed.to(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.reason(), HasSubstr("rank 0: "));
  EXPECT_THAT(failed.reason(), HasSubstr("missing.jsonl"));
}

TEST(AgentFlags, BadFlagsExit2WithOneLine) {
  TempDir dir;
  const std::string bin = BinaryPath("loratrf-worker");
  const std::string work = dir / "work";
  std::ofstream(dir / "empty-token") << "\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"agent", "--slots", "1", "--work-dir", work}, "--coordinator"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1"}, "--work-dir"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "0", "--work-dir", work}, "--slots"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "two", "--work-dir", work}, "--slots"},
      {{"agent", "--coordinator", "nohostport", "--slots", "1", "--work-dir", work}, "--coordinator"},
      {{"agent", "--coordinator", "127.0.0.1:70000", "--slots", "1", "--work-dir", work}, "--coordinator"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--name", "Bad_Name"}, "--name"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--token-file", dir / "nope"}, "nope"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--token-file", dir / "empty-token"}, "--token-file"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--tls-ca", dir / "empty-token"}, "--tls-ca"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--device", "tpu"}, "--device"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--bogus"}, "--bogus"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", "/proc/none"}, "--work-dir"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--drain-timeout", "soon"}, "--drain-timeout"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--keep-failed-for", "-1h"}, "--keep-failed-for"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--collective-timeout", "0"}, "--collective-timeout"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--collective-timeout", "500ms"}, "--collective-timeout"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--allow-path", dir / "nope"}, "--allow-path"},
      {{"agent", "--coordinator", "127.0.0.1:1", "--slots", "1", "--work-dir", work, "--allow-path", dir / "empty-token"}, "not a directory"},
  };
  for (const auto& [args, mention] : cases) {
    std::vector<std::string> argv = {bin};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = RunProcess(argv, "", 30);
    EXPECT_EQ(r.exit_code, 2) << args.back() << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(mention));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace loratrf

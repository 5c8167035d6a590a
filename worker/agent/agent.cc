#include "worker/agent/agent.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>


#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/cpu_threads.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "proto/contract/names.h"
#include "proto/rpc/status.h"

namespace loratrf::worker::agent {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d, absl::Duration fallback) {
  absl::Duration value = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  return value > absl::ZeroDuration() ? value : fallback;
}

// The lease is gone (or was never ours): register again.
bool LeaseLost(absl::StatusCode code) {
  return code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kNotFound;
}

// How long an attempt waits for GPUs or slots held by ranks still being stopped, and for the
// ranks of the attempt it supersedes (which share its output directory) to be gone.
constexpr absl::Duration kSlotWait = absl::Seconds(15);
constexpr absl::Duration kSupersededWait = absl::Seconds(60);
constexpr auto kSlotPoll = std::chrono::milliseconds(100);

// In WORK_DIR/jobs/JOB_ID: written when an attempt that leaves something to debug ends; its
// modification time starts the keep_failed_for clock.
constexpr char kEndedMarker[] = ".ended";
// WORK_DIR/<this>/: job dirs moved out of the way, being deleted.
constexpr char kTrashDirName[] = "deleting";
// After the attempts have stopped: the final reports' time.
constexpr absl::Duration kDrainReportMargin = absl::Seconds(5);

// Spreads reconnects of many agents over time.
absl::Duration Jitter(absl::Duration d) {
  thread_local std::mt19937 rng(std::random_device{}());
  return d * std::uniform_real_distribution<double>(0.8, 1.2)(rng);
}

}  // namespace

void FinishedAttempts::Add(const std::string& job, uint32_t attempt) {
  Entry& entry = jobs_[job];
  entry.attempt = std::max(entry.attempt, attempt);
  entry.used = ++clock_;
  while (jobs_.size() > max_jobs_) {
    auto oldest = jobs_.begin();
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
      if (it->second.used < oldest->second.used) oldest = it;
    }
    jobs_.erase(oldest);
  }
}

bool FinishedAttempts::Covers(const std::string& job, uint32_t attempt) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return false;
  it->second.used = ++clock_;
  return attempt <= it->second.attempt;
}

Agent::Agent(AgentOptions options, rpc::ClientChannel channel,
             std::unique_ptr<AgentMetrics> metrics)
    : options_(std::move(options)), metrics_(std::move(metrics)), channel_(std::move(channel)) {
  workers_ = v1::WorkerService::NewStub(channel_.channel());
  jobs_ = v1::JobService::NewStub(channel_.channel());
  metrics_->SetSlots(options_.slots);
}

Agent::~Agent() {
  Shutdown();
  TakeAllRunners().clear();  // each stops and joins
  std::lock_guard<std::mutex> lock(drain_thread_mu_);
  if (drain_thread_.joinable()) drain_thread_.join();  // it ends once stopping
}

std::vector<std::unique_ptr<AttemptRunner>> Agent::TakeAllRunners() {
  std::vector<std::unique_ptr<AttemptRunner>> all;
  std::lock_guard<std::mutex> lock(runners_mu_);
  for (auto& [job, runner] : runners_) all.push_back(std::move(runner));
  for (auto& runner : retiring_) all.push_back(std::move(runner));
  runners_.clear();
  retiring_.clear();
  reserved_.clear();
  // Stopped before closed_ wakes an attempt waiting in Acquire, so it ends as stopped.
  for (auto& runner : all) runner->Shutdown();
  closed_ = true;
  runners_cv_.notify_all();
  return all;
}

std::unique_ptr<grpc::ClientContext> Agent::NewContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  channel_.Authorize(*context);
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  }
  return context;
}

uint64_t Agent::lease_id() {
  std::lock_guard<std::mutex> lock(lease_mu_);
  return lease_id_;
}

bool Agent::stopping() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  return stopping_;
}

bool Agent::WaitUnlessStopping(absl::Duration duration) {
  std::unique_lock<std::mutex> lock(stop_mu_);
  stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(duration), [&] { return stopping_; });
  return !stopping_;
}

void Agent::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
    stop_cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(stream_mu_);
  if (stream_context_ != nullptr) stream_context_->TryCancel();
}

absl::Status Agent::RegisterLocked() {
  v1::RegisterRequest request;
  request.set_name(options_.name);
  request.set_slots(options_.slots);
  request.set_device(options_.device);
  request.set_address(options_.address);
  request.set_version(options_.version);
  for (const v1::RunningAttempt& running : Running()) *request.add_running() = running;
  v1::RegisterResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewContext(absl::Seconds(10));
  grpc::Status status = workers_->Register(context.get(), request, &response);
  RETURN_IF_ERROR(rpc::FromGrpcStatus(status, "Register"));
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease_id_ = response.lease_id();
    lease_ttl_ = FromProto(response.lease_ttl(), absl::Seconds(10));
    heartbeat_interval_ = std::clamp(FromProto(response.heartbeat_interval(), lease_ttl_ / 3),
                                     absl::Milliseconds(100), absl::Seconds(60));
  }
  metrics_->Registered();
  LOG_INFO("registered {} with {} {} slot(s) at {} (lease {}, {} attempt(s) running)",
           options_.name, options_.slots, options_.device == v1::DEVICE_CUDA ? "GPU" : "CPU",
           options_.coordinator, response.lease_id(), request.running_size());
  // A stream opened with the old lease ends; the command loop reopens it with this one.
  std::lock_guard<std::mutex> lock(stream_mu_);
  if (stream_context_ != nullptr) stream_context_->TryCancel();
  return absl::OkStatus();
}

absl::Status Agent::HeartbeatOnce(uint64_t lease, absl::Duration lease_ttl) {
  v1::HeartbeatRequest request;
  request.set_name(options_.name);
  request.set_lease_id(lease);
  for (const v1::RunningAttempt& running : Running()) *request.add_running() = running;
  request.set_draining(draining_.load());
  v1::HeartbeatResponse response;
  std::unique_ptr<grpc::ClientContext> context =
      NewContext(std::max(lease_ttl / 2, absl::Seconds(1)));
  return rpc::FromGrpcStatus(workers_->Heartbeat(context.get(), request, &response), "Heartbeat");
}

absl::StatusOr<bool> Agent::RecoverLease(uint64_t used_lease) {
  std::lock_guard<std::mutex> registering(register_mu_);
  absl::Duration ttl;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    if (lease_id_ != used_lease) return true;  // someone registered again meanwhile
    ttl = lease_ttl_;
  }
  absl::Status alive = HeartbeatOnce(used_lease, ttl);
  if (alive.ok()) return false;
  if (!LeaseLost(alive.code())) return alive;
  LOG_WARN("lease {} is gone ({}); registering again", used_lease, alive.message());
  RETURN_IF_ERROR(RegisterLocked());
  return true;
}

void Agent::HeartbeatLoop() {
  int failures = 0;
  while (true) {
    absl::Duration interval, ttl;
    uint64_t lease;
    {
      std::lock_guard<std::mutex> lock(lease_mu_);
      interval = heartbeat_interval_;
      ttl = lease_ttl_;
      lease = lease_id_;
    }
    if (!WaitUnlessStopping(interval)) return;
    absl::Status status = HeartbeatOnce(lease, ttl);
    if (status.ok()) {
      if (failures > 0) LOG_INFO("heartbeats go through again");
      failures = 0;
      continue;
    }
    metrics_->HeartbeatFailed();
    if (LeaseLost(status.code())) {
      std::lock_guard<std::mutex> registering(register_mu_);
      if (lease_id() == lease) {
        LOG_WARN("{}; registering again", status.message());
        absl::Status registered = RegisterLocked();
        LogIfError(registered, "registering again");
      }
      continue;
    }
    if (failures++ % 10 == 0) LOG_WARN("heartbeat: {}", status.message());
  }
}

void Agent::CommandLoop() {
  absl::Duration backoff = absl::Milliseconds(250);
  while (!stopping()) {
    const uint64_t lease = lease_id();
    std::unique_ptr<grpc::ClientContext> context = NewContext(absl::InfiniteDuration());
    {
      std::lock_guard<std::mutex> lock(stream_mu_);
      if (stopping()) break;
      stream_context_ = context.get();
    }
    v1::StreamCommandsRequest request;
    request.set_name(options_.name);
    request.set_lease_id(lease);
    const absl::Time opened = absl::Now();
    bool received = false;
    std::unique_ptr<grpc::ClientReaderInterface<v1::WorkerCommand>> reader =
        workers_->StreamCommands(context.get(), request);
    v1::WorkerCommand command;
    while (reader->Read(&command)) {
      received = true;
      Handle(command);
    }
    const grpc::Status status = reader->Finish();
    {
      std::lock_guard<std::mutex> lock(stream_mu_);
      stream_context_ = nullptr;
    }
    if (stopping()) break;
    if (lease_id() != lease) continue;  // registered again: reopen with the new lease at once
    const absl::StatusCode code = static_cast<absl::StatusCode>(status.error_code());
    if (status.ok() || LeaseLost(code)) {
      // The coordinator ended the stream: the lease may be gone (lost, or the coordinator
      // restarted without it).
      absl::StatusOr<bool> renewed = RecoverLease(lease);
      if (renewed.ok() && *renewed) {
        backoff = absl::Milliseconds(250);
        continue;
      }
    } else if (code != absl::StatusCode::kCancelled) {
      LOG_WARN("command stream: {}", status.error_message());
    }
    if (received || absl::Now() - opened > absl::Seconds(10)) backoff = absl::Milliseconds(250);
    if (!WaitUnlessStopping(Jitter(backoff))) break;
    backoff = std::min(backoff * 2, absl::Seconds(10));
  }
}

void Agent::Handle(const v1::WorkerCommand& command) {
  if (command.has_assign()) {
    Assign(command.assign());
    return;
  }
  if (!command.has_cancel()) return;
  const v1::Cancellation& cancel = command.cancel();
  std::lock_guard<std::mutex> lock(runners_mu_);
  auto it = runners_.find(cancel.job_id());
  if (it != runners_.end() && (cancel.attempt() == 0 || cancel.attempt() == it->second->attempt())) {
    if (cancel.checkpoint_first()) {
      // Pause, priority preemption, operator drain: the ranks checkpoint first, and the
      // attempt reports RESTARTING (preempted) once that checkpoint is uploaded.
      it->second->Drain(cancel.reason().empty() ? "stopped by the coordinator" : cancel.reason(),
                        options_.drain_timeout);
    } else {
      it->second->Cancel(cancel.reason());
    }
  }
}

void Agent::Assign(const v1::Assignment& assignment) {
  const std::string& job = assignment.job_id();
  // The id becomes a directory name under --work-dir.
  if (absl::Status id = contract::CheckId("job_id", job); !id.ok()) {
    LOG_WARN("ignoring an assignment: {}", id.message());
    return;
  }
  std::lock_guard<std::mutex> lock(runners_mu_);
  if (closed_) return;
  PruneLocked();
  if (finished_.Covers(job, assignment.attempt())) return;  // already done and reported
  auto it = runners_.find(job);
  if (it != runners_.end()) {
    if (it->second->attempt() >= assignment.attempt()) return;  // a repeat, or an old one
    // Superseded: it stops on its own thread and is joined once it has ended (PruneLocked), so
    // the command loop never waits for it; its GPUs stay reserved until its ranks are gone,
    // and the new attempt waits for that (Acquire).
    it->second->Cancel(absl::StrCat("superseded by attempt ", assignment.attempt()));
    retiring_.push_back(std::move(it->second));
    runners_.erase(it);
  }
  AttemptEnvironment env;
  env.work_dir = options_.work_dir;
  env.executable = options_.executable;
  env.link = this;
  env.metrics = metrics_.get();
  env.kill_grace = options_.kill_grace;
  env.collective_timeout = options_.collective_timeout;
  env.paths = options_.paths;
  const bool cuda = options_.device == v1::DEVICE_CUDA &&
                    assignment.spec().resources().device() == v1::DEVICE_CUDA;
  env.acquire = [this, cuda](const AttemptRunner& runner) { return Acquire(runner, cuda); };
  LOG_INFO("job {} attempt {}: node {}, {} of {} rank(s){}", job, assignment.attempt(),
           assignment.node_rank(), assignment.local_world_size(), assignment.world_size(),
           assignment.resume_checkpoint_id().empty()
               ? std::string()
               : ", resuming from checkpoint " + assignment.resume_checkpoint_id());
  env.drain_upload_timeout = options_.drain_upload_timeout;
  auto runner = std::make_unique<AttemptRunner>(std::move(env), assignment);
  if (draining_.load()) {
    // Sent before the coordinator saw this worker draining: handed back at once, as preempted.
    runner->Drain(absl::StrCat("worker ", options_.name, " is draining"), options_.drain_timeout);
  }
  disposable_jobs_.erase(job);  // its dir is in use again
  runner->Start();  // its thread begins in Acquire, which waits for runners_mu_
  runners_[job] = std::move(runner);
}

absl::StatusOr<std::vector<std::string>> Agent::Acquire(const AttemptRunner& runner, bool cuda) {
  const std::string& job = runner.job_id();
  const uint32_t wanted = runner.local_world_size();
  std::unique_lock<std::mutex> lock(runners_mu_);
  auto stopped = [&] { return closed_ || runner.stop_requested(); };

  // The attempt this one superseded shares the job's output directory: its ranks must be gone
  // before this one clears local state and starts its own.
  absl::Time deadline = absl::Now() + kSupersededWait;
  bool said = false;
  while (true) {
    if (stopped()) return absl::CancelledError("stopped");
    PruneLocked();
    bool superseded_running = false;
    for (const auto& old : retiring_) {
      superseded_running |= old->job_id() == job && !old->ranks_gone();
    }
    if (!superseded_running) break;
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          "the ranks of an earlier attempt of job ", job, " on ", options_.name,
          " were still running after ", absl::FormatDuration(kSupersededWait)));
    }
    if (!said) {
      LOG_INFO("job {} attempt {}: waiting for the earlier attempt's ranks to stop", job,
               runner.attempt());
      said = true;
    }
    runners_cv_.wait_for(lock, kSlotPoll);
  }

  // GPUs or slots: ranks of other attempts that are being stopped free theirs within moments.
  deadline = absl::Now() + kSlotWait;
  said = false;
  while (true) {
    if (stopped()) return absl::CancelledError("stopped");
    PruneLocked();  // also drops the reservations of attempts whose ranks are gone
    uint32_t busy = 0;
    std::set<std::string> taken;
    for (const auto& [holder, reservation] : reserved_) {
      busy += reservation.slots;
      taken.insert(reservation.gpus.begin(), reservation.gpus.end());
    }
    // Waiting helps only while the node has enough of them at all.
    const size_t capacity = cuda ? options_.gpus.size() : options_.slots;
    const bool late = absl::Now() >= deadline || wanted > capacity;
    if (cuda) {
      std::vector<std::string> mine;
      for (const std::string& gpu : options_.gpus) {
        if (mine.size() < wanted && !taken.count(gpu)) mine.push_back(gpu);
      }
      if (mine.size() >= wanted) {
        std::string list;
        for (const std::string& gpu : mine) absl::StrAppend(&list, list.empty() ? "" : ",", gpu);
        reserved_[&runner] = Reservation{wanted, mine};
        return std::vector<std::string>{"CUDA_VISIBLE_DEVICES=" + list};
      }
      if (late) {
        return absl::UnavailableError(absl::StrCat(options_.name, " has ", mine.size(),
                                                   " free GPU(s), the attempt needs ", wanted));
      }
    } else if (busy + wanted <= options_.slots || late) {
      if (busy + wanted > options_.slots) {
        LOG_WARN("job {} needs {} slot(s), {} free; starting it anyway", job, wanted,
                 options_.slots > busy ? options_.slots - busy : 0);
      }
      reserved_[&runner] = Reservation{wanted, {}};
      // Each rank gets its slot's share of the cores (one slot, one share).
      std::vector<std::string> rank_env;
      if (std::optional<std::string> threads = OmpThreadsSetting(static_cast<int>(options_.slots))) {
        rank_env.push_back(*std::move(threads));
      }
      return rank_env;
    }
    if (!said) {
      LOG_INFO("job {} attempt {} needs {} {}; waiting up to {} for stopping ranks to free them",
               job, runner.attempt(), wanted, cuda ? "GPU(s)" : "slot(s)",
               absl::FormatDuration(kSlotWait));
      said = true;
    }
    runners_cv_.wait_for(lock, kSlotPoll);
  }
}

void Agent::PruneLocked() {
  // What the ended attempt leaves in the job's dir: nothing worth keeping, or its debris. A
  // superseded attempt (retiring_) has no say: the newer attempt of the job decides.
  auto ended = [&](const AttemptRunner& runner, bool superseded) {
    if (runner.reported_end()) finished_.Add(runner.job_id(), runner.attempt());
    if (superseded) return;
    if (runner.work_dir_disposable()) {
      disposable_jobs_.insert(runner.job_id());
      return;
    }
    disposable_jobs_.erase(runner.job_id());
    const std::string dir = JobsDir() + "/" + runner.job_id();
    std::error_code ec;
    if (std::filesystem::is_directory(dir, ec)) {
      std::ofstream(dir + "/" + kEndedMarker, std::ios::trunc) << absl::FormatTime(absl::Now()) << "\n";
      LOG_INFO("keeping the work dir of job {} for {}: attempt {} did not succeed",
               runner.job_id(), absl::FormatDuration(options_.keep_failed_for), runner.attempt());
    }
  };
  for (auto it = runners_.begin(); it != runners_.end();) {
    if (!it->second->done()) {
      ++it;
      continue;
    }
    ended(*it->second, /*superseded=*/false);
    reserved_.erase(it->second.get());
    it = runners_.erase(it);  // its thread has ended: the join is immediate
  }
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    if (!(*it)->done()) {
      ++it;
      continue;
    }
    ended(**it, /*superseded=*/true);
    reserved_.erase(it->get());
    it = retiring_.erase(it);  // likewise
  }
  // Ranks gone: the GPUs and slots are free, though the thread may still be reporting.
  for (auto it = reserved_.begin(); it != reserved_.end();) {
    it = it->first->ranks_gone() ? reserved_.erase(it) : std::next(it);
  }
}

std::vector<v1::RunningAttempt> Agent::Running() {
  std::lock_guard<std::mutex> lock(runners_mu_);
  PruneLocked();
  std::vector<v1::RunningAttempt> running;
  for (const auto& [job, runner] : runners_) {
    v1::RunningAttempt attempt;
    attempt.set_job_id(job);
    attempt.set_attempt(runner->attempt());
    running.push_back(std::move(attempt));
  }
  return running;
}

int Agent::Run() {
  SweepWorkDir();  // what an earlier run of the agent left
  absl::Duration backoff = absl::Milliseconds(250);
  int failures = 0;
  while (true) {
    if (stopping()) return 0;
    absl::Status registered;
    {
      std::lock_guard<std::mutex> registering(register_mu_);
      registered = RegisterLocked();
    }
    if (registered.ok()) break;
    const absl::StatusCode code = registered.code();
    if (code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kUnauthenticated ||
        code == absl::StatusCode::kPermissionDenied || code == absl::StatusCode::kAlreadyExists) {
      LOG_ERROR("the coordinator refused this worker: {}", registered.message());
      return 2;
    }
    if (failures++ % 10 == 0) {
      LOG_WARN("{}; retrying", registered.message());
    }
    if (!WaitUnlessStopping(Jitter(backoff))) return 0;
    backoff = std::min(backoff * 2, absl::Seconds(10));
  }
  std::thread heartbeats([this] { HeartbeatLoop(); });
  std::thread sweeper([this] { SweepLoop(); });
  CommandLoop();
  // Stopping: every attempt stops its ranks and reports RESTARTING.
  TakeAllRunners().clear();
  heartbeats.join();
  sweeper.join();
  {
    std::lock_guard<std::mutex> lock(drain_thread_mu_);
    if (drain_thread_.joinable()) drain_thread_.join();
  }
  LOG_INFO("stopped");
  return 0;
}

void Agent::Drain() {
  if (draining_.exchange(true)) return;
  LOG_INFO("draining: no new work; running attempts stop after a checkpoint (up to {})",
           absl::FormatDuration(options_.drain_timeout));
  {
    std::lock_guard<std::mutex> lock(runners_mu_);
    for (auto& [job, runner] : runners_) {
      runner->Drain(absl::StrCat("worker ", options_.name, " is draining"), options_.drain_timeout);
    }
  }
  std::lock_guard<std::mutex> lock(drain_thread_mu_);
  drain_thread_ = std::thread([this] { DrainThenStop(); });
}

void Agent::DrainThenStop() {
  // Said at once, so that the coordinator places nothing more here.
  uint64_t lease;
  absl::Duration ttl;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease = lease_id_;
    ttl = lease_ttl_;
  }
  if (lease != 0) LogIfError(HeartbeatOnce(lease, ttl), "draining heartbeat");
  const absl::Duration budget =
      options_.drain_timeout + options_.drain_upload_timeout + kDrainReportMargin;
  const absl::Time deadline = absl::Now() + budget;
  while (!stopping()) {
    size_t left = 0;
    {
      std::lock_guard<std::mutex> lock(runners_mu_);
      PruneLocked();
      left = runners_.size() + retiring_.size();
    }
    if (left == 0) {
      LOG_INFO("drained: every attempt has ended");
      break;
    }
    if (absl::Now() >= deadline) {
      LOG_WARN("{} attempt(s) still ending {} into the drain; stopping them", left,
               absl::FormatDuration(budget));
      break;
    }
    WaitUnlessStopping(absl::Milliseconds(100));
  }
  Shutdown();
}

void Agent::SweepLoop() {
  while (true) {
    absl::Duration interval;
    {
      std::lock_guard<std::mutex> lock(lease_mu_);
      interval = heartbeat_interval_;
    }
    interval = std::max(std::min(interval, options_.keep_failed_for / 2), absl::Milliseconds(100));
    if (!WaitUnlessStopping(interval)) return;
    SweepWorkDir();
  }
}

void Agent::SweepWorkDir() {
  namespace fs = std::filesystem;
  const std::string trash_dir = options_.work_dir + "/" + kTrashDirName;
  std::vector<std::pair<std::string, std::string>> doomed;  // job, where it was moved
  std::error_code ec;
  {
    std::lock_guard<std::mutex> lock(runners_mu_);
    if (closed_) return;
    PruneLocked();
    std::set<std::string> in_use;
    for (const auto& [job, runner] : runners_) in_use.insert(job);
    for (const auto& runner : retiring_) in_use.insert(runner->job_id());
    const auto now = fs::file_time_type::clock::now();
    const auto keep = absl::ToChronoNanoseconds(options_.keep_failed_for);
    for (const auto& entry : fs::directory_iterator(JobsDir(), ec)) {
      const std::string job = entry.path().filename().string();
      if (in_use.count(job) || !entry.is_directory(ec)) continue;
      bool due = disposable_jobs_.count(job) > 0;
      if (!due) {
        const std::string marker = entry.path().string() + "/" + kEndedMarker;
        std::error_code missing;
        const auto ended = fs::last_write_time(marker, missing);
        if (missing) {
          // Left by an earlier run of the agent (killed, or stopped mid-attempt): kept from now.
          std::ofstream(marker, std::ios::trunc) << absl::FormatTime(absl::Now()) << "\n";
          continue;
        }
        due = now - ended >= keep;
      }
      if (!due) continue;
      fs::create_directories(trash_dir, ec);
      const std::string moved = absl::StrCat(trash_dir, "/", job, ".", ::getpid(), ".", ++trash_counter_);
      if (::rename(entry.path().c_str(), moved.c_str()) != 0) {
        LOG_WARN("work dir {}: cannot move it away for deletion: {}", entry.path().string(),
                 std::strerror(errno));
        continue;
      }
      disposable_jobs_.erase(job);
      doomed.emplace_back(job, moved);
    }
  }
  // Outside the lock: a big dir takes a while, and it is out of every attempt's way already.
  for (const auto& [job, moved] : doomed) {
    std::error_code removed;
    fs::remove_all(moved, removed);
    if (removed) {
      LOG_WARN("work dir of job {}: {}", job, removed.message());
    } else {
      LOG_INFO("deleted the work dir of job {}", job);
    }
  }
  // Whatever else is there was left by an earlier run of the agent, stopped while deleting
  // (only this thread deletes, so nothing of this run is in progress).
  for (const auto& entry : fs::directory_iterator(trash_dir, ec)) {
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

}  // namespace loratrf::worker::agent

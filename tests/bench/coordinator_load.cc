// coordinator_load: a load generator for a running loratrf-coordinator (the coordinator load
// benchmark; tests/bench/coordinator_load.sh starts the coordinator and runs this).
//
//   coordinator_load --address HOST:PORT [--coordinator-pid PID] [--jobs N] [--watchers N]
//       [--workers N] [--submitters N] [--train-rows N] [--checkpoint-bytes N]
//       [--slots N] [--timeout-s S] [--sample-ms MS] [--queue-first]
//   coordinator_load --fsync-probe DIR      (fsyncs a small appended file 200 times, prints the rate)
//
// Three kinds of clients, all over the real gRPC API:
// - submitters: threads that call SubmitJob (blocking stubs) until --jobs jobs are submitted;
// - fake workers (registered before the submitters start, or with --queue-first once every job
//   is submitted, so that the whole submission queues): Register (--slots CPU slots, 1 by
//   default), heartbeat at the interval the coordinator returns listing every attempt it holds
//   (async unary calls from one thread), StreamCommands (a callback reader). Each worker has a
//   thread that runs its assignments: ReportEvents RUNNING, ReportEvents with --train-rows
//   TrainMetrics rows, UploadCheckpoint of a final checkpoint (one file,
//   adapter/adapter_model.safetensors, --checkpoint-bytes bytes), ReportEvents SUCCEEDED;
// - watchers: --watchers WatchJob streams (callback readers), each following one job (in
//   submission order) until the stream ends, then the next job not yet watched.
//
// Measures submit latency (SubmitJob round trip), schedule latency (SubmitJob response to the
// worker receiving the Assignment), end-to-end latency (submit start to the ack of the
// SUCCEEDED report), the queue drain with --queue-first (fleet start to the last assignment:
// the scheduler's rate, given enough slots, e.g. --slots 200), watch delivery lag (event.time to receipt, only for events persisted after
// the watch began: replayed history is not lag), throughput (and with --queue-first the drain
// rate, from the fleet's start to the last success), queue depth (submitted minus
// assigned, as the generator sees it), the coordinator's RSS (/proc/PID/status) and CPU time,
// and every non-OK RPC. Prints a report on stdout; exits 1 if a job did not complete or any
// RPC failed.
//
// Threading: submitter threads, one thread per fake worker (blocked on its queue or in a
// blocking RPC), one heartbeat thread, one watch dispatcher, one sampler; gRPC's callback
// threads run the readers' callbacks, which only record and hand off (never block).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/command_line.h"
#include "common/sha256.h"
#include "grpcpp/grpcpp.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "proto/spec/job_spec.h"

namespace {

namespace v1 = loratrf::v1;
using Steady = std::chrono::steady_clock;
using System = std::chrono::system_clock;

constexpr auto kRpcDeadline = std::chrono::seconds(60);
constexpr char kCheckpointPath[] = "adapter/adapter_model.safetensors";

double Ms(Steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double Seconds(Steady::duration d) { return std::chrono::duration<double>(d).count(); }

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(System::now() + kRpcDeadline);
}

// ---- configuration --------------------------------------------------------------------------

struct Config {
  std::string address;
  int coordinator_pid = 0;
  int jobs = 10000;
  int watchers = 200;
  int workers = 50;
  int slots = 1;  // per fake worker; its assignments run one after another
  int submitters = 8;
  int train_rows = 3;
  int checkpoint_bytes = 4096;
  int timeout_s = 3600;
  int sample_ms = 100;
  bool queue_first = false;  // register the fleet only after every job is submitted
};

// ---- errors ---------------------------------------------------------------------------------

// Every non-OK RPC, by method and code, with the first message seen for each.
class Errors {
 public:
  void Add(const std::string& method, const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_pair(method, static_cast<int>(status.error_code()));
    auto [it, inserted] = counts_.emplace(key, Entry{0, status.error_message()});
    ++it->second.count;
    ++total_;
  }
  int64_t total() const {
    std::lock_guard<std::mutex> lock(mu_);
    return total_;
  }
  void Print() const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, entry] : counts_) {
      std::printf("  %-18s code %-2d x %-6lld e.g. \"%s\"\n", key.first.c_str(), key.second,
                  static_cast<long long>(entry.count), entry.first_message.c_str());
    }
  }

 private:
  struct Entry {
    int64_t count;
    std::string first_message;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, Entry> counts_;
  int64_t total_ = 0;
};

// ---- per-job records ------------------------------------------------------------------------

struct JobRecord {
  std::optional<Steady::time_point> submit_start, submit_done, assigned, succeeded;
};

class Jobs {
 public:
  void Submitted(const std::string& id, Steady::time_point start, Steady::time_point done) {
    std::lock_guard<std::mutex> lock(mu_);
    JobRecord& record = records_[id];
    record.submit_start = start;
    record.submit_done = done;
    order_.push_back(id);
    changed_.notify_all();
  }
  // An assignment can arrive before the submitter has recorded the job (the scheduler ticks
  // on its own): the record is created by whoever comes first.
  void Assigned(const std::string& id, Steady::time_point at) {
    std::lock_guard<std::mutex> lock(mu_);
    JobRecord& record = records_[id];
    if (!record.assigned) record.assigned = at;
  }
  void Succeeded(const std::string& id, Steady::time_point at) {
    std::lock_guard<std::mutex> lock(mu_);
    records_[id].succeeded = at;
  }
  // The id of the index-th submitted job, if there is one yet.
  std::optional<std::string> NthSubmitted(size_t index) {
    std::lock_guard<std::mutex> lock(mu_);
    if (index < order_.size()) return order_[index];
    return std::nullopt;
  }
  size_t submitted() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_.size();
  }
  std::mutex& mu() { return mu_; }
  std::condition_variable& changed() { return changed_; }
  const std::unordered_map<std::string, JobRecord>& records() const { return records_; }
  const std::vector<std::string>& order() const { return order_; }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::unordered_map<std::string, JobRecord> records_;
  std::vector<std::string> order_;  // submission order (as the responses came back)
};

// ---- shared state ---------------------------------------------------------------------------

struct Shared {
  Config config;
  Errors errors;
  Jobs jobs;
  std::atomic<int64_t> submitted{0}, assigned{0}, completed{0}, abandoned{0};
  std::atomic<int64_t> submit_finished{0};  // SubmitJob calls that returned, OK or not
  std::atomic<int64_t> max_depth{0};
  std::atomic<bool> stopping{false};
  std::string checkpoint_data;
  std::string checkpoint_sha256;
  Steady::time_point start;

  void UpdateDepth() {
    int64_t depth = submitted.load() - assigned.load();
    int64_t seen = max_depth.load();
    while (depth > seen && !max_depth.compare_exchange_weak(seen, depth)) {
    }
  }
};

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, int id) {
  grpc::ChannelArguments args;
  // A connection per channel, as separate processes would have (channels with equal
  // arguments otherwise share one subchannel).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("loratrf.bench.channel", id);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

v1::JobSpec Spec(int index) {
  // As tests/unit/server/core/job_service_test.cc's Spec(): valid, one worker with one slot. The
  // paths are never read (the workers are fake).
  v1::JobSpec spec = loratrf::spec::DefaultJobSpec();
  spec.set_name(absl::StrFormat("load-%06d", index));
  spec.mutable_model()->set_path("/models/tiny");
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.mutable_data()->set_train("/data/train.jsonl");
  spec.mutable_adapter()->set_method(v1::ADAPTER_METHOD_LORATRF);
  spec.mutable_adapter()->add_target_modules("q_proj");
  spec.mutable_training()->set_batch_size(8);
  spec.mutable_training()->set_micro_batch_size(8);
  spec.mutable_training()->set_epochs(2);
  spec.mutable_resources()->set_workers(1);
  spec.mutable_resources()->set_slots_per_worker(1);
  spec.mutable_resources()->set_device(v1::DEVICE_CPU);
  return spec;
}

// ---- submitters -----------------------------------------------------------------------------

void Submitter(Shared* shared, int id, std::atomic<int>* next_index) {
  auto stub = v1::JobService::NewStub(MakeChannel(shared->config.address, 1000 + id));
  for (;;) {
    int index = next_index->fetch_add(1);
    if (index >= shared->config.jobs || shared->stopping) return;
    v1::SubmitJobRequest request;
    *request.mutable_spec() = Spec(index);
    v1::SubmitJobResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    Steady::time_point start = Steady::now();
    grpc::Status status = stub->SubmitJob(&context, request, &response);
    Steady::time_point done = Steady::now();
    if (!status.ok()) {
      shared->errors.Add("SubmitJob", status);
      ++shared->abandoned;
      ++shared->submit_finished;
      continue;
    }
    shared->jobs.Submitted(response.job().id(), start, done);
    ++shared->submitted;
    ++shared->submit_finished;
    shared->UpdateDepth();
  }
}

// ---- fake workers ---------------------------------------------------------------------------

class FakeWorker;

// The worker's StreamCommands reader: hands assignments to the worker's thread.
class CommandReader final : public grpc::ClientReadReactor<v1::WorkerCommand> {
 public:
  CommandReader(FakeWorker* worker) : worker_(worker) {}
  void Start(v1::WorkerService::Stub* stub, const v1::StreamCommandsRequest& request) {
    stub->async()->StreamCommands(&context_, &request, this);
    StartRead(&command_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  FakeWorker* const worker_;
  grpc::ClientContext context_;
  v1::WorkerCommand command_;
};

class FakeWorker {
 public:
  FakeWorker(Shared* shared, int index)
      : shared_(shared),
        name_(absl::StrFormat("load-worker-%03d", index)),
        stub_(v1::WorkerService::NewStub(MakeChannel(shared->config.address, index))) {}

  bool Register() {
    v1::RegisterRequest request;
    request.set_name(name_);
    request.set_slots(static_cast<uint32_t>(shared_->config.slots));
    request.set_device(v1::DEVICE_CPU);
    request.set_address("127.0.0.1");
    request.set_version("coordinator_load");
    v1::RegisterResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    grpc::Status status = stub_->Register(&context, request, &response);
    if (!status.ok()) {
      shared_->errors.Add("Register", status);
      return false;
    }
    lease_id_ = response.lease_id();
    interval_ = std::chrono::seconds(response.heartbeat_interval().seconds()) +
                std::chrono::nanoseconds(response.heartbeat_interval().nanos());
    if (interval_ <= Steady::duration::zero()) interval_ = std::chrono::seconds(1);
    next_heartbeat_ = Steady::now() + interval_;
    registered_.store(true, std::memory_order_release);  // the heartbeat thread may beat now
    v1::StreamCommandsRequest stream_request;
    stream_request.set_name(name_);
    stream_request.set_lease_id(lease_id_);
    reader_ = new CommandReader(this);
    reader_->Start(stub_.get(), stream_request);
    thread_ = std::thread([this] { Run(); });
    return true;
  }

  // From the reader's callback: queue it, never block.
  void OnCommand(const v1::WorkerCommand& command) {
    if (command.has_assign()) {
      shared_->jobs.Assigned(command.assign().job_id(), Steady::now());
      ++shared_->assigned;
      std::lock_guard<std::mutex> lock(mu_);
      // Held from now on (heartbeats list it), though it runs once those before it finished.
      running_.emplace_back(command.assign().job_id(), command.assign().attempt());
      queue_.push_back(command.assign());
      wake_.notify_one();
    } else if (command.has_cancel()) {
      ++cancellations_;
    }
  }
  void OnStreamDone(const grpc::Status& status) {
    if (!status.ok() && !(shared_->stopping && status.error_code() == grpc::StatusCode::CANCELLED)) {
      shared_->errors.Add("StreamCommands", status);
    }
    std::lock_guard<std::mutex> lock(mu_);
    stream_done_ = true;
    wake_.notify_one();
  }

  // Called by the heartbeat thread: sends one asynchronously when due and none is in flight.
  void MaybeHeartbeat(Steady::time_point now) {
    if (!registered_.load(std::memory_order_acquire) || now < next_heartbeat_ ||
        heartbeat_in_flight_.load()) {
      return;
    }
    next_heartbeat_ = now + interval_;
    struct Call {
      grpc::ClientContext context;
      v1::HeartbeatRequest request;
      v1::HeartbeatResponse response;
    };
    auto* call = new Call;
    call->request.set_name(name_);
    call->request.set_lease_id(lease_id_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [job_id, attempt] : running_) {
        v1::RunningAttempt* running = call->request.add_running();
        running->set_job_id(job_id);
        running->set_attempt(attempt);
      }
    }
    SetDeadline(call->context);
    heartbeat_in_flight_ = true;
    ++heartbeats_;
    stub_->async()->Heartbeat(&call->context, &call->request, &call->response,
                              [this, call](grpc::Status status) {
                                if (!status.ok()) shared_->errors.Add("Heartbeat", status);
                                heartbeat_in_flight_ = false;
                                delete call;
                              });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      wake_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
    if (reader_ != nullptr) {
      reader_->Cancel();
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return stream_done_; });
    }
    while (heartbeat_in_flight_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~FakeWorker() { delete reader_; }

  int64_t cancellations() const { return cancellations_; }
  int64_t heartbeats() const { return heartbeats_; }
  int64_t jobs_run() const { return jobs_run_; }

 private:
  void Run() {
    for (;;) {
      v1::Assignment assignment;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        assignment = std::move(queue_.front());
        queue_.pop_front();
      }
      bool ok = RunJob(assignment);
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_.erase(std::remove(running_.begin(), running_.end(),
                                   std::make_pair(assignment.job_id(), assignment.attempt())),
                       running_.end());
      }
      if (ok) {
        ++jobs_run_;
        ++shared_->completed;
      } else {
        ++shared_->abandoned;
      }
    }
  }

  bool Report(const v1::Assignment& assignment, uint64_t* index,
              const std::vector<v1::JobEvent>& events) {
    v1::ReportEventsRequest request;
    request.set_worker(name_);
    request.set_lease_id(lease_id_);
    request.set_job_id(assignment.job_id());
    request.set_attempt(assignment.attempt());
    request.set_first_report_index(*index);
    for (const v1::JobEvent& event : events) *request.add_events() = event;
    v1::ReportEventsResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    grpc::Status status = stub_->ReportEvents(&context, request, &response);
    if (!status.ok()) {
      shared_->errors.Add("ReportEvents", status);
      return false;
    }
    *index = response.next_report_index();
    return true;
  }

  static v1::JobEvent StateEvent(v1::JobState to) {
    v1::JobEvent event;
    event.mutable_state_change()->set_to(to);
    return event;
  }

  bool RunJob(const v1::Assignment& assignment) {
    uint64_t index = 0;
    if (!Report(assignment, &index, {StateEvent(v1::JOB_STATE_RUNNING)})) return false;
    const int rows = shared_->config.train_rows;
    if (rows > 0) {
      std::vector<v1::JobEvent> metrics;
      for (int step = 1; step <= rows; ++step) {
        v1::JobEvent event;
        v1::TrainMetrics& train = *event.mutable_train();
        train.set_step(step);
        train.set_epoch(2.0 * step / rows);
        train.set_loss(2.0 / step);
        train.set_learning_rate(3e-4);
        train.set_grad_norm(1.0);
        train.set_tokens_per_second(1000);
        train.set_samples_per_second(10);
        train.set_step_seconds(0.1);
        metrics.push_back(std::move(event));
      }
      if (!Report(assignment, &index, metrics)) return false;
    }
    if (!Upload(assignment, static_cast<uint64_t>(std::max(rows, 1)))) return false;
    if (!Report(assignment, &index, {StateEvent(v1::JOB_STATE_SUCCEEDED)})) return false;
    shared_->jobs.Succeeded(assignment.job_id(), Steady::now());
    return true;
  }

  bool Upload(const v1::Assignment& assignment, uint64_t step) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::UploadCheckpointResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::UploadCheckpointRequest>> writer =
        stub_->UploadCheckpoint(&context, &response);
    v1::UploadCheckpointRequest header;
    v1::UploadCheckpointRequest::Header& h = *header.mutable_header();
    h.set_worker(name_);
    h.set_lease_id(lease_id_);
    h.set_job_id(assignment.job_id());
    h.set_attempt(assignment.attempt());
    h.set_step(step);
    h.set_final(true);
    v1::CheckpointFile& file = *h.add_files();
    file.set_path(kCheckpointPath);
    file.set_size_bytes(shared_->checkpoint_data.size());
    file.set_sha256(shared_->checkpoint_sha256);
    v1::UploadCheckpointRequest chunk;
    chunk.mutable_chunk()->set_path(kCheckpointPath);
    chunk.mutable_chunk()->set_offset(0);
    chunk.mutable_chunk()->set_data(shared_->checkpoint_data);
    // A failed Write means the server ended the call; Finish says why.
    if (writer->Write(header)) writer->Write(chunk);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (!status.ok()) {
      shared_->errors.Add("UploadCheckpoint", status);
      return false;
    }
    return true;
  }

  Shared* const shared_;
  const std::string name_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  // Set by Register before registered_; read by the heartbeat thread after it.
  uint64_t lease_id_ = 0;
  Steady::duration interval_{};
  Steady::time_point next_heartbeat_;  // then the heartbeat thread's only
  std::atomic<bool> registered_{false};
  std::atomic<bool> heartbeat_in_flight_{false};
  CommandReader* reader_ = nullptr;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<v1::Assignment> queue_;                        // guarded by mu_
  std::vector<std::pair<std::string, uint32_t>> running_;   // guarded by mu_
  bool stop_ = false;                                       // guarded by mu_
  bool stream_done_ = false;                                // guarded by mu_
  std::atomic<int64_t> cancellations_{0}, heartbeats_{0}, jobs_run_{0};
};

void CommandReader::OnReadDone(bool ok) {
  if (!ok) return;  // the stream ended: OnDone follows
  worker_->OnCommand(command_);
  StartRead(&command_);
}

void CommandReader::OnDone(const grpc::Status& status) { worker_->OnStreamDone(status); }

// ---- watchers -------------------------------------------------------------------------------

// What one watcher slot saw, over all the jobs it followed (only its own reader writes it).
struct WatcherStats {
  std::vector<double> lag_ms;  // live events: event.time to receipt
  int64_t replayed = 0;        // events persisted before the watch began
  int64_t jobs = 0;
  int64_t ended_before_final = 0;  // an OK end without a final state change
};

class WatchDispatcher;

class WatchReader final : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  WatchReader(WatchDispatcher* dispatcher, int slot, WatcherStats* stats)
      : dispatcher_(dispatcher), slot_(slot), stats_(stats) {}
  void Start(v1::JobService::Stub* stub, const std::string& job_id) {
    request_.set_id(job_id);
    started_ = System::now();
    stub->async()->WatchJob(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }
  int slot() const { return slot_; }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    System::time_point received = System::now();
    System::time_point at = System::time_point(std::chrono::duration_cast<System::duration>(
        std::chrono::seconds(event_.time().seconds()) +
        std::chrono::nanoseconds(event_.time().nanos())));
    if (at >= started_) {
      stats_->lag_ms.push_back(std::chrono::duration<double, std::milli>(received - at).count());
    } else {
      ++stats_->replayed;
    }
    if (event_.has_state_change()) {
      v1::JobState to = event_.state_change().to();
      if (to == v1::JOB_STATE_SUCCEEDED || to == v1::JOB_STATE_FAILED ||
          to == v1::JOB_STATE_CANCELLED) {
        saw_final_ = true;
      }
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override;

 private:
  WatchDispatcher* const dispatcher_;
  const int slot_;
  WatcherStats* const stats_;
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::JobEvent event_;
  System::time_point started_;
  bool saw_final_ = false;
};

// Keeps --watchers streams open, each on the next submitted job not yet watched. Its own
// thread (Run) starts, cancels and deletes the readers, outside its lock (a reader's callbacks
// may run inline in Start or Cancel and take the lock).
class WatchDispatcher {
 public:
  WatchDispatcher(Shared* shared, int watchers) : shared_(shared), stats_(watchers) {
    const int channels = std::max(1, std::min(8, watchers));
    for (int i = 0; i < channels; ++i) {
      stubs_.push_back(v1::JobService::NewStub(MakeChannel(shared->config.address, 2000 + i)));
    }
    for (int i = 0; i < watchers; ++i) idle_.push_back(i);
  }

  void Run() {
    size_t next = 0;  // the index (in submission order) of the next job to watch
    bool dispatching = true, starved = false, cancelled = false;
    for (;;) {
      std::vector<std::unique_ptr<WatchReader>> dead;
      std::vector<std::pair<WatchReader*, std::string>> starts;
      std::vector<WatchReader*> cancels;
      bool exit = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        // Starved (idle watchers, nothing new submitted): look again every 20 ms.
        wake_.wait_for(lock, std::chrono::milliseconds(20), [&] {
          return finishing_ || !graveyard_.empty() || (dispatching && !starved && !idle_.empty());
        });
        dead.swap(graveyard_);
        starved = false;
        if (finishing_) {
          if (!cancelled) {
            for (auto& [slot, reader] : readers_) cancels.push_back(reader);
            cancelled = true;
          }
          exit = active_ == 0;
        } else if (dispatching) {
          while (!idle_.empty()) {
            std::optional<std::string> id = shared_->jobs.NthSubmitted(next);
            if (!id) {
              if (shared_->submit_finished >= shared_->config.jobs &&
                  next >= shared_->jobs.submitted()) {
                dispatching = false;  // every submitted job was watched
                done_dispatching_ = true;
                wake_.notify_all();
              } else {
                starved = true;
              }
              break;
            }
            int slot = idle_.front();
            idle_.pop_front();
            ++active_;
            ++next;
            ++stats_[slot].jobs;
            auto* reader = new WatchReader(this, slot, &stats_[slot]);
            readers_[slot] = reader;
            starts.emplace_back(reader, std::move(*id));
          }
        }
      }
      dead.clear();
      for (auto& [reader, job_id] : starts) {
        reader->Start(stubs_[reader->slot() % stubs_.size()].get(), job_id);
      }
      for (WatchReader* reader : cancels) reader->Cancel();
      if (exit) {
        std::lock_guard<std::mutex> lock(mu_);
        graveyard_.clear();
        return;
      }
    }
  }

  // From a reader's OnDone (the reader is deleted later, by Run).
  void Done(WatchReader* reader, int slot, const grpc::Status& status, bool saw_final) {
    if (!status.ok() && !(stopping_ && status.error_code() == grpc::StatusCode::CANCELLED)) {
      shared_->errors.Add("WatchJob", status);
    }
    if (status.ok() && !saw_final) ++stats_[slot].ended_before_final;
    std::lock_guard<std::mutex> lock(mu_);
    readers_.erase(slot);
    graveyard_.emplace_back(reader);
    idle_.push_back(slot);
    --active_;
    wake_.notify_all();
  }

  // Waits up to `grace` for every submitted job to have been watched to its end, then has Run
  // cancel what is still open and return. Returns how many streams were still open.
  int Finish(std::chrono::seconds grace) {
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait_for(lock, grace, [this] { return done_dispatching_ && active_ == 0; });
    stopping_ = true;
    finishing_ = true;
    wake_.notify_all();
    return active_;
  }

  const std::vector<WatcherStats>& stats() const { return stats_; }

 private:
  Shared* const shared_;
  std::vector<std::unique_ptr<v1::JobService::Stub>> stubs_;
  std::vector<WatcherStats> stats_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<int> idle_;                                  // guarded by mu_
  std::map<int, WatchReader*> readers_;                   // open streams; guarded by mu_
  std::vector<std::unique_ptr<WatchReader>> graveyard_;   // ended streams; guarded by mu_
  int active_ = 0;                                        // guarded by mu_
  bool finishing_ = false;                                // guarded by mu_
  bool done_dispatching_ = false;                         // guarded by mu_
  std::atomic<bool> stopping_{false};
};

void WatchReader::OnDone(const grpc::Status& status) {
  dispatcher_->Done(this, slot_, status, saw_final_);  // may be deleted from here on
}

// ---- the coordinator process ----------------------------------------------------------------

struct ProcStatus {
  int64_t rss_kib = -1, hwm_kib = -1;
};

ProcStatus ReadProcStatus(int pid) {
  ProcStatus result;
  if (pid <= 0) return result;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) result.rss_kib = std::atoll(line.c_str() + 6);
    if (line.rfind("VmHWM:", 0) == 0) result.hwm_kib = std::atoll(line.c_str() + 6);
  }
  return result;
}

// utime + stime of a process, in seconds; -1 when unreadable.
double ProcCpuSeconds(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(field);
    if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double OwnCpuSeconds() {
  rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// ---- statistics -----------------------------------------------------------------------------

// Nearest-rank percentile of sorted samples.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::min(std::max<size_t>(rank, 1), sorted.size());
  return sorted[rank - 1];
}

void PrintLatency(const char* label, std::vector<double> samples, const std::vector<double>& ps) {
  std::sort(samples.begin(), samples.end());
  std::printf("%-24s", label);
  for (double p : ps) std::printf("  p%-2g %9.2f ms", p, Percentile(samples, p));
  std::printf("  max %9.2f ms  (n=%zu)\n", samples.empty() ? 0.0 : samples.back(), samples.size());
}

// ---- fsync probe ----------------------------------------------------------------------------

int FsyncProbe(const std::string& dir) {
  std::string path = dir + "/fsync-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "coordinator_load: cannot open %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  std::string block(4096, 'x');
  constexpr int kRounds = 200;
  Steady::time_point start = Steady::now();
  for (int i = 0; i < kRounds; ++i) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        ::fsync(fd) != 0) {
      std::fprintf(stderr, "coordinator_load: write/fsync %s: %s\n", path.c_str(), std::strerror(errno));
      ::close(fd);
      return 1;
    }
  }
  double seconds = Seconds(Steady::now() - start);
  ::close(fd);
  ::unlink(path.c_str());
  std::printf("fsync probe (%s): %d appends of 4 KiB + fsync in %.3f s: %.0f fsync/s, %.3f ms each\n",
              dir.c_str(), kRounds, seconds, kRounds / seconds, seconds / kRounds * 1e3);
  return 0;
}

// ---- main -----------------------------------------------------------------------------------

absl::StatusOr<Config> ParseFlags(const std::vector<std::string>& args) {
  auto flags = loratrf::CommandLine::Parse(
      args, {{"--address", true}, {"--coordinator-pid", true}, {"--jobs", true},
             {"--watchers", true}, {"--workers", true}, {"--slots", true}, {"--submitters", true},
             {"--queue-first", false},
             {"--train-rows", true}, {"--checkpoint-bytes", true}, {"--timeout-s", true},
             {"--sample-ms", true}});
  if (!flags.ok()) return flags.status();
  Config config;
  absl::StatusOr<std::string> address = flags->Require("--address");
  if (!address.ok()) return address.status();
  config.address = *address;
  config.queue_first = flags->Has("--queue-first");
  struct IntFlag {
    const char* name;
    int* value;
    int64_t lo, hi;
  };
  for (const IntFlag& flag : std::vector<IntFlag>{
           {"--coordinator-pid", &config.coordinator_pid, 0, 1 << 30},
           {"--jobs", &config.jobs, 1, 10'000'000},
           {"--watchers", &config.watchers, 0, 100'000},
           {"--workers", &config.workers, 1, 10'000},
           {"--slots", &config.slots, 1, 10'000},
           {"--submitters", &config.submitters, 1, 1'000},
           {"--train-rows", &config.train_rows, 0, 1'000},
           {"--checkpoint-bytes", &config.checkpoint_bytes, 1, 1 << 20},
           {"--timeout-s", &config.timeout_s, 1, 1'000'000},
           {"--sample-ms", &config.sample_ms, 10, 10'000}}) {
    absl::StatusOr<int64_t> value = flags->GetInt(flag.name, *flag.value, flag.lo, flag.hi);
    if (!value.ok()) return value.status();
    *flag.value = static_cast<int>(*value);
  }
  return config;
}

int Run(const Config& config) {
  Shared shared;
  shared.config = config;
  shared.checkpoint_data.resize(static_cast<size_t>(config.checkpoint_bytes));
  for (size_t i = 0; i < shared.checkpoint_data.size(); ++i) {
    shared.checkpoint_data[i] = static_cast<char>((i * 131 + 7) & 0xff);
  }
  shared.checkpoint_sha256 = loratrf::Sha256Hex(shared.checkpoint_data);

  std::printf("coordinator load: %d jobs, %d watchers, %d fake workers (%d CPU slot%s each), "
              "%d submitters; per job %d train rows + a %d-byte final checkpoint\n",
              config.jobs, config.watchers, config.workers, config.slots,
              config.slots == 1 ? "" : "s", config.submitters, config.train_rows,
              config.checkpoint_bytes);
  const double coordinator_cpu_start = ProcCpuSeconds(config.coordinator_pid);
  const ProcStatus at_start = ReadProcStatus(config.coordinator_pid);
  shared.start = Steady::now();

  // The fleet: registered first, so that it is there when jobs arrive, or with --queue-first
  // only once every job is submitted, so that the whole submission waits in the queue.
  std::vector<std::unique_ptr<FakeWorker>> workers;
  std::atomic<bool> heartbeats_stop{false};
  std::thread heartbeats;
  auto start_fleet = [&]() -> bool {
    for (int i = 0; i < config.workers; ++i) workers.push_back(std::make_unique<FakeWorker>(&shared, i));
    // Beating before the last worker registers: with a deep queue and many slots, registering
    // the whole fleet takes longer than a lease (each registration is followed by a pass).
    heartbeats = std::thread([&] {
      while (!heartbeats_stop) {
        Steady::time_point now = Steady::now();
        for (auto& worker : workers) worker->MaybeHeartbeat(now);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    for (int i = 0; i < config.workers; ++i) {
      if (!workers[i]->Register()) {
        std::fprintf(stderr, "coordinator_load: worker %d could not register; is the coordinator at %s?\n",
                     i, config.address.c_str());
        shared.errors.Print();
        heartbeats_stop = true;
        heartbeats.join();
        for (auto& worker : workers) worker->Stop();
        return false;
      }
    }
    return true;
  };
  if (!config.queue_first && !start_fleet()) return 1;

  // The sampler: the coordinator's RSS, and what it was when the queue was deepest.
  std::atomic<bool> sampler_stop{false};
  int64_t sampled_depth_max = -1, rss_at_peak_queue = -1;
  std::thread sampler([&] {
    while (!sampler_stop) {
      int64_t depth = shared.submitted.load() - shared.assigned.load();
      ProcStatus status = ReadProcStatus(config.coordinator_pid);
      if (depth > sampled_depth_max) {
        sampled_depth_max = depth;
        rss_at_peak_queue = status.rss_kib;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(config.sample_ms));
    }
  });

  WatchDispatcher dispatcher(&shared, config.watchers);
  std::thread watch_thread;
  if (config.watchers > 0) watch_thread = std::thread([&] { dispatcher.Run(); });

  std::atomic<int> next_index{0};
  std::vector<std::thread> submitters;
  for (int i = 0; i < config.submitters; ++i) {
    submitters.emplace_back(Submitter, &shared, i, &next_index);
  }

  // Progress on stderr every 10 s; done when every job completed or was abandoned.
  const Steady::time_point deadline = shared.start + std::chrono::seconds(config.timeout_s);
  Steady::time_point last_progress = Steady::now();
  bool timed_out = false;
  std::optional<Steady::time_point> submit_end;
  while (shared.completed + shared.abandoned < config.jobs) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Steady::time_point now = Steady::now();
    if (!submit_end && shared.submit_finished >= config.jobs) {
      submit_end = now;
      if (config.queue_first && !start_fleet()) return 1;
    }
    if (now - last_progress >= std::chrono::seconds(10)) {
      last_progress = now;
      std::fprintf(stderr, "  %6.0f s: submitted %lld, assigned %lld, completed %lld, errors %lld\n",
                   Seconds(now - shared.start), static_cast<long long>(shared.submitted.load()),
                   static_cast<long long>(shared.assigned.load()),
                   static_cast<long long>(shared.completed.load()),
                   static_cast<long long>(shared.errors.total()));
    }
    if (now >= deadline) {
      timed_out = true;
      break;
    }
  }
  const Steady::time_point work_end = Steady::now();
  if (!submit_end) submit_end = work_end;
  shared.stopping = true;
  for (auto& thread : submitters) thread.join();

  int watchers_cancelled = 0;
  if (config.watchers > 0) {
    watchers_cancelled = dispatcher.Finish(std::chrono::seconds(timed_out ? 0 : 30));
    watch_thread.join();
  }
  const ProcStatus at_end = ReadProcStatus(config.coordinator_pid);
  const double coordinator_cpu = ProcCpuSeconds(config.coordinator_pid) - coordinator_cpu_start;
  sampler_stop = true;
  sampler.join();
  heartbeats_stop = true;  // before the workers stop: MaybeHeartbeat must not run on them
  if (heartbeats.joinable()) heartbeats.join();
  for (auto& worker : workers) worker->Stop();
  const double wall = Seconds(Steady::now() - shared.start);

  // ---- the report ----
  std::vector<double> submit_ms, schedule_ms, e2e_ms;
  Steady::time_point first_submit = Steady::time_point::max(), last_success = shared.start;
  Steady::time_point last_assigned = shared.start;
  int64_t never_assigned = 0, assigned_not_done = 0;
  std::vector<std::string> stuck_examples;
  {
    std::lock_guard<std::mutex> lock(shared.jobs.mu());
    for (const auto& [id, record] : shared.jobs.records()) {
      if (record.submit_start && record.submit_done) {
        submit_ms.push_back(Ms(*record.submit_done - *record.submit_start));
        first_submit = std::min(first_submit, *record.submit_start);
        if (record.assigned) schedule_ms.push_back(Ms(*record.assigned - *record.submit_done));
        if (record.succeeded) e2e_ms.push_back(Ms(*record.succeeded - *record.submit_start));
      }
      if (record.succeeded) last_success = std::max(last_success, *record.succeeded);
      if (record.assigned) last_assigned = std::max(last_assigned, *record.assigned);
      if (!record.assigned) ++never_assigned;
      if (record.assigned && !record.succeeded) ++assigned_not_done;
      if (!record.succeeded && stuck_examples.size() < 5) stuck_examples.push_back(id);
    }
  }
  std::vector<double> lag_ms;
  int64_t replayed = 0, watched = 0, ended_early = 0;
  for (const WatcherStats& stats : dispatcher.stats()) {
    lag_ms.insert(lag_ms.end(), stats.lag_ms.begin(), stats.lag_ms.end());
    replayed += stats.replayed;
    watched += stats.jobs;
    ended_early += stats.ended_before_final;
  }
  int64_t cancellations = 0, heartbeats_sent = 0;
  for (auto& worker : workers) {
    cancellations += worker->cancellations();
    heartbeats_sent += worker->heartbeats();
  }

  const std::vector<double> p3 = {50, 90, 99}, p2 = {50, 99};
  std::printf("\n");
  PrintLatency("submit latency", submit_ms, p3);
  PrintLatency("schedule latency", schedule_ms, p3);
  PrintLatency("end-to-end job latency", e2e_ms, p2);
  PrintLatency("watch delivery lag", lag_ms, p2);
  std::printf("%-24s  %lld jobs watched, %zu live events timed, %lld replayed events not timed, "
              "%lld streams ended OK without a final state\n",
              "", static_cast<long long>(watched), lag_ms.size(), static_cast<long long>(replayed),
              static_cast<long long>(ended_early));
  const double active_s = first_submit == Steady::time_point::max()
                              ? 0
                              : Seconds(last_success - first_submit);
  std::printf("%-24s  %.1f jobs/s (%lld completed in %.1f s, first submit to last success)\n",
              "throughput", active_s > 0 ? shared.completed / active_s : 0.0,
              static_cast<long long>(shared.completed.load()), active_s);
  if (config.queue_first && submit_end) {
    // The scheduler's part: the whole queue is there when the fleet arrives.
    const double drain_s = Seconds(last_success - *submit_end);
    std::printf("%-24s  %.1f jobs/s (%lld completed in %.1f s, fleet start to last success)\n",
                "drain", drain_s > 0 ? shared.completed / drain_s : 0.0,
                static_cast<long long>(shared.completed.load()), drain_s);
    // The queue's drain alone: how fast the scheduler hands the queue out when there are slots.
    const double assign_s = Seconds(last_assigned - *submit_end);
    std::printf("%-24s  %.1f jobs/s (%lld assigned in %.2f s, fleet start to last assignment; "
                "%d slots)\n",
                "queue drain", assign_s > 0 ? shared.assigned / assign_s : 0.0,
                static_cast<long long>(shared.assigned.load()), assign_s,
                config.workers * config.slots);
  }
  const double submit_s = Seconds(*submit_end - shared.start);
  std::printf("%-24s  %.1f s for %lld submits (%.1f submits/s)\n", "submit phase", submit_s,
              static_cast<long long>(shared.submitted.load()),
              submit_s > 0 ? shared.submitted / submit_s : 0.0);
  std::printf("%-24s  %lld (submitted minus assigned, as the generator saw it)\n",
              "max queue depth", static_cast<long long>(shared.max_depth.load()));
  if (config.coordinator_pid > 0) {
    std::printf("%-24s  peak (VmHWM) %.1f MiB; at the deepest sampled queue (%lld) %.1f MiB; "
                "at start %.1f MiB; at end %.1f MiB\n",
                "coordinator RSS", at_end.hwm_kib / 1024.0, static_cast<long long>(sampled_depth_max),
                rss_at_peak_queue / 1024.0, at_start.rss_kib / 1024.0, at_end.rss_kib / 1024.0);
    std::printf("%-24s  %.1f s user+system over the run (%.0f%% of one core)\n", "coordinator CPU",
                coordinator_cpu, wall > 0 ? 100 * coordinator_cpu / wall : 0.0);
  }
  std::printf("%-24s  %.1f s user+system (%.0f%% of one core)\n", "generator CPU", OwnCpuSeconds(),
              wall > 0 ? 100 * OwnCpuSeconds() / wall : 0.0);
  std::printf("%-24s  %.1f s\n", "wall time", wall);
  std::printf("%-24s  %lld heartbeats, %lld cancellations received\n", "workers",
              static_cast<long long>(heartbeats_sent), static_cast<long long>(cancellations));
  std::printf("%-24s  %lld\n", "errors (non-OK RPCs)", static_cast<long long>(shared.errors.total()));
  shared.errors.Print();
  const int64_t not_completed = config.jobs - shared.completed;
  std::printf("%-24s  %lld (never assigned %lld, assigned but not succeeded %lld)%s\n",
              "jobs not completed", static_cast<long long>(not_completed),
              static_cast<long long>(never_assigned), static_cast<long long>(assigned_not_done),
              timed_out ? "  TIMED OUT" : "");
  for (const std::string& id : stuck_examples) std::printf("  e.g. %s\n", id.c_str());
  if (watchers_cancelled > 0) {
    std::printf("%-24s  %d watch streams still open %s after the last job, cancelled\n", "watchers",
                watchers_cancelled, timed_out ? "at the timeout" : "30 s");
  }
  bool ok = not_completed == 0 && shared.errors.total() == 0 && watchers_cancelled == 0;
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "--fsync-probe") return FsyncProbe(args[1]);
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::fputs(
        "usage: coordinator_load --address HOST:PORT [--coordinator-pid PID] [--jobs N]\n"
        "           [--watchers N] [--workers N] [--slots N] [--submitters N] [--train-rows N] [--queue-first]\n"
        "           [--checkpoint-bytes N] [--timeout-s S] [--sample-ms MS]\n"
        "       coordinator_load --fsync-probe DIR\n",
        args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  absl::StatusOr<Config> config = ParseFlags(args);
  if (!config.ok()) {
    std::fprintf(stderr, "coordinator_load: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  return Run(*config);
}

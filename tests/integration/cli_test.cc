// The command-line contracts, through the real binaries: what they print, and that bad input
// is one line on stderr with exit status 2.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "absl/strings/str_split.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/spec/job_spec.h"
#include "tests/integration/subprocess.h"

namespace loratrf {
namespace {

using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kSpecDir = std::string(LORATRF_SOURCE_DIR) + "/tests/data/specs/";

void ExpectOneLineUsageError(const ProcessResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(fragment));
}

TEST(LoratrfValidate, PrintsTheSpecWithDefaultsAndItReadsBack) {
  ProcessResult r = RunProcess({BinaryPath("loratrf"), "validate",
                                kSpecDir + "minimal-causal-lm.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("lr_scheduler: cosine"));  // a default, filled in
  auto printed = spec::ParseJobSpecYaml(r.out);
  auto original = spec::LoadJobSpecFile(kSpecDir + "minimal-causal-lm.yaml");
  ASSERT_TRUE(printed.ok()) << printed.status() << "\n" << r.out;
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*printed, *original));
}

TEST(LoratrfValidate, JsonOutputIsJson) {
  ProcessResult r = RunProcess({BinaryPath("loratrf"), "validate", kSpecDir + "sst2-loratrf.yaml",
                                "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["training"]["micro_batch_size"], 8);
  EXPECT_EQ(out["adapter"]["filter"], "bottleneck");
}

TEST(LoratrfValidate, BadSpecNamesTheFieldAndExitsTwo) {
  auto dir = std::filesystem::temp_directory_path() / ("loratrf-cli-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "bad.yaml").string();
  std::ofstream(path) << "name: x\nmodel: {path: m}\ntask: causal_lm\ndata: {train: t}\n"
                         "adapter: {target_modules: [q_proj]}\ntraining: {learning_rate: -1}\n";
  ProcessResult r = RunProcess({BinaryPath("loratrf"), "validate", path});
  std::filesystem::remove_all(dir);
  ExpectOneLineUsageError(r, "training.learning_rate: must be in (0, 1], got -1");
}

TEST(LoratrfValidate, UsageMistakesExitTwo) {
  ExpectOneLineUsageError(RunProcess({BinaryPath("loratrf"), "validate"}),
                          "validate takes one spec file");
  ExpectOneLineUsageError(RunProcess({BinaryPath("loratrf"), "validate", "/nonexistent.yaml"}),
                          "/nonexistent.yaml: cannot read the spec file");
  ExpectOneLineUsageError(
      RunProcess({BinaryPath("loratrf"), "validate", kSpecDir + "sst2-loratrf.yaml", "-o", "xml"}),
      "-o: must be one of yaml | json, got 'xml'");
  ExpectOneLineUsageError(
      RunProcess({BinaryPath("loratrf"), "validate", kSpecDir + "sst2-loratrf.yaml", "--frobnicate"}),
      "unknown flag --frobnicate");
  ProcessResult unknown = RunProcess({BinaryPath("loratrf"), "frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, StartsWith("loratrf: unknown command 'frobnicate'\n"));
}

// ---- the gRPC commands, without a coordinator -------------------------------------------------

// A loopback socket that listens but never accepts: a coordinator address that nobody answers.
// Accepted() tells whether a client connected (the kernel completes the handshake anyway).
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);  // accept never waits
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool Accepted() {
    int client = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) return false;
    ::close(client);
    return true;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port on which nothing listens (bound, then closed).
std::string UnusedAddress() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

ProcessResult Cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BinaryPath("loratrf")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProcess(argv, "", 60);
}

TEST(LoratrfCli, EveryCommandsUsageMistakesExitTwoWithOneLine) {
  const std::string kAddr = "--coordinator=127.0.0.1:1";
  const std::string spec = kSpecDir + "sst2-loratrf.yaml";
  TempDir dir;
  std::filesystem::create_directories(dir / "exists");
  struct Case {
    std::vector<std::string> args;
    std::string fragment;
  };
  std::vector<Case> cases = {
      {{"submit"}, "submit takes one spec file"},
      {{"submit", spec, spec}, "submit takes one spec file"},
      {{"submit", "/nonexistent.yaml"}, "/nonexistent.yaml: cannot read the spec file"},
      {{"submit", spec, "--idempotency-key="}, "--idempotency-key: must be 1 to 128"},
      // The coordinator refuses keys with spaces; the CLI says so before sending anything.
      {{"submit", spec, "--idempotency-key", "nightly run"},
       "--idempotency-key: must be 1 to 128 printable ASCII characters without spaces"},
      {{"submit", spec, "--frobnicate"}, "unknown flag --frobnicate"},
      {{"get"}, "get takes one job id"},
      {{"get", "a", "b"}, "get takes one job id"},
      {{"get", "j1", "-o", "yaml"}, "-o: must be one of text | json, got 'yaml'"},
      {{"list", "extra"}, "list takes no arguments, got 'extra'"},
      {{"list", "--state", "done"}, "--state: must be one of queued | scheduled | running"},
      {{"list", "--state"}, "--state: needs a value"},
      {{"list", "--page-size", "0"}, "--page-size: must be an integer in [1, 1000]"},
      {{"list", "-o", "yaml"}, "-o: must be one of text | json | wide, got 'yaml'"},
      {{"list", "--sort", "size"}, "--sort: must be one of created | priority | queue | name"},
      {{"list", "-l", "novalue"}, "-l: expected KEY=VALUE"},
      {{"list", "-l", "Team=nlp"}, "-l: a label key must be 1 to 63 of [a-z0-9._/-]"},
      {{"list", "-l", "team=a,team=b"}, "-l: team given more than once"},
      {{"list", "-l"}, "-l: needs a value"},
      {{"list", "--sweep", "a b"}, "--sweep: may contain only A-Z, a-z, 0-9"},
      {{"submit", spec, "--sweep", "a/b"}, "--sweep: may contain only A-Z, a-z, 0-9"},
      {{"watch"}, "watch takes one job id"},
      {{"watch", "j1", "--follow"}, "unknown flag --follow"},
      {{"metrics"}, "metrics takes one job id: loratrf metrics ID [-o text|json|csv]"},
      {{"metrics", "a", "b"}, "metrics takes one job id"},
      {{"metrics", "j1", "-o", "xml"}, "-o: must be one of text | json | csv, got 'xml'"},
      {{"metrics", "j1", "--follow"}, "unknown flag --follow"},
      {{"cancel"}, "cancel takes one job id"},
      {{"cancel", "j1", "--reason"}, "--reason: needs a value"},
      {{"checkpoints"}, "checkpoints takes one job id"},
      {{"download", "j1"}, "--output: required"},
      {{"download", "--output", dir / "new"}, "download takes one job id"},
      {{"download", "j1", "--output", dir / "exists"}, "already exists"},
      {{"download", "j1", "--output", dir / "no/such/new"}, "does not exist"},
      {{"download", "j1", "--checkpoint=", "--output", dir / "new"}, "--checkpoint: must not be empty"},
      {{"workers", "extra"}, "workers takes no arguments"},
      {{"pause"}, "pause takes one job id: loratrf pause ID [--reason R]"},
      {{"pause", "a", "b"}, "pause takes one job id"},
      {{"pause", "j1", "-o", "yaml"}, "-o: must be one of text | json, got 'yaml'"},
      {{"resume"}, "resume takes one job id: loratrf resume ID"},
      {{"resume", "j1", "--reason", "x"}, "unknown flag --reason"},
      {{"workers", "cordon"}, "workers cordon takes one worker name"},
      {{"workers", "drain", "a", "b"}, "workers drain takes one worker name"},
      {{"workers", "uncordon", "Bad Name!"}, "NAME"},
      {{"workers", "drain", "node-a", "--reason"}, "--reason: needs a value"},
      {{"--frobnicate", "get", "j1"}, "unknown flag --frobnicate"},
      {{"--coordinator"}, "--coordinator: needs a value"},
      {{kAddr, "get", "j1", kAddr}, "--coordinator: given more than once"},
      {{kAddr, "--token-file", dir / "missing", "get", "j1"}, "--token-file"},
      {{kAddr, "--tls-ca", spec, "get", "j1"}, "--tls-ca"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    std::vector<std::string> args = c.args;
    // Each command must reject its input before it looks for a coordinator.
    if (c.args[0] != "--coordinator" && c.args[0] != kAddr) args.insert(args.begin(), kAddr);
    if (c.args[0] == kAddr || c.args[0] == "--coordinator") args = c.args;
    ProcessResult r = Cli(args);
    ExpectOneLineUsageError(r, c.fragment);
    EXPECT_THAT(r.err, StartsWith("loratrf: "));
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "new"));
  // Nothing but the two directories made above: no temp directory left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()), 1);
}

TEST(LoratrfCli, ServerCommandsNeedACoordinatorAddress) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"get", "j1"}, {"list"}, {"watch", "j1"}, {"workers"},
        {"cancel", "j1"}, {"checkpoints", "j1"}, {"metrics", "j1"},
        {"submit", kSpecDir + "sst2-loratrf.yaml"}}) {
    args.insert(args.begin(), {"/usr/bin/env", "-u", "LORATRF_COORDINATOR", BinaryPath("loratrf")});
    ExpectOneLineUsageError(RunProcess(args),
                            "no coordinator address: pass --coordinator HOST:PORT or set "
                            "LORATRF_COORDINATOR");
  }
}

TEST(LoratrfCli, SubmitWithABadSpecNamesTheFieldAndSendsNothing) {
  TempDir dir;
  std::string path = dir / "bad.yaml";
  std::ofstream(path) << "name: x\nmodel: {path: m}\ntask: causal_lm\ndata: {train: t}\n"
                         "adapter: {target_modules: [q_proj]}\ntraining: {learning_rate: -1}\n";
  SilentListener coordinator;
  ProcessResult r = Cli({"--coordinator", coordinator.address(), "submit", path});
  ExpectOneLineUsageError(r, "training.learning_rate: must be in (0, 1], got -1");
  EXPECT_FALSE(coordinator.Accepted()) << "submit contacted the coordinator";

  // Resolving the relative paths against the spec's directory is checked too: a data path that
  // becomes too long is refused here, not by the server.
  std::string deep(4090, 'd');  // valid as written, too long once made absolute
  std::ofstream(dir / "long.yaml") << "name: x\nmodel: {path: /m}\ntask: causal_lm\n"
                                      "data: {train: " << deep << "}\n"
                                      "adapter: {target_modules: [q_proj]}\n";
  r = Cli({"--coordinator", coordinator.address(), "submit", dir / "long.yaml"});
  ExpectOneLineUsageError(r, "data.train: must be at most 4096 bytes");
  EXPECT_FALSE(coordinator.Accepted()) << "submit contacted the coordinator";
}

TEST(LoratrfCli, AnUnreachableCoordinatorExitsOneWithAClearMessage) {
  const std::string addr = UnusedAddress();
  TempDir dir;
  for (std::vector<std::string> args :
       {std::vector<std::string>{"get", "j1"}, {"list", "--all"}, {"watch", "j1"}, {"workers"},
        {"cancel", "j1"}, {"checkpoints", "j1", "-o", "json"}, {"metrics", "j1", "-o", "csv"},
        {"download", "j1", "--output", dir / "out"},
        {"submit", kSpecDir + "sst2-loratrf.yaml", "--idempotency-key", "k1"}}) {
    SCOPED_TRACE(::testing::PrintToString(args));
    args.insert(args.begin(), {"--coordinator", addr});
    ProcessResult r = Cli(args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_THAT(r.err, StartsWith("loratrf: cannot reach coordinator at " + addr));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "download left something behind";
}

TEST(LoratrfCli, TheEnvironmentNamesTheCoordinatorAndTheFlagWins) {
  const std::string from_env = UnusedAddress();
  ProcessResult r = RunProcess({"/usr/bin/env", "LORATRF_COORDINATOR=" + from_env,
                                BinaryPath("loratrf"), "get", "j1"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, StartsWith("loratrf: cannot reach coordinator at " + from_env + ":"));

  const std::string from_flag = UnusedAddress();
  r = RunProcess({"/usr/bin/env", "LORATRF_COORDINATOR=" + from_env, BinaryPath("loratrf"),
                  "workers", "--coordinator", from_flag});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, StartsWith("loratrf: cannot reach coordinator at " + from_flag + ":"));
}

TEST(LoratrfCli, HelpListsEveryCommand) {
  ProcessResult r = Cli({"--help"});
  ASSERT_EQ(r.exit_code, 0);
  for (const char* command : {"validate", "submit", "get", "list", "watch", "metrics", "cancel",
                              "checkpoints", "download", "workers", "pause", "resume",
                              "cordon", "drain", "uncordon", "LORATRF_COORDINATOR"}) {
    EXPECT_THAT(r.out, HasSubstr(command));
  }
}

// ---- against a fake coordinator (the CLI's side of the protocol) ----------------------------
// The real coordinator's end-to-end tests live elsewhere; this fake answers from fixed data and
// records what the CLI sent.

class FakeJobService final : public v1::JobService::Service {
 public:
  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    submitted.push_back(*request);
    auto token = context->client_metadata().find("authorization");
    if (token != context->client_metadata().end()) {
      authorization = std::string(token->second.data(), token->second.size());
    }
    if (request->spec().name() == "rejected") {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "spec.name: rejected by the server");
    }
    response->mutable_job()->set_id("job-7");
    response->mutable_job()->set_state(v1::JOB_STATE_QUEUED);
    response->set_existing(request->idempotency_key() == "again");
    return grpc::Status::OK;
  }
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                      v1::Job* job) override {
    if (request->id() == "missing") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job missing: not found");
    }
    job->set_id(request->id());
    job->set_name("sst2");
    job->set_state(request->id() == "bad" ? v1::JOB_STATE_RUNNING : v1::JOB_STATE_SUCCEEDED);
    job->set_attempt(2);
    job->add_workers("node-a");
    job->mutable_progress()->set_step(4);
    job->mutable_progress()->set_total_steps(4);
    return grpc::Status::OK;
  }
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    list_requests.push_back(*request);
    int page = request->page_token().empty() ? 0 : std::stoi(request->page_token());
    response->add_jobs()->set_id("job-p" + std::to_string(page));
    if (page < 2) response->set_next_page_token(std::to_string(page + 1));
    return grpc::Status::OK;
  }
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      watch_requests.push_back(*request);
    }
    if (request->id() == "missing") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job missing: not found");
    }
    auto state = [&](uint64_t seq, v1::JobState from, v1::JobState to, std::string reason) {
      v1::JobEvent e;
      e.set_seq(seq);
      e.set_attempt(1);
      e.mutable_state_change()->set_from(from);
      e.mutable_state_change()->set_to(to);
      e.mutable_state_change()->set_reason(reason);
      return e;
    };
    std::vector<v1::JobEvent> events;
    events.push_back(state(1, v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, ""));
    for (uint64_t step = 1; step <= 2; ++step) {
      v1::JobEvent e;
      e.set_seq(1 + step);
      e.set_attempt(1);
      e.mutable_train()->set_step(step * 2);
      e.mutable_train()->set_loss(1.0 / static_cast<double>(step));
      events.push_back(e);
    }
    if (request->id() == "bad") {
      events.push_back(state(4, v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED, "data.train: bad row 3"));
    } else {
      events.push_back(state(4, v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED, ""));
    }
    for (const v1::JobEvent& e : events) {
      if (e.seq() >= request->from_seq()) writer->Write(e);
    }
    return grpc::Status::OK;
  }
  grpc::Status DownloadCheckpoint(grpc::ServerContext*, const v1::DownloadCheckpointRequest* request,
                                  grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) override {
    const std::string content = "adapter bytes";
    v1::DownloadCheckpointResponse header;
    v1::Checkpoint* c = header.mutable_checkpoint();
    c->set_id("ckpt-1");
    c->set_step(4);
    c->set_final(true);
    v1::CheckpointFile* f = c->add_files();
    f->set_path(request->job_id() == "evil" ? "../evil.safetensors" : "adapter/model.safetensors");
    f->set_size_bytes(content.size());
    f->set_sha256(Sha256Hex(request->job_id() == "corrupt" ? "other bytes" : content));
    writer->Write(header);
    for (size_t offset = 0; offset < content.size(); offset += 5) {
      v1::DownloadCheckpointResponse chunk;
      chunk.mutable_chunk()->set_path(f->path());
      chunk.mutable_chunk()->set_offset(offset);
      chunk.mutable_chunk()->set_data(content.substr(offset, 5));
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  std::mutex mu;
  std::vector<v1::SubmitJobRequest> submitted;
  std::vector<v1::ListJobsRequest> list_requests;
  std::vector<v1::WatchJobRequest> watch_requests;
  std::string authorization;
};

class LoratrfCliFake : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override { server_->Shutdown(); }
  ProcessResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--coordinator", "127.0.0.1:" + std::to_string(port_)});
    return Cli(args);
  }

  FakeJobService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(LoratrfCliFake, SubmitResolvesRelativePathsAndPrintsTheIdLast) {
  TempDir dir;
  std::filesystem::create_directories(dir / "jobs");
  std::ofstream(dir / "jobs/job.yaml") << "name: ok\nmodel: {path: ../models/tiny}\ntask: causal_lm\n"
                                          "data: {train: train.jsonl}\n"
                                          "adapter: {target_modules: [q_proj]}\n";
  std::ofstream(dir / "token") << "s3cret\nignored\n";
  ProcessResult r = Run({"--token-file", dir / "token", "submit", dir / "jobs/job.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job-7\n");
  EXPECT_EQ(r.err, "");
  ASSERT_EQ(service_.submitted.size(), 1u);
  EXPECT_EQ(service_.submitted[0].spec().model().path(), (dir.path() / "models/tiny").string());
  EXPECT_EQ(service_.submitted[0].spec().data().train(), dir / "jobs/train.jsonl");
  EXPECT_EQ(service_.submitted[0].idempotency_key(), "");
  EXPECT_EQ(service_.authorization, "Bearer s3cret");

  r = Run({"submit", dir / "jobs/job.yaml", "--idempotency-key", "again", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("matched job job-7"));
  nlohmann::json out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["job"]["id"], "job-7");
  EXPECT_EQ(out["existing"], true);

  std::ofstream(dir / "jobs/rejected.yaml") << "name: rejected\nmodel: {path: /m}\ntask: causal_lm\n"
                                               "data: {train: /t}\nadapter: {target_modules: [q]}\n";
  ExpectOneLineUsageError(Run({"submit", dir / "jobs/rejected.yaml"}),
                          "spec.name: rejected by the server");
}

TEST_F(LoratrfCliFake, GetListAndTheirJson) {
  ProcessResult r = Run({"get", "job-1", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json job = nlohmann::json::parse(r.out);
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_EQ(job["workers"], nlohmann::json::array({"node-a"}));
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  r = Run({"get", "job-1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("state:    succeeded\n"));
  EXPECT_THAT(r.out, HasSubstr("workers:  node-a\n"));
  r = Run({"get", "missing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "loratrf: job missing: not found\n");

  r = Run({"list", "--all", "--state", "running", "--state=queued,running", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json list = nlohmann::json::parse(r.out);
  EXPECT_EQ(list["jobs"].size(), 3u);
  EXPECT_EQ(list["next_page_token"], "");
  ASSERT_EQ(service_.list_requests.size(), 3u);
  EXPECT_EQ(service_.list_requests[0].states_size(), 2);
  r = Run({"list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("ID      NAME  STATE"));
  EXPECT_THAT(r.out, HasSubstr("job-p0"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("job-p1")));
  EXPECT_THAT(r.err, HasSubstr("--all"));
}

TEST_F(LoratrfCliFake, WatchPrintsALineAnEventAndExitsByTheFinalState) {
  ProcessResult r = Run({"watch", "job-1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "#1 state queued -> running (attempt 1)\n"
            "#2 train step 2/4 epoch 0 loss 1 lr 0\n"
            "#3 train step 4/4 epoch 0 loss 0.5 lr 0\n"
            "#4 state running -> succeeded (attempt 1)\n");
  r = Run({"watch", "bad"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "loratrf: job bad failed: data.train: bad row 3\n");
  r = Run({"watch", "job-1", "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 4);
  EXPECT_EQ(nlohmann::json::parse(r.out.substr(0, r.out.find('\n')))["seq"], "1");
}

TEST_F(LoratrfCliFake, MetricsReadsTheStoredHistoryWithoutFollowing) {
  ProcessResult r = Run({"metrics", "job-1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "TYPE   STEP  EPOCH  LOSS  LR  GRAD_NORM  TOK/S  EVAL_LOSS  EVAL_ACC\n"
            "train  2     0      1     0   -          -      -          -\n"
            "train  4     0      0.5   0   -          -      -          -\n");
  ASSERT_EQ(service_.watch_requests.size(), 1u);
  EXPECT_TRUE(service_.watch_requests[0].no_follow());
  EXPECT_LE(service_.watch_requests[0].from_seq(), 1u);
  r = Run({"metrics", "missing", "-o", "json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "loratrf: job missing: not found\n");
}

TEST_F(LoratrfCliFake, DownloadVerifiesEveryFileAndTrustsNoPath) {
  TempDir dir;
  ProcessResult r = Run({"download", "job-1", "--output", dir / "adapter"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("downloaded checkpoint ckpt-1 (step 4, final, 1 files, 13 B) to "));
  std::ifstream in(dir / "adapter/adapter/model.safetensors");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "adapter bytes");

  r = Run({"download", "corrupt", "--output", dir / "corrupt"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("sha256"));
  r = Run({"download", "evil", "--output", dir / "evil"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("unsafe file list: checkpoint.files[0].path: '../evil.safetensors'"));
  EXPECT_FALSE(std::filesystem::exists(dir.path().parent_path() / "evil.safetensors"));
  // Only the good download is there; the failed ones left no temp directories.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()), 1);
}

TEST_F(LoratrfCliFake, UnimplementedCallsFailWithOneLine) {
  ProcessResult r = Run({"workers"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("loratrf: coordinator at 127.0.0.1:"));
  EXPECT_THAT(r.err, HasSubstr("UNIMPLEMENTED"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
}

// pause, resume and the worker actions against a fake that records what the CLI sent.
class FakeControlService final : public v1::JobService::Service {
 public:
  grpc::Status PauseJob(grpc::ServerContext*, const v1::PauseJobRequest* request,
                        v1::Job* job) override {
    std::lock_guard<std::mutex> lock(mu);
    pauses.push_back(*request);
    if (request->id() == "done") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "job done is JOB_STATE_SUCCEEDED: only a job that has not finished "
                          "can be paused");
    }
    job->set_id(request->id());
    job->set_state(request->id() == "queued" ? v1::JOB_STATE_QUEUED : v1::JOB_STATE_RUNNING);
    job->set_paused(true);
    return grpc::Status::OK;
  }
  grpc::Status ResumeJob(grpc::ServerContext*, const v1::ResumeJobRequest* request,
                         v1::Job* job) override {
    job->set_id(request->id());
    job->set_state(v1::JOB_STATE_QUEUED);
    return grpc::Status::OK;
  }
  grpc::Status CordonWorker(grpc::ServerContext*, const v1::CordonWorkerRequest* request,
                            v1::Worker* worker) override {
    std::lock_guard<std::mutex> lock(mu);
    cordons.push_back(*request);
    if (request->name() == "ghost") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "worker ghost is not known");
    }
    worker->set_name(request->name());
    worker->set_state(v1::WORKER_STATE_READY);
    worker->set_cordoned(request->action() != v1::CordonWorkerRequest::ACTION_UNCORDON);
    worker->add_running_jobs("j-1");
    return grpc::Status::OK;
  }
  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse* response) override {
    v1::Worker* worker = response->add_workers();
    worker->set_name("node-a");
    worker->set_state(v1::WORKER_STATE_READY);
    worker->set_slots(2);
    worker->set_free_slots(2);
    worker->set_cordoned(true);
    return grpc::Status::OK;
  }

  std::mutex mu;
  std::vector<v1::PauseJobRequest> pauses;
  std::vector<v1::CordonWorkerRequest> cordons;
};

class LoratrfCliControl : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }
  ProcessResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--coordinator", "127.0.0.1:" + std::to_string(port_)});
    return Cli(args);
  }

  FakeControlService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(LoratrfCliControl, PauseAndResumeSayWhatHappened) {
  ProcessResult r = Run({"pause", "running", "--reason", "demo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "running running pausing (its ranks checkpoint and stop, then it is held)\n");
  r = Run({"pause", "queued"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("queued queued paused (held until `loratrf resume queued`)"));
  {
    std::lock_guard<std::mutex> lock(service_.mu);
    ASSERT_EQ(service_.pauses.size(), 2u);
    EXPECT_EQ(service_.pauses[0].reason(), "demo");
  }
  r = Run({"pause", "queued", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"paused\":true"));
  r = Run({"pause", "done"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("only a job that has not finished can be paused"));
  r = Run({"resume", "queued"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "queued queued resumed\n");
}

TEST_F(LoratrfCliControl, WorkersCordonDrainUncordonAndTheListShowsTheCordon) {
  ProcessResult r = Run({"workers", "drain", "node-a", "--reason", "kernel upgrade"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "worker node-a cordoned; draining 1 job(s): they checkpoint, stop and are "
                   "requeued elsewhere\n");
  r = Run({"workers", "cordon", "node-a", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"cordoned\":true"));
  r = Run({"workers", "uncordon", "node-a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "worker node-a uncordoned\n");
  {
    std::lock_guard<std::mutex> lock(service_.mu);
    ASSERT_EQ(service_.cordons.size(), 3u);
    EXPECT_EQ(service_.cordons[0].action(), v1::CordonWorkerRequest::ACTION_DRAIN);
    EXPECT_EQ(service_.cordons[0].reason(), "kernel upgrade");
    EXPECT_EQ(service_.cordons[1].action(), v1::CordonWorkerRequest::ACTION_CORDON);
    EXPECT_EQ(service_.cordons[2].action(), v1::CordonWorkerRequest::ACTION_UNCORDON);
  }
  r = Run({"workers", "cordon", "ghost"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("worker ghost is not known"));
  r = Run({"workers"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ready,cordoned"));
}

// ---- against a real coordinator --------------------------------------------------------------
// `metrics` reads what the coordinator stored: a real loratrf-coordinator on loopback, with this
// test in the agent's place (it reports train and eval rows through WorkerService exactly as an
// agent relays them from metrics.jsonl), so no training has to run.

class LoratrfCliCoordinator : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "data");
    coordinator_ = std::make_unique<testing::BackgroundProcess>(
        std::vector<std::string>{BinaryPath("loratrf-coordinator"), "--listen", "127.0.0.1:0",
                                 "--data-dir", dir_ / "data"},
        dir_ / "coordinator.log");
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          address_ = testing::Slurp(dir_ / "data/coordinator.address");
          return !address_.empty() && address_.back() == '\n';
        },
        30))
        << testing::Slurp(dir_ / "coordinator.log");
    address_.pop_back();
    workers_ = v1::WorkerService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    return context;
  }

  ProcessResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--coordinator", address_});
    return Cli(args);
  }

  TempDir dir_;
  std::unique_ptr<testing::BackgroundProcess> coordinator_;
  std::string address_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(LoratrfCliCoordinator, MetricsPrintsTheStoredRowsOfARunningAndAFinishedJob) {
  // A worker that takes the job.
  v1::RegisterRequest reg;
  reg.set_name("node-1");
  reg.set_slots(2);
  reg.set_device(v1::DEVICE_CPU);
  reg.set_address("127.0.0.1");
  reg.set_version("test");
  v1::RegisterResponse lease;
  grpc::Status status = workers_->Register(Context().get(), reg, &lease);
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::StreamCommandsRequest open;
  open.set_name("node-1");
  open.set_lease_id(lease.lease_id());
  auto stream_context = Context();
  auto commands = workers_->StreamCommands(stream_context.get(), open);

  ProcessResult submitted = Run({"submit", kSpecDir + "sst2-loratrf.yaml"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  std::string id = submitted.out.substr(0, submitted.out.size() - 1);
  id = id.substr(id.rfind('\n') == std::string::npos ? 0 : id.rfind('\n') + 1);
  v1::WorkerCommand command;
  ASSERT_TRUE(commands->Read(&command)) << commands->Finish().error_message();
  ASSERT_TRUE(command.has_assign());
  ASSERT_EQ(command.assign().job_id(), id);

  // What the agent relays: the ranks are up, four steps, an eval after steps 2 and 4, a log.
  v1::ReportEventsRequest report;
  report.set_worker("node-1");
  report.set_lease_id(lease.lease_id());
  report.set_job_id(id);
  report.set_attempt(command.assign().attempt());
  report.add_events()->mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  for (uint64_t step = 1; step <= 4; ++step) {
    v1::TrainMetrics* train = report.add_events()->mutable_train();
    train->set_step(step);
    train->set_epoch(0.25 * static_cast<double>(step));
    train->set_loss(1.0 / static_cast<double>(step));
    train->set_learning_rate(3e-4);
    train->set_grad_norm(1.5);
    train->set_tokens_per_second(1000);
    if (step % 2 == 0) {
      v1::EvalMetrics* eval = report.add_events()->mutable_eval();
      eval->set_step(step);
      eval->set_loss(0.5 / static_cast<double>(step));
      eval->set_accuracy(0.25 * static_cast<double>(step));
      eval->set_examples(64);
    }
  }
  report.add_events()->mutable_log()->set_text("not a metric");
  v1::ReportEventsResponse reported;
  status = workers_->ReportEvents(Context().get(), report, &reported);
  ASSERT_TRUE(status.ok()) << status.error_message();

  const std::string kCsv =
      "type,step,epoch,loss,lr,grad_norm,tokens_per_second,samples_per_second,step_seconds,"
      "eval_loss,eval_accuracy,eval_examples\n"
      "train,1,0.25,1,0.0003,1.5,1000,0,0,,,\n"
      "train,2,0.5,0.5,0.0003,1.5,1000,0,0,,,\n"
      "eval,2,,,,,,,,0.25,0.5,64\n"
      "train,3,0.75,0.3333333333333333,0.0003,1.5,1000,0,0,,,\n"
      "train,4,1,0.25,0.0003,1.5,1000,0,0,,,\n"
      "eval,4,,,,,,,,0.125,1,64\n";
  // The job is still running: metrics prints what is stored and ends, it does not follow.
  auto started = std::chrono::steady_clock::now();
  ProcessResult r = Run({"metrics", id, "-o", "csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
  EXPECT_EQ(r.out, kCsv);
  EXPECT_EQ(r.err, "");

  ProcessResult cancelled = Run({"cancel", id});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  stream_context->TryCancel();

  r = Run({"metrics", id, "-o", "csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, kCsv);
  r = Run({"metrics", id, "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json rows = nlohmann::json::parse(r.out);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0]["type"], "train");
  EXPECT_EQ(rows[0]["step"], 1);
  EXPECT_EQ(rows[0]["lr"], 3e-4);
  EXPECT_EQ(rows[0]["grad_norm"], 1.5);
  EXPECT_EQ(rows[0]["tokens_per_second"], 1000);
  EXPECT_EQ(rows[5]["type"], "eval");
  EXPECT_EQ(rows[5]["step"], 4);
  EXPECT_EQ(rows[5]["eval_loss"], 0.125);
  EXPECT_EQ(rows[5]["eval_accuracy"], 1);
  EXPECT_EQ(rows[5]["eval_examples"], 64);
  EXPECT_FALSE(rows[5].contains("loss"));
  r = Run({"metrics", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("TYPE   STEP  EPOCH  LOSS    LR      GRAD_NORM  TOK/S  EVAL_LOSS"));
  EXPECT_THAT(r.out, HasSubstr("\neval   4     -      -       -       -          -      0.125"
                               "      100.0%\n"));

  // An unknown job: the same one line and exit status as `get`.
  ProcessResult got = Run({"get", "no-such-job"});
  r = Run({"metrics", "no-such-job", "-o", "csv"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.exit_code, got.exit_code);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, got.err);
  EXPECT_THAT(r.err, StartsWith("loratrf: "));
  EXPECT_THAT(r.err, HasSubstr("no-such-job"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
}

// `get` shows a queued job's reason, position and ETA; `list` filters by state, owner, sweep
// and labels, sorts, and has a wide table with the queue columns.
TEST_F(LoratrfCliCoordinator, GetAndListShowTheQueueAndFilter) {
  // One worker with two slots: the first job takes both, the others wait.
  v1::RegisterRequest reg;
  reg.set_name("node-1");
  reg.set_slots(2);
  reg.set_device(v1::DEVICE_CPU);
  reg.set_address("127.0.0.1");
  reg.set_version("test");
  v1::RegisterResponse lease;
  grpc::Status status = workers_->Register(Context().get(), reg, &lease);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string base = testing::Slurp(kSpecDir + "sst2-loratrf.yaml");
  auto write_spec = [&](const std::string& name, const std::string& extra) {
    std::string text = base;
    text.replace(text.find("sst2-loratrf"), 12, name);
    std::ofstream(dir_ / (name + ".yaml")) << text << extra;
    return std::string(dir_ / (name + ".yaml"));
  };
  auto submit = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "submit");
    ProcessResult r = Run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string out = r.out.substr(0, r.out.size() - 1);
    return out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  };
  const std::string running = submit({write_spec("first", "")});
  const std::string nlp = submit({write_spec("nlp-job", "labels: {team: nlp, size: small}\n"),
                                  "--sweep", "sweep-7"});
  const std::string vision = submit({write_spec("vision-job", "labels: {team: vision}\n")});

  // The scheduling pass runs right after each submit; wait for the queue's view.
  ProcessResult got;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        got = Run({"get", vision});
        return got.out.find("queue:    #2 waiting_for_slots") != std::string::npos;
      },
      30))
      << got.out << got.err;
  EXPECT_THAT(got.out, HasSubstr("waiting for 2 free cpu slot(s); 0 free now; ETA unknown"));
  EXPECT_THAT(got.out, HasSubstr("labels:   team=vision"));
  got = Run({"get", nlp});
  EXPECT_THAT(got.out, HasSubstr("queue:    #1 waiting_for_slots"));
  EXPECT_THAT(got.out, HasSubstr("sweep:    sweep-7"));
  EXPECT_THAT(got.out, HasSubstr("labels:   size=small, team=nlp"));
  got = Run({"get", running});
  EXPECT_THAT(got.out, Not(HasSubstr("queue:"))) << "scheduled: no queue status";
  got = Run({"get", nlp, "-o", "json"});
  nlohmann::json job = nlohmann::json::parse(got.out);
  EXPECT_EQ(job["queue"]["reason"], "QUEUE_REASON_WAITING_FOR_SLOTS");
  EXPECT_EQ(job["queue"]["position"], 1);
  EXPECT_EQ(job["queue"]["slots_needed"], 2);

  // Filters, each checked by the ids it returns.
  auto ids = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "list");
    args.insert(args.end(), {"-o", "json"});
    ProcessResult r = Run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> out;
    nlohmann::json listed = nlohmann::json::parse(r.out);
    for (const auto& j : listed["jobs"]) out.push_back(j["id"].get<std::string>());
    return out;
  };
  using ::testing::ElementsAre;
  EXPECT_THAT(ids({}), ElementsAre(vision, nlp, running)) << "newest first";
  EXPECT_THAT(ids({"-l", "team=nlp"}), ElementsAre(nlp));
  EXPECT_THAT(ids({"-l", "team=nlp,size=small"}), ElementsAre(nlp));
  EXPECT_THAT(ids({"-l", "team=nlp", "-l", "size=large"}), ::testing::IsEmpty());
  EXPECT_THAT(ids({"--sweep", "sweep-7"}), ElementsAre(nlp));
  EXPECT_THAT(ids({"--state", "queued"}), ElementsAre(vision, nlp));
  EXPECT_THAT(ids({"--state", "queued,scheduled", "--owner", "nobody"}), ::testing::IsEmpty());
  EXPECT_THAT(ids({"--sort", "queue"}), ElementsAre(nlp, vision, running));
  EXPECT_THAT(ids({"--sort", "name"}), ElementsAre(running, nlp, vision));

  // The wide table: the queue and ETA columns, in queue order.
  ProcessResult wide = Run({"list", "-o", "wide", "--sort", "queue"});
  ASSERT_EQ(wide.exit_code, 0) << wide.err;
  std::vector<std::string> lines = absl::StrSplit(wide.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << wide.out;
  EXPECT_THAT(lines[0], HasSubstr("PRIORITY"));
  EXPECT_THAT(lines[0], HasSubstr("QUEUE"));
  EXPECT_THAT(lines[0], HasSubstr("ETA"));
  EXPECT_THAT(lines[1], StartsWith(nlp));
  EXPECT_THAT(lines[1], HasSubstr("#1 waiting_for_slots"));
  EXPECT_THAT(lines[2], HasSubstr("#2 waiting_for_slots"));
  EXPECT_THAT(lines[3], StartsWith(running));
  EXPECT_THAT(lines[3], HasSubstr("node-1"));
}

TEST(LoratrfWorkerInfo, ReportsTheLibtorchItRunsWith) {
  ProcessResult r = RunProcess({BinaryPath("loratrf-worker"), "info", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json info = nlohmann::json::parse(r.out);
  std::string torch_version = info.at("torch_version");
  EXPECT_THAT(torch_version, ::testing::MatchesRegex("[0-9]+\\.[0-9]+\\.[0-9]+.*"));
  EXPECT_GE(info.at("intra_op_threads").get<int>(), 1);
  if (!info.at("torch_cuda").get<bool>()) {
    EXPECT_EQ(info.at("cuda_device_count"), 0);
  }
}

TEST(LoratrfWorkerInfo, BadFlagsExitTwo) {
  ExpectOneLineUsageError(RunProcess({BinaryPath("loratrf-worker"), "info", "-o", "xml"}),
                          "-o: must be one of text | json, got 'xml'");
  ProcessResult none = RunProcess({BinaryPath("loratrf-worker")});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("usage: loratrf-worker"));
}

}  // namespace
}  // namespace loratrf

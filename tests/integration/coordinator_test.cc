// loratrf-coordinator as a real process on 127.0.0.1 with a temp data dir, spoken to over real
// gRPC (the generated stubs): flags, health, jobs, auth, a worker's lease and command stream,
// watch replay, checkpoint upload and download, /metrics, SIGTERM drain and SIGKILL recovery.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "proto/spec/job_spec.h"
#include "tests/integration/subprocess.h"

namespace loratrf {
namespace {

using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUserToken[] = "alice-token-0123456789";
constexpr char kWorkerToken[] = "node1-token-0123456789";
constexpr char kOtherUserToken[] = "bob-token-0123456789ab";

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// One coordinator process; SIGKILLed when the object goes unless it already exited.
class Coordinator {
 public:
  Coordinator(std::string data_dir, std::string log_path, std::vector<std::string> extra = {})
      : data_dir_(std::move(data_dir)), log_path_(std::move(log_path)) {
    std::filesystem::create_directories(data_dir_);
    std::filesystem::remove(data_dir_ + "/coordinator.address");
    std::vector<std::string> argv = {BinaryPath("loratrf-coordinator"), "--listen", "127.0.0.1:0",
                                     "--data-dir", data_dir_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(log, 1);
      dup2(log, 2);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Coordinator() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // The address it wrote once listening, or "" after 20 s.
  std::string WaitForAddress() {
    for (int i = 0; i < 400; ++i) {
      std::string address = ReadText(data_dir_ + "/coordinator.address");
      if (!address.empty() && address.back() == '\n') {
        address.pop_back();
        return address;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "";
  }

  void Signal(int sig) { kill(pid_, sig); }

  // The exit status after it ended on its own, -1 if it did not within `seconds` (or died of
  // a signal).
  int WaitExit(int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

  std::string Log() const { return ReadText(log_path_); }

 private:
  std::string data_dir_;
  std::string log_path_;
  pid_t pid_ = -1;
};

class CoordinatorTest : public ::testing::Test {
 protected:
  // Starts a coordinator on `data_dir` (default: the test's) and connects the stubs.
  void Start(std::vector<std::string> extra = {}, const std::string& data_dir = "") {
    coordinator_.reset();
    coordinator_ = std::make_unique<Coordinator>(data_dir.empty() ? DataDir() : data_dir,
                                                 dir_ / "coordinator.log", std::move(extra));
    address_ = coordinator_->WaitForAddress();
    ASSERT_FALSE(address_.empty()) << coordinator_->Log();
    Connect(grpc::InsecureChannelCredentials());
  }

  void Connect(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    channel_ = grpc::CreateChannel(address_, std::move(credentials));
    jobs_ = v1::JobService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }

  std::string DataDir() const { return dir_ / "data"; }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    if (!token.empty()) context->AddMetadata("authorization", std::string("Bearer ") + token);
    return context;
  }

  static v1::JobSpec Spec(const std::string& name) {
    auto spec = spec::LoadJobSpecFile(std::string(LORATRF_SOURCE_DIR) +
                                      "/tests/data/specs/sst2-loratrf.yaml");
    EXPECT_TRUE(spec.ok()) << spec.status();
    spec->set_name(name);
    return *spec;
  }

  grpc::Status Submit(const std::string& name, v1::SubmitJobResponse* response,
                      const std::string& key = "", const std::string& token = "") {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = Spec(name);
    request.set_idempotency_key(key);
    return jobs_->SubmitJob(Context(token).get(), request, response);
  }

  // grpc.health.v1.Health/Check for the whole server: 1 SERVING, 2 NOT_SERVING, -1 on error.
  int Health() {
    grpc::GenericStub stub(channel_);
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), response;
    auto context = Context();
    std::promise<grpc::Status> done;
    stub.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                   &response, [&](grpc::Status status) { done.set_value(status); });
    grpc::Status status = done.get_future().get();
    if (!status.ok()) return -1;
    std::vector<grpc::Slice> slices;
    if (!response.Dump(&slices).ok()) return -1;
    std::string bytes;
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    // HealthCheckResponse{status = 1}: field 1, varint.
    if (bytes.size() == 2 && bytes[0] == 0x08) return bytes[1];
    return bytes.empty() ? 0 : -1;
  }

  // Calls `method` (e.g. "/loratrf.v1.JobService/GetJob") with `bytes` as the request, as a
  // unary call whatever the method's streaming: the error statuses asserted on come before any
  // response message.
  grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    auto context = Context();
    std::promise<grpc::Status> done;
    stub.UnaryCall(context.get(), method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status status) { done.set_value(status); });
    return done.get_future().get();
  }

  // Registers worker `name` with `slots` CPU slots; returns its lease id.
  uint64_t Register(const std::string& name, uint32_t slots, const std::string& token = "") {
    v1::RegisterRequest request;
    request.set_name(name);
    request.set_slots(slots);
    request.set_device(v1::DEVICE_CPU);
    request.set_address("127.0.0.1");
    request.set_version("test");
    v1::RegisterResponse response;
    grpc::Status status = workers_->Register(Context(token).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.lease_id();
  }

  TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

// ---- flags ----------------------------------------------------------------------------------

TEST(CoordinatorFlagsTest, BadFlagsExitTwoWithOneLine) {
  TempDir dir;
  std::ofstream(dir / "bad-tokens") << "root alice root-token-0123456789\n";
  std::ofstream(dir / "cert.pem") << "not a certificate\n";
  const std::string data = dir / "data";
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "usage:"},
           {{"--listen", "127.0.0.1:0"}, "--data-dir: required"},
           {{"--data-dir", data}, "--listen: required"},
           {{"--listen", "0.0.0.0:0", "--data-dir", data}, "without --auth-token-file"},
           {{"--listen", "[::]:0", "--data-dir", data}, "loopback"},
           {{"--listen", "10.1.2.3:50051", "--data-dir", data}, "loopback"},
           {{"--listen", "127.0.0.1", "--data-dir", data}, "--listen"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--auth-token-file",
             dir / "missing-tokens"},
            "--auth-token-file"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--auth-token-file",
             dir / "bad-tokens"},
            "bad-tokens:1: ROLE must be"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--lease-ttl", "0"}, "--lease-ttl"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--rendezvous-ports", "30000-20000"},
            "--rendezvous-ports"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--max-running-per-owner", "-1"},
            "--max-running-per-owner"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--tls-cert", dir / "cert.pem"},
            "--tls-cert and --tls-key go together"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--tls-cert", dir / "cert.pem",
             "--tls-key", dir / "cert.pem"},
            "not a PEM file"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--metrics-listen", "nope"},
            "--metrics-listen"},
           {{"--listen", "127.0.0.1:0", "--data-dir", data, "--frobnicate"}, "unknown flag"},
       }) {
    std::vector<std::string> argv = {BinaryPath("loratrf-coordinator")};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    testing::ProcessResult result = RunProcess(argv, "", 30);
    std::string joined;
    for (const std::string& a : c.args) joined += a + " ";
    EXPECT_EQ(result.exit_code, 2) << joined << "\n" << result.err;
    EXPECT_THAT(result.err, HasSubstr(c.error)) << joined;
    if (!c.args.empty()) {
      EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
    }
  }
  // Nothing was half-made: the data dir was never created.
  EXPECT_FALSE(std::filesystem::exists(data));
}

// ---- jobs -----------------------------------------------------------------------------------

TEST_F(CoordinatorTest, HealthAndJobRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(Start());
  EXPECT_THAT(coordinator_->Log(), HasSubstr("listening on " + address_));
  EXPECT_EQ(Health(), 1);

  v1::SubmitJobResponse submitted;
  grpc::Status status = Submit("round-trip", &submitted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const v1::Job& job = submitted.job();
  EXPECT_FALSE(job.id().empty());
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.owner(), "local");
  EXPECT_FALSE(submitted.existing());

  v1::GetJobRequest get;
  get.set_id(job.id());
  v1::Job got;
  ASSERT_TRUE(jobs_->GetJob(Context().get(), get, &got).ok());
  EXPECT_EQ(got.id(), job.id());
  EXPECT_EQ(got.spec().name(), "round-trip");

  v1::ListJobsRequest list;
  list.set_page_size(100000);  // capped, not refused
  v1::ListJobsResponse listed;
  ASSERT_TRUE(jobs_->ListJobs(Context().get(), list, &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), job.id());

  get.set_id("no-such-job");
  EXPECT_EQ(jobs_->GetJob(Context().get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_id("");
  status = jobs_->GetJob(Context().get(), get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("id"));
}

TEST_F(CoordinatorTest, BadSpecIsInvalidArgumentNamingTheField) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("Bad_Name");
  v1::SubmitJobResponse response;
  grpc::Status status = jobs_->SubmitJob(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("name"));

  *request.mutable_spec() = Spec("ok-name");
  request.mutable_spec()->mutable_adapter()->set_rank(0);
  status = jobs_->SubmitJob(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("rank"));

  request.clear_spec();
  status = jobs_->SubmitJob(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec"));
}

TEST_F(CoordinatorTest, IdempotentSubmitReturnsTheSameJob) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::SubmitJobResponse first, second, other;
  ASSERT_TRUE(Submit("idem", &first, "key-1").ok());
  ASSERT_TRUE(Submit("idem", &second, "key-1").ok());
  EXPECT_EQ(second.job().id(), first.job().id());
  EXPECT_TRUE(second.existing());
  ASSERT_TRUE(Submit("idem", &other, "key-2").ok());
  EXPECT_NE(other.job().id(), first.job().id());
  // The same key with another spec is refused, naming the key and the first job.
  v1::SubmitJobResponse refused;
  grpc::Status status = Submit("idem-changed", &refused, "key-1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("idempotency_key key-1"));
  EXPECT_THAT(status.error_message(), HasSubstr(first.job().id()));
}

TEST_F(CoordinatorTest, UnknownSpecFieldsAreRefusedAndLargeJobsListThroughBoundedPages) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("unknown-fields");
  request.mutable_spec()->GetReflection()->MutableUnknownFields(request.mutable_spec())
      ->AddLengthDelimited(1000, std::string(100'000, 'x'));
  v1::SubmitJobResponse response;
  grpc::Status status = jobs_->SubmitJob(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec: unknown field number 1000"));

  // Legal jobs near the size limits, more of them in all than a client's default 4 MiB receive
  // limit: they list through pages, each within it.
  v1::JobSpec big = Spec("big");
  big.mutable_model()->set_path("/" + std::string(4095, 'm'));
  big.mutable_data()->set_train("/" + std::string(4095, 't'));
  big.mutable_data()->set_eval("/" + std::string(4095, 'e'));
  big.mutable_adapter()->clear_target_modules();
  for (int i = 0; i < 64; ++i) {
    std::string module = std::to_string(i) + "_";
    module.resize(128, 'q');
    big.mutable_adapter()->add_target_modules(module);
  }
  constexpr int kJobs = 220;
  for (int i = 0; i < kJobs; ++i) {
    *request.mutable_spec() = big;
    request.mutable_spec()->set_name("big-" + std::to_string(i));
    status = jobs_->SubmitJob(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_GT(kJobs * response.job().ByteSizeLong(), size_t{4} << 20);
  std::set<std::string> seen;
  v1::ListJobsRequest list;
  list.set_page_size(1000);
  int pages = 0;
  do {
    v1::ListJobsResponse page;
    status = jobs_->ListJobs(Context().get(), list, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const v1::Job& job : page.jobs()) seen.insert(job.id());
    list.set_page_token(page.next_page_token());
    ++pages;
  } while (!list.page_token().empty() && pages < 100);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kJobs));
  EXPECT_GE(pages, 2);
}

// ---- requests that do not parse -------------------------------------------------------------

// A field tag (number `field`, wire type `wire`) as protobuf writes it, for fields below 16.
std::string Tag(int field, int wire) {
  return std::string(1, static_cast<char>(field << 3 | wire));
}

TEST_F(CoordinatorTest, RequestsThatDoNotParseAreInvalidArgumentNamingTheMethod) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // Unknown groups (field 15) nested deeper than protobuf's recursion limit: every request type
  // refuses these bytes.
  std::string deep;
  for (int i = 0; i < 150; ++i) deep += Tag(15, 3);
  for (int i = 0; i < 150; ++i) deep += Tag(15, 4);
  const std::vector<std::string> methods = {
      "JobService/SubmitJob",         "JobService/GetJob",
      "JobService/ListJobs",          "JobService/CancelJob",
      "JobService/WatchJob",          "JobService/ListCheckpoints",
      "JobService/DownloadCheckpoint", "JobService/ListWorkers",
      "JobService/PauseJob",          "JobService/ResumeJob",
      "JobService/DeleteJob",         "JobService/CordonWorker",
      "WorkerService/Register",       "WorkerService/Heartbeat",
      "WorkerService/StreamCommands", "WorkerService/ReportEvents",
      "WorkerService/UploadCheckpoint"};
  for (const std::string& method : methods) {
    grpc::Status status = RawCall("/loratrf.v1." + method, deep);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(status.error_message(), HasSubstr(method + ": the request could not be parsed"));
    EXPECT_THAT(status.error_message(), HasSubstr("nested more than 100 deep")) << method;
  }

  // Invalid UTF-8 in a proto3 string: the message names the field.
  const std::string bad_text = "\xff\xfe-not-utf8";
  std::string get = Tag(1, 2) + static_cast<char>(bad_text.size()) + bad_text;  // GetJobRequest.id
  grpc::Status status = RawCall("/loratrf.v1.JobService/GetJob", get);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("JobService/GetJob: the request could not be parsed as "
                        "loratrf.v1.GetJobRequest: id: invalid UTF-8"));
  // SubmitJobRequest.spec (1) → JobSpec.name (1).
  std::string name = Tag(1, 2) + static_cast<char>(bad_text.size()) + bad_text;
  std::string submit = Tag(1, 2) + static_cast<char>(name.size()) + name;
  status = RawCall("/loratrf.v1.JobService/SubmitJob", submit);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.name: invalid UTF-8"));
  // RegisterRequest.name (1), a worker-service RPC.
  status = RawCall("/loratrf.v1.WorkerService/Register", get);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("WorkerService/Register"));
  // Truncated data: a length past the end.
  status = RawCall("/loratrf.v1.JobService/GetJob", Tag(1, 2) + "\x10" "ab");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("malformed data"));

  // Requests that parse are served as before, and the server is unharmed.
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit("after-bad-bytes", &submitted).ok());
  EXPECT_EQ(Health(), 1);
}

// ---- auth -----------------------------------------------------------------------------------

TEST_F(CoordinatorTest, TokensAreRequiredAndRolesEnforced) {
  std::ofstream(dir_ / "tokens") << "user alice " << kUserToken << "\nworker node-1 "
                                 << kWorkerToken << "\n";
  ASSERT_NO_FATAL_FAILURE(Start({"--auth-token-file", dir_ / "tokens"}));
  EXPECT_EQ(Health(), 1);  // health needs no token

  v1::SubmitJobResponse response;
  EXPECT_EQ(Submit("auth", &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Submit("auth", &response, "", "wrong-token-0123456789").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Submit("auth", &response, "", kWorkerToken).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status status = Submit("auth", &response, "", kUserToken);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.job().owner(), "alice");

  // Workers: their own role, their own name.
  v1::RegisterRequest reg;
  reg.set_name("node-1");
  reg.set_slots(1);
  reg.set_device(v1::DEVICE_CPU);
  reg.set_address("127.0.0.1");
  v1::RegisterResponse lease;
  EXPECT_EQ(workers_->Register(Context(kUserToken).get(), reg, &lease).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  reg.set_name("node-2");
  EXPECT_EQ(workers_->Register(Context(kWorkerToken).get(), reg, &lease).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  reg.set_name("node-1");
  grpc::Status registered = workers_->Register(Context(kWorkerToken).get(), reg, &lease);
  EXPECT_TRUE(registered.ok()) << registered.error_message();

  // Streams check too.
  v1::WatchJobRequest watch;
  watch.set_id(response.job().id());
  auto context = Context();
  auto reader = jobs_->WatchJob(context.get(), watch);
  v1::JobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// Users see and act on their own jobs; an admin on everyone's (the rule itself: the core's
// CheckJobAccess, tested in job_access_test.cc; here over real RPCs).
TEST_F(CoordinatorTest, UsersSeeOnlyTheirOwnJobsAndAdminsSeeAll) {
  const std::string bob_token = "bob-token-0123456789ab", root_token = "root-token-0123456789";
  std::ofstream(dir_ / "tokens") << "user alice " << kUserToken << "\nuser bob " << bob_token
                                 << "\nadmin root " << root_token << "\n";
  ASSERT_NO_FATAL_FAILURE(Start({"--auth-token-file", dir_ / "tokens"}));
  v1::SubmitJobResponse alices, bobs;
  ASSERT_TRUE(Submit("alices", &alices, "", kUserToken).ok());
  ASSERT_TRUE(Submit("bobs", &bobs, "", bob_token).ok());

  v1::GetJobRequest get;
  get.set_id(bobs.job().id());
  v1::Job job;
  EXPECT_EQ(jobs_->GetJob(Context(kUserToken).get(), get, &job).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(jobs_->GetJob(Context(root_token).get(), get, &job).ok());

  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_TRUE(jobs_->ListJobs(Context(kUserToken).get(), list, &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), alices.job().id());
  list.set_owner("bob");
  EXPECT_EQ(jobs_->ListJobs(Context(kUserToken).get(), list, &listed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  list.clear_owner();
  ASSERT_TRUE(jobs_->ListJobs(Context(root_token).get(), list, &listed).ok());
  EXPECT_EQ(listed.jobs_size(), 2);

  v1::WatchJobRequest watch;
  watch.set_id(bobs.job().id());
  auto context = Context(kUserToken);
  auto reader = jobs_->WatchJob(context.get(), watch);
  v1::JobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);

  v1::CancelJobRequest cancel;
  cancel.set_id(bobs.job().id());
  v1::Job cancelled;
  EXPECT_EQ(jobs_->CancelJob(Context(kUserToken).get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(jobs_->CancelJob(Context(root_token).get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(jobs_->CancelJob(Context(kUserToken).get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::PERMISSION_DENIED)
      << "another user's finished job is refused too";
}

// Token rotation: edit the file, SIGHUP; no restart, and a broken file changes nothing.
TEST_F(CoordinatorTest, SighupReloadsTheTokenFileAndABrokenFileKeepsTheOldOne) {
  const std::string carol_token = "carol-token-0123456789";
  const std::filesystem::path tokens = dir_ / "tokens";
  std::ofstream(tokens) << "user alice " << kUserToken << "\n";
  ASSERT_NO_FATAL_FAILURE(Start({"--auth-token-file", tokens, "--log-level", "info"}));
  v1::ListJobsResponse listed;
  ASSERT_TRUE(jobs_->ListJobs(Context(kUserToken).get(), {}, &listed).ok());
  EXPECT_EQ(jobs_->ListJobs(Context(carol_token).get(), {}, &listed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // Waits (bounded) until the coordinator logged `what` `count` times: the reload is done.
  auto wait_for_log = [&](const std::string& what, int count) {
    for (int i = 0; i < 400; ++i) {
      const std::string log = coordinator_->Log();
      int seen = 0;
      for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) {
        ++seen;
      }
      if (seen >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };

  {
    std::ofstream rewrite(tokens, std::ios::trunc);
    rewrite << "user carol " << carol_token << "\n";
  }
  coordinator_->Signal(SIGHUP);
  ASSERT_TRUE(wait_for_log("reloaded 1 credential(s)", 1)) << coordinator_->Log();
  EXPECT_EQ(jobs_->ListJobs(Context(kUserToken).get(), {}, &listed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status carol = jobs_->ListJobs(Context(carol_token).get(), {}, &listed);
  EXPECT_TRUE(carol.ok()) << carol.error_message();

  {
    std::ofstream broken(tokens, std::ios::trunc);
    broken << "user alice " << kUserToken << "\nuser dave too-short\n";
  }
  coordinator_->Signal(SIGHUP);
  ASSERT_TRUE(wait_for_log("reloading the token file failed", 1)) << coordinator_->Log();
  EXPECT_THAT(coordinator_->Log(), HasSubstr(tokens.string() + ":2:"));
  EXPECT_TRUE(jobs_->ListJobs(Context(carol_token).get(), {}, &listed).ok());
  EXPECT_EQ(jobs_->ListJobs(Context(kUserToken).get(), {}, &listed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Health(), 1) << "still serving";
}

// ---- workers, watch, checkpoints ---------------------------------------------------------------

TEST_F(CoordinatorTest, WorkerGetsAssignmentAndWatchReplaysEvents) {
  ASSERT_NO_FATAL_FAILURE(Start());
  uint64_t lease = Register("node-1", 2);
  v1::HeartbeatRequest beat;
  beat.set_name("node-1");
  beat.set_lease_id(lease);
  v1::HeartbeatResponse beat_response;
  ASSERT_TRUE(workers_->Heartbeat(Context().get(), beat, &beat_response).ok());

  v1::StreamCommandsRequest open;
  open.set_name("node-1");
  open.set_lease_id(lease);
  auto stream_context = Context();
  auto commands = workers_->StreamCommands(stream_context.get(), open);

  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit("assigned", &submitted).ok());
  const std::string job_id = submitted.job().id();

  v1::WorkerCommand command;
  ASSERT_TRUE(commands->Read(&command)) << commands->Finish().error_message();
  ASSERT_TRUE(command.has_assign());
  EXPECT_EQ(command.assign().job_id(), job_id);
  EXPECT_EQ(command.assign().attempt(), 1u);
  EXPECT_EQ(command.assign().world_size(), 2u);
  EXPECT_EQ(command.assign().master_addr(), "127.0.0.1");
  EXPECT_GE(command.assign().master_port(), 29500u);

  // The agent says its ranks are up, then uploads a checkpoint.
  v1::ReportEventsRequest report;
  report.set_worker("node-1");
  report.set_lease_id(lease);
  report.set_job_id(job_id);
  report.set_attempt(1);
  report.add_events()->mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  v1::ReportEventsResponse reported;
  grpc::Status status = workers_->ReportEvents(Context().get(), report, &reported);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reported.next_report_index(), 1u);

  std::string big(1500000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"adapter/adapter_model.safetensors", big}, {"adapter/adapter_config.json", "{}"}};
  {
    v1::UploadCheckpointResponse uploaded;
    auto context = Context();
    auto writer = workers_->UploadCheckpoint(context.get(), &uploaded);
    v1::UploadCheckpointRequest message;
    auto* header = message.mutable_header();
    header->set_worker("node-1");
    header->set_lease_id(lease);
    header->set_job_id(job_id);
    header->set_attempt(1);
    header->set_step(10);
    for (const auto& [path, bytes] : files) {
      auto* file = header->add_files();
      file->set_path(path);
      file->set_size_bytes(bytes.size());
      file->set_sha256(Sha256Hex(bytes));
    }
    ASSERT_TRUE(writer->Write(message));
    for (const auto& [path, bytes] : files) {
      for (size_t offset = 0; offset < bytes.size(); offset += 1 << 20) {
        message.Clear();
        message.mutable_chunk()->set_path(path);
        message.mutable_chunk()->set_offset(offset);
        message.mutable_chunk()->set_data(bytes.substr(offset, 1 << 20));
        ASSERT_TRUE(writer->Write(message));
      }
    }
    ASSERT_TRUE(writer->WritesDone());
    status = writer->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(uploaded.checkpoint().step(), 10u);
    EXPECT_FALSE(uploaded.checkpoint().id().empty());
  }

  v1::ListCheckpointsRequest list_checkpoints;
  list_checkpoints.set_job_id(job_id);
  v1::ListCheckpointsResponse checkpoints;
  ASSERT_TRUE(jobs_->ListCheckpoints(Context().get(), list_checkpoints, &checkpoints).ok());
  ASSERT_EQ(checkpoints.checkpoints_size(), 1);

  {
    v1::DownloadCheckpointRequest download;
    download.set_job_id(job_id);
    auto context = Context();
    auto reader = jobs_->DownloadCheckpoint(context.get(), download);
    v1::DownloadCheckpointResponse part;
    ASSERT_TRUE(reader->Read(&part));
    ASSERT_TRUE(part.has_checkpoint());
    EXPECT_EQ(part.checkpoint().id(), checkpoints.checkpoints(0).id());
    std::map<std::string, std::string> got;
    while (reader->Read(&part)) {
      ASSERT_TRUE(part.has_chunk());
      got[part.chunk().path()] += part.chunk().data();
    }
    status = reader->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const auto& [path, bytes] : files) EXPECT_TRUE(got[path] == bytes) << path;
  }

  // A replay from the start, without following: QUEUED, SCHEDULED, RUNNING, the checkpoint.
  v1::WatchJobRequest watch;
  watch.set_id(job_id);
  watch.set_no_follow(true);
  auto watch_context = Context();
  auto events = jobs_->WatchJob(watch_context.get(), watch);
  std::vector<v1::JobEvent> seen;
  v1::JobEvent event;
  while (events->Read(&event)) seen.push_back(event);
  status = events->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_GE(seen.size(), 4u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].seq(), i + 1);
  EXPECT_EQ(seen[0].state_change().to(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(seen[1].state_change().to(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(seen[2].state_change().to(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(seen.back().has_checkpoint());

  // From a later seq, following live: cancelling the job ends the stream.
  watch.set_from_seq(3);
  watch.set_no_follow(false);
  auto follow_context = Context();
  auto follow = jobs_->WatchJob(follow_context.get(), watch);
  ASSERT_TRUE(follow->Read(&event));
  EXPECT_EQ(event.seq(), 3u);
  v1::CancelJobRequest cancel;
  cancel.set_id(job_id);
  cancel.set_reason("test");
  v1::Job cancelled;
  ASSERT_TRUE(jobs_->CancelJob(Context().get(), cancel, &cancelled).ok());
  uint64_t last = 0;
  v1::JobState final_state = v1::JOB_STATE_UNSPECIFIED;
  while (follow->Read(&event)) {
    last = event.seq();
    if (event.has_state_change()) final_state = event.state_change().to();
  }
  EXPECT_TRUE(follow->Finish().ok());
  EXPECT_EQ(final_state, v1::JOB_STATE_CANCELLED);
  EXPECT_GT(last, 3u);

  // The worker is told to stop.
  ASSERT_TRUE(commands->Read(&command));
  EXPECT_TRUE(command.has_cancel());
  EXPECT_EQ(command.cancel().job_id(), job_id);
  stream_context->TryCancel();
}

// Checkpoints are their job owner's: another user's download is PERMISSION_DENIED (and reveals
// nothing of the files), while the owner and the workers (which resume from them) may read them.
TEST_F(CoordinatorTest, UsersDownloadOnlyTheirOwnJobsCheckpoints) {
  std::ofstream(dir_ / "tokens") << "user alice " << kUserToken << "\nuser bob "
                                 << kOtherUserToken << "\nworker node-1 " << kWorkerToken
                                 << "\n";
  ASSERT_NO_FATAL_FAILURE(Start({"--auth-token-file", dir_ / "tokens"}));
  uint64_t lease = Register("node-1", 2, kWorkerToken);
  v1::StreamCommandsRequest open;
  open.set_name("node-1");
  open.set_lease_id(lease);
  auto stream_context = Context(kWorkerToken);
  auto commands = workers_->StreamCommands(stream_context.get(), open);

  v1::SubmitJobResponse submitted;
  grpc::Status status = Submit("owned", &submitted, "", kUserToken);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string job_id = submitted.job().id();
  v1::WorkerCommand command;
  ASSERT_TRUE(commands->Read(&command)) << commands->Finish().error_message();
  ASSERT_TRUE(command.has_assign());
  ASSERT_EQ(command.assign().job_id(), job_id);

  v1::ReportEventsRequest report;
  report.set_worker("node-1");
  report.set_lease_id(lease);
  report.set_job_id(job_id);
  report.set_attempt(1);
  report.add_events()->mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  v1::ReportEventsResponse reported;
  status = workers_->ReportEvents(Context(kWorkerToken).get(), report, &reported);
  ASSERT_TRUE(status.ok()) << status.error_message();

  const std::string bytes = "alice's adapter";
  {
    v1::UploadCheckpointResponse uploaded;
    auto context = Context(kWorkerToken);
    auto writer = workers_->UploadCheckpoint(context.get(), &uploaded);
    v1::UploadCheckpointRequest message;
    auto* header = message.mutable_header();
    header->set_worker("node-1");
    header->set_lease_id(lease);
    header->set_job_id(job_id);
    header->set_attempt(1);
    header->set_step(5);
    auto* file = header->add_files();
    file->set_path("adapter.safetensors");
    file->set_size_bytes(bytes.size());
    file->set_sha256(Sha256Hex(bytes));
    ASSERT_TRUE(writer->Write(message));
    message.Clear();
    message.mutable_chunk()->set_path("adapter.safetensors");
    message.mutable_chunk()->set_offset(0);
    message.mutable_chunk()->set_data(bytes);
    ASSERT_TRUE(writer->Write(message));
    ASSERT_TRUE(writer->WritesDone());
    status = writer->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Downloads the job's latest checkpoint as `token`: the status, and the parts it got.
  auto download = [&](const std::string& token, int* parts, std::string* data) {
    v1::DownloadCheckpointRequest request;
    request.set_job_id(job_id);
    auto context = Context(token);
    auto reader = jobs_->DownloadCheckpoint(context.get(), request);
    v1::DownloadCheckpointResponse part;
    *parts = 0;
    data->clear();
    while (reader->Read(&part)) {
      ++*parts;
      if (part.has_chunk()) *data += part.chunk().data();
    }
    return reader->Finish();
  };
  int parts = 0;
  std::string data;
  status = download(kOtherUserToken, &parts, &data);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_EQ(parts, 0);
  status = download(kUserToken, &parts, &data);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(parts, 2);  // the checkpoint, one chunk
  EXPECT_EQ(data, bytes);
  status = download(kWorkerToken, &parts, &data);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(data, bytes);
  // No token at all is still UNAUTHENTICATED, before any ownership question.
  EXPECT_EQ(download("", &parts, &data).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  stream_context->TryCancel();
}

// Many followers while a worker reports quickly: every watcher sees every event once, in order,
// and its stream ends when the job does (the pull/notify path of the write reactors).
TEST_F(CoordinatorTest, ManyWatchersSeeEveryEventInOrder) {
  ASSERT_NO_FATAL_FAILURE(Start());
  uint64_t lease = Register("node-1", 2);
  v1::StreamCommandsRequest open;
  open.set_name("node-1");
  open.set_lease_id(lease);
  auto stream_context = Context();
  auto commands = workers_->StreamCommands(stream_context.get(), open);
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit("watched", &submitted).ok());
  const std::string job_id = submitted.job().id();
  v1::WorkerCommand command;
  ASSERT_TRUE(commands->Read(&command));
  ASSERT_TRUE(command.has_assign());

  constexpr int kWatchers = 8;
  std::vector<std::vector<uint64_t>> seqs(kWatchers);
  std::vector<grpc::Status> ends(kWatchers);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWatchers; ++w) {
    threads.emplace_back([&, w] {
      v1::WatchJobRequest watch;
      watch.set_id(job_id);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      auto reader = jobs_->WatchJob(&context, watch);
      v1::JobEvent event;
      while (reader->Read(&event)) seqs[w].push_back(event.seq());
      ends[w] = reader->Finish();
    });
  }

  uint64_t index = 0;
  for (int r = 0; r < 30; ++r) {
    v1::ReportEventsRequest report;
    report.set_worker("node-1");
    report.set_lease_id(lease);
    report.set_job_id(job_id);
    report.set_attempt(1);
    report.set_first_report_index(index);
    if (r == 0) report.add_events()->mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
    for (int i = 0; i < 10; ++i) {
      v1::TrainMetrics* train = report.add_events()->mutable_train();
      train->set_step(static_cast<uint64_t>(r * 10 + i + 1));
      train->set_loss(1.0);
    }
    v1::ReportEventsResponse reported;
    grpc::Status status = workers_->ReportEvents(Context().get(), report, &reported);
    ASSERT_TRUE(status.ok()) << status.error_message();
    index = reported.next_report_index();
  }
  v1::CancelJobRequest cancel;
  cancel.set_id(job_id);
  v1::Job cancelled;
  ASSERT_TRUE(jobs_->CancelJob(Context().get(), cancel, &cancelled).ok());
  for (std::thread& t : threads) t.join();

  v1::GetJobRequest get;
  get.set_id(job_id);
  v1::Job job;
  ASSERT_TRUE(jobs_->GetJob(Context().get(), get, &job).ok());
  ASSERT_GE(job.last_event_seq(), 300u);
  for (int w = 0; w < kWatchers; ++w) {
    EXPECT_TRUE(ends[w].ok()) << w << ": " << ends[w].error_message();
    ASSERT_EQ(seqs[w].size(), job.last_event_seq()) << w;
    for (size_t i = 0; i < seqs[w].size(); ++i) ASSERT_EQ(seqs[w][i], i + 1) << w;
  }
  stream_context->TryCancel();
}

TEST_F(CoordinatorTest, MetricsAreServed) {
  ASSERT_NO_FATAL_FAILURE(Start({"--metrics-listen", "127.0.0.1:0"}));
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit("metrics", &submitted).ok());
  std::string log = coordinator_->Log();
  size_t at = log.find("metrics on 127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << log;
  int port = std::stoi(log.substr(at + std::strlen("metrics on 127.0.0.1:")));

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string body;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) body.append(buffer, static_cast<size_t>(n));
  close(fd);
  EXPECT_THAT(body, HasSubstr("loratrf_jobs_submitted_total 1"));
  EXPECT_THAT(body, HasSubstr("loratrf_grpc_requests_total{code=\"OK\","
                              "method=\"JobService/SubmitJob\"} 1"));
  EXPECT_THAT(body, HasSubstr("loratrf_jobs{state=\"queued\"}"));
  // The coordinator's own families, present from the start (values move with ticks).
  EXPECT_THAT(body, HasSubstr("loratrf_jobs_queued_by_priority{priority=\"0\"}"));
  EXPECT_THAT(body, HasSubstr("loratrf_open_streams{kind=\"watch\"}"));
  EXPECT_THAT(body, HasSubstr("loratrf_artifacts 0"));
  // statvfs of --data-dir, read for this scrape: a real file system has a size.
  EXPECT_THAT(body, HasSubstr("loratrf_data_dir_capacity_bytes "));
  EXPECT_THAT(body, Not(HasSubstr("loratrf_data_dir_capacity_bytes 0\n")));
}

TEST_F(CoordinatorTest, ServesTls) {
  const std::string cert = dir_ / "cert.pem", key = dir_ / "key.pem";
  testing::ProcessResult made = RunProcess(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
       "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
       "subjectAltName=IP:127.0.0.1,DNS:localhost"},
      "", 60);
  if (made.exit_code != 0) GTEST_SKIP() << "openssl could not make a certificate: " << made.err;
  ASSERT_NO_FATAL_FAILURE(Start({"--tls-cert", cert, "--tls-key", key}));

  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadText(cert);
  Connect(grpc::SslCredentials(options));
  EXPECT_EQ(Health(), 1);
  v1::ListWorkersResponse workers;
  grpc::Status status = jobs_->ListWorkers(Context().get(), v1::ListWorkersRequest(), &workers);
  EXPECT_TRUE(status.ok()) << status.error_message();

  // A plaintext client gets nowhere.
  Connect(grpc::InsecureChannelCredentials());
  auto context = Context();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  EXPECT_FALSE(jobs_->ListWorkers(context.get(), v1::ListWorkersRequest(), &workers).ok());
}

// ---- lifecycle --------------------------------------------------------------------------------

TEST_F(CoordinatorTest, SigtermDrainsAndExitsZero) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit("drain", &submitted).ok());

  // An open follow stream on a queued job ends (UNAVAILABLE: reconnect later) on drain.
  v1::WatchJobRequest watch;
  watch.set_id(submitted.job().id());
  auto context = Context();
  auto events = jobs_->WatchJob(context.get(), watch);
  v1::JobEvent event;
  ASSERT_TRUE(events->Read(&event));

  // A second coordinator on the same data dir refuses to start.
  testing::ProcessResult second =
      RunProcess({BinaryPath("loratrf-coordinator"), "--listen", "127.0.0.1:0", "--data-dir",
                  DataDir()},
                 "", 30);
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("in use"));

  auto start = std::chrono::steady_clock::now();
  coordinator_->Signal(SIGTERM);
  while (events->Read(&event)) {
  }
  grpc::Status ended = events->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE) << ended.error_message();
  EXPECT_THAT(ended.error_message(), HasSubstr("draining"));
  EXPECT_EQ(coordinator_->WaitExit(10), 0) << coordinator_->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(7));
  EXPECT_THAT(coordinator_->Log(), HasSubstr("draining"));
}

// Kubernetes log collectors read one JSON object a line: every line the coordinator writes is
// one, lifecycle moments included, and a token never appears in any of them.
TEST_F(CoordinatorTest, JsonLogsAreOneObjectALine) {
  std::ofstream(dir_ / "tokens") << "user alice " << kUserToken << "\n";
  ASSERT_NO_FATAL_FAILURE(
      Start({"--log-format", "json", "--log-level", "info", "--auth-token-file", dir_ / "tokens"}));
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit("json-logs", &submitted, "", kUserToken).ok());
  EXPECT_EQ(Submit("json-logs", &submitted, "", "wrong-token-0123456789").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  coordinator_->Signal(SIGTERM);
  EXPECT_EQ(coordinator_->WaitExit(10), 0);
  const std::string log = coordinator_->Log();
  std::vector<nlohmann::json> lines;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(parsed.is_object()) << "not a JSON object: " << line;
    for (const char* key : {"ts", "level", "program", "msg"}) {
      EXPECT_TRUE(parsed.contains(key) && parsed[key].is_string()) << key << " in " << line;
    }
    EXPECT_EQ(parsed["program"], "loratrf-coordinator");
    lines.push_back(std::move(parsed));
  }
  auto logged = [&](const std::string& fragment) {
    return std::any_of(lines.begin(), lines.end(), [&](const nlohmann::json& line) {
      return line["msg"].get<std::string>().find(fragment) != std::string::npos;
    });
  };
  EXPECT_TRUE(logged("listening on " + address_)) << log;
  EXPECT_TRUE(logged("job " + submitted.job().id() + " (json-logs) submitted by alice")) << log;
  EXPECT_TRUE(logged("draining")) << log;
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kUserToken))) << "a token in the log";
  EXPECT_THAT(log, ::testing::Not(HasSubstr("wrong-token"))) << "a token in the log";

  testing::ProcessResult bad = RunProcess(
      {BinaryPath("loratrf-coordinator"), "--listen", "127.0.0.1:0", "--data-dir",
       dir_ / "other", "--log-format", "xml"},
      "", 30);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--log-format: must be text or json, got 'xml'"));
}

TEST_F(CoordinatorTest, SigkillAndRestartKeepTheJob) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(Submit("survivor", &submitted, "key-1").ok());
  coordinator_->Signal(SIGKILL);
  EXPECT_EQ(coordinator_->WaitExit(10), -1);

  ASSERT_NO_FATAL_FAILURE(Start());
  v1::GetJobRequest get;
  get.set_id(submitted.job().id());
  v1::Job job;
  grpc::Status status = jobs_->GetJob(Context().get(), get, &job);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.spec().name(), "survivor");

  // The idempotency key survives too.
  v1::SubmitJobResponse again;
  ASSERT_TRUE(Submit("survivor", &again, "key-1").ok());
  EXPECT_EQ(again.job().id(), submitted.job().id());
  EXPECT_TRUE(again.existing());
  // And so does the spec it was used for: another spec under it is refused.
  status = Submit("not-the-survivor", &again, "key-1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr(submitted.job().id()));
}

}  // namespace
}  // namespace loratrf

// The coordinator's gRPC-layer pieces that need no core: token-file parsing and
// authentication, the absl → gRPC status mapping, listen addresses and request limits, and the
// pull-stream write reactor over a fake source on an in-process server.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "server/grpc/auth.h"
#include "server/grpc/pull_write_reactor.h"
#include "server/grpc/request_limits.h"
#include "server/grpc/stream_pump.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "server/core/event_stream.h"

namespace loratrf::server {
namespace {

using ::testing::HasSubstr;

constexpr char kTokens[] =
    "# role name token\n"
    "user alice alice-token-0123456789\n"
    "\n"
    "worker node-1 node1-token-0123456789   # a comment\n"
    "user ops ops-token-01234567890123\n"
    "worker ops ops-token-01234567890123\n";

absl::StatusOr<Authenticator> Tokens() { return Authenticator::Parse(kTokens, "tokens.txt"); }

TEST(AuthTest, ParsesTokenFile) {
  auto auth = Tokens();
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE(auth->enabled());
  EXPECT_EQ(auth->size(), 3u);  // ops has one token with both roles
}

TEST(AuthTest, BadTokenFilesNameTheLine) {
  struct Case {
    const char* text;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"user alice\n", "tokens.txt:1: expected ROLE NAME TOKEN"},
           {"\nroot bob bob-token-0123456789\n", "tokens.txt:2: ROLE must be"},
           {"user alice short\n", "TOKEN must be 16 to 512"},
           {"worker Node1 node1-token-0123456789\n", "worker NAME: may contain only"},
           {"user al/ice alice-token-0123456789\n", "user NAME: may contain only"},
           {"user alice alice-token-0123456789\nuser bob alice-token-0123456789\n",
            "tokens.txt:2: this TOKEN is already given to another NAME"},
           {"user alice alice-token-0123456789\nuser alice alice-token-0123456789\n",
            "repeated credential"},
           {"# nothing\n\n", "tokens.txt: no credentials"},
           {"user alice alice-token-012345\x01" "6789\n", "printable"},
       }) {
    auto auth = Authenticator::Parse(c.text, "tokens.txt");
    ASSERT_FALSE(auth.ok()) << c.text;
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(auth.status().message(), HasSubstr(c.error)) << c.text;
  }
}

TEST(AuthTest, MissingFileIsAnError) {
  auto auth = Authenticator::FromFile("/nonexistent/tokens.txt");
  EXPECT_FALSE(auth.ok());
  EXPECT_THAT(auth.status().message(), HasSubstr("/nonexistent/tokens.txt"));
}

TEST(AuthTest, AuthenticatesBearerTokens) {
  auto auth = Tokens();
  ASSERT_TRUE(auth.ok());
  auto alice = auth->Authenticate("Bearer alice-token-0123456789", kUserOnly);
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->principal, "alice");
  EXPECT_TRUE(alice->may_submit);
  EXPECT_FALSE(alice->may_work);
  // The scheme is case-insensitive; surrounding spaces are ignored.
  EXPECT_TRUE(auth->Authenticate("  bearer alice-token-0123456789 ", kUserOnly).ok());

  auto ops = auth->Authenticate("Bearer ops-token-01234567890123", kWorkerOnly);
  ASSERT_TRUE(ops.ok());
  EXPECT_TRUE(ops->may_submit && ops->may_work);

  auto node = auth->Authenticate("Bearer node1-token-0123456789", kUserOrWorker);
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->principal, "node-1");
}

TEST(AuthTest, RejectsMissingUnknownAndWrongRole) {
  auto auth = Tokens();
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(auth->Authenticate(std::nullopt, kUserOnly).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("Basic YWxpY2U6cGFzcw==", kUserOnly).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("Bearer ", kUserOnly).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("Bearer alice-token-012345678", kUserOnly).status().code(),
            absl::StatusCode::kUnauthenticated);  // a prefix of a real token
  EXPECT_EQ(auth->Authenticate("Bearer alice-token-01234567890", kUserOnly).status().code(),
            absl::StatusCode::kUnauthenticated);  // a real token plus a character
  auto wrong_role = auth->Authenticate("Bearer alice-token-0123456789", kWorkerOnly);
  EXPECT_EQ(wrong_role.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong_role.status().message(), HasSubstr("worker role"));
  EXPECT_EQ(auth->Authenticate("Bearer node1-token-0123456789", kUserOnly).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AuthTest, WorkersActOnlyAsThemselves) {
  auto auth = Tokens();
  ASSERT_TRUE(auth.ok());
  auto node = auth->Authenticate("Bearer node1-token-0123456789", kWorkerOnly);
  ASSERT_TRUE(node.ok());
  EXPECT_TRUE(auth->CheckWorkerName(*node, "node-1").ok());
  EXPECT_EQ(auth->CheckWorkerName(*node, "node-2").code(), absl::StatusCode::kPermissionDenied);
}

TEST(AuthTest, WithoutTokenFileEveryoneIsLocal) {
  Authenticator open;
  EXPECT_FALSE(open.enabled());
  auto caller = open.Authenticate(std::nullopt, kWorkerOnly);
  ASSERT_TRUE(caller.ok());
  EXPECT_EQ(caller->principal, kLocalPrincipal);
  EXPECT_TRUE(caller->may_submit && caller->may_work);
  EXPECT_TRUE(caller->admin) << "a single-user machine: local may do everything";
  EXPECT_TRUE(open.CheckWorkerName(*caller, "any-name").ok());
}

TEST(RequestLimitsTest, ChecksStringsListsAndPageSize) {
  v1::GetJobRequest get;
  EXPECT_THAT(CheckRequest(get).message(), HasSubstr("id: required"));
  get.set_id(std::string(limits::kMaxIdBytes + 1, 'x'));
  EXPECT_THAT(CheckRequest(get).message(), HasSubstr("id: 129 bytes, at most 128"));

  v1::ListJobsRequest list;
  list.set_page_size(1'000'000);
  EXPECT_TRUE(CheckRequest(list).ok());
  EXPECT_EQ(list.page_size(), static_cast<uint32_t>(limits::kMaxJobPageSize));
  list.set_page_token(std::string(limits::kMaxPageTokenBytes + 1, 'x'));
  EXPECT_EQ(CheckRequest(list).code(), absl::StatusCode::kInvalidArgument);

  v1::SubmitJobRequest submit;
  EXPECT_THAT(CheckRequest(submit).message(), HasSubstr("spec: required"));
  submit.mutable_spec()->set_name("x");
  submit.set_idempotency_key(std::string(129, 'k'));
  EXPECT_THAT(CheckRequest(submit).message(), HasSubstr("idempotency_key"));

  v1::RegisterRequest reg;
  reg.set_name("node-1");
  for (int i = 0; i <= limits::kMaxWorkerLabels; ++i) {
    (*reg.mutable_labels())["k" + std::to_string(i)] = "v";
  }
  EXPECT_THAT(CheckRequest(reg).message(), HasSubstr("labels: 33 entries"));

  v1::ReportEventsRequest report;
  report.set_worker("node-1");
  report.set_job_id("j1");
  report.add_events()->mutable_log()->set_text(std::string(limits::kMaxLogLineBytes + 1, 'x'));
  EXPECT_THAT(CheckRequest(report).message(), HasSubstr("events[0].log.text"));

  v1::UploadCheckpointRequest::Header header;
  header.set_worker("node-1");
  EXPECT_THAT(CheckRequest(header).message(), HasSubstr("header.job_id: required"));
}

// ---- PullWriteReactor --------------------------------------------------------------------------

// A command source shared with the test: the first pull waits (kWait); every later pull blocks
// until the test releases it, then returns a command.
struct GateState {
  std::mutex mu;
  std::condition_variable changed;
  int pulls = 0;             // Next calls so far
  bool in_pull = false;      // a later pull is blocked
  bool release = false;      // blocked pulls may return
  bool destroyed = false;    // the reactor (and with it the source) is gone
  std::function<void()> notify;
  grpc::CallbackServerContext* context = nullptr;

  // Polls `pred` under mu (some conditions are not signalled) for up to 10 s.
  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mu);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      changed.wait_for(lock, std::chrono::milliseconds(10));
    }
    return true;
  }
};

class GatedSource final : public PullSource<v1::WorkerCommand> {
 public:
  explicit GatedSource(std::shared_ptr<GateState> state) : state_(std::move(state)) {}
  ~GatedSource() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->destroyed = true;
    state_->changed.notify_all();
  }
  Poll Next(v1::WorkerCommand& command) override {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (++state_->pulls == 1) return Poll::kWait;
    state_->in_pull = true;
    state_->changed.notify_all();
    state_->changed.wait(lock, [this] { return state_->release; });
    state_->in_pull = false;
    command.mutable_assign()->set_job_id("j" + std::to_string(state_->pulls));
    return Poll::kItem;
  }
  void SetNotify(std::function<void()> notify) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->notify = std::move(notify);
  }

 private:
  std::shared_ptr<GateState> state_;
};

// Open streams by kind, as RpcMetrics hears of them.
class StreamCountingMetrics final : public RpcMetrics {
 public:
  void RpcFinished(absl::string_view, absl::string_view, absl::Duration) override {}
  void StreamOpened(StreamKind kind) override { ++open[static_cast<int>(kind)]; }
  void StreamClosed(StreamKind kind) override { --open[static_cast<int>(kind)]; }
  int Open(StreamKind kind) const { return open[static_cast<int>(kind)].load(); }

 private:
  std::atomic<int> open[2] = {0, 0};
};

class GatedWorkerService final : public v1::WorkerService::CallbackService {
 public:
  GatedWorkerService(std::shared_ptr<GateState> state, StreamPump* pump,
                     RpcMetrics* metrics = nullptr)
      : state_(std::move(state)), pump_(pump), metrics_(metrics) {}
  grpc::ServerWriteReactor<v1::WorkerCommand>* StreamCommands(
      grpc::CallbackServerContext* context, const v1::StreamCommandsRequest*) override {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->context = context;
    }
    auto* reactor = new PullWriteReactor<v1::WorkerCommand>(
        std::make_unique<GatedSource>(state_), pump_, [] { return grpc::Status::OK; },
        RpcTimer(nullptr, "WorkerService/StreamCommands"),
        OpenStream(metrics_, RpcMetrics::StreamKind::kCommands));
    reactor->Start();
    return reactor;
  }

 private:
  std::shared_ptr<GateState> state_;
  StreamPump* pump_;
  RpcMetrics* metrics_;
};

// A client that cancels while the pump is inside the source's Next: the reactor does not
// finish under the running pull (which would drop what it pulls), pulls nothing more once
// cancelled, hands the pulled command to its write and then ends the RPC and frees the source.
TEST(PullWriteReactorTest, CancelDuringAPullEndsAfterItWithoutPullingAgain) {
  auto state = std::make_shared<GateState>();
  StreamPump pump;
  StreamCountingMetrics metrics;
  GatedWorkerService service(state, &pump, &metrics);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_NE(port, 0);

  auto stub = v1::WorkerService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::StreamCommandsRequest request;
  auto reader = stub->StreamCommands(&context, request);
  ASSERT_TRUE(state->WaitFor([&] { return state->pulls == 1 && state->notify != nullptr; }));
  EXPECT_EQ(metrics.Open(RpcMetrics::StreamKind::kCommands), 1) << "the open-streams gauge";
  EXPECT_EQ(metrics.Open(RpcMetrics::StreamKind::kWatch), 0);

  // Wake the stream: the pull runs on the pump and blocks in Next.
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    notify = state->notify;
  }
  notify();
  ASSERT_TRUE(state->WaitFor([&] { return state->in_pull; }));

  // Cancel while that pull runs, and let the server see it (OnCancel) before it returns.
  context.TryCancel();
  ASSERT_TRUE(state->WaitFor([&] { return state->context->IsCancelled(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  notify();  // a late wake-up: must not start another pull
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->release = true;
    state->changed.notify_all();
  }
  ASSERT_TRUE(state->WaitFor([&] { return state->destroyed; }));
  {
    std::lock_guard<std::mutex> lock(state->mu);
    EXPECT_EQ(state->pulls, 2);
  }
  v1::WorkerCommand command;
  while (reader->Read(&command)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(metrics.Open(RpcMetrics::StreamKind::kCommands), 0) << "closed when the call is done";
  server->Shutdown();
}

// A watch stream that replays one event, then fails as a store read would.
class FailingEventStream final : public EventStream {
 public:
  Poll Next(v1::JobEvent& event) override {
    if (pulls_++ == 0) {
      event.set_seq(1);
      return Poll::kEvent;
    }
    return Poll::kEnd;
  }
  void SetNotify(std::function<void()>) override {}
  absl::Status status() const override {
    return pulls_ > 1 ? absl::UnavailableError("reading the events failed: disk I/O error")
                      : absl::OkStatus();
  }

 private:
  int pulls_ = 0;
};

class FailingWatchService final : public v1::JobService::CallbackService {
 public:
  explicit FailingWatchService(StreamPump* pump) : pump_(pump) {}
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext*,
                                                   const v1::WatchJobRequest*) override {
    auto* reactor = new PullWriteReactor<v1::JobEvent>(
        std::make_unique<CorePullSource<v1::JobEvent, EventStream>>(
            std::make_unique<FailingEventStream>()),
        pump_, [] { return grpc::Status::OK; }, RpcTimer(nullptr, "JobService/WatchJob"),
        OpenStream(nullptr, RpcMetrics::StreamKind::kWatch));
    reactor->Start();
    return reactor;
  }

 private:
  StreamPump* pump_;
};

// A stream the core ends on an error reaches the client as that error, after what it sent:
// never as a normal end (which would tell a watcher it has every event).
TEST(PullWriteReactorTest, AStreamThatEndsOnAnErrorFinishesWithIt) {
  StreamPump pump;
  FailingWatchService service(&pump);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::JobService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  auto reader = stub->WatchJob(&context, v1::WatchJobRequest());
  v1::JobEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.seq(), 1u);
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status ended = reader->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(ended.error_message(), HasSubstr("disk I/O error"));
  server->Shutdown();
}

}  // namespace
}  // namespace loratrf::server

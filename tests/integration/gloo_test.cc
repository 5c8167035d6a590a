// Real Gloo ranks: separate processes on 127.0.0.1 meeting through c10d's TCPStore.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>

#include <torch/torch.h>

#include "worker/engine/dist/communicator.h"
#include "worker/engine/dist/gradient_reducer.h"
#include "gtest/gtest.h"

namespace loratrf::engine {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t length = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  close(fd);
  return ntohs(addr.sin_port);
}

// Runs `body(rank)` in `world` child processes; returns their exit codes (or 128 + signal).
std::vector<int> RunRanks(int world, const std::function<int(int)>& body) {
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    pid_t pid = fork();
    if (pid == 0) _exit(body(rank));
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  return codes;
}

RendezvousOptions Options(int port, int rank, int world, int timeout_ms = 20000) {
  RendezvousOptions o;
  o.master_port = port;
  o.rank = rank;
  o.world_size = world;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  return o;
}

TEST(Gloo, AllReduceSumsAcrossThreeProcesses) {
  const int port = FreePort();
  std::vector<int> codes = RunRanks(3, [&](int rank) {
    auto comm = ConnectGloo(Options(port, rank, 3));
    if (!comm.ok()) return 10;
    std::vector<at::Tensor> tensors = {torch::full({5}, rank + 1.0), torch::full({2, 2}, 10.0 * rank)};
    if (!(*comm)->AllReduceSum(tensors).ok()) return 11;
    if (!torch::equal(tensors[0], torch::full({5}, 6.0))) return 12;
    if (!torch::equal(tensors[1], torch::full({2, 2}, 30.0))) return 13;
    at::Tensor value = torch::full({3}, rank == 2 ? 7.0 : -1.0);
    if (!(*comm)->Broadcast(value, 2).ok() || !torch::equal(value, torch::full({3}, 7.0))) return 14;
    return (*comm)->Barrier().ok() ? 0 : 15;
  });
  EXPECT_EQ(codes, std::vector<int>({0, 0, 0}));
}

// The gradients of rank `rank`'s micro-batch `micro` for w1 [3, 4] and w2 [4, 2] of
// loss = sum(tanh(x w1) w2), computed by plain autograd on fresh copies.
std::pair<at::Tensor, at::Tensor> PlainGradients(const at::Tensor& w1, const at::Tensor& w2,
                                                 int rank, int micro) {
  at::Tensor a = w1.detach().clone().requires_grad_(true);
  at::Tensor b = w2.detach().clone().requires_grad_(true);
  at::Tensor x = torch::full({2, 3}, 0.5 + rank) + micro;
  torch::matmul(torch::tanh(torch::matmul(x, a)), b).sum().backward();
  return {a.grad(), b.grad()};
}

TEST(Gloo, GradientReducerAveragesAccumulatedGradientsStartingBucketsInsideBackward) {
  const int port = FreePort();
  std::vector<int> codes = RunRanks(2, [&](int rank) {
    auto comm = ConnectGloo(Options(port, rank, 2));
    if (!comm.ok()) return 10;
    torch::manual_seed(1);  // the same weights on both ranks
    at::Tensor unused = torch::zeros({5}, torch::requires_grad());
    at::Tensor w1 = torch::randn({3, 4}).requires_grad_(true);
    at::Tensor w2 = torch::randn({4, 2}).requires_grad_(true);
    // 40-byte buckets, filled from the last tensor: {w2}, {w1}, {unused}.
    auto reducer = GradientReducer::Create(**comm, {unused, w1, w2}, 40);
    if (!reducer.ok() || (*reducer)->bucket_count() != 3) return 11;
    for (int step = 0; step < 2; ++step) {  // twice: the second step reuses the buckets
      (*reducer)->BeginStep();
      for (int micro = 0; micro < 2; ++micro) {
        (*reducer)->SetLastMicroBatch(micro == 1);
        at::Tensor x = torch::full({2, 3}, 0.5 + rank) + micro;
        torch::matmul(torch::tanh(torch::matmul(x, w1)), w2).sum().backward();
      }
      if (!(*reducer)->FinishStep().ok()) return 12;
      // w2's and w1's buckets started as soon as backward finished them; `unused` never got a
      // gradient, so its bucket started afterwards.
      if ((*reducer)->buckets_started_in_backward() != 2) return 13;
      at::Tensor expected1 = torch::zeros({3, 4}), expected2 = torch::zeros({4, 2});
      for (int r = 0; r < 2; ++r) {
        for (int micro = 0; micro < 2; ++micro) {
          auto [g1, g2] = PlainGradients(w1, w2, r, micro);
          expected1 += g1 / 2;
          expected2 += g2 / 2;
        }
      }
      if (!torch::allclose(w1.grad(), expected1, 1e-6, 1e-6)) return 14;
      if (!torch::allclose(w2.grad(), expected2, 1e-6, 1e-6)) return 15;
      if (unused.grad().defined()) return 16;
      torch::NoGradGuard no_grad;
      w1.sub_(w1.grad() * 0.1);  // a step, so that the second one sees other weights
      w2.sub_(w2.grad() * 0.1);
      w1.mutable_grad() = at::Tensor();
      w2.mutable_grad() = at::Tensor();
    }
    return 0;
  });
  EXPECT_EQ(codes, std::vector<int>({0, 0}));
}

TEST(Gloo, GradientReducerRefusesWhatItCannotReduce) {
  std::unique_ptr<Communicator> single = MakeSingleProcessCommunicator();
  EXPECT_FALSE(GradientReducer::Create(*single, {}).ok());
  EXPECT_FALSE(GradientReducer::Create(*single, {torch::zeros({2})}).ok());  // frozen
  EXPECT_FALSE(GradientReducer::Create(
                   *single, {torch::zeros({2}, torch::dtype(torch::kFloat64).requires_grad(true))})
                   .ok());
}

TEST(Gloo, AMissingRankIsAnErrorNotAHang) {
  const int port = FreePort();
  auto start = std::chrono::steady_clock::now();
  std::vector<int> codes = RunRanks(1, [&](int) {
    auto comm = ConnectGloo(Options(port, 0, 2, 2000));  // rank 1 never comes
    return comm.ok() ? 1 : 0;
  });
  EXPECT_EQ(codes, std::vector<int>({0}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(Gloo, ADeadPeerFailsTheCollectiveOnTheSurvivor) {
  const int port = FreePort();
  auto start = std::chrono::steady_clock::now();
  std::vector<int> codes = RunRanks(2, [&](int rank) {
    auto comm = ConnectGloo(Options(port, rank, 2, 3000));
    if (!comm.ok()) return 10;
    if (rank == 1) ::kill(::getpid(), SIGKILL);  // dies before the collective
    std::vector<at::Tensor> tensors = {torch::ones({4})};
    absl::Status status = (*comm)->AllReduceSum(tensors);
    return status.ok() ? 1 : 0;
  });
  EXPECT_EQ(codes[0], 0) << "the survivor's all-reduce must fail";
  EXPECT_EQ(codes[1], 128 + SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
}

}  // namespace
}  // namespace loratrf::engine

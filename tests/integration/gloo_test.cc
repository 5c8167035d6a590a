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

TEST(Gloo, AverageGradientsBucketsEveryTrainableTensor) {
  const int port = FreePort();
  std::vector<int> codes = RunRanks(2, [&](int rank) {
    auto comm = ConnectGloo(Options(port, rank, 2));
    if (!comm.ok()) return 10;
    // Three parameters, one without a gradient; a bucket of 64 bytes forces several buckets.
    std::vector<at::Tensor> params = {torch::zeros({3, 4}, torch::requires_grad()),
                                      torch::zeros({5}, torch::requires_grad()),
                                      torch::zeros({2}, torch::requires_grad())};
    params[0].mutable_grad() = torch::full({3, 4}, rank == 0 ? 1.0 : 3.0);
    params[1].mutable_grad() = torch::arange(5, torch::kFloat32) * (rank + 1);
    if (!AverageGradients(**comm, params, 64).ok()) return 11;
    if (!torch::equal(params[0].grad(), torch::full({3, 4}, 2.0))) return 12;
    if (!torch::allclose(params[1].grad(), torch::arange(5, torch::kFloat32) * 1.5)) return 13;
    return params[2].grad().defined() ? 14 : 0;
  });
  EXPECT_EQ(codes, std::vector<int>({0, 0}));
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

// Training on CUDA, checked against the CPU: the same spec gives the same adapter on either
// device (with 2 ranks where 2 GPUs exist), bf16 learns the synthetic task, a SIGKILLed CUDA run resumes to the adapter an uninterrupted one reaches (dropout on,
// so the device's random stream must be restored too), and more local ranks than GPUs is
// refused. On a machine without a GPU the device tests skip; the refusal is checked there too.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/run_fixture.h"

namespace loratrf {
namespace {

namespace fs = std::filesystem;
using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::ExpectSameTensors;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::KillOnceCheckpointed;
using ::loratrf::testing::LearningCurve;
using ::loratrf::testing::ReadLearningCurve;
using ::testing::HasSubstr;
class Cuda : public ::loratrf::testing::RunFixture {};

// The usable GPUs as `loratrf-worker info` counts them. On a machine with an NVIDIA device, an
// info that fails is a failure of the test, not a reason to skip the GPU tests.
int CudaDevices() {
  ProcessResult info = RunProcess({BinaryPath("loratrf-worker"), "info", "-o", "json"});
  if (info.exit_code != 0) {
    EXPECT_FALSE(std::filesystem::exists("/dev/nvidiactl"))
        << "this machine has an NVIDIA device, but loratrf-worker info failed: " << info.err;
    return 0;
  }
  return nlohmann::json::parse(info.out)["cuda_device_count"].get<int>();
}

TEST_F(Cuda, RanksMatchTheCpu) {
  const int devices = CudaDevices();
  if (devices == 0) GTEST_SKIP() << "no CUDA device here";
  const std::string common = "max_steps: 12, batch_size: 16, micro_batch_size: 8, learning_rate: 1.0e-2, max_seq_len: 32";
  ASSERT_EQ(Train(Spec(common, "dropout: 0.0, "), "cpu").exit_code, 0);
  std::string cuda = Spec(common, "dropout: 0.0, ");
  std::ofstream(cuda, std::ios::app) << "resources: {device: cuda}\n";
  ProcessResult r = Train(cuda, "cuda", devices >= 2 ? "2" : "1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectSameTensors(dir_ / "cuda/final/adapter_model.safetensors",
                    dir_ / "cpu/final/adapter_model.safetensors", 1e-3);
}

// bf16 on a GPU (frozen weights in bf16, float32 adapters and head, autocast, the chunked
// loss, fused attention) learns what the float32 CPU run learns.
TEST_F(Cuda, Bf16LearnsTheSyntheticTask) {
  if (CudaDevices() == 0) GTEST_SKIP() << "no CUDA device here";
  std::string spec = Spec("epochs: 8, batch_size: 16, micro_batch_size: 8, learning_rate: 1.0e-2, "
                          "warmup_ratio: 0.1, max_seq_len: 32, precision: bf16");
  std::ofstream(spec, std::ios::app) << "resources: {device: cuda}\n";
  ProcessResult r = Train(spec, "bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  LearningCurve curve = ReadLearningCurve(dir_ / "bf16/metrics.jsonl");
  EXPECT_GT(curve.accuracy, 0.9) << "chance is 0.5";
  EXPECT_LT(curve.last_loss, curve.first_loss / 2);
}

TEST_F(Cuda, WithoutAGpuIsAClearError) {
  if (CudaDevices() > 0) GTEST_SKIP() << "this machine has a GPU";
  std::string spec = Spec("max_steps: 2, batch_size: 8, micro_batch_size: 8");
  std::ofstream(spec, std::ios::app) << "resources: {device: cuda}\n";
  ProcessResult r = Train(spec, "nogpu");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("resources.device is cuda, but this node has no usable GPU"));
}

// One GPU per rank: more local CUDA ranks than GPUs is refused before any rank starts, naming
// both counts (before, two NCCL ranks shared a device).
TEST_F(Cuda, MoreRanksThanGpusIsRefused) {
  const int devices = CudaDevices();
  if (devices == 0) {
    std::string spec = Spec("max_steps: 2, batch_size: 16, micro_batch_size: 8");
    std::ofstream(spec, std::ios::app) << "resources: {device: cuda}\n";
    ProcessResult r = Train(spec, "nogpus", "2");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("resources.device is cuda, but this node has no usable GPU"));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line, from one process";
    return;
  }
  const int nproc = devices + 1;
  std::string spec = Spec(absl::StrCat("max_steps: 2, batch_size: ", 8 * nproc, ", micro_batch_size: 8"));
  std::ofstream(spec, std::ios::app) << "resources: {device: cuda}\n";
  ProcessResult r = Train(spec, "toomany", std::to_string(nproc));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("--nproc ", nproc, ": resources.device is cuda and each rank "
                                            "needs a GPU of its own, but this machine has ",
                                            devices, " usable GPU(s)")));
}

// With dropout, a resumed run continues the random streams it saved: the CPU's and the GPU's.
TEST_F(Cuda, SigkilledRunResumesToTheSameAdapter) {
  if (CudaDevices() == 0) GTEST_SKIP() << "no CUDA device here";
  std::string spec = Spec("epochs: 10, max_steps: 60, batch_size: 16, micro_batch_size: 8, "
                          "learning_rate: 1.0e-2, checkpoint_every_steps: 20, max_seq_len: 32",
                          "dropout: 0.1, ");
  std::ofstream(spec, std::ios::app) << "resources: {device: cuda}\n";
  ASSERT_EQ(Train(spec, "straight").exit_code, 0);
  ASSERT_TRUE(KillOnceCheckpointed(spec, dir_ / "killed", 20))
      << "the run finished before it could be killed";
  ProcessResult resumed = Train(spec, "killed");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed at step"));
  // GPU kernels may sum in another order from run to run: equal within float rounding.
  ExpectSameTensors(dir_ / "killed/final/adapter_model.safetensors",
                    dir_ / "straight/final/adapter_model.safetensors", 1e-5);
}

}  // namespace
}  // namespace loratrf

// loratrf-worker run --spec JOB.yaml [--nproc N] --output DIR
//   trains locally: N rank processes on this machine (like torchrun), Gloo between them.
// loratrf-worker run --spec JOB.yaml --output DIR --rank R --world-size W
//                    --master-addr HOST --master-port PORT
//   one rank of a multi-node job (the worker agent starts these).
// --collective-timeout DURATION (default 5m): how long the rendezvous and each collective wait
//   for the peers before the rank fails (a dead or stopped peer), in both forms.
// SIGTERM or SIGINT: every rank finishes its step, commits a checkpoint there and the command
// exits with contract::kRunExitStopped (rerun it to resume).
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <iostream>

#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/commands/commands.h"
#include "worker/commands/rank_launcher.h"
#include "worker/commands/spec_conversion.h"
#include "worker/engine/dist/communicator.h"
#include "proto/contract/run_output.h"
#include "proto/spec/job_spec.h"
#include "worker/engine/train/trainer.h"

namespace loratrf::worker {
namespace {

// Exit status of the process; RunCommand maps the error path.
int g_exit_status = 0;

// Set by SIGTERM/SIGINT, read by the trainer once per step.
volatile sig_atomic_t g_stop_requested = 0;
// A second signal ends the process at once: only for a run that is its own single rank. A rank
// under a launcher or the agent gets the terminal's signal and the forwarded one; whoever
// started it kills it when asked twice.
volatile sig_atomic_t g_die_on_second_signal = 0;

void OnStopSignal(int signal) {
  if (g_stop_requested != 0 && g_die_on_second_signal != 0) {
    ::signal(signal, SIG_DFL);
    ::raise(signal);
    return;
  }
  g_stop_requested = 1;
}

void CatchStopSignals() {
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // collectives and file writes carry on; the flag is polled
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

// The usable GPUs, when there are enough for `ranks` ranks of one GPU each: two NCCL ranks on
// one device would deadlock or crawl, so more ranks than devices is refused.
absl::StatusOr<int> CheckGpusForRanks(int64_t ranks) {
  const int devices = static_cast<int>(torch::cuda::device_count());
  if (devices == 0) {
    return absl::FailedPreconditionError("resources.device is cuda, but this node has no usable GPU");
  }
  if (ranks > devices) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nproc ", ranks, ": resources.device is cuda and each rank needs a GPU of its own, but "
        "this machine has ", devices, " usable GPU(s)"));
  }
  return devices;
}

absl::Status RunRank(const v1::JobSpec& spec, const std::string& spec_path,
                     const std::string& output, int rank, int world,
                     const std::string& master_addr, int master_port,
                     absl::Duration collective_timeout) {
  ASSIGN_OR_RETURN(engine::TrainJob job, ToTrainJob(spec, spec_path, output));
  job.stop_requested = [] { return g_stop_requested != 0; };
  if (job.cuda) {
    // One GPU per rank: the ranks of a node take its devices in turn (the agent gives a node's
    // ranks exactly as many devices as it runs ranks; a local run checks so in Run).
    ASSIGN_OR_RETURN(const int devices, CheckGpusForRanks(1));
    job.cuda_device = rank % devices;
  }
  std::unique_ptr<engine::Communicator> communicator;
  if (world == 1) {
    communicator = engine::MakeSingleProcessCommunicator();
  } else {
    engine::RendezvousOptions rendezvous;
    rendezvous.master_addr = master_addr;
    rendezvous.master_port = master_port;
    rendezvous.rank = rank;
    rendezvous.world_size = world;
    rendezvous.timeout = absl::ToChronoMilliseconds(collective_timeout);
    if (job.cuda) {
      ASSIGN_OR_RETURN(communicator, engine::ConnectNccl(rendezvous, job.cuda_device));
    } else {
      ASSIGN_OR_RETURN(communicator, engine::ConnectGloo(rendezvous));
    }
  }
  ASSIGN_OR_RETURN(engine::TrainResult result, engine::Train(job, *communicator, &std::cerr));
  if (result.stopped) {
    g_exit_status = contract::kRunExitStopped;
    if (rank == 0) {
      std::cout << "stopped after step " << result.steps << "; rerun to resume" << std::endl;
    }
    return absl::OkStatus();
  }
  if (rank == 0) {
    std::cout << "trained " << result.steps << " steps";
    if (result.resumed_from > 0) std::cout << " (resumed at step " << result.resumed_from << ")";
    if (result.eval_accuracy) {
      std::cout << "; eval loss " << *result.eval_loss << ", accuracy " << *result.eval_accuracy;
    }
    std::cout << "\nfinal adapter: " << result.final_dir << "\n";
  }
  return absl::OkStatus();
}

absl::Status Run(const CommandLine& flags) {
  ASSIGN_OR_RETURN(std::string spec_path, flags.Require("--spec"));
  ASSIGN_OR_RETURN(std::string output, flags.Require("--output"));
  ASSIGN_OR_RETURN(v1::JobSpec spec, spec::LoadJobSpecFile(spec_path));
  ASSIGN_OR_RETURN(int64_t nproc, flags.GetInt("--nproc", -1, 1, 256));
  const int64_t expected = int64_t{spec.resources().workers()} * spec.resources().slots_per_worker();
  ASSIGN_OR_RETURN(const absl::Duration collective_timeout,
                   flags.GetDuration("--collective-timeout", absl::Minutes(5), absl::Seconds(1),
                                     absl::Hours(24)));
  if (flags.Has("--rank")) {
    CatchStopSignals();
    ASSIGN_OR_RETURN(int64_t world, flags.GetInt("--world-size", 1, 1, 65536));
    ASSIGN_OR_RETURN(int64_t rank, flags.GetInt("--rank", 0, 0, world - 1));
    ASSIGN_OR_RETURN(int64_t port, flags.GetInt("--master-port", 0, 1, 65535));
    return RunRank(spec, spec_path, output, static_cast<int>(rank), static_cast<int>(world),
                   flags.GetOr("--master-addr", "127.0.0.1"), static_cast<int>(port),
                   collective_timeout);
  }
  if (nproc < 0) nproc = expected;  // the spec's resources, all on this machine
  if (spec.resources().device() == v1::DEVICE_CUDA) RETURN_IF_ERROR(CheckGpusForRanks(nproc).status());
  if (spec.training().batch_size() % (spec.training().micro_batch_size() * nproc) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nproc ", nproc, ": training.batch_size (", spec.training().batch_size(),
        ") must be a multiple of micro_batch_size x nproc (", spec.training().micro_batch_size(),
        " x ", nproc, ")"));
  }
  if (nproc == 1) {
    g_die_on_second_signal = 1;
    CatchStopSignals();
    return RunRank(spec, spec_path, output, 0, 1, "", 0, collective_timeout);
  }
  LaunchOptions launch;
  char self[PATH_MAX] = {};
  ssize_t length = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) return absl::InternalError("cannot find this executable (/proc/self/exe)");
  launch.executable = std::string(self, static_cast<size_t>(length));
  launch.common_args = {"run", "--spec", spec_path, "--output", output};
  if (std::optional<std::string> timeout = flags.Get("--collective-timeout")) {
    launch.common_args.insert(launch.common_args.end(), {"--collective-timeout", *timeout});
  }
  launch.nproc = static_cast<int>(nproc);
  ASSIGN_OR_RETURN(g_exit_status, LaunchRanks(launch));
  return absl::OkStatus();
}

}  // namespace

int RunRun(const std::vector<std::string>& args) {
  int code = RunCommand("run", args,
                        {{"--spec", true}, {"--output", true}, {"--nproc", true}, {"--rank", true},
                         {"--world-size", true}, {"--master-addr", true}, {"--master-port", true},
                         {"--collective-timeout", true}},
                        Run);
  return code != 0 ? code : g_exit_status;
}

}  // namespace loratrf::worker

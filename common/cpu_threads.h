// How many CPU threads a process gets when several share a node's cores.
//
// A rank's libtorch starts one OpenMP thread per CPU it may run on. Two ranks (or two jobs'
// ranks) on a 2-core node would then run four spinning threads on two cores, and OpenMP's
// busy waiting makes that several times slower than one thread each. Like torchrun, the
// launchers (the agent, `loratrf-worker run --nproc N`) give each CPU rank its share through
// OMP_NUM_THREADS, unless the operator set OMP_NUM_THREADS themselves.
//
// Threading: pure functions of the process's CPU affinity and environment.
#pragma once

#include <optional>
#include <string>

namespace loratrf {

// The CPUs this process may run on (sched_getaffinity; hardware_concurrency if that fails), >= 1.
int UsableCpus();

// max(1, usable_cpus / processes); processes < 1 counts as 1.
int CpuThreadsPerProcess(int usable_cpus, int processes);

// "OMP_NUM_THREADS=N" for one of `processes` processes sharing this node, or nullopt when
// OMP_NUM_THREADS is already set in this process's environment (the operator's choice wins and
// is inherited as it is).
std::optional<std::string> OmpThreadsSetting(int processes);

}  // namespace loratrf

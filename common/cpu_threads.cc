#include "common/cpu_threads.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"

namespace loratrf {

int UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

int CpuThreadsPerProcess(int usable_cpus, int processes) {
  return std::max(1, usable_cpus / std::max(1, processes));
}

std::optional<std::string> OmpThreadsSetting(int processes) {
  const char* set = std::getenv("OMP_NUM_THREADS");
  if (set != nullptr && *set != '\0') return std::nullopt;
  return absl::StrCat("OMP_NUM_THREADS=", CpuThreadsPerProcess(UsableCpus(), processes));
}

}  // namespace loratrf

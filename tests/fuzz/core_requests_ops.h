// The calls of the core_requests fuzz target's scripts (core_requests_fuzz.cc), shared with the
// program that writes its seed corpus (make_core_requests_seeds.cc). The values are the script's
// op bytes: append, never renumber, or the corpus changes meaning.
#pragma once

#include <cstdint>

namespace loratrf::fuzz {

enum class CoreOp : uint8_t {
  kSubmitJob = 0,
  kGetJob,
  kListJobs,
  kCancelJob,
  kWatchJob,
  kListCheckpoints,
  kDownloadCheckpoint,
  kListWorkers,
  kPauseJob,
  kResumeJob,
  kDeleteJob,
  kCordonWorker,
  kRegister,
  kHeartbeat,
  kStreamCommands,
  kReportEvents,
  kUploadCheckpoint,
  kTick,
  kAdvanceClock,  // payload[0]: seconds
  kCollectGarbage,
  kRestart,  // a new core over the same store and artifacts, as after a coordinator restart
  kCount,
};

// Callers, by the script's caller byte (modulo 4).
inline constexpr uint8_t kAlice = 0, kBob = 1, kAdmin = 2, kWorker = 3;

}  // namespace loratrf::fuzz

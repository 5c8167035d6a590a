// The limits a job spec must stay within. docs/api.md quotes them; keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>

namespace loratrf::spec {

inline constexpr size_t kMaxNameLength = 63;
inline constexpr size_t kMaxPathLength = 4096;
inline constexpr int kMaxTargetModules = 64;
inline constexpr size_t kMaxModuleNameLength = 128;
inline constexpr uint32_t kMaxRank = 1024;
inline constexpr double kMaxAlpha = 1e4;
inline constexpr uint32_t kMaxEpochs = 10000;
inline constexpr uint64_t kMaxSteps = 1'000'000'000;
inline constexpr uint32_t kMaxBatchSize = 1 << 16;
inline constexpr double kMaxLearningRate = 1.0;
inline constexpr double kMaxGradNorm = 1e6;
inline constexpr double kMaxWeightDecay = 1.0;
inline constexpr uint32_t kMinSeqLen = 2;
inline constexpr uint32_t kMaxSeqLen = 1 << 17;
inline constexpr uint32_t kMaxKeepCheckpoints = 1000;
inline constexpr uint32_t kMaxWorkers = 256;
inline constexpr uint32_t kMaxSlotsPerWorker = 64;
inline constexpr int32_t kMaxPriority = 1000;
inline constexpr uint32_t kMaxRestarts = 100;

}  // namespace loratrf::spec

// What a rank reports about its device: memory in use and at peak, and the device's peak dense
// bf16 FLOP/s where it is known (for MFU). Torch-free.
//
// Threading: ReadMemory keeps the peak it has seen in a process-wide atomic; safe from any
// thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loratrf::engine {

struct MemoryReading {
  std::string device;  // "cuda" or "cpu"
  uint64_t in_use = 0;
  uint64_t peak = 0;
};

// cuda_device < 0: this process's resident memory (VmRSS) and its high-water mark (VmHWM).
// Otherwise the GPU's memory in use (total less free, from the CUDA runtime: this rank's, as
// each rank has a GPU of its own, plus the CUDA context) and the most seen by this process;
// zeros in a build without CUDA.
MemoryReading ReadMemory(int cuda_device);

// Peak dense bf16 FLOP/s of the device, for MFU: LORATRF_DEVICE_PEAK_FLOPS when set (any
// device, the CPU included), else a table of NVIDIA data-centre GPUs by name; nullopt when
// unknown.
std::optional<double> DevicePeakFlops(int cuda_device);

// Model FLOPs of training on `tokens` tokens in sequences of `sequence_length`: 4 per frozen
// weight of a matrix product (forward, and backward to the inputs), 6 per trained weight
// (forward, backward to inputs and to weights), and 12 × layers × sequence_length × hidden
// for attention's two products (forward and backward, no causal discount).
double TrainingFlops(int64_t tokens, int64_t sequence_length, int64_t frozen_matmul_weights,
                     int64_t trained_weights, int64_t layers, int64_t hidden);

}  // namespace loratrf::engine

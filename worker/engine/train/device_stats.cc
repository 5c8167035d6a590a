#include "worker/engine/train/device_stats.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#ifdef LORATRF_HAVE_NCCL
#include <cuda_runtime.h>
#endif

namespace loratrf::engine {
namespace {

// A "Name:   1234 kB" line of /proc/self/status, in bytes.
uint64_t StatusBytes(const std::string& status, const std::string& name) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(name.size() + 1));
    uint64_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;
}

std::atomic<uint64_t> cuda_peak{0};

}  // namespace

MemoryReading ReadMemory(int cuda_device) {
  MemoryReading reading;
  if (cuda_device < 0) {
    reading.device = "cpu";
    std::ifstream in("/proc/self/status");
    std::stringstream status;
    status << in.rdbuf();
    reading.in_use = StatusBytes(status.str(), "VmRSS");
    reading.peak = StatusBytes(status.str(), "VmHWM");
    return reading;
  }
  reading.device = "cuda";
#ifdef LORATRF_HAVE_NCCL
  size_t free_bytes = 0, total_bytes = 0;
  int previous = -1;
  if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(cuda_device) == cudaSuccess &&
      cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    reading.in_use = static_cast<uint64_t>(total_bytes - free_bytes);
  }
  if (previous >= 0) cudaSetDevice(previous);
#endif
  uint64_t seen = cuda_peak.load();
  while (seen < reading.in_use && !cuda_peak.compare_exchange_weak(seen, reading.in_use)) {
  }
  reading.peak = std::max(seen, reading.in_use);
  return reading;
}

std::optional<double> DevicePeakFlops(int cuda_device) {
  if (const char* set = std::getenv("LORATRF_DEVICE_PEAK_FLOPS"); set != nullptr && *set) {
    char* end = nullptr;
    const double value = std::strtod(set, &end);
    if (end != set && *end == '\0' && value > 0) return value;
  }
  if (cuda_device < 0) return std::nullopt;
#ifdef LORATRF_HAVE_NCCL
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, cuda_device) != cudaSuccess) return std::nullopt;
  const std::string name = properties.name;
  // Dense bf16 tensor-core peaks from NVIDIA's data sheets (SXM parts; PCIe ones run lower).
  static const std::pair<const char*, double> kPeaks[] = {
      {"B200", 2250e12}, {"H200", 989e12}, {"H100", 989e12}, {"H800", 989e12},
      {"GH200", 989e12}, {"A100", 312e12}, {"A800", 312e12},  {"L40S", 362e12},
      {"L40", 181e12},   {"A10G", 70e12},  {"A10", 125e12},   {"L4", 121e12}};
  for (const auto& [model, peak] : kPeaks) {
    if (name.find(model) != std::string::npos) return peak;
  }
#endif
  return std::nullopt;
}

double TrainingFlops(int64_t tokens, int64_t sequence_length, int64_t frozen_matmul_weights,
                     int64_t trained_weights, int64_t layers, int64_t hidden) {
  const double per_token = 4.0 * static_cast<double>(frozen_matmul_weights) +
                           6.0 * static_cast<double>(trained_weights) +
                           12.0 * static_cast<double>(layers) *
                               static_cast<double>(sequence_length) * static_cast<double>(hidden);
  return per_token * static_cast<double>(tokens);
}

}  // namespace loratrf::engine

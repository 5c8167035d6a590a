// Fuzz target: the safetensors reader. Any bytes must be refused with an error or opened as a
// file whose every tensor lies inside the data section, without reading outside the mapping.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/engine/checkpoint/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/loratrf-fuzz-safetensors-" + std::to_string(::getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto file = loratrf::engine::SafetensorsFile::Open(path);
  if (file.ok()) {
    uint64_t checksum = 0;
    for (const auto& entry : (*file)->tensors()) {
      if (entry.end < entry.begin || entry.end > size) std::abort();
      const uint8_t* bytes = (*file)->Data(entry);
      if (entry.end > entry.begin && bytes == nullptr) std::abort();
      for (uint64_t i = 0; i < entry.end - entry.begin; ++i) checksum += bytes[i];  // ASan checks
    }
    if (checksum == 0x5eed) std::fputc(0, stderr);  // keep the reads
  }
  std::remove(path.c_str());
  return 0;
}

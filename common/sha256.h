// SHA-256 (FIPS 180-4), for checkpoint manifests and upload verification. Self-contained so
// that the engine-only build needs no crypto library.
//
// Threading: a Sha256 object is used by one thread; the free functions are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf {

class Sha256 {
 public:
  Sha256();
  void Update(absl::string_view bytes);
  // The digest as 64 lower-case hex characters. The object must not be updated afterwards.
  std::string HexDigest();

 private:
  void Block(const uint8_t* block);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string Sha256Hex(absl::string_view bytes);

// Streams a file through SHA-256; errors name the path.
absl::StatusOr<std::string> Sha256File(const std::string& path, uint64_t* size = nullptr);

}  // namespace loratrf

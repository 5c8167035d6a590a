// Reading and writing the safetensors format (huggingface/safetensors), torch-free so that it
// compiles fast and tools that only inspect files need not pull libtorch headers.
//
// Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON
//   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string value>", ...}}
// (padded with spaces to a multiple of 8), then the data section: raw little-endian, row-major
// tensor bytes; data_offsets are relative to its start and must tile it exactly.
//
// The reader trusts nothing in the file: every header field is checked before any offset is
// used, and a violation is an InvalidArgument naming the file, the tensor and the rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::engine {

// The dtypes loratrf reads and writes. Files with other safetensors dtypes (U16, U32, U64,
// F8_*) are refused with "unsupported dtype".
enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

size_t DTypeSize(DType dtype);        // bytes per element
const char* DTypeName(DType dtype);   // the format's spelling: "F32", "BF16", "BOOL", ...

struct TensorEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;  // byte offsets relative to the data section, [begin, end)
  uint64_t end;
};

// A read-only memory mapping of one safetensors file.
//
// Threading: immutable after Open; safe to share across threads (hence shared_ptr<const>).
// The mapping lives as long as the object. The file must not be truncated while it is open
// (reading a truncated mapping raises SIGBUS); loratrf replaces files by rename
// (AtomicFileWriter), which never changes an open file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Open(const std::string& path);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // Ordered by data offset (ties, which only zero-byte tensors can have, by name).
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const TensorEntry* Find(absl::string_view name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"

  // Points into the mapping; `entry` must come from this file's tensors() (else nullptr). Only
  // aligned to the data section's start (a multiple of 8 in the file): a tensor placed after an
  // odd-sized one may be misaligned for its dtype, so copy (memcpy) rather than cast in place.
  const uint8_t* Data(const TensorEntry& entry) const;
  int64_t NumElements(const TensorEntry& entry) const;
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile(std::string path, const uint8_t* base, size_t size);

  const std::string path_;
  const uint8_t* const base_;  // the whole file, mmap(PROT_READ, MAP_PRIVATE)
  const size_t size_;
  size_t data_start_ = 0;      // 8 + N
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name → position in tensors_
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;   // size_bytes of raw little-endian, row-major elements
  size_t size_bytes;
};

// Writes `tensors` to `path` atomically (AtomicFileWriter: a crash leaves the old file or the
// new one). Tensors are laid out contiguously in name order; the header is compact JSON padded
// with spaces to a multiple of 8 bytes, as the official library writes it, with "__metadata__"
// first when `metadata` is non-empty. Refuses (InvalidArgument) what the reader would refuse:
// empty, duplicate or non-UTF-8 names, the name "__metadata__", negative or > 2^53 dims,
// size_bytes != numel × dtype size, null data with size_bytes > 0, non-UTF-8 metadata.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace loratrf::engine

// Reading a whole small file (configs, tokenizer.json) with the checks every caller needs:
// a regular file, no larger than the caller's limit, fully read.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace loratrf {

// The contents of `path`. NotFound when it does not exist; InvalidArgument when it is not a
// regular file or is larger than `max_bytes` (the message gives the limit); messages start with
// the path.
absl::StatusOr<std::string> ReadFileWithLimit(const std::string& path, uint64_t max_bytes);

// "4 MiB", "512 KiB", "100 bytes": a limit as people read it.
std::string FormatByteLimit(uint64_t bytes);

}  // namespace loratrf

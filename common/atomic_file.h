// Crash-safe file replacement (docs/architecture.md, convention 9): write a temp file in the
// target's directory, fsync it, rename it over the target, fsync the directory. A reader of `path`
// sees either the old content or the complete new content, never a mix, even across a power cut.
//
// A process killed before Commit() leaves the target untouched and its temp file
// (`.<name>.tmp-<pid>-<random>`) behind; whoever owns the directory may delete such leftovers.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf {

// Threading: single-threaded: one writer per instance. Distinct instances (even for the same
// target path) are independent; the last Commit() wins.
class AtomicFileWriter {
 public:
  // Creates the temp file next to `path` (O_CREAT|O_EXCL|O_CLOEXEC, mode 0644 before umask).
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Open(const std::string& path);

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  // Without a successful Commit(), removes the temp file; the target is left as it was.
  ~AtomicFileWriter();

  // Appends all of `bytes`. After any error the writer is spent: Commit() refuses.
  absl::Status Write(absl::string_view bytes);

  // fsync → rename over the target → fsync the directory. Callable once. If only the final
  // directory fsync fails, the new content is already in place but may not survive a crash.
  absl::Status Commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  // Errors name the target path, not the temp file: with both, a long path pushed the reason
  // (errno's text, e.g. "No space left on device") past where callers cut a message.

 private:
  AtomicFileWriter(std::string path, std::string dir, std::string temp_path, int fd);
  absl::Status Fail(absl::Status status);  // marks the writer spent, returns `status`

  const std::string path_;
  const std::string dir_;
  const std::string temp_path_;
  int fd_;                   // -1 once closed
  bool committed_ = false;   // the temp file has been renamed onto path_
  bool failed_ = false;      // a Write/Commit error happened; no Commit afterwards
};

// Open + Write + Commit.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes);

// Makes a directory's entries (created, renamed, removed files) durable.
absl::Status FsyncDirectory(const std::string& dir);

}  // namespace loratrf

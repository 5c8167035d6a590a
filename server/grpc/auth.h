// Who may call what (docs/control-plane.md, "Identity and auth").
//
// With --auth-token-file every RPC but grpc.health.v1 carries `authorization: Bearer TOKEN`;
// the token file has one credential a line, `ROLE NAME TOKEN` (`#` starts a comment), ROLE
// `user` (JobService), `admin` (everything a user may, on every owner's jobs, plus the operator
// RPCs) or `worker` (WorkerService, and JobService.DownloadCheckpoint to resume). A missing or
// unknown token is Unauthenticated, a wrong role PermissionDenied. Without a token file every
// caller is principal `local` with every role (the server then binds loopback only: a
// single-user machine). Which jobs a caller may see is the core's rule (CheckJobAccess).
//
// Tokens are kept only as SHA-256 digests and compared in constant time against every entry,
// so neither a token's length nor how much of it matched shows in the response time.
//
// The credentials can be replaced while the server runs (Reload: the coordinator re-reads its
// token file on SIGHUP); a file that does not parse leaves the current ones in place.
//
// Threading: every method may be called from any thread. The credentials are an immutable set
// behind a shared_ptr that Reload swaps atomically: a call in progress finishes with the set it
// started with, the next one sees the new set. Construction, Parse, FromFile and moves happen
// before the object is shared.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/job_service.h"

namespace loratrf::server {

// What an RPC accepts. An admin may call whatever a user may (`user` accepts admins too).
struct Roles {
  bool user = false;
  bool worker = false;
  bool admin = false;
};
inline constexpr Roles kUserOnly{true, false, false};
inline constexpr Roles kWorkerOnly{false, true, false};
inline constexpr Roles kUserOrWorker{true, true, false};
inline constexpr Roles kAdminOnly{false, false, true};  // operator RPCs (CordonWorker)

inline constexpr char kLocalPrincipal[] = "local";

class Authenticator {
 public:
  // No token file: everyone is `local` with every role.
  Authenticator() = default;

  // Parses a token file's text; errors name `source` and the line ("tokens.txt:3: ...").
  static absl::StatusOr<Authenticator> Parse(absl::string_view text, absl::string_view source);
  // Reads and parses the file (at most limits::kMaxAuthFileBytes).
  static absl::StatusOr<Authenticator> FromFile(const std::string& path);

  bool enabled() const { return enabled_; }
  // Credentials (distinct tokens) in the current set.
  size_t size() const;

  // Re-reads `path` (FromFile) and, when it parses, makes its credentials the current ones;
  // otherwise the current ones stay and the error names the file and line. FailedPrecondition
  // without a token file (auth cannot be switched on while running).
  absl::Status Reload(const std::string& path);

  // `authorization`: the request's `authorization` metadata, absent when not sent.
  absl::StatusOr<Caller> Authenticate(std::optional<absl::string_view> authorization,
                                      Roles allowed) const;

  // A worker acts only as itself: `name` (a Register/Heartbeat/report/upload's worker name)
  // must be the caller's principal. Always OK without a token file.
  absl::Status CheckWorkerName(const Caller& caller, absl::string_view name) const;

 private:
  struct Entry {
    std::string name;
    std::string token_sha256;  // hex digest of the token
    bool user = false;
    bool worker = false;
    bool admin = false;
  };
  using Entries = std::vector<Entry>;
  // The current set, never null; read with std::atomic_load, replaced with std::atomic_store.
  std::shared_ptr<const Entries> Current() const;

  bool enabled_ = false;
  std::shared_ptr<const Entries> entries_ = std::make_shared<const Entries>();
};

}  // namespace loratrf::server

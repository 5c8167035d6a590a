// Who may call what (docs/control-plane.md, "Identity and auth").
//
// With --auth-token-file every RPC but grpc.health.v1 carries `authorization: Bearer TOKEN`;
// the token file has one credential a line, `ROLE NAME TOKEN` (`#` starts a comment), ROLE
// `user` (JobService) or `worker` (WorkerService, and JobService.DownloadCheckpoint to resume).
// A missing or unknown token is Unauthenticated, a wrong role PermissionDenied. Without a token
// file every caller is principal `local` with both roles (the server then binds loopback only).
//
// Tokens are kept only as SHA-256 digests and compared in constant time against every entry,
// so neither a token's length nor how much of it matched shows in the response time.
//
// Threading: immutable after construction; every method may be called from any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/job_service.h"

namespace loratrf::server {

enum class Role { kUser, kWorker };

// What an RPC accepts.
struct Roles {
  bool user = false;
  bool worker = false;
};
inline constexpr Roles kUserOnly{true, false};
inline constexpr Roles kWorkerOnly{false, true};
inline constexpr Roles kUserOrWorker{true, true};

inline constexpr char kLocalPrincipal[] = "local";

class Authenticator {
 public:
  // No token file: everyone is `local` with both roles.
  Authenticator() = default;

  // Parses a token file's text; errors name `source` and the line ("tokens.txt:3: ...").
  static absl::StatusOr<Authenticator> Parse(absl::string_view text, absl::string_view source);
  // Reads and parses the file (at most limits::kMaxAuthFileBytes).
  static absl::StatusOr<Authenticator> FromFile(const std::string& path);

  bool enabled() const { return enabled_; }
  size_t size() const { return entries_.size(); }

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
  };
  bool enabled_ = false;
  std::vector<Entry> entries_;
};

}  // namespace loratrf::server

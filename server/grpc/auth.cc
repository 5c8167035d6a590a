#include "server/grpc/auth.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/read_file.h"
#include "common/sha256.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"

namespace loratrf::server {
namespace {

// True when a == b, taking the same time wherever they differ. Both are hex digests of the
// same length, so the length says nothing.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

bool IsTokenChar(char c) { return c > 0x20 && c < 0x7f; }

}  // namespace

absl::StatusOr<Authenticator> Authenticator::Parse(absl::string_view text,
                                                   absl::string_view source) {
  Entries entries;
  std::map<std::string, size_t> by_digest;  // token digest → entry index
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_number, ": ", what));
    };
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() != 3) return error("expected ROLE NAME TOKEN");
    bool user = fields[0] == "user", worker = fields[0] == "worker", admin = fields[0] == "admin";
    if (!user && !worker && !admin) return error("ROLE must be 'user', 'admin' or 'worker'");
    absl::string_view name = fields[1];
    if (absl::Status s = worker ? contract::CheckWorkerName("worker NAME", name)
                                : contract::CheckUserName(admin ? "admin NAME" : "user NAME", name);
        !s.ok()) {
      return error(s.message());
    }
    absl::string_view token = fields[2];
    if (token.size() < limits::kMinTokenLength || token.size() > limits::kMaxTokenLength) {
      return error(absl::StrCat("TOKEN must be ", limits::kMinTokenLength, " to ",
                                limits::kMaxTokenLength, " characters"));
    }
    for (char c : token) {
      if (!IsTokenChar(c)) return error("TOKEN must be printable ASCII");
    }
    std::string digest = Sha256Hex(token);
    auto [it, inserted] = by_digest.emplace(digest, entries.size());
    if (!inserted) {
      // One token may carry several roles of one name (a line each); never two names.
      Entry& entry = entries[it->second];
      if (entry.name != name) return error("this TOKEN is already given to another NAME");
      if ((user && entry.user) || (worker && entry.worker) || (admin && entry.admin)) {
        return error("repeated credential");
      }
      entry.user |= user;
      entry.worker |= worker;
      entry.admin |= admin;
      continue;
    }
    entries.push_back(Entry{std::string(name), std::move(digest), user, worker, admin});
  }
  if (entries.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no credentials"));
  }
  Authenticator auth;
  auth.enabled_ = true;
  auth.entries_ = std::make_shared<const Entries>(std::move(entries));
  return auth;
}

absl::StatusOr<Authenticator> Authenticator::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileWithLimit(path, limits::kMaxAuthFileBytes);
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

std::shared_ptr<const Authenticator::Entries> Authenticator::Current() const {
  return std::atomic_load(&entries_);
}

size_t Authenticator::size() const { return Current()->size(); }

absl::Status Authenticator::Reload(const std::string& path) {
  if (!enabled_) {
    return absl::FailedPreconditionError(
        "no token file was given at start: auth cannot be switched on while running");
  }
  absl::StatusOr<Authenticator> loaded = FromFile(path);
  if (!loaded.ok()) return loaded.status();
  std::atomic_store(&entries_, loaded->Current());
  return absl::OkStatus();
}

absl::StatusOr<Caller> Authenticator::Authenticate(std::optional<absl::string_view> authorization,
                                                   Roles allowed) const {
  if (!enabled_) return Caller{kLocalPrincipal, true, true, true};
  if (!authorization) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer TOKEN' metadata");
  }
  absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError("authorization: expected 'Bearer TOKEN'");
  }
  absl::string_view token = absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
  std::string digest = Sha256Hex(token);
  const std::shared_ptr<const Entries> entries = Current();  // one set for the whole call
  const Entry* match = nullptr;
  for (const Entry& entry : *entries) {  // every entry, whatever matched: constant time
    if (ConstantTimeEquals(entry.token_sha256, digest)) match = &entry;
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown token");
  const bool user = match->user || match->admin;  // an admin may do what a user may
  if (!((allowed.user && user) || (allowed.worker && match->worker) ||
        (allowed.admin && match->admin))) {
    return absl::PermissionDeniedError(absl::StrCat(
        "'", match->name, "' may not call this: it needs the ",
        allowed.admin                  ? "admin"
        : allowed.user && allowed.worker ? "user or worker"
        : allowed.user                 ? "user"
                                       : "worker",
        " role"));
  }
  return Caller{match->name, user, match->worker, match->admin};
}

absl::Status Authenticator::CheckWorkerName(const Caller& caller, absl::string_view name) const {
  if (!enabled_ || caller.principal == name) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("worker '", caller.principal,
                                                  "' may act only as itself, not as another "
                                                  "worker"));
}

}  // namespace loratrf::server

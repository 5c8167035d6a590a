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
  Authenticator auth;
  auth.enabled_ = true;
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
    bool user = fields[0] == "user", worker = fields[0] == "worker";
    if (!user && !worker) return error("ROLE must be 'user' or 'worker'");
    absl::string_view name = fields[1];
    if (absl::Status s = worker ? contract::CheckWorkerName("worker NAME", name)
                                : contract::CheckUserName("user NAME", name);
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
    auto [it, inserted] = by_digest.emplace(digest, auth.entries_.size());
    if (!inserted) {
      // One token may carry both roles of one name (two lines); never two names.
      Entry& entry = auth.entries_[it->second];
      if (entry.name != name) return error("this TOKEN is already given to another NAME");
      if ((user && entry.user) || (worker && entry.worker)) return error("repeated credential");
      entry.user |= user;
      entry.worker |= worker;
      continue;
    }
    auth.entries_.push_back(Entry{std::string(name), std::move(digest), user, worker});
  }
  if (auth.entries_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no credentials"));
  }
  return auth;
}

absl::StatusOr<Authenticator> Authenticator::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileWithLimit(path, limits::kMaxAuthFileBytes);
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

absl::StatusOr<Caller> Authenticator::Authenticate(std::optional<absl::string_view> authorization,
                                                   Roles allowed) const {
  if (!enabled_) return Caller{kLocalPrincipal, true, true};
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
  const Entry* match = nullptr;
  for (const Entry& entry : entries_) {  // every entry, whatever matched: constant time
    if (ConstantTimeEquals(entry.token_sha256, digest)) match = &entry;
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown token");
  if (!((allowed.user && match->user) || (allowed.worker && match->worker))) {
    return absl::PermissionDeniedError(
        absl::StrCat("'", match->name, "' may not call this: it needs the ",
                     allowed.user && allowed.worker ? "user or worker"
                     : allowed.user                 ? "user"
                                                    : "worker",
                     " role"));
  }
  return Caller{match->name, match->user, match->worker};
}

absl::Status Authenticator::CheckWorkerName(const Caller& caller, absl::string_view name) const {
  if (!enabled_ || caller.principal == name) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("worker '", caller.principal,
                                                  "' may act only as itself, not as another "
                                                  "worker"));
}

}  // namespace loratrf::server

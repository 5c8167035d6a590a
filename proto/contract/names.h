// The rules for every name, id and key that crosses a process boundary, checked the same way by
// the CLI (before sending), the coordinator (on receipt) and the agent (on its own flags). Each
// check returns InvalidArgument "FIELD: RULE" naming the field it was given; none echoes bytes
// that could be control characters.
//
// Threading: pure functions.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace loratrf::contract {

// A job name (JobSpec.name): 1-63 of [a-z0-9-], starting and ending with a letter or digit.
absl::Status CheckJobName(absl::string_view field, absl::string_view name);

// A worker name: 1-63 of [a-z0-9.-] (a lower-case host name).
absl::Status CheckWorkerName(absl::string_view field, absl::string_view name);
// A worker name made from a host name: lower-cased, other characters replaced by '-', cut to
// the limit; "worker" when nothing is left. Always passes CheckWorkerName.
std::string WorkerNameFromHostName(absl::string_view host);

// A user's name (a job's owner, as the coordinator's --auth-token-file names it): 1-63 of
// [A-Za-z0-9._@-].
absl::Status CheckUserName(absl::string_view field, absl::string_view name);

// A job or checkpoint id, as the coordinator makes them ("j-18c2a-00f3a1", "ckpt-7"): 1-128
// of [A-Za-z0-9._-], not "." or "..". Ids become directory names on the coordinator and the
// agent, so nothing else is ever accepted as one.
absl::Status CheckId(absl::string_view field, absl::string_view id);

// An idempotency key: 1-128 printable ASCII characters without spaces (0x21-0x7e).
absl::Status CheckIdempotencyKey(absl::string_view field, absl::string_view key);

// A job label (JobSpec.labels, `loratrf list -l KEY=VALUE`): the key 1-63 of [a-z0-9._/-], the
// value 0-63 printable ASCII characters (spaces allowed). `field` names the map, e.g. "labels";
// the error names the key when the key itself is fine.
absl::Status CheckJobLabel(absl::string_view field, absl::string_view key,
                           absl::string_view value);

}  // namespace loratrf::contract

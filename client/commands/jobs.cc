// validate, submit, get, list, cancel.
#include <filesystem>
#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/lib/format.h"
#include "client/lib/input.h"
#include "proto/contract/names.h"
#include "proto/spec/job_spec.h"

namespace loratrf::client {
namespace {

// Loads, validates and resolves a spec exactly as `submit` sends it.
absl::StatusOr<v1::JobSpec> LoadSpecForSubmit(const std::string& path) {
  absl::StatusOr<v1::JobSpec> spec = spec::LoadJobSpecFile(path);
  if (!spec.ok()) return spec.status();
  ResolveSpecPaths(std::filesystem::path(path).parent_path().string(), *spec);
  // Resolving may make a path too long; the server would say so, but nothing is sent.
  if (absl::Status s = spec::ValidateJobSpec(*spec); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return spec;
}

}  // namespace

int RunValidate(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto flags = CommandLine::Parse(args, {{"-o", true}});
  if (!flags.ok()) return Fail(kExitUsage, flags.status().message());
  if (flags->positional().size() != 1) return Fail(kExitUsage, "validate takes one spec file");
  auto format = flags->GetChoice("-o", "yaml", {"yaml", "json"});
  if (!format.ok()) return Fail(kExitUsage, format.status().message());
  auto spec = spec::LoadJobSpecFile(flags->positional()[0]);
  if (!spec.ok()) return Fail(kExitUsage, spec.status().message());
  bool ok = Print(*format == "json" ? spec::JobSpecToJson(*spec) + "\n"
                                    : spec::JobSpecToYaml(*spec));
  return ok ? kExitOk : kExitFailure;
}

int RunSubmit(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto flags = ParseCommandFlags(args, {{"--idempotency-key", true}});
  if (!flags.ok()) return Fail(kExitUsage, flags.status().message());
  if (flags->positional().size() != 1) {
    return Fail(kExitUsage, "submit takes one spec file: loratrf submit JOB.yaml");
  }
  auto json = WantsJson(*flags);
  if (!json.ok()) return Fail(kExitUsage, json.status().message());
  v1::SubmitJobRequest request;
  if (std::optional<std::string> key = flags->Get("--idempotency-key")) {
    if (absl::Status s = contract::CheckIdempotencyKey("--idempotency-key", *key); !s.ok()) {
      return Fail(kExitUsage, s.message());
    }
    request.set_idempotency_key(*key);
  }
  auto spec = LoadSpecForSubmit(flags->positional()[0]);
  if (!spec.ok()) return Fail(kExitUsage, spec.status().message());
  *request.mutable_spec() = *std::move(spec);

  auto connection = Connect(global, *flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());
  v1::SubmitJobResponse response;
  grpc::Status status =
      (*connection)->jobs().SubmitJob((*connection)->UnaryContext().get(), request, &response);
  if (!status.ok()) return FailRpc(status, **connection);
  if (response.existing()) {
    std::cerr << "loratrf: note: idempotency key matched job " << response.job().id()
              << " (submitted earlier, now " << JobStateName(response.job().state())
              << "); nothing new was queued\n";
  }
  bool ok = Print(*json ? ToJson(response) + "\n" : response.job().id() + "\n");
  return ok ? kExitOk : kExitFailure;
}

int RunGet(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto command = ParseJobCommand(args, {}, "get takes one job id: loratrf get ID");
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  auto connection = Connect(global, command->flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::GetJobRequest request;
  request.set_id(command->id);
  v1::Job job;
  grpc::Status status = (*connection)->jobs().GetJob((*connection)->UnaryContext().get(), request, &job);
  if (!status.ok()) return FailRpc(status, **connection);
  bool ok = Print(command->json ? ToJson(job) + "\n" : FormatJobDetails(job));
  return ok ? kExitOk : kExitFailure;
}

int RunList(const GlobalOptions& global, const std::vector<std::string>& args_in) {
  std::vector<std::string> args = args_in;
  auto state_names = ExtractRepeatedFlag(args, "--state");
  if (!state_names.ok()) return Fail(kExitUsage, state_names.status().message());
  auto flags = ParseCommandFlags(
      args, {{"--owner", true}, {"--name-prefix", true}, {"--all"}, {"--page-size", true}});
  if (!flags.ok()) return Fail(kExitUsage, flags.status().message());
  if (!flags->positional().empty()) {
    return Fail(kExitUsage, absl::StrCat("list takes no arguments, got '",
                                         flags->positional()[0], "'"));
  }
  auto json = WantsJson(*flags);
  if (!json.ok()) return Fail(kExitUsage, json.status().message());
  auto page_size = flags->GetInt("--page-size", 0, 1, 1000);
  if (!page_size.ok()) return Fail(kExitUsage, page_size.status().message());

  v1::ListJobsRequest request;
  std::set<int> seen_states;
  for (const std::string& name : *state_names) {
    auto state = ParseJobStateName(name);
    if (!state.ok()) return Fail(kExitUsage, absl::StrCat("--state: ", state.status().message()));
    if (seen_states.insert(*state).second) request.add_states(*state);
  }
  request.set_owner(flags->GetOr("--owner", ""));
  request.set_name_prefix(flags->GetOr("--name-prefix", ""));
  request.set_page_size(static_cast<uint32_t>(*page_size));
  bool all = flags->Has("--all");

  auto connection = Connect(global, *flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());
  v1::ListJobsResponse merged;
  std::set<std::string> tokens_seen;
  while (true) {
    v1::ListJobsResponse page;
    grpc::Status status =
        (*connection)->jobs().ListJobs((*connection)->UnaryContext().get(), request, &page);
    if (!status.ok()) return FailRpc(status, **connection);
    for (v1::Job& job : *page.mutable_jobs()) *merged.add_jobs() = std::move(job);
    merged.set_next_page_token(page.next_page_token());
    if (!all || page.next_page_token().empty()) break;
    if (!tokens_seen.insert(page.next_page_token()).second) {
      return Fail(kExitFailure, "the coordinator returned the same page token twice");
    }
    request.set_page_token(page.next_page_token());
  }
  if (*json) return Print(ToJson(merged) + "\n") ? kExitOk : kExitFailure;
  std::vector<std::vector<std::string>> rows;
  for (const v1::Job& job : merged.jobs()) rows.push_back(JobTableRow(job));
  bool ok = Print(FormatTable(JobTableHeaders(), rows));
  if (!merged.next_page_token().empty()) {
    std::cerr << "loratrf: note: more jobs than shown; --all lists every page\n";
  }
  return ok ? kExitOk : kExitFailure;
}

int RunCancel(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto command = ParseJobCommand(
      args, {{"--reason", true}},
      "cancel takes one job id: loratrf cancel ID [--reason R]");
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  auto connection = Connect(global, command->flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::CancelJobRequest request;
  request.set_id(command->id);
  request.set_reason(command->flags.GetOr("--reason", ""));
  v1::Job job;
  grpc::Status status =
      (*connection)->jobs().CancelJob((*connection)->UnaryContext().get(), request, &job);
  if (!status.ok()) return FailRpc(status, **connection);
  if (command->json) return Print(ToJson(job) + "\n") ? kExitOk : kExitFailure;
  std::string line = absl::StrCat(job.id(), " ", JobStateName(job.state()));
  if (job.state() != v1::JOB_STATE_CANCELLED) {
    absl::StrAppend(&line, " (already final; left unchanged)");
  }
  return Print(line + "\n") ? kExitOk : kExitFailure;
}

}  // namespace loratrf::client

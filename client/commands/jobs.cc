// validate, submit, get, list, cancel.
#include <filesystem>
#include <iostream>
#include <algorithm>
#include <cstdint>
#include <set>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/lib/format.h"
#include "client/lib/input.h"
#include "proto/contract/limits.h"
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

// `list --sort` holds every listed job in memory: at most this many.
constexpr int kMaxSortedJobs = 100000;

// `list --sort`, over the jobs as fetched (newest first): created keeps that order; priority
// is higher first; queue puts queued jobs first in their queue position, the rest after;
// name is alphabetical. Ties keep the fetched order.
void SortJobs(const std::string& by,
              google::protobuf::RepeatedPtrField<v1::Job>& jobs) {
  if (by == "created") return;
  auto queue_key = [](const v1::Job& job) -> uint64_t {
    if (job.state() != v1::JOB_STATE_QUEUED) return UINT64_MAX;
    return job.queue().position() > 0 ? job.queue().position() : UINT64_MAX - 1;
  };
  std::stable_sort(jobs.begin(), jobs.end(), [&](const v1::Job& a, const v1::Job& b) {
    if (by == "priority") return a.spec().priority() > b.spec().priority();
    if (by == "queue") return queue_key(a) < queue_key(b);
    return a.name() < b.name();
  });
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
  auto flags = ParseCommandFlags(args, {{"--idempotency-key", true}, {"--sweep", true}});
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
  if (std::optional<std::string> sweep = flags->Get("--sweep")) {
    if (absl::Status s = contract::CheckId("--sweep", *sweep); !s.ok()) {
      return Fail(kExitUsage, s.message());
    }
    request.set_sweep_id(*sweep);
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
  auto label_args = ExtractRepeatedFlag(args, "-l");
  if (!label_args.ok()) return Fail(kExitUsage, label_args.status().message());
  auto flags = ParseCommandFlags(args, {{"--owner", true},
                                        {"--name-prefix", true},
                                        {"--sweep", true},
                                        {"--sort", true},
                                        {"--all"},
                                        {"--page-size", true}});
  if (!flags.ok()) return Fail(kExitUsage, flags.status().message());
  if (!flags->positional().empty()) {
    return Fail(kExitUsage, absl::StrCat("list takes no arguments, got '",
                                         flags->positional()[0], "'"));
  }
  auto format = flags->GetChoice("-o", "text", {"text", "json", "wide"});
  if (!format.ok()) return Fail(kExitUsage, format.status().message());
  auto sort = flags->GetChoice("--sort", "created", {"created", "priority", "queue", "name"});
  if (!sort.ok()) return Fail(kExitUsage, sort.status().message());
  auto page_size = flags->GetInt("--page-size", 0, 1, 1000);
  if (!page_size.ok()) return Fail(kExitUsage, page_size.status().message());

  v1::ListJobsRequest request;
  std::set<int> seen_states;
  for (const std::string& name : *state_names) {
    auto state = ParseJobStateName(name);
    if (!state.ok()) return Fail(kExitUsage, absl::StrCat("--state: ", state.status().message()));
    if (seen_states.insert(*state).second) request.add_states(*state);
  }
  for (const std::string& label : *label_args) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos) {
      return Fail(kExitUsage, "-l: expected KEY=VALUE (several: -l a=b,c=d or -l again)");
    }
    const std::string key = label.substr(0, eq), value = label.substr(eq + 1);
    if (absl::Status s = contract::CheckJobLabel("-l", key, value); !s.ok()) {
      return Fail(kExitUsage, s.message());
    }
    if (!request.mutable_labels()->insert({key, value}).second) {
      return Fail(kExitUsage, absl::StrCat("-l: ", key, " given more than once"));
    }
  }
  if (request.labels_size() > limits::kMaxJobLabels) {
    return Fail(kExitUsage, absl::StrCat("-l: at most ", limits::kMaxJobLabels, " labels"));
  }
  if (std::optional<std::string> sweep = flags->Get("--sweep")) {
    if (absl::Status s = contract::CheckId("--sweep", *sweep); !s.ok()) {
      return Fail(kExitUsage, s.message());
    }
    request.set_sweep_id(*sweep);
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
    // Sorting holds every job in memory: bounded.
    if (*sort != "created" && merged.jobs_size() >= kMaxSortedJobs) {
      return Fail(kExitFailure,
                  absl::StrCat("more than ", kMaxSortedJobs,
                               " jobs match: narrow the filters to sort them, or list them "
                               "without --sort"));
    }
    request.set_page_token(page.next_page_token());
  }
  SortJobs(*sort, *merged.mutable_jobs());
  if (*format == "json") return Print(ToJson(merged) + "\n") ? kExitOk : kExitFailure;
  const bool wide = *format == "wide";
  std::vector<std::vector<std::string>> rows;
  for (const v1::Job& job : merged.jobs()) {
    rows.push_back(wide ? JobWideTableRow(job) : JobTableRow(job));
  }
  bool ok = Print(FormatTable(wide ? JobWideTableHeaders() : JobTableHeaders(), rows));
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

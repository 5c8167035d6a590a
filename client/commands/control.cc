// pause, resume, and the worker actions of `workers` (cordon, drain, uncordon).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/lib/format.h"
#include "proto/contract/names.h"

namespace loratrf::client {
namespace {

// `ID STATE` and what the pause or resume did, for the text output.
std::string PauseLine(const v1::Job& job, bool pausing) {
  std::string line = absl::StrCat(job.id(), " ", JobStateName(job.state()));
  if (pausing) {
    if (job.state() == v1::JOB_STATE_QUEUED) {
      absl::StrAppend(&line, " paused (held until `loratrf resume ", job.id(), "`)");
    } else {
      absl::StrAppend(&line, " pausing (its ranks checkpoint and stop, then it is held)");
    }
  } else {
    absl::StrAppend(&line, job.paused() ? " still paused" : " resumed");
  }
  return line + "\n";
}

int RunPauseOrResume(const GlobalOptions& global, const std::vector<std::string>& args,
                     bool pausing) {
  auto command =
      pausing ? ParseJobCommand(args, {{"--reason", true}},
                                "pause takes one job id: loratrf pause ID [--reason R]")
              : ParseJobCommand(args, {}, "resume takes one job id: loratrf resume ID");
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  auto connection = Connect(global, command->flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::Job job;
  grpc::Status status;
  if (pausing) {
    v1::PauseJobRequest request;
    request.set_id(command->id);
    request.set_reason(command->flags.GetOr("--reason", ""));
    status = (*connection)->jobs().PauseJob((*connection)->UnaryContext().get(), request, &job);
  } else {
    v1::ResumeJobRequest request;
    request.set_id(command->id);
    status = (*connection)->jobs().ResumeJob((*connection)->UnaryContext().get(), request, &job);
  }
  if (!status.ok()) return FailRpc(status, **connection);
  if (command->json) return Print(ToJson(job) + "\n") ? kExitOk : kExitFailure;
  return Print(PauseLine(job, pausing)) ? kExitOk : kExitFailure;
}

}  // namespace

int RunPause(const GlobalOptions& global, const std::vector<std::string>& args) {
  return RunPauseOrResume(global, args, /*pausing=*/true);
}

int RunResume(const GlobalOptions& global, const std::vector<std::string>& args) {
  return RunPauseOrResume(global, args, /*pausing=*/false);
}

bool IsWorkerAction(const std::string& word) {
  return word == "cordon" || word == "drain" || word == "uncordon";
}

int RunWorkerAction(const GlobalOptions& global, const std::vector<std::string>& args) {
  const std::string action = args.at(0);
  const std::string usage = absl::StrCat("workers ", action, " takes one worker name: loratrf workers ",
                                         action, " NAME [--reason R]");
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  auto flags = ParseCommandFlags(rest, {{"--reason", true}});
  if (!flags.ok()) return Fail(kExitUsage, flags.status().message());
  if (flags->positional().size() != 1) return Fail(kExitUsage, usage);
  const std::string name = flags->positional()[0];
  if (absl::Status valid = contract::CheckWorkerName("NAME", name); !valid.ok()) {
    return Fail(kExitUsage, valid.message());
  }
  auto json = WantsJson(*flags);
  if (!json.ok()) return Fail(kExitUsage, json.status().message());
  auto connection = Connect(global, *flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::CordonWorkerRequest request;
  request.set_name(name);
  request.set_action(action == "cordon"  ? v1::CordonWorkerRequest::ACTION_CORDON
                     : action == "drain" ? v1::CordonWorkerRequest::ACTION_DRAIN
                                         : v1::CordonWorkerRequest::ACTION_UNCORDON);
  request.set_reason(flags->GetOr("--reason", ""));
  v1::Worker worker;
  grpc::Status status =
      (*connection)->jobs().CordonWorker((*connection)->UnaryContext().get(), request, &worker);
  if (!status.ok()) return FailRpc(status, **connection);
  if (*json) return Print(ToJson(worker) + "\n") ? kExitOk : kExitFailure;
  std::string line = absl::StrCat("worker ", worker.name(), " ",
                                  worker.cordoned() ? "cordoned" : "uncordoned");
  if (action == "drain") {
    absl::StrAppend(&line, "; draining ", worker.running_jobs_size(),
                    " job(s): they checkpoint, stop and are requeued elsewhere");
  }
  return Print(line + "\n") ? kExitOk : kExitFailure;
}

}  // namespace loratrf::client

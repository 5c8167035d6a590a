// checkpoints, download, workers.
#include <ctime>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/lib/download.h"
#include "client/lib/format.h"

namespace loratrf::client {

int RunCheckpoints(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto command = ParseJobCommand(args, {}, "checkpoints takes one job id: loratrf checkpoints ID");
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  auto connection = Connect(global, command->flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::ListCheckpointsRequest request;
  request.set_job_id(command->id);
  v1::ListCheckpointsResponse response;
  grpc::Status status = (*connection)->jobs().ListCheckpoints(
      (*connection)->UnaryContext().get(), request, &response);
  if (!status.ok()) return FailRpc(status, **connection);
  if (command->json) return Print(ToJson(response) + "\n") ? kExitOk : kExitFailure;
  std::vector<std::vector<std::string>> rows;
  for (const v1::Checkpoint& c : response.checkpoints()) rows.push_back(CheckpointTableRow(c));
  return Print(FormatTable(CheckpointTableHeaders(), rows)) ? kExitOk : kExitFailure;
}

int RunDownload(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto command = ParseJobCommand(
      args, {{"--checkpoint", true}, {"--output", true}},
      "download takes one job id: loratrf download ID [--checkpoint C] --output DIR");
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  auto output = command->flags.Require("--output");
  if (!output.ok()) return Fail(kExitUsage, output.status().message());
  std::optional<std::string> checkpoint_id = command->flags.Get("--checkpoint");
  if (checkpoint_id && checkpoint_id->empty()) {
    return Fail(kExitUsage, "--checkpoint: must not be empty");
  }
  // The output directory first: a bad one is the user's mistake whatever the server says.
  auto download = CheckpointDownload::Create(*output);
  if (!download.ok()) {
    return Fail(absl::IsInvalidArgument(download.status()) ? kExitUsage : kExitFailure,
                download.status().message());
  }
  auto connection = Connect(global, command->flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::DownloadCheckpointRequest request;
  request.set_job_id(command->id);
  request.set_checkpoint_id(checkpoint_id.value_or(""));
  std::unique_ptr<grpc::ClientContext> context = (*connection)->StreamContext();
  auto reader = (*connection)->jobs().DownloadCheckpoint(context.get(), request);
  v1::DownloadCheckpointResponse message;
  v1::Checkpoint checkpoint;
  absl::Status local = absl::OkStatus();
  while (local.ok() && reader->Read(&message)) {
    if (message.has_checkpoint()) {
      checkpoint = message.checkpoint();
      local = (*download)->Begin(checkpoint);
    } else if (message.has_chunk()) {
      local = (*download)->Write(message.chunk());
    } else {
      local = absl::DataLossError("the server sent an empty message");
    }
  }
  if (!local.ok()) {
    context->TryCancel();
    (void)reader->Finish();
    return Fail(kExitFailure, absl::StrCat("download of job ", command->id, " failed: ", local.message()));
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FailRpc(status, **connection);
  if (absl::Status s = (*download)->Finish(); !s.ok()) {
    return Fail(absl::IsInvalidArgument(s) ? kExitUsage : kExitFailure,
                absl::StrCat("download of job ", command->id, " failed: ", s.message()));
  }
  if (command->json) return Print(ToJson(checkpoint) + "\n") ? kExitOk : kExitFailure;
  uint64_t bytes = (*download)->bytes_written();
  return Print(absl::StrCat("downloaded checkpoint ", checkpoint.id(), " (step ", checkpoint.step(),
                            checkpoint.final() ? ", final" : "", ", ", checkpoint.files_size(),
                            " files, ", FormatBytes(bytes), ") to ", (*download)->output_dir(),
                            "\n"))
             ? kExitOk
             : kExitFailure;
}

int RunWorkers(const GlobalOptions& global, const std::vector<std::string>& args) {
  if (!args.empty() && IsWorkerAction(args[0])) return RunWorkerAction(global, args);
  auto flags = ParseCommandFlags(args, {});
  if (!flags.ok()) return Fail(kExitUsage, flags.status().message());
  if (!flags->positional().empty()) {
    return Fail(kExitUsage, absl::StrCat("workers takes no arguments, got '",
                                         flags->positional()[0], "'"));
  }
  auto json = WantsJson(*flags);
  if (!json.ok()) return Fail(kExitUsage, json.status().message());
  auto connection = Connect(global, *flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::ListWorkersResponse response;
  grpc::Status status = (*connection)->jobs().ListWorkers((*connection)->UnaryContext().get(),
                                                          v1::ListWorkersRequest(), &response);
  if (!status.ok()) return FailRpc(status, **connection);
  if (*json) return Print(ToJson(response) + "\n") ? kExitOk : kExitFailure;
  double now = static_cast<double>(std::time(nullptr));
  std::vector<std::vector<std::string>> rows;
  for (const v1::Worker& w : response.workers()) rows.push_back(WorkerTableRow(w, now));
  return Print(FormatTable(WorkerTableHeaders(), rows)) ? kExitOk : kExitFailure;
}

}  // namespace loratrf::client

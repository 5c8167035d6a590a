// delete: a finished job's checkpoints (records and files); with --purge its record and events
// too.
#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/lib/format.h"

namespace loratrf::client {

int RunDelete(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto command = ParseJobCommand(args, {{"--purge", false}},
                                 "delete takes one job id: loratrf delete ID [--purge]");
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  auto connection = Connect(global, command->flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::DeleteJobRequest request;
  request.set_id(command->id);
  request.set_purge(command->flags.Has("--purge"));
  v1::DeleteJobResponse response;
  grpc::Status status =
      (*connection)->jobs().DeleteJob((*connection)->UnaryContext().get(), request, &response);
  if (!status.ok()) return FailRpc(status, **connection);
  if (command->json) return Print(ToJson(response) + "\n") ? kExitOk : kExitFailure;
  std::string line = absl::StrCat(command->id, request.purge() ? " purged" : " deleted", ": ",
                                  response.checkpoints_deleted(), " checkpoint(s), ",
                                  FormatBytes(response.bytes_freed()), " freed");
  return Print(line + "\n") ? kExitOk : kExitFailure;
}

}  // namespace loratrf::client

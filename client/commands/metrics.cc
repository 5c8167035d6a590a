// metrics: a job's training and eval history, for people who plot elsewhere. Read from the
// coordinator's event log (WatchJob with no_follow: the replay of what is stored, then the
// end), so it returns at once for a running job too. Everything is collected before anything
// is printed: a stream that breaks halfway leaves stdout empty and one error line.
#include "client/commands/commands.h"
#include "client/lib/format.h"

namespace loratrf::client {

int RunMetrics(const GlobalOptions& global, const std::vector<std::string>& args) {
  constexpr char kUsage[] = "metrics takes one job id: loratrf metrics ID [-o text|json|csv]";
  absl::StatusOr<CommandLine> flags = ParseCommandFlags(args, {});
  if (!flags.ok()) return Fail(kExitUsage, flags.status().message());
  absl::StatusOr<std::string> id = OneJobId(*flags, kUsage);
  if (!id.ok()) return Fail(kExitUsage, id.status().message());
  absl::StatusOr<std::string> format = flags->GetChoice("-o", "text", {"text", "json", "csv"});
  if (!format.ok()) return Fail(kExitUsage, format.status().message());
  auto connection = Connect(global, *flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());

  v1::WatchJobRequest request;
  request.set_id(*id);
  request.set_from_seq(1);
  request.set_no_follow(true);
  // No deadline, as for watch: a long job's history may take a while to replay, and the
  // coordinator ends the stream itself once the replay is done.
  std::unique_ptr<grpc::ClientContext> context = (*connection)->StreamContext();
  auto reader = (*connection)->jobs().WatchJob(context.get(), request);
  std::vector<v1::JobEvent> events;
  v1::JobEvent event;
  while (reader->Read(&event)) {
    if (event.has_train() || event.has_eval()) events.push_back(event);
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FailRpc(status, **connection);

  std::vector<contract::MetricsRow> rows = MetricsHistory(events);
  std::string out;
  if (*format == "json") {
    out = FormatMetricsJson(rows);
  } else if (*format == "csv") {
    out = FormatMetricsCsv(rows);
  } else {
    std::vector<std::vector<std::string>> table;
    table.reserve(rows.size());
    for (const contract::MetricsRow& row : rows) table.push_back(MetricsTableRow(row));
    out = FormatTable(MetricsTableHeaders(), table);
  }
  return Print(out) ? kExitOk : kExitFailure;
}

}  // namespace loratrf::client

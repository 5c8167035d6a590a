// The service as the CLI shows it, for integration fixtures that drive a real coordinator with
// the real `loratrf` binary: each helper takes the fixture's CliRunner (it runs `loratrf` with
// --coordinator and credentials added) and parses the `-o json` answer. An answer that is not there (a non-zero exit)
// reads as empty, so that the callers' assertions say what was expected.
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/integration/subprocess.h"

namespace loratrf::testing {

// Runs `loratrf ARGS` against the fixture's coordinator, with a timeout in seconds.
using CliRunner = std::function<ProcessResult(std::vector<std::string> args, int timeout_s)>;

// The id `loratrf submit` printed (its last line).
inline std::string SubmittedJobId(std::string out) {
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) {
    out.pop_back();
  }
  const size_t newline = out.rfind('\n');
  return out.substr(newline == std::string::npos ? 0 : newline + 1);
}

// `loratrf get ID -o json`; {} when it failed.
nlohmann::json CliGetJob(const CliRunner& cli, const std::string& id) {
  ProcessResult got = cli({"get", id, "-o", "json"}, 60);
  return got.exit_code == 0 ? nlohmann::json::parse(got.out) : nlohmann::json::object();
}

// `loratrf checkpoints ID -o json`'s list; [] when it failed.
nlohmann::json CliCheckpoints(const CliRunner& cli, const std::string& id) {
  ProcessResult listed = cli({"checkpoints", id, "-o", "json"}, 60);
  if (listed.exit_code != 0) return nlohmann::json::array();
  return nlohmann::json::parse(listed.out).value("checkpoints", nlohmann::json::array());
}

// Every event of a final job, through `loratrf watch ID -o json`.
std::vector<nlohmann::json> CliEvents(const CliRunner& cli, const std::string& id) {
  ProcessResult watched = cli({"watch", id, "-o", "json"}, 60);
  std::vector<nlohmann::json> events;
  std::istringstream lines(watched.out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) events.push_back(nlohmann::json::parse(line));
  }
  return events;
}

// How many workers `loratrf [GLOBALS] workers -o json` lists as READY; -1 when it failed.
int CliReadyWorkers(const CliRunner& cli, std::vector<std::string> globals = {}) {
  globals.insert(globals.end(), {"workers", "-o", "json"});
  ProcessResult listed = cli(globals, 60);
  if (listed.exit_code != 0) return -1;
  int ready = 0;
  for (const nlohmann::json& worker :
       nlohmann::json::parse(listed.out).value("workers", nlohmann::json::array())) {
    ready += worker.value("state", "") == "WORKER_STATE_READY";
  }
  return ready;
}

}  // namespace loratrf::testing

#include "proto/contract/manifest.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/json_parse.h"
#include "nlohmann/json.hpp"
#include "proto/contract/limits.h"
#include "proto/contract/run_output.h"

namespace loratrf::contract {
namespace {

using nlohmann::json;
namespace keys = metrics_keys;

}  // namespace

std::string SerializeManifest(const Manifest& manifest) {
  json files = json::array();
  for (const FileEntry& file : manifest.files) {
    files.push_back({{"path", file.path}, {"size_bytes", file.size_bytes}, {"sha256", file.sha256}});
  }
  json metrics = json::object();
  for (const auto& [key, value] : manifest.metrics) metrics[key] = value;
  if (auto it = manifest.metrics.find(keys::kEvalExamples); it != manifest.metrics.end()) {
    metrics[keys::kEvalExamples] = static_cast<uint64_t>(it->second);  // a count stays an integer
  }
  json j = {{"format", kManifestFormat}, {"step", manifest.step}, {"final", manifest.final},
            {"files", files}, {"metrics", metrics}};
  return j.dump(2) + "\n";
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view text) {
  auto bad = [](absl::string_view why) { return absl::DataLossError(why); };
  if (text.size() > limits::kMaxManifestBytes) {
    return bad(absl::StrCat("larger than ", limits::kMaxManifestBytes, " bytes"));
  }
  JsonProblem problem;
  absl::StatusOr<json> parsed = ParseJson(text, JsonLimits{/*max_depth=*/4, false}, &problem);
  if (problem.kind == JsonProblem::Kind::kTooDeep) {
    return bad("not a loratrf manifest (nested too deep)");
  }
  if (!parsed.ok()) {
    return bad(absl::StrCat("not a loratrf manifest (", parsed.status().message(), ")"));
  }
  json j = *std::move(parsed);
  if (!j.is_object() || !j.contains("format") || j["format"] != kManifestFormat) {
    return bad("not a loratrf manifest");
  }
  Manifest m;
  if (!j.contains("step") || !j["step"].is_number_unsigned()) return bad("step: required");
  m.step = j["step"].get<uint64_t>();
  if (j.contains("final")) {
    if (!j["final"].is_boolean()) return bad("final: must be true or false");
    m.final = j["final"].get<bool>();
  }
  if (!j.contains("files") || !j["files"].is_array()) return bad("files: required");
  if (j["files"].size() > static_cast<size_t>(limits::kMaxCheckpointFiles)) {
    return bad(absl::StrCat("files: more than ", limits::kMaxCheckpointFiles));
  }
  std::set<std::string> seen;
  for (const json& f : j["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string() ||
        !f.contains("size_bytes") || !f["size_bytes"].is_number_unsigned() ||
        !f.contains("sha256") || !f["sha256"].is_string()) {
      return bad("files: each entry needs path, size_bytes and sha256");
    }
    FileEntry file{f["path"].get<std::string>(), f["size_bytes"].get<uint64_t>(),
                   f["sha256"].get<std::string>()};
    if (!CheckCheckpointFilePath("path", file.path).ok() ||
        file.path.find('/') != std::string::npos || file.path == kManifestFileName ||
        !seen.insert(file.path).second) {
      return bad(absl::StrCat("files: bad or repeated path '", file.path.substr(0, 256), "'"));
    }
    if (!IsLowerHexSha256(file.sha256)) {
      return bad(absl::StrCat("files: '", file.path, "': sha256 is not 64 lower-case hex digits"));
    }
    m.files.push_back(std::move(file));
  }
  if (j.contains("metrics")) {
    if (!j["metrics"].is_object()) return bad("metrics: must be an object");
    for (const auto& [key, value] : j["metrics"].items()) {
      if (value.is_number() && std::isfinite(value.get<double>())) m.metrics[key] = value.get<double>();
    }
  }
  return m;
}

std::optional<EvalRow> ManifestEval(const Manifest& manifest) {
  auto loss = manifest.metrics.find(keys::kEvalLoss);
  if (loss == manifest.metrics.end()) return std::nullopt;
  EvalRow eval;
  eval.step = manifest.step;
  eval.loss = loss->second;
  if (auto it = manifest.metrics.find(keys::kEvalAccuracy); it != manifest.metrics.end()) {
    eval.accuracy = it->second;
  }
  if (auto it = manifest.metrics.find(keys::kEvalExamples); it != manifest.metrics.end()) {
    eval.examples = it->second > 0 && it->second < 1.8e19 ? static_cast<uint64_t>(it->second) : 0;
  }
  return eval;
}

std::map<std::string, double> ManifestMetrics(const EvalRow& eval) {
  return {{keys::kEvalLoss, eval.loss},
          {keys::kEvalAccuracy, eval.accuracy},
          {keys::kEvalExamples, static_cast<double>(eval.examples)}};
}

}  // namespace loratrf::contract

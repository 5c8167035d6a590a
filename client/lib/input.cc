#include "client/lib/input.h"

#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/contract/names.h"

namespace loratrf::client {
namespace {

namespace fs = std::filesystem;

void Resolve(const fs::path& base, std::string* path) {
  if (path->empty() || fs::path(*path).is_absolute()) return;
  *path = (base / *path).lexically_normal().string();
}

}  // namespace

void ResolveSpecPaths(const std::string& spec_dir, v1::JobSpec& spec) {
  std::error_code ignored;
  fs::path base = fs::absolute(spec_dir.empty() ? fs::path(".") : fs::path(spec_dir), ignored);
  if (spec.has_model()) Resolve(base, spec.mutable_model()->mutable_path());
  if (spec.has_data()) {
    Resolve(base, spec.mutable_data()->mutable_train());
    Resolve(base, spec.mutable_data()->mutable_eval());
  }
}

absl::Status CheckJobId(absl::string_view id) {
  if (absl::Status s = contract::CheckId("job id", id); !s.ok()) return s;
  if (absl::StartsWith(id, "-")) {
    return absl::InvalidArgumentError(absl::StrCat("job id: '", id, "' looks like a flag"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ExtractRepeatedFlag(std::vector<std::string>& args,
                                                             absl::string_view flag) {
  std::vector<std::string> values;
  std::vector<std::string> rest;
  bool flags_ended = false;
  std::string with_equals = absl::StrCat(flag, "=");
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::optional<std::string> value;
    if (!flags_ended && arg == "--") {
      flags_ended = true;
    } else if (!flags_ended && arg == flag) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(flag, ": needs a value"));
      value = args[++i];
    } else if (!flags_ended && absl::StartsWith(arg, with_equals)) {
      value = arg.substr(with_equals.size());
    }
    if (!value) {
      rest.push_back(arg);
      continue;
    }
    for (absl::string_view part : absl::StrSplit(*value, ',')) {
      if (part.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": empty value"));
      values.emplace_back(part);
    }
  }
  args = std::move(rest);
  return values;
}

}  // namespace loratrf::client

#include "common/command_line.h"

#include <algorithm>
#include <charconv>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace loratrf {

absl::StatusOr<CommandLine> CommandLine::Parse(const std::vector<std::string>& args,
                                               const std::vector<Flag>& flags) {
  CommandLine out;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      out.positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    auto flag = std::find_if(flags.begin(), flags.end(),
                             [&](const Flag& f) { return f.name == name; });
    if (flag == flags.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", name));
    }
    if (out.values_.count(name) && !flag->repeatable) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": given more than once"));
    }
    if (!flag->takes_value) {
      if (inline_value) return absl::InvalidArgumentError(absl::StrCat(name, ": takes no value"));
      out.values_[name] = "";
      continue;
    }
    if (inline_value) {
      out.values_[name] = *inline_value;
    } else if (i + 1 < args.size()) {
      out.values_[name] = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(name, ": needs a value"));
    }
    if (flag->repeatable) out.repeated_[name].push_back(out.values_[name]);
  }
  return out;
}

std::vector<std::string> CommandLine::GetAll(const std::string& name) const {
  auto it = repeated_.find(name);
  if (it != repeated_.end()) return it->second;
  if (std::optional<std::string> value = Get(name)) return {*value};
  return {};
}

std::optional<std::string> CommandLine::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string CommandLine::GetOr(const std::string& name, const std::string& fallback) const {
  return Get(name).value_or(fallback);
}

absl::StatusOr<std::string> CommandLine::Require(const std::string& name) const {
  std::optional<std::string> value = Get(name);
  if (!value) return absl::InvalidArgumentError(absl::StrCat(name, ": required"));
  if (value->empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": must not be empty"));
  return *value;
}

absl::StatusOr<int64_t> CommandLine::GetInt(const std::string& name, int64_t fallback,
                                            int64_t lo, int64_t hi) const {
  std::optional<std::string> text = Get(name);
  if (!text) return fallback;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": must be an integer in [", lo, ", ", hi, "], got '", *text, "'"));
  }
  return value;
}

absl::StatusOr<absl::Duration> CommandLine::GetDuration(const std::string& name,
                                                        absl::Duration fallback,
                                                        absl::Duration lo,
                                                        absl::Duration hi) const {
  std::optional<std::string> text = Get(name);
  if (!text) return fallback;
  int64_t seconds = 0;
  absl::Duration value;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), seconds);
  const bool plain = ec == std::errc() && end == text->data() + text->size();
  if (plain) value = absl::Seconds(seconds);
  if ((!plain && !absl::ParseDuration(*text, &value)) || value < lo || value > hi ||
      value == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": '", *text, "' is not a duration in [", absl::FormatDuration(lo), ", ",
        absl::FormatDuration(hi), "] (seconds, or like 90s, 30m, 24h)"));
  }
  return value;
}

absl::StatusOr<std::string> CommandLine::GetChoice(const std::string& name,
                                                   const std::string& fallback,
                                                   const std::vector<std::string>& choices) const {
  std::string value = GetOr(name, fallback);
  if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": must be one of ",
                                                   absl::StrJoin(choices, " | "), ", got '",
                                                   value, "'"));
  }
  return value;
}

}  // namespace loratrf

// A small command-line parser shared by the loratrf binaries: declared flags only, every
// mistake an error that names the flag (the binaries print it and exit 2).
//
//   auto args = CommandLine::Parse(argv_rest, {{"--spec", true}, {"-o", true}, {"--force"}});
//
// Threading: a value type; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace loratrf {

class CommandLine {
 public:
  struct Flag {
    std::string name;          // with its dashes: "--spec", "-o"
    bool takes_value = false;  // `--spec F` / `--spec=F`; otherwise a switch
    bool repeatable = false;   // with a value: may be given more than once (GetAll)
  };

  // Flags may come before, between or after positional arguments; "--" ends the flags.
  static absl::StatusOr<CommandLine> Parse(const std::vector<std::string>& args,
                                           const std::vector<Flag>& flags);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  // The flag's value, or an error naming the flag when it is missing.
  absl::StatusOr<std::string> Require(const std::string& name) const;
  // The flag's value as an integer in [lo, hi], or `fallback` when absent.
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback, int64_t lo,
                                 int64_t hi) const;
  // The flag's value as a duration in [lo, hi] — plain seconds ("90") or a duration ("90s",
  // "1m30s", "24h") — or `fallback` when absent.
  absl::StatusOr<absl::Duration> GetDuration(const std::string& name, absl::Duration fallback,
                                             absl::Duration lo,
                                             absl::Duration hi = absl::InfiniteDuration()) const;
  // The flag's value when it is one of `choices`, or `fallback` when absent.
  absl::StatusOr<std::string> GetChoice(const std::string& name, const std::string& fallback,
                                        const std::vector<std::string>& choices) const;

  // Every value of a repeatable flag, in command-line order (Get returns the last).
  std::vector<std::string> GetAll(const std::string& name) const;

  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;  // switches map to ""
  std::map<std::string, std::vector<std::string>> repeated_;  // repeatable flags' values
  std::vector<std::string> positional_;
};

}  // namespace loratrf

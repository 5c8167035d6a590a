// Parsing a safetensors-shaped header of N entries: the shared one-pass reader
// (common/json_parse.h) next to the callback parse the safetensors reader used before, kept here
// verbatim as the reference. The old parse runs in a child process so that a slow case can be
// cut off at --old-limit-s.
//
//   json_parse_bench [--entries 10000,40000,100000,1000000] [--old-limit-s 60] [--reps 3]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/json_parse.h"
#include "nlohmann/json.hpp"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// The reference: worker/engine/checkpoint/safetensors.cc's duplicate-key check before it moved
// to common/json_parse.h. nlohmann's callback parser, at each inner object's end, walks the
// enclosing object looking for a discarded value: quadratic in the number of entries.
bool OldParse(const std::string& text) {
  struct Frame {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> open;
  bool duplicate = false;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key: {
        if (open.empty()) break;
        std::string key = parsed.get<std::string>();
        if (!open.back().keys.insert(key).second) duplicate = true;
        open.back().last_key = std::move(key);
        break;
      }
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  json value = json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/false);
  return !value.is_discarded() && !duplicate && value.size() > 0;
}

bool NewParse(const std::string& text) {
  absl::StatusOr<json> value = loratrf::ParseJson(text, loratrf::JsonLimits{8, false});
  return value.ok() && value->size() > 0;
}

std::string Header(int entries) {
  std::string text = "{\"__metadata__\":{\"format\":\"pt\"}";
  for (int i = 0; i < entries; ++i) {
    absl::StrAppend(&text, ",\"layers.", i, ".weight\":{\"dtype\":\"F32\",\"shape\":[1],",
                    "\"data_offsets\":[", 4 * i, ",", 4 * i + 4, "]}");
  }
  return text + "}";
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Median seconds of `reps` runs of `parse`, each in a child process killed at `limit_s`;
// negative when a run was cut off.
double TimeInChild(bool (*parse)(const std::string&), const std::string& text, int reps,
                   double limit_s) {
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    Clock::time_point start = Clock::now();
    pid_t child = fork();
    if (child == 0) _exit(parse(text) ? 0 : 1);
    int status = 0;
    while (waitpid(child, &status, WNOHANG) == 0) {
      if (Seconds(start) > limit_s) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        return -1;
      }
      usleep(1000);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "a parse failed\n");
      std::exit(1);
    }
    times.push_back(Seconds(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes = {10000, 40000, 100000, 1000000};
  double old_limit_s = 60;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--entries") {
      sizes.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        int n = 0;
        if (!absl::SimpleAtoi(part, &n) || n <= 0) return 2;
        sizes.push_back(n);
      }
    } else if (flag == "--old-limit-s" && absl::SimpleAtod(value, &old_limit_s)) {
    } else if (flag == "--reps" && absl::SimpleAtoi(value, &reps) && reps > 0) {
    } else {
      std::fprintf(stderr, "usage: json_parse_bench [--entries N,N] [--old-limit-s S] [--reps R]\n");
      return 2;
    }
  }
  std::printf("%10s %12s %14s %14s\n", "entries", "header MB", "old (s)", "new (s)");
  for (int entries : sizes) {
    std::string text = Header(entries);
    double new_s = TimeInChild(NewParse, text, reps, 600);
    double old_s = TimeInChild(OldParse, text, 1, old_limit_s);
    std::string old_text = old_s < 0 ? absl::StrCat("> ", old_limit_s) : absl::StrCat(old_s);
    std::printf("%10d %12.1f %14s %14.3f\n", entries, text.size() / 1e6, old_text.c_str(), new_s);
    std::fflush(stdout);
  }
  return 0;
}

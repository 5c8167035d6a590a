#include "server/core/retention.h"

#include <algorithm>
#include <numeric>
#include <optional>

namespace loratrf::server {

std::vector<std::string> CheckpointsToDelete(const std::vector<v1::Checkpoint>& checkpoints,
                                             uint32_t keep_last,
                                             const std::set<std::string>& pinned) {
  if (keep_last == 0) return {};
  const size_t n = checkpoints.size();
  std::vector<bool> keep(n, false);
  // Newest first: by step, a later position breaking ties.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (checkpoints[a].step() != checkpoints[b].step()) {
      return checkpoints[a].step() > checkpoints[b].step();
    }
    return a > b;
  });
  for (size_t i = 0; i < n && i < keep_last; ++i) keep[order[i]] = true;

  std::optional<size_t> best;
  for (size_t i : order) {  // newest first, so that a tie goes to the later step
    const v1::Checkpoint& c = checkpoints[i];
    if (!c.has_eval()) continue;
    if (!best.has_value()) {
      best = i;
      continue;
    }
    const v1::EvalMetrics& b = checkpoints[*best].eval();
    if (c.eval().accuracy() > b.accuracy() ||
        (c.eval().accuracy() == b.accuracy() && c.eval().loss() < b.loss())) {
      best = i;
    }
  }
  if (best.has_value()) keep[*best] = true;

  std::vector<std::string> doomed;
  for (size_t i = 0; i < n; ++i) {
    const v1::Checkpoint& c = checkpoints[i];
    if (keep[i] || c.final() || pinned.count(c.id()) > 0) continue;
    doomed.push_back(c.id());
  }
  return doomed;
}

}  // namespace loratrf::server

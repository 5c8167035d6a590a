#include "common/crash_point.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace loratrf {
namespace {

struct Armed {
  std::string name;  // empty: disarmed
  long hit = 0;      // the hit that kills, 1-based
};

const Armed& ArmedPoint() {
  static const Armed armed = [] {
    Armed parsed;
    const char* value = std::getenv("LORATRF_CRASH_POINT");
    if (value == nullptr) return parsed;
    const char* colon = std::strrchr(value, ':');
    if (colon == nullptr || colon == value) return parsed;
    char* end = nullptr;
    long hit = std::strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || hit < 1) return parsed;
    parsed.name.assign(value, static_cast<size_t>(colon - value));
    parsed.hit = hit;
    return parsed;
  }();
  return armed;
}

std::atomic<long> hits{0};

}  // namespace

void CrashPoint(const char* name) {
  const Armed& armed = ArmedPoint();
  if (armed.name.empty() || armed.name != name) return;
  if (hits.fetch_add(1) + 1 != armed.hit) return;
  if (const char* once = std::getenv("LORATRF_CRASH_POINT_ONCE"); once != nullptr && *once) {
    const int fd = ::open(once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return;  // another process crashed here already (or PATH cannot be made)
    ::close(fd);
  }
  ::raise(SIGKILL);
}

}  // namespace loratrf

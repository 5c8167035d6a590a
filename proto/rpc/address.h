// HOST:PORT addresses: what the coordinator listens on (--listen, --metrics-listen), what the
// agent and the CLI dial (--coordinator), and the loopback rule (without --auth-token-file the
// coordinator listens only on 127.0.0.0/8, ::1 or `localhost`).
//
// Threading: pure functions.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::rpc {

struct HostPort {
  std::string host;  // without IPv6 brackets; may be empty ("0.0.0.0" style: every address)
  int port = 0;      // 0: pick a free port
};

// "127.0.0.1:50051", "[::1]:0", "localhost:8080", ":9090"; errors name `flag`.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view flag, absl::string_view address);

// "HOST:PORT", with brackets around an IPv6 host.
std::string FormatHostPort(absl::string_view host, int port);

// 127.0.0.0/8, ::1, ::ffff:127.x.x.x, or `localhost`. An empty host, a wildcard or any other
// name is not.
bool IsLoopbackHost(absl::string_view host);

}  // namespace loratrf::rpc

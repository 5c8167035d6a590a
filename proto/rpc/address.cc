#include "proto/rpc/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace loratrf::rpc {

absl::StatusOr<HostPort> ParseHostPort(absl::string_view flag, absl::string_view address) {
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", address, "' ", why));
  };
  HostPort out;
  absl::string_view port;
  if (absl::StartsWith(address, "[")) {
    size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return error("is not [IPV6]:PORT");
    }
    out.host = std::string(address.substr(1, close - 1));
    port = address.substr(close + 2);
    in6_addr ignored;
    if (inet_pton(AF_INET6, out.host.c_str(), &ignored) != 1) {
      return error("has no valid IPv6 address in brackets");
    }
  } else {
    size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) return error("is not HOST:PORT");
    out.host = std::string(address.substr(0, colon));
    port = address.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return error("is not HOST:PORT (write an IPv6 host in brackets: [::1]:PORT)");
    }
    for (char c : out.host) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') {
        return error("has a host that is neither an address nor a host name");
      }
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      !absl::SimpleAtoi(port, &out.port) || out.port > 65535) {
    return error("needs a PORT from 0 to 65535");
  }
  return out;
}

std::string FormatHostPort(absl::string_view host, int port) {
  if (host.find(':') != absl::string_view::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  std::string text(host);
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace loratrf::rpc

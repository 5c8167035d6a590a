// HOST:PORT parsing and the loopback rule (proto/rpc/address.h).
#include "proto/rpc/address.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loratrf::rpc {
namespace {

using ::testing::HasSubstr;

TEST(Address, ParsesHostPort) {
  auto v4 = ParseHostPort("--listen", "127.0.0.1:50051");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 50051);
  auto v6 = ParseHostPort("--listen", "[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(FormatHostPort(v6->host, 7), "[::1]:7");
  EXPECT_TRUE(ParseHostPort("--listen", "localhost:1").ok());
  EXPECT_TRUE(ParseHostPort("--listen", ":9090").ok());
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                          "::1:80", "[::1]80", "[nothost]:80", "a b:80", "127.0.0.1:8x"}) {
    auto parsed = ParseHostPort("--listen", bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_THAT(parsed.status().message(), HasSubstr("--listen")) << bad;
    }
  }
}

TEST(Address, LoopbackOnly) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST",
                           "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"", "0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.com",
                           "localhost.example.com", "::ffff:10.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

}  // namespace
}  // namespace loratrf::rpc

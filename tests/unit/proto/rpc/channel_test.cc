// The files behind --token-file and --tls-ca, read the same way by the CLI and the agent
// (proto/rpc/channel.h). They once trimmed differently: a token file with a trailing tab or a
// CRLF line worked for one and not the other.
#include "proto/rpc/channel.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/contract/limits.h"

namespace loratrf::rpc {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ChannelFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("loratrf-channel-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  fs::path dir_;
};

TEST_F(ChannelFiles, TokenIsTheFirstLineTrimmed) {
  for (const std::string& content : {std::string("s3cret"), std::string("s3cret\n"),
                                    std::string("s3cret\r\n"), std::string("  s3cret\t\n# note\n"),
                                    std::string("s3cret\nsecond line ignored")}) {
    absl::StatusOr<std::string> token = ReadTokenFile("--token-file", Write("t", content));
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_EQ(*token, "s3cret");
  }
}

TEST_F(ChannelFiles, BadTokenFilesNameTheFlagAndNeverTheToken) {
  struct Case {
    std::string content;
    const char* expected;
  };
  for (const Case& k : std::vector<Case>{{"", "the first line is empty"},
                                         {"\n", "the first line is empty"},
                                         {"two words\n", "the token alone"},
                                         {"caf\xc3\xa9\n", "the token alone"}}) {
    absl::Status s = ReadTokenFile("--token-file", Write("t", k.content)).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << k.content;
    EXPECT_THAT(std::string(s.message()), HasSubstr("--token-file ")) << k.content;
    EXPECT_THAT(std::string(s.message()), HasSubstr(k.expected)) << k.content;
    EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("words")));
  }
  absl::Status too_long = ReadTokenFile(
      "--token-file", Write("long", std::string(limits::kMaxTokenLength + 1, 'x'))).status();
  EXPECT_THAT(std::string(too_long.message()), HasSubstr("longer than 512"));
  absl::Status missing = ReadTokenFile("--token-file", (dir_ / "nope").string()).status();
  EXPECT_TRUE(absl::IsInvalidArgument(missing));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("--token-file"));
  absl::Status huge = ReadTokenFile(
      "--token-file", Write("big", std::string(limits::kMaxTokenFileBytes + 1, 'x'))).status();
  EXPECT_TRUE(absl::IsInvalidArgument(huge));
}

TEST_F(ChannelFiles, PemFiles) {
  const std::string cert = Write("cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  const std::string key = Write("key.pem", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
  EXPECT_TRUE(ReadPemFile("--tls-ca", cert, /*certificate=*/true).ok());
  EXPECT_TRUE(ReadPemFile("--tls-key", key, /*certificate=*/false).ok());
  absl::Status not_cert = ReadPemFile("--tls-ca", key, /*certificate=*/true).status();
  EXPECT_THAT(std::string(not_cert.message()), HasSubstr("--tls-ca"));
  EXPECT_THAT(std::string(not_cert.message()), HasSubstr("certificate"));
  absl::Status not_pem = ReadPemFile("--tls-key", Write("x", "hello"), /*certificate=*/false).status();
  EXPECT_THAT(std::string(not_pem.message()), HasSubstr("not a PEM file"));
}

TEST_F(ChannelFiles, OpenReadsBothFilesOrFailsNamingTheFlag) {
  ChannelOptions options;
  options.target = "127.0.0.1:1";
  options.token_file = Write("t", "tok\n");
  EXPECT_TRUE(ClientChannel::Open(options).ok());
  options.tls_ca_file = Write("ca", "nope");
  absl::Status bad_ca = ClientChannel::Open(options).status();
  EXPECT_THAT(std::string(bad_ca.message()), HasSubstr("--tls-ca"));
  options.tls_ca_file.clear();
  options.token_file = Write("t", "\n");
  absl::Status bad_token = ClientChannel::Open(options).status();
  EXPECT_THAT(std::string(bad_token.message()), HasSubstr("--token-file"));
}

}  // namespace
}  // namespace loratrf::rpc

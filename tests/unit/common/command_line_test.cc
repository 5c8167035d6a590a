#include "common/command_line.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf {
namespace {

using ::testing::ElementsAre;

const std::vector<CommandLine::Flag> kFlags = {
    {"--spec", true}, {"--nproc", true}, {"-o", true}, {"--force", false}};

TEST(CommandLine, FlagsAndPositionalsInAnyOrder) {
  auto args = CommandLine::Parse({"a", "--spec", "job.yaml", "b", "--nproc=4", "--force", "-o",
                                  "json", "--", "--spec"},
                                 kFlags);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(args->positional(), ElementsAre("a", "b", "--spec"));
  EXPECT_EQ(args->GetOr("--spec", ""), "job.yaml");
  EXPECT_EQ(*args->GetInt("--nproc", 1, 1, 64), 4);
  EXPECT_TRUE(args->Has("--force"));
  EXPECT_EQ(*args->GetChoice("-o", "text", {"text", "json"}), "json");
}

TEST(CommandLine, MistakesNameTheFlag) {
  EXPECT_EQ(CommandLine::Parse({"--sepc", "x"}, kFlags).status().message(),
            "unknown flag --sepc");
  EXPECT_EQ(CommandLine::Parse({"--spec"}, kFlags).status().message(), "--spec: needs a value");
  EXPECT_EQ(CommandLine::Parse({"--spec", "a", "--spec", "b"}, kFlags).status().message(),
            "--spec: given more than once");
  EXPECT_EQ(CommandLine::Parse({"--force=yes"}, kFlags).status().message(),
            "--force: takes no value");
}

TEST(CommandLine, ValuesAreChecked) {
  auto args = CommandLine::Parse({"--nproc", "4x", "-o", "xml", "--spec="}, kFlags);
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(args->GetInt("--nproc", 1, 1, 64).status().message(),
            "--nproc: must be an integer in [1, 64], got '4x'");
  EXPECT_EQ(args->GetChoice("-o", "text", {"text", "json"}).status().message(),
            "-o: must be one of text | json, got 'xml'");
  EXPECT_EQ(args->Require("--spec").status().message(), "--spec: must not be empty");
  EXPECT_EQ(args->Require("--force").status().message(), "--force: required");
  EXPECT_EQ(*args->GetInt("--missing", 7, 1, 64), 7);
}

TEST(CommandLine, OutOfRangeIntegerIsRefused) {
  auto args = CommandLine::Parse({"--nproc", "0"}, kFlags);
  ASSERT_TRUE(args.ok());
  EXPECT_FALSE(args->GetInt("--nproc", 1, 1, 64).ok());
  args = CommandLine::Parse({"--nproc", "99999999999999999999"}, kFlags);
  ASSERT_TRUE(args.ok());
  EXPECT_FALSE(args->GetInt("--nproc", 1, 1, 64).ok());
}

TEST(CommandLine, DurationsAreSecondsOrDurationsWithinTheirRange) {
  const std::vector<CommandLine::Flag> flags = {{"--ttl", true}};
  auto value = [&](const std::string& text) {
    auto args = CommandLine::Parse({"--ttl", text}, flags);
    EXPECT_TRUE(args.ok());
    return args->GetDuration("--ttl", absl::Minutes(1), absl::ZeroDuration(), absl::Hours(24));
  };
  EXPECT_EQ(*value("90"), absl::Seconds(90));
  EXPECT_EQ(*value("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*value("0"), absl::ZeroDuration());
  EXPECT_EQ(*value("24h"), absl::Hours(24));
  for (const char* bad : {"-5", "soon", "3x", "-1h", "25h", "inf", ""}) {
    absl::StatusOr<absl::Duration> parsed = value(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().message().rfind("--ttl: '", 0), 0u) << parsed.status();
  }
  auto absent = CommandLine::Parse({}, flags);
  ASSERT_TRUE(absent.ok());
  EXPECT_EQ(*absent->GetDuration("--ttl", absl::Minutes(1), absl::ZeroDuration()),
            absl::Minutes(1));
}

TEST(CommandLine, RepeatableFlagKeepsEveryValueInOrder) {
  const std::vector<CommandLine::Flag> flags = {{"--allow-path", true, /*repeatable=*/true},
                                                {"--spec", true}};
  auto args = CommandLine::Parse({"--allow-path", "/data", "--spec", "s", "--allow-path=/models"},
                                 flags);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->GetAll("--allow-path"), (std::vector<std::string>{"/data", "/models"}));
  EXPECT_EQ(args->GetAll("--spec"), std::vector<std::string>{"s"});
  EXPECT_TRUE(args->GetAll("--absent").empty());
  // A flag that is not repeatable still refuses a second value.
  EXPECT_EQ(CommandLine::Parse({"--spec", "a", "--spec", "b"}, flags).status().message(),
            "--spec: given more than once");
}

}  // namespace
}  // namespace loratrf

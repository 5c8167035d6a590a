// The logging library (common/logging.h): levels, text and JSON lines, discarded statuses.
#include "common/logging.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"

namespace loratrf::logging {
namespace {

using ::testing::HasSubstr;

TEST(Logging, JsonLinesEscapeEverythingAndStayValid) {
  const std::string line =
      JsonLine("2026-12-03T07:52:17.123Z", "warn", "loratrf-coordinator",
               "quote \" backslash \\ newline \n tab \t bell \x07 bad \xff caf\xc3\xa9");
  EXPECT_EQ(line.find('\n'), std::string::npos);
  nlohmann::json parsed = nlohmann::json::parse(line);  // throws (fails the test) if invalid
  EXPECT_EQ(parsed["ts"], "2026-12-03T07:52:17.123Z");
  EXPECT_EQ(parsed["level"], "warn");
  EXPECT_EQ(parsed["program"], "loratrf-coordinator");
  EXPECT_EQ(parsed["msg"],
            "quote \" backslash \\ newline \n tab \t bell \x07 bad \xef\xbf\xbd caf\xc3\xa9");
}

TEST(Logging, LevelsAndFormatsAreChecked) {
  EXPECT_EQ(*ParseLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(*ParseLevel("error"), spdlog::level::err);
  EXPECT_THAT(std::string(ParseLevel("verbose").status().message()), HasSubstr("--log-level"));
  EXPECT_FALSE(*ParseFormat("text"));
  EXPECT_TRUE(*ParseFormat("json"));
  EXPECT_THAT(std::string(ParseFormat("xml").status().message()), HasSubstr("--log-format"));
  Options bad;
  bad.level = "loud";
  EXPECT_TRUE(absl::IsInvalidArgument(Init(bad)));
}

TEST(Logging, JsonLinesOnStderrAtTheChosenLevel) {
  Options options;
  options.program = "test-program";
  options.level = "warn";
  options.json = true;
  ASSERT_TRUE(Init(options).ok());
  testing::internal::CaptureStderr();
  LOG_INFO("below the level");
  LOG_WARN("job {} restarted", "j-1");
  EXPECT_FALSE(LogIfError(absl::UnavailableError("disk gone"), "persisting the heartbeat"));
  EXPECT_TRUE(LogIfError(absl::OkStatus(), "not logged"));
  spdlog::default_logger()->flush();
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, ::testing::Not(HasSubstr("below the level")));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("not logged")));
  std::vector<nlohmann::json> lines;
  size_t start = 0;
  for (size_t end; (end = out.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(nlohmann::json::parse(out.substr(start, end - start)));
  }
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_EQ(lines[0]["msg"], "job j-1 restarted");
  EXPECT_EQ(lines[0]["level"], "warn");
  EXPECT_EQ(lines[0]["program"], "test-program");
  EXPECT_EQ(lines[1]["msg"], "persisting the heartbeat failed: UNAVAILABLE: disk gone");
}

TEST(Logging, TextLinesCarryTimeLevelAndProgram) {
  Options options;
  options.program = "test-program";
  ASSERT_TRUE(Init(options).ok());
  testing::internal::CaptureStderr();
  LOG_ERROR("it broke");
  spdlog::default_logger()->flush();
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, ::testing::MatchesRegex(
                       "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z ERROR test-program: it broke\n"));
}

}  // namespace
}  // namespace loratrf::logging

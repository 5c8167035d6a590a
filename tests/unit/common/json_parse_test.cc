// The shared JSON reader (common/json_parse.h): limits, duplicate keys, and hostile sizes.
#include "common/json_parse.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace loratrf {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

std::string WideObject(size_t keys, const std::string& last = "") {
  std::string text = "{";
  for (size_t i = 0; i < keys; ++i) absl::StrAppend(&text, i ? "," : "", "\"k", i, "\":", i);
  if (!last.empty()) absl::StrAppend(&text, ",", last);
  return text + "}";
}

TEST(ParseJson, BuildsTheSameValueAsNlohmann) {
  const std::string text =
      R"({"a": [1, -2, 3.5, "x", true, false, null, {}, []], "b": {"c": {"d": "\u00e9"}},
          "e": 18446744073709551615})";
  absl::StatusOr<json> parsed = ParseJson(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, json::parse(text));
  EXPECT_EQ(*ParseJson("7"), json(7));
  EXPECT_EQ(*ParseJson(" \"s\" "), json("s"));
}

TEST(ParseJson, DuplicateKeysAreRefusedWithTheirPlace) {
  JsonProblem problem;
  absl::StatusOr<json> parsed = ParseJson(R"({"a": [0, {"b": 1, "b": 2}]})", {}, &problem);
  EXPECT_EQ(parsed.status().message(), "duplicate key 'b' (at a[1])");
  EXPECT_EQ(problem.kind, JsonProblem::Kind::kDuplicateKey);
  EXPECT_EQ(problem.path, (std::vector<std::string>{"a", "[1]"}));
  EXPECT_EQ(problem.key, "b");

  parsed = ParseJson(R"({"a": 1, "a": 2})", {}, &problem);
  EXPECT_EQ(parsed.status().message(), "duplicate key 'a'");
  EXPECT_TRUE(problem.path.empty());

  // Allowed on request: the last one wins, as in nlohmann and Python.
  parsed = ParseJson(R"({"a": 1, "a": 2})", JsonLimits{64, /*allow_duplicate_keys=*/true});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ((*parsed)["a"], 2);
  // The same key in two objects is no duplicate.
  EXPECT_TRUE(ParseJson(R"({"a": {"k": 1}, "b": {"k": 1}})").ok());
}

TEST(ParseJson, DepthIsCountedFromTheRoot) {
  EXPECT_TRUE(ParseJson("[[[]]]", JsonLimits{3, false}).ok());
  JsonProblem problem;
  absl::StatusOr<json> parsed = ParseJson(R"({"a": [[[]]]})", JsonLimits{3, false}, &problem);
  EXPECT_EQ(parsed.status().message(), "nested deeper than 3 levels (at a[0])");
  EXPECT_EQ(problem.kind, JsonProblem::Kind::kTooDeep);
}

TEST(ParseJson, SyntaxErrorsSayWhere) {
  JsonProblem problem;
  absl::StatusOr<json> parsed = ParseJson("{\"a\": }", {}, &problem);
  EXPECT_EQ(problem.kind, JsonProblem::Kind::kSyntax);
  EXPECT_THAT(parsed.status().message(), HasSubstr("parse error at line 1, column 7"));
  EXPECT_THAT(ParseJson("{} x").status().message(), HasSubstr("expected end of input"));
  EXPECT_FALSE(ParseJson("").ok());
  EXPECT_FALSE(ParseJson("{\"a\": 1,}").ok());
  EXPECT_FALSE(ParseJson("[1] // comment").ok());
}

TEST(ParseJson, MessagesStayShortAndValidUtf8) {
  // An unterminated string of a megabyte: nlohmann's message quotes what it read.
  std::string text = "[\"" + std::string(1 << 20, 'x');
  absl::Status status = ParseJson(text).status();
  EXPECT_FALSE(status.ok());
  EXPECT_LE(status.message().size(), 300u);
  std::string key(100000, 'k');
  status = ParseJson(absl::StrCat("{\"", key, "\":1,\"", key, "\":2}")).status();
  EXPECT_THAT(status.message(), HasSubstr("duplicate key 'kkkk"));
  EXPECT_LE(status.message().size(), 300u);
}

// Wide and deep input is answered in one pass: these finish in well under a second each (the
// callback parser this replaced needed minutes for the wide ones).
TEST(ParseJson, AMillionKeysAreRead) {
  absl::StatusOr<json> parsed = ParseJson(WideObject(1'000'000));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->size(), 1'000'000u);
  EXPECT_EQ((*parsed)["k999999"], 999999);
}

TEST(ParseJson, ADuplicateAfterAMillionKeysIsFound) {
  EXPECT_EQ(ParseJson(WideObject(1'000'000, "\"k17\":0")).status().message(),
            "duplicate key 'k17'");
}

TEST(ParseJson, AMillionObjectsInOneObjectAreRead) {
  // The quadratic case of the callback parser: many inner objects in one outer object.
  std::string text = "{";
  for (int i = 0; i < 1'000'000; ++i) absl::StrAppend(&text, i ? "," : "", "\"t", i, "\":{}");
  text += "}";
  absl::StatusOr<json> parsed = ParseJson(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->size(), 1'000'000u);
}

TEST(ParseJson, AMillionLevelsAreRefusedWithoutRecursing) {
  const std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  EXPECT_EQ(ParseJson(deep).status().message(),
            absl::StrCat("nested deeper than 64 levels (at ", [] {
              std::string at;
              for (int i = 0; i < 63; ++i) at += "[0]";
              return at;
            }(), ")"));
  std::string objects;
  for (int i = 0; i < 1'000'000; ++i) objects += "{\"a\":";
  EXPECT_THAT(ParseJson(objects).status().message(), HasSubstr("nested deeper than 64 levels"));
}

TEST(JsonPathString, JoinsKeysAndPositions) {
  EXPECT_EQ(JsonPathString({}), "");
  EXPECT_EQ(JsonPathString({"a", "[0]", "b"}), "a[0].b");
  EXPECT_EQ(JsonPathString({"[2]", "x\xff"}), "[2].x?");
}

}  // namespace
}  // namespace loratrf

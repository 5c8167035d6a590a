// MANIFEST.json (proto/contract/manifest.h): what the engine writes, the agent and the engine
// read back.
#include "proto/contract/manifest.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "proto/contract/limits.h"

namespace loratrf::contract {
namespace {

using ::testing::HasSubstr;

Manifest Example() {
  Manifest m;
  m.step = 50;
  m.final = false;
  m.files = {{"adapter_model.safetensors", 5, Sha256Hex("hello")},
             {"trainer_state.safetensors", 0, Sha256Hex("")}};
  EvalRow eval;
  eval.step = 50;
  eval.loss = 0.25;
  eval.accuracy = 0.875;
  eval.examples = 872;
  m.metrics = ManifestMetrics(eval);
  return m;
}

TEST(Manifest, RoundTrips) {
  const Manifest m = Example();
  const std::string text = SerializeManifest(m);
  EXPECT_THAT(text, HasSubstr("\"format\": \"loratrf-checkpoint-v1\""));
  EXPECT_THAT(text, HasSubstr("\"eval_examples\": 872")) << "a count stays an integer";
  absl::StatusOr<Manifest> back = ParseManifest(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->step, 50u);
  EXPECT_FALSE(back->final);
  ASSERT_EQ(back->files.size(), 2u);
  EXPECT_EQ(back->files[0].path, "adapter_model.safetensors");
  EXPECT_EQ(back->files[0].size_bytes, 5u);
  EXPECT_EQ(back->files[1].sha256, Sha256Hex(""));
  std::optional<EvalRow> eval = ManifestEval(*back);
  ASSERT_TRUE(eval.has_value());
  EXPECT_EQ(eval->step, 50u);
  EXPECT_DOUBLE_EQ(eval->loss, 0.25);
  EXPECT_DOUBLE_EQ(eval->accuracy, 0.875);
  EXPECT_EQ(eval->examples, 872u);
}

TEST(Manifest, WithoutEvaluationHasNoEval) {
  Manifest m = Example();
  m.metrics.clear();
  absl::StatusOr<Manifest> back = ParseManifest(SerializeManifest(m));
  ASSERT_TRUE(back.ok());
  EXPECT_FALSE(ManifestEval(*back).has_value());
}

TEST(Manifest, RefusesWhatIsNotOne) {
  const std::string sha = Sha256Hex("x");
  struct Case {
    std::string text;
    const char* expected;
  };
  std::vector<Case> cases = {
      {"", "not a loratrf manifest"},
      {"[]", "not a loratrf manifest"},
      {R"({"format": "other", "step": 1, "files": []})", "not a loratrf manifest"},
      {R"({"format": "loratrf-checkpoint-v1", "files": []})", "step: required"},
      {R"({"format": "loratrf-checkpoint-v1", "step": -1, "files": []})", "step: required"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "final": "yes", "files": []})", "final"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1})", "files: required"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "files": [{"path": "a"}]})",
       "needs path, size_bytes and sha256"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "files": [{"path": "../a", "size_bytes": 1, "sha256": ")" +
           sha + R"("}]})",
       "bad or repeated path"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "files": [{"path": "d/a", "size_bytes": 1, "sha256": ")" +
           sha + R"("}]})",
       "bad or repeated path"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "files": [{"path": "MANIFEST.json", "size_bytes": 1, "sha256": ")" +
           sha + R"("}]})",
       "bad or repeated path"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "files": [{"path": "a", "size_bytes": 1, "sha256": "xyz"}]})",
       "sha256"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "files": [], "metrics": 3})", "metrics"},
      {std::string(100000, '[') , "nested too deep"},
      {std::string(limits::kMaxManifestBytes + 1, ' '), "larger than"},
      {R"({"format": "loratrf-checkpoint-v1", "step": 1, "step": 2, "files": []})",
       "duplicate key 'step'"},
  };
  for (const Case& k : cases) {
    absl::StatusOr<Manifest> m = ParseManifest(k.text);
    EXPECT_TRUE(absl::IsDataLoss(m.status())) << k.text.substr(0, 120) << ": " << m.status();
    EXPECT_THAT(std::string(m.status().message()), HasSubstr(k.expected)) << k.text.substr(0, 120);
  }
}

// Wide and deep manifests up to the size limit are answered after one pass.
TEST(Manifest, WideAndDeepAreAnswered) {
  const std::string sha = Sha256Hex("x");
  std::string files;
  for (int i = 0; files.size() < limits::kMaxManifestBytes - 200; ++i) {
    absl::StrAppend(&files, i ? "," : "", R"({"path":"f)", i, R"(","size_bytes":1,"sha256":")",
                    sha, R"("})");
  }
  std::string text = R"({"format":"loratrf-checkpoint-v1","step":1,"files":[)" + files + "]}";
  ASSERT_LE(text.size(), limits::kMaxManifestBytes);
  EXPECT_THAT(std::string(ParseManifest(text).status().message()), HasSubstr("files: more than"));

  std::string keys;
  for (int i = 0; keys.size() < (4u << 20); ++i) {
    absl::StrAppend(&keys, R"(")", i, R"(":0,)");
  }
  text = "{" + keys + R"("format":"loratrf-checkpoint-v1","step":1,"files":[]})";
  ASSERT_LE(text.size(), limits::kMaxManifestBytes);
  absl::StatusOr<Manifest> wide = ParseManifest(text);
  EXPECT_TRUE(wide.ok()) << wide.status();

  text = std::string(limits::kMaxManifestBytes / 2, '[') + std::string(limits::kMaxManifestBytes / 2, ']');
  EXPECT_THAT(std::string(ParseManifest(text).status().message()), HasSubstr("nested too deep"));
}

}  // namespace
}  // namespace loratrf::contract

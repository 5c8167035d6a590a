// The command-line contracts, through the real binaries: what they print, and that bad input
// is one line on stderr with exit status 2.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "spec/job_spec.h"
#include "subprocess.h"

namespace loratrf {
namespace {

using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kSpecDir = std::string(LORATRF_SOURCE_DIR) + "/tests/data/specs/";

void ExpectOneLineUsageError(const ProcessResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(fragment));
}

TEST(LoratrfValidate, PrintsTheSpecWithDefaultsAndItReadsBack) {
  ProcessResult r = RunProcess({BinaryPath("loratrf"), "validate",
                                kSpecDir + "minimal-causal-lm.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("lr_scheduler: cosine"));  // a default, filled in
  auto printed = spec::ParseJobSpecYaml(r.out);
  auto original = spec::LoadJobSpecFile(kSpecDir + "minimal-causal-lm.yaml");
  ASSERT_TRUE(printed.ok()) << printed.status() << "\n" << r.out;
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*printed, *original));
}

TEST(LoratrfValidate, JsonOutputIsJson) {
  ProcessResult r = RunProcess({BinaryPath("loratrf"), "validate", kSpecDir + "sst2-loratrf.yaml",
                                "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["training"]["micro_batch_size"], 8);
  EXPECT_EQ(out["adapter"]["filter"], "bottleneck");
}

TEST(LoratrfValidate, BadSpecNamesTheFieldAndExitsTwo) {
  auto dir = std::filesystem::temp_directory_path() / ("loratrf-cli-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "bad.yaml").string();
  std::ofstream(path) << "name: x\nmodel: {path: m}\ntask: causal_lm\ndata: {train: t}\n"
                         "adapter: {target_modules: [q_proj]}\ntraining: {learning_rate: -1}\n";
  ProcessResult r = RunProcess({BinaryPath("loratrf"), "validate", path});
  std::filesystem::remove_all(dir);
  ExpectOneLineUsageError(r, "training.learning_rate: must be in (0, 1], got -1");
}

TEST(LoratrfValidate, UsageMistakesExitTwo) {
  ExpectOneLineUsageError(RunProcess({BinaryPath("loratrf"), "validate"}),
                          "validate takes one spec file");
  ExpectOneLineUsageError(RunProcess({BinaryPath("loratrf"), "validate", "/nonexistent.yaml"}),
                          "/nonexistent.yaml: cannot read the spec file");
  ExpectOneLineUsageError(
      RunProcess({BinaryPath("loratrf"), "validate", kSpecDir + "sst2-loratrf.yaml", "-o", "xml"}),
      "-o: must be one of yaml | json, got 'xml'");
  ExpectOneLineUsageError(
      RunProcess({BinaryPath("loratrf"), "validate", kSpecDir + "sst2-loratrf.yaml", "--frobnicate"}),
      "unknown flag --frobnicate");
  ProcessResult unknown = RunProcess({BinaryPath("loratrf"), "frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, StartsWith("loratrf: unknown command 'frobnicate'\n"));
}

TEST(LoratrfWorkerInfo, ReportsTheLibtorchItRunsWith) {
  ProcessResult r = RunProcess({BinaryPath("loratrf-worker"), "info", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json info = nlohmann::json::parse(r.out);
  std::string torch_version = info.at("torch_version");
  EXPECT_THAT(torch_version, ::testing::MatchesRegex("[0-9]+\\.[0-9]+\\.[0-9]+.*"));
  EXPECT_GE(info.at("intra_op_threads").get<int>(), 1);
  if (!info.at("torch_cuda").get<bool>()) {
    EXPECT_EQ(info.at("cuda_device_count"), 0);
  }
}

TEST(LoratrfWorkerInfo, BadFlagsExitTwo) {
  ExpectOneLineUsageError(RunProcess({BinaryPath("loratrf-worker"), "info", "-o", "xml"}),
                          "-o: must be one of text | json, got 'xml'");
  ProcessResult none = RunProcess({BinaryPath("loratrf-worker")});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("usage: loratrf-worker"));
}

}  // namespace
}  // namespace loratrf

// JobSpec parsing (YAML, JSON, files), printing and every validation rule.
#include "proto/spec/job_spec.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "proto/contract/limits.h"

namespace loratrf::spec {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

const std::string kSpecDir = std::string(LORATRF_SOURCE_DIR) + "/tests/data/specs/";

// A valid spec written one field a line, so that a test can swap exactly one line.
constexpr char kValidYaml[] = R"(name: sst2-loratrf
model:
  path: /models/tiny-llama
task: classification
data:
  train: train.jsonl
  eval: eval.jsonl
adapter:
  method: loratrf
  rank: 8
  alpha: 16
  dropout: 0.05
  target_modules: [q_proj, v_proj]
  filter: bottleneck
training:
  epochs: 3
  batch_size: 32
  micro_batch_size: 8
  learning_rate: 3.0e-4
  lr_scheduler: cosine
  warmup_ratio: 0.06
  max_grad_norm: 1.0
  seed: 42
  max_seq_len: 256
  precision: fp32
  eval_every_steps: 50
  checkpoint_every_steps: 50
  keep_checkpoints: 3
resources:
  workers: 1
  slots_per_worker: 2
  device: cpu
priority: 0
max_restarts: 3
)";

// kValidYaml with the line `from` (which must occur once) replaced by `to`.
std::string Replace(const std::string& from, const std::string& to) {
  std::string text = kValidYaml;
  size_t at = text.find(from + "\n");
  EXPECT_NE(at, std::string::npos) << "no line '" << from << "' in the base spec";
  EXPECT_EQ(text.find(from + "\n", at + 1), std::string::npos) << "'" << from << "' twice";
  if (at == std::string::npos) return text;
  return text.replace(at, from.size(), to);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string ErrorOf(const absl::StatusOr<v1::JobSpec>& result) {
  EXPECT_FALSE(result.ok()) << "parsed although it should not:\n" << JobSpecToYaml(*result);
  if (result.ok()) return "";
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message().find('\n'), absl::string_view::npos) << "not one line";
  return std::string(result.status().message());
}

TEST(JobSpecParse, DesignExampleHasEveryValueItWrites) {
  absl::StatusOr<v1::JobSpec> spec = LoadJobSpecFile(kSpecDir + "sst2-loratrf.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "sst2-loratrf");
  EXPECT_EQ(spec->model().path(), "/models/tiny-llama");
  EXPECT_EQ(spec->task(), v1::TASK_CLASSIFICATION);
  EXPECT_EQ(spec->data().train(), "train.jsonl");
  EXPECT_EQ(spec->data().eval(), "eval.jsonl");
  EXPECT_EQ(spec->adapter().method(), v1::ADAPTER_METHOD_LORATRF);
  EXPECT_EQ(spec->adapter().rank(), 8u);
  EXPECT_EQ(spec->adapter().alpha(), 16.0);
  EXPECT_EQ(spec->adapter().dropout(), 0.05);
  EXPECT_THAT(spec->adapter().target_modules(), ::testing::ElementsAre("q_proj", "v_proj"));
  EXPECT_EQ(spec->adapter().filter(), v1::TRF_FILTER_BOTTLENECK);
  const v1::TrainingSpec& t = spec->training();
  EXPECT_EQ(t.epochs(), 3u);
  EXPECT_EQ(t.batch_size(), 32u);
  EXPECT_EQ(t.micro_batch_size(), 8u);
  EXPECT_EQ(t.learning_rate(), 3.0e-4);
  EXPECT_EQ(t.lr_scheduler(), v1::LR_SCHEDULER_COSINE);
  EXPECT_EQ(t.warmup_ratio(), 0.06);
  EXPECT_EQ(t.max_grad_norm(), 1.0);
  EXPECT_EQ(t.seed(), 42u);
  EXPECT_EQ(t.max_seq_len(), 256u);
  EXPECT_EQ(t.precision(), v1::PRECISION_FP32);
  EXPECT_EQ(t.eval_every_steps(), 50u);
  EXPECT_EQ(t.checkpoint_every_steps(), 50u);
  EXPECT_EQ(t.keep_checkpoints(), 3u);
  EXPECT_EQ(spec->resources().workers(), 1u);
  EXPECT_EQ(spec->resources().slots_per_worker(), 2u);
  EXPECT_EQ(spec->resources().device(), v1::DEVICE_CPU);
  EXPECT_EQ(spec->priority(), 0);
  EXPECT_EQ(spec->max_restarts(), 3u);
}

TEST(JobSpecParse, JsonFileEqualsYamlFile) {
  auto yaml = LoadJobSpecFile(kSpecDir + "sst2-loratrf.yaml");
  auto json = LoadJobSpecFile(kSpecDir + "sst2-loratrf.json");
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*yaml, *json));
}

TEST(JobSpecParse, OmittedFieldsTakeTheDefaults) {
  auto spec = LoadJobSpecFile(kSpecDir + "minimal-causal-lm.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  v1::JobSpec defaults = DefaultJobSpec();
  EXPECT_TRUE(MessageDifferencer::Equals(spec->training(), defaults.training()));
  EXPECT_TRUE(MessageDifferencer::Equals(spec->resources(), defaults.resources()));
  EXPECT_EQ(spec->max_restarts(), defaults.max_restarts());
  EXPECT_EQ(spec->adapter().method(), v1::ADAPTER_METHOD_LORA);
  EXPECT_EQ(spec->adapter().rank(), defaults.adapter().rank());
  EXPECT_EQ(spec->adapter().alpha(), defaults.adapter().alpha());
  // LoRA has no filter: the LoRATRF default must not leak into it.
  EXPECT_EQ(spec->adapter().filter(), v1::TRF_FILTER_UNSPECIFIED);
  EXPECT_EQ(spec->data().eval(), "");
}

TEST(JobSpecParse, FullFineTuningCarriesNoAdapterHyperparameters) {
  auto spec = ParseJobSpecYaml(
      "name: full\nmodel: {path: m}\ntask: causal_lm\ndata: {train: t.jsonl}\n"
      "adapter: {method: full}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->adapter().rank(), 0u);
  EXPECT_EQ(spec->adapter().alpha(), 0.0);
  EXPECT_EQ(spec->adapter().dropout(), 0.0);
  EXPECT_TRUE(spec->adapter().target_modules().empty());
  EXPECT_EQ(spec->adapter().filter(), v1::TRF_FILTER_UNSPECIFIED);
}

// proto3's JSON mapping reads an explicit null as the field's default: as if the field were
// absent, in JSON and in YAML (~, null, or no value), for scalars and sections alike.
TEST(JobSpecParse, NullIsAbsent) {
  const std::string lora_json =
      R"({"name": "lora-null", "model": {"path": "m"}, "task": "causal_lm",)"
      R"( "data": {"train": "t.jsonl", "eval": null}, "adapter": {"method": "lora",)"
      R"( "target_modules": ["q_proj"], "filter": null, "rank": null}, "training": null, "priority": null, "labels": null})";
  auto json = ParseJobSpecJson(lora_json);
  ASSERT_TRUE(json.ok()) << json.status();
  const v1::JobSpec defaults = DefaultJobSpec();
  EXPECT_EQ(json->adapter().filter(), v1::TRF_FILTER_UNSPECIFIED);
  EXPECT_EQ(json->adapter().rank(), defaults.adapter().rank());
  EXPECT_EQ(json->data().eval(), "");
  EXPECT_TRUE(MessageDifferencer::Equals(json->training(), defaults.training()));

  for (const char* null : {"~", "null", ""}) {
    SCOPED_TRACE(null);
    const std::string yaml = std::string(
        "name: lora-null\nmodel: {path: m}\ntask: causal_lm\ndata: {train: t.jsonl}\n"
        "adapter:\n  method: lora\n  target_modules: [q_proj]\n  filter: ") + null + "\n  dropout: " + null +
        "\ntraining: " + null + "\n";
    auto parsed = ParseJobSpecYaml(yaml);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->adapter().filter(), v1::TRF_FILTER_UNSPECIFIED);
    EXPECT_EQ(parsed->adapter().dropout(), defaults.adapter().dropout());
    EXPECT_TRUE(MessageDifferencer::Equals(parsed->training(), defaults.training()));
  }
  // A filter given for LoRA is still refused; so is a required field given as null.
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(R"({"name": "x", "model": {"path": "m"},)"
                                       R"( "task": "causal_lm", "data": {"train": "t.jsonl"},)"
                                       R"( "adapter": {"method": "lora", "target_modules": ["q"],)"
                                       R"( "filter": "both"}})")),
              HasSubstr("adapter.filter: not used with method lora"));
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(R"({"name": "x", "model": {"path": null},)"
                                       R"( "task": "causal_lm", "data": {"train": "t.jsonl"}})")),
              HasSubstr("model.path"));
}

TEST(JobSpecParse, IntegralFloatIsAnInteger) {
  auto spec = ParseJobSpecYaml(Replace("  epochs: 3", "  epochs: 3.0"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->training().epochs(), 3u);
}

TEST(JobSpecParse, LargestSeedSurvives) {
  auto spec = ParseJobSpecYaml(Replace("  seed: 42", "  seed: 18446744073709551615"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->training().seed(), 18446744073709551615u);
}

// ----- printing ----------------------------------------------------------------------------

TEST(JobSpecPrint, YamlAndJsonReadBackUnchanged) {
  for (const char* file : {"sst2-loratrf.yaml", "minimal-causal-lm.yaml"}) {
    auto spec = LoadJobSpecFile(kSpecDir + file);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto from_yaml = ParseJobSpecYaml(JobSpecToYaml(*spec));
    auto from_json = ParseJobSpecJson(JobSpecToJson(*spec));
    ASSERT_TRUE(from_yaml.ok()) << from_yaml.status() << "\n" << JobSpecToYaml(*spec);
    ASSERT_TRUE(from_json.ok()) << from_json.status() << "\n" << JobSpecToJson(*spec);
    EXPECT_TRUE(MessageDifferencer::Equals(*spec, *from_yaml)) << JobSpecToYaml(*spec);
    EXPECT_TRUE(MessageDifferencer::Equals(*spec, *from_json)) << JobSpecToJson(*spec);
  }
}

TEST(JobSpecPrint, StringsThatLookLikeOtherTypesStayStrings) {
  // Paths that a careless YAML writer would print as a bool, a number, null, or a comment.
  v1::JobSpec spec = *ParseJobSpecYaml(kValidYaml);
  spec.mutable_model()->set_path("true");
  spec.mutable_data()->set_train("123");
  spec.mutable_data()->set_eval("~");
  spec.set_name("007");
  auto back = ParseJobSpecYaml(JobSpecToYaml(spec));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << JobSpecToYaml(spec);
  EXPECT_TRUE(MessageDifferencer::Equals(spec, *back)) << JobSpecToYaml(spec);
  spec.mutable_data()->set_train("dir/a #b: c.jsonl");
  spec.mutable_model()->set_path("/models/\xe6\xa8\xa1\xe5\x9e\x8b");  // UTF-8 "模型"
  back = ParseJobSpecYaml(JobSpecToYaml(spec));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << JobSpecToYaml(spec);
  EXPECT_TRUE(MessageDifferencer::Equals(spec, *back)) << JobSpecToYaml(spec);
}

TEST(JobSpecPrint, NumbersUseTheShortestExactForm) {
  EXPECT_EQ(FormatNumber(3e-4), "0.0003");
  EXPECT_EQ(FormatNumber(16), "16");
  EXPECT_EQ(FormatNumber(1e6), "1000000");
  EXPECT_EQ(FormatNumber(-2.5), "-2.5");
  EXPECT_EQ(FormatNumber(1e300), "1e+300");
  EXPECT_EQ(FormatNumber(0.1 + 0.2), "0.30000000000000004");
}

// ----- structure errors --------------------------------------------------------------------

struct ErrorCase {
  const char* test_name;
  std::string text;
  const char* expected;  // a substring of the one-line error
};

// Names the case in gtest's failure output instead of dumping its bytes.
void PrintTo(const ErrorCase& c, std::ostream* out) { *out << c.test_name; }

class JobSpecYamlError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(JobSpecYamlError, NamesTheProblem) {
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(GetParam().text)), HasSubstr(GetParam().expected));
}

std::string CaseName(const ::testing::TestParamInfo<ErrorCase>& info) {
  return info.param.test_name;
}

INSTANTIATE_TEST_SUITE_P(
    Structure, JobSpecYamlError,
    ::testing::Values(
        ErrorCase{"Empty", "", "spec: empty document"},
        ErrorCase{"OnlyAComment", "# nothing\n", "spec: empty document"},
        ErrorCase{"TopLevelList", "- a\n- b\n", "spec: must be a mapping, got a list"},
        ErrorCase{"TwoDocuments", std::string(kValidYaml) + "---\n" + kValidYaml,
                  "spec: expected one YAML document, got more"},
        ErrorCase{"SyntaxError", "name: [unclosed\n", "YAML syntax error at line"},
        ErrorCase{"DuplicateKey", std::string(kValidYaml) + "name: again\n",
                  "name: duplicate key"},
        ErrorCase{"UnknownTopLevelField", std::string(kValidYaml) + "colour: blue\n",
                  "colour: unknown field"},
        ErrorCase{"MisspeltField", Replace("  learning_rate: 3.0e-4", "  learnin_rate: 3.0e-4"),
                  "training.learnin_rate: unknown field (did you mean 'learning_rate'?)"},
        ErrorCase{"SectionNotAMapping",
                  Replace("model:\n  path: /models/tiny-llama", "model: /models/tiny-llama"),
                  "model: must be a mapping, got \"/models/tiny-llama\""},
        ErrorCase{"StringForInteger", Replace("  epochs: 3", "  epochs: \"3\""),
                  "training.epochs: must be an integer, got \"3\""},
        ErrorCase{"FractionForInteger", Replace("  epochs: 3", "  epochs: 2.5"),
                  "training.epochs: must be an integer, got 2.5"},
        ErrorCase{"NegativeForUnsigned", Replace("  batch_size: 32", "  batch_size: -32"),
                  "training.batch_size: must be an integer in [0, 4294967295], got -32"},
        ErrorCase{"TwoToTheThirtySecondEpochs", Replace("  epochs: 3", "  epochs: 4294967296"),
                  "training.epochs: must be an integer in [0, 4294967295], got 4294967296"},
        ErrorCase{"HugeInteger", Replace("  seed: 42", "  seed: 1e400"),
                  "training.seed: must be an integer, got inf"},
        ErrorCase{"NegativeSeed", Replace("  seed: 42", "  seed: -1"),
                  "training.seed: must be an integer in [0, 18446744073709551615], got -1"},
        ErrorCase{"BoolForNumber", Replace("  alpha: 16", "  alpha: true"),
                  "adapter.alpha: must be a number, got true"},
        ErrorCase{"YesIsNotABool",
                  Replace("  keep_checkpoints: 3", "  keep_checkpoints: 3\n  packing: yes"),
                  "training.packing: must be true or false, got \"yes\""},
        ErrorCase{"NumberForString", Replace("name: sst2-loratrf", "name: 42"),
                  "name: must be a string, got 42"},
        ErrorCase{"UnknownEnumValue", Replace("task: classification", "task: regression"),
                  "task: unknown value \"regression\" (expected classification | causal_lm)"},
        ErrorCase{"UpperCaseEnumValue", Replace("task: classification", "task: CLASSIFICATION"),
                  "task: unknown value \"CLASSIFICATION\""},
        ErrorCase{"UnspecifiedEnumValue", Replace("  method: loratrf", "  method: unspecified"),
                  "adapter.method: unknown value \"unspecified\" (expected loratrf | lora | full)"},
        ErrorCase{"MisspeltScheduler", Replace("  lr_scheduler: cosine", "  lr_scheduler: cosin"),
                  "training.lr_scheduler: unknown value \"cosin\" (expected constant | linear | "
                  "cosine)"},
        ErrorCase{"StringForList", Replace("  target_modules: [q_proj, v_proj]",
                                           "  target_modules: q_proj"),
                  "adapter.target_modules: must be a list of strings, got \"q_proj\""},
        ErrorCase{"NumberInList", Replace("  target_modules: [q_proj, v_proj]",
                                          "  target_modules: [q_proj, 7]"),
                  "adapter.target_modules[1]: must be a string, got 7"},
        ErrorCase{"FilterWithLora", Replace("  method: loratrf", "  method: lora"),
                  "adapter.filter: not used with method lora"},
        ErrorCase{"RankWithFull", Replace("  method: loratrf", "  method: full"),
                  "adapter.rank: not used with method full"},
        ErrorCase{"UnsupportedTag", Replace("name: sst2-loratrf", "name: !!binary aGVsbG8="),
                  "name: unsupported YAML tag"},
        ErrorCase{"DeepNesting", "a: " + std::string(40, '[') + std::string(40, ']') + "\n",
                  "nested too deeply"},
        ErrorCase{"AliasBomb",
                  "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                  "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                  "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
                  "too many YAML nodes"}),
    CaseName);

// ----- validation rules --------------------------------------------------------------------

INSTANTIATE_TEST_SUITE_P(
    Rules, JobSpecYamlError,
    ::testing::Values(
        ErrorCase{"NameEmpty", Replace("name: sst2-loratrf", "name: \"\""), "name: required"},
        ErrorCase{"NameMissing", Replace("name: sst2-loratrf", ""), "name: required"},
        ErrorCase{"NameWithSlash", Replace("name: sst2-loratrf", "name: a/b"),
                  "name: may contain only a-z, 0-9 and '-'"},
        ErrorCase{"NameDotDot", Replace("name: sst2-loratrf", "name: \"..\""),
                  "name: may contain only a-z, 0-9 and '-'"},
        ErrorCase{"NameTraversal", Replace("name: sst2-loratrf", "name: ../etc/passwd"),
                  "name: may contain only a-z, 0-9 and '-'"},
        ErrorCase{"NameUpperCase", Replace("name: sst2-loratrf", "name: SST2"),
                  "name: may contain only a-z, 0-9 and '-'"},
        ErrorCase{"NameTooLong", Replace("name: sst2-loratrf", "name: " + std::string(64, 'a')),
                  "name: must be at most 63 characters, got 64"},
        ErrorCase{"NameLeadingDash", Replace("name: sst2-loratrf", "name: -x"),
                  "name: must start and end with a letter or digit"},
        ErrorCase{"ModelPathMissing", Replace("  path: /models/tiny-llama", "  path: \"\""),
                  "model.path: required"},
        ErrorCase{"ModelPathControlCharacter",
                  Replace("  path: /models/tiny-llama", "  path: \"/models/a\\nb\""),
                  "model.path: must not contain control characters"},
        ErrorCase{"TaskMissing", Replace("task: classification", ""),
                  "task: required, one of classification | causal_lm"},
        ErrorCase{"TrainDataMissing", Replace("  train: train.jsonl", ""), "data.train: required"},
        ErrorCase{"RankZero", Replace("  rank: 8", "  rank: 0"),
                  "adapter.rank: must be in [1, 1024], got 0"},
        ErrorCase{"RankHuge", Replace("  rank: 8", "  rank: 4096"),
                  "adapter.rank: must be in [1, 1024], got 4096"},
        ErrorCase{"AlphaNegative", Replace("  alpha: 16", "  alpha: -16"),
                  "adapter.alpha: must be in (0, 10000], got -16"},
        ErrorCase{"AlphaNaN", Replace("  alpha: 16", "  alpha: .nan"),
                  "adapter.alpha: must be in (0, 10000], got nan"},
        ErrorCase{"DropoutOne", Replace("  dropout: 0.05", "  dropout: 1.0"),
                  "adapter.dropout: must be in [0, 1), got 1"},
        ErrorCase{"TargetModulesEmpty", Replace("  target_modules: [q_proj, v_proj]",
                                                "  target_modules: []"),
                  "adapter.target_modules: required"},
        ErrorCase{"TargetModuleDuplicate", Replace("  target_modules: [q_proj, v_proj]",
                                                   "  target_modules: [q_proj, q_proj]"),
                  "adapter.target_modules[1]: duplicate 'q_proj'"},
        ErrorCase{"TargetModuleWithSlash", Replace("  target_modules: [q_proj, v_proj]",
                                                   "  target_modules: [q_proj, a/b]"),
                  "adapter.target_modules[1]: may contain only letters, digits, '_' and '.'"},
        ErrorCase{"UnknownFilter", Replace("  filter: bottleneck", "  filter: sideways"),
                  "adapter.filter: unknown value \"sideways\" (expected bottleneck | output | "
                  "both)"},
        ErrorCase{"EpochsZero", Replace("  epochs: 3", "  epochs: 0"),
                  "training.epochs: must be in [1, 10000], got 0"},
        ErrorCase{"TwoToTheThirtyFirstEpochs", Replace("  epochs: 3", "  epochs: 2147483648"),
                  "training.epochs: must be in [1, 10000], got 2147483648"},
        ErrorCase{"BatchSizeZero", Replace("  batch_size: 32", "  batch_size: 0"),
                  "training.batch_size: must be in [1, 65536], got 0"},
        ErrorCase{"MicroBatchLargerThanBatch",
                  Replace("  micro_batch_size: 8", "  micro_batch_size: 64"),
                  "training.micro_batch_size: must be in [1, 32], got 64"},
        ErrorCase{"MicroBatchZero", Replace("  micro_batch_size: 8", "  micro_batch_size: 0"),
                  "training.micro_batch_size: must be in [1, 32], got 0"},
        ErrorCase{"MicroBatchNotDividingBatch",
                  Replace("  micro_batch_size: 8", "  micro_batch_size: 12"),
                  "training.batch_size: must be a multiple of micro_batch_size x world size "
                  "(12 x 2 = 24), got 32"},
        ErrorCase{"WorldSizeNotDividingBatch",
                  Replace("  slots_per_worker: 2", "  slots_per_worker: 3"),
                  "training.batch_size: must be a multiple of micro_batch_size x world size "
                  "(8 x 3 = 24), got 32"},
        ErrorCase{"LearningRateNegative", Replace("  learning_rate: 3.0e-4", "  learning_rate: -1"),
                  "training.learning_rate: must be in (0, 1], got -1"},
        ErrorCase{"LearningRateZero", Replace("  learning_rate: 3.0e-4", "  learning_rate: 0"),
                  "training.learning_rate: must be in (0, 1], got 0"},
        ErrorCase{"LearningRateNaN", Replace("  learning_rate: 3.0e-4", "  learning_rate: .NaN"),
                  "training.learning_rate: must be in (0, 1], got nan"},
        ErrorCase{"LearningRateInfinite",
                  Replace("  learning_rate: 3.0e-4", "  learning_rate: .inf"),
                  "training.learning_rate: must be in (0, 1], got inf"},
        ErrorCase{"WarmupRatioAboveOne", Replace("  warmup_ratio: 0.06", "  warmup_ratio: 1.5"),
                  "training.warmup_ratio: must be in [0, 1), got 1.5"},
        ErrorCase{"GradNormNegative", Replace("  max_grad_norm: 1.0", "  max_grad_norm: -1"),
                  "training.max_grad_norm: must be in [0, 1000000], got -1"},
        ErrorCase{"SeqLenOne", Replace("  max_seq_len: 256", "  max_seq_len: 1"),
                  "training.max_seq_len: must be in [2, 131072], got 1"},
        ErrorCase{"Bf16OnCpu", Replace("  precision: fp32", "  precision: bf16"),
                  "training.precision: bf16 needs resources.device: cuda"},
        ErrorCase{"EvalWithoutEvalData", Replace("  eval: eval.jsonl", ""),
                  "training.eval_every_steps: needs data.eval"},
        ErrorCase{"KeepNoCheckpoints", Replace("  keep_checkpoints: 3", "  keep_checkpoints: 0"),
                  "training.keep_checkpoints: must be in [1, 1000], got 0"},
        ErrorCase{"PackingForClassification",
                  Replace("  keep_checkpoints: 3", "  keep_checkpoints: 3\n  packing: true"),
                  "training.packing: only used with task causal_lm"},
        ErrorCase{"NoWorkers", Replace("  workers: 1", "  workers: 0"),
                  "resources.workers: must be in [1, 256], got 0"},
        ErrorCase{"TooManySlots", Replace("  slots_per_worker: 2", "  slots_per_worker: 128"),
                  "resources.slots_per_worker: must be in [1, 64], got 128"},
        ErrorCase{"UnknownDevice", Replace("  device: cpu", "  device: tpu"),
                  "resources.device: unknown value \"tpu\" (expected cpu | cuda)"},
        ErrorCase{"PriorityTooHigh", Replace("priority: 0", "priority: 5000"),
                  "priority: must be in [-1000, 1000], got 5000"},
        ErrorCase{"NegativeRestarts", Replace("max_restarts: 3", "max_restarts: -1"),
                  "max_restarts: must be an integer in [0, 4294967295], got -1"},
        ErrorCase{"TooManyRestarts", Replace("max_restarts: 3", "max_restarts: 1000"),
                  "max_restarts: must be in [0, 100], got 1000"}),
    CaseName);

TEST(JobSpecParse, ValidBaseSpecParses) {
  // Guards the table above: every case there differs from a spec that is valid.
  auto spec = ParseJobSpecYaml(kValidYaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto design = LoadJobSpecFile(kSpecDir + "sst2-loratrf.yaml");
  ASSERT_TRUE(design.ok()) << design.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*spec, *design));
}

// labels (a map of strings) and never_preempt (a bool) read from YAML and JSON, print, and
// read back; their rules are checked.
TEST(JobSpecParse, LabelsAndNeverPreemptReadPrintAndReadBack) {
  auto spec = ParseJobSpecYaml(std::string(kValidYaml) +
                               "never_preempt: true\nlabels:\n  team: nlp\n  run/seed: \"7\"\n"
                               "  empty: \"\"\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->never_preempt());
  ASSERT_EQ(spec->labels_size(), 3);
  EXPECT_EQ(spec->labels().at("team"), "nlp");
  EXPECT_EQ(spec->labels().at("run/seed"), "7");
  EXPECT_EQ(spec->labels().at("empty"), "");
  auto from_yaml = ParseJobSpecYaml(JobSpecToYaml(*spec));
  auto from_json = ParseJobSpecJson(JobSpecToJson(*spec));
  ASSERT_TRUE(from_yaml.ok()) << from_yaml.status() << "\n" << JobSpecToYaml(*spec);
  ASSERT_TRUE(from_json.ok()) << from_json.status() << "\n" << JobSpecToJson(*spec);
  EXPECT_TRUE(MessageDifferencer::Equals(*spec, *from_yaml)) << JobSpecToYaml(*spec);
  EXPECT_TRUE(MessageDifferencer::Equals(*spec, *from_json)) << JobSpecToJson(*spec);
  // Without labels the printed spec still reads back.
  auto plain = ParseJobSpecYaml(kValidYaml);
  ASSERT_TRUE(plain.ok());
  auto plain_back = ParseJobSpecYaml(JobSpecToYaml(*plain));
  ASSERT_TRUE(plain_back.ok()) << plain_back.status() << "\n" << JobSpecToYaml(*plain);

  const std::string base = kValidYaml;
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(base + "labels: [a, b]\n")),
              HasSubstr("labels: must be a mapping of strings, got a list"));
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(base + "labels:\n  n: 3\n")),
              HasSubstr("labels.n: must be a string"));
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(base + "labels:\n  Team: nlp\n")),
              HasSubstr("labels: a label key must be 1 to 63 of [a-z0-9._/-]"));
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(base + "labels:\n  team: " + std::string(64, 'x') + "\n")),
              HasSubstr("labels.team: a label value must be at most 63 printable ASCII"));
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(base + "never_preempt: yes please\n")),
              HasSubstr("never_preempt: must be true or false"));
  v1::JobSpec many = *plain;
  for (int i = 0; i < 17; ++i) (*many.mutable_labels())["k" + std::to_string(i)] = "v";
  EXPECT_THAT(ValidateJobSpec(many).message(), HasSubstr("labels: at most 16 labels, got 17"));
  (*spec->mutable_labels())["tab"] = "a\tb";
  EXPECT_THAT(ValidateJobSpec(*spec).message(), HasSubstr("labels.tab:"));
}

// ----- JSON --------------------------------------------------------------------------------

TEST(JobSpecJson, DuplicateKeyIsAnError) {
  std::string text = ReadFile(kSpecDir + "sst2-loratrf.json");
  text.insert(text.find('{') + 1, "\"priority\": 5, ");
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(text)), HasSubstr("priority: duplicate key"));
}

TEST(JobSpecJson, SyntaxErrorSaysWhere) {
  EXPECT_THAT(ErrorOf(ParseJobSpecJson("{\"name\": }")), HasSubstr("JSON parse error at line 1"));
}

// Wide and deep specs, near the size limit, are answered after one pass (the JSON reader before
// used nlohmann's callback parser, quadratic in an object's width).
std::string WideKeys(int keys, const char* open, const char* pattern, const char* sep,
                     const char* close) {
  std::string text = open;
  for (int i = 0; i < keys; ++i) {
    if (i) text += sep;
    text += absl::StrFormat(pattern, i);
  }
  return text + close;
}

TEST(JobSpecWide, AHundredThousandUnknownJsonKeysAreRefusedByTheFirst) {
  std::string text = WideKeys(100'000, "{", "\"%d\":0", ",", "}");
  ASSERT_LE(text.size(), limits::kMaxSpecBytes);
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(text)), HasSubstr("0: unknown field"));
}

TEST(JobSpecWide, AHundredThousandJsonLabelsAreAnswered) {
  std::string base = ReadFile(kSpecDir + "sst2-loratrf.json");
  std::string labels = WideKeys(90'000, "\"labels\": {", "\"%d\":\"\"", ",", "}, ");
  base.insert(base.find('{') + 1, labels);
  ASSERT_LE(base.size(), limits::kMaxSpecBytes);
  absl::StatusOr<v1::JobSpec> spec = ParseJobSpecJson(base);
  EXPECT_THAT(ErrorOf(spec), HasSubstr("labels"));
}

TEST(JobSpecWide, ADuplicateAfterAHundredThousandJsonKeysIsFound) {
  std::string text = WideKeys(100'000, "{\"labels\": {", "\"%d\":0", ",", ",\"7\":0}}");
  ASSERT_LE(text.size(), limits::kMaxSpecBytes);
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(text)), HasSubstr("labels.7: duplicate key"));
}

TEST(JobSpecWide, AHundredThousandYamlKeysAreRefused) {
  std::string block = WideKeys(100'000, "", "k%d: 0", "\n", "\n");
  ASSERT_LE(block.size(), limits::kMaxSpecBytes);
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(block)), HasSubstr("too many YAML nodes"));
  std::string flow = WideKeys(100'000, "labels: {", "%d: 0", ",", "}\n");
  ASSERT_LE(flow.size(), limits::kMaxSpecBytes);
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(flow)), HasSubstr("too many YAML nodes"));
}

TEST(JobSpecDeep, HalfAMillionYamlLevelsAreRefusedWithoutRecursing) {
  std::string flow = "a: " + std::string(500'000, '[') + std::string(500'000, ']') + "\n";
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(flow)), HasSubstr("nested too deeply"));
  std::string maps = "a: ";
  for (int i = 0; i < 200'000; ++i) maps += "{a: ";
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(maps)), HasSubstr("nested too deeply"));
  std::string block;
  for (int depth = 0; depth < 1000; ++depth) block += std::string(depth, ' ') + "a:\n";
  ASSERT_LE(block.size(), limits::kMaxSpecBytes);
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(block)), HasSubstr("nested too deeply"));
  std::string dashes;
  for (int depth = 0; depth < 1000; ++depth) dashes += std::string(depth, ' ') + "-\n";
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml("a:\n" + dashes)), HasSubstr("nested too deeply"));
}

TEST(JobSpecDeep, DeepJsonObjectsAreRefused) {
  std::string objects;
  for (int i = 0; i < 200'000; ++i) objects += "{\"a\":";
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(objects)), HasSubstr("nested too deeply"));
}

TEST(JobSpecJson, DeepNestingIsRefusedBeforeParsing) {
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(std::string(100000, '[') + std::string(100000, ']'))),
              HasSubstr("nested too deeply"));
}

TEST(JobSpecJson, RulesApplyToJsonToo) {
  std::string text = ReadFile(kSpecDir + "sst2-loratrf.json");
  text.replace(text.find("\"epochs\": 3"), 11, "\"epochs\": 2147483648");
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(text)),
              HasSubstr("training.epochs: must be in [1, 10000], got 2147483648"));
}

TEST(JobSpecJson, OversizedTextIsRefused) {
  std::string text = "{\"name\": \"" + std::string(limits::kMaxSpecBytes, 'a') + "\"}";
  EXPECT_THAT(ErrorOf(ParseJobSpecJson(text)), HasSubstr("-byte limit"));
  EXPECT_THAT(ErrorOf(ParseJobSpecYaml(text)), HasSubstr("-byte limit"));
}

// ----- specs built in code, as they arrive over RPC ----------------------------------------

TEST(JobSpecValidate, EmptyProtoNamesTheFirstMissingField) {
  absl::Status status = ValidateJobSpec(v1::JobSpec());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "name: required");
}

TEST(JobSpecValidate, PathThatIsNotUtf8IsRefused) {
  v1::JobSpec spec = *ParseJobSpecYaml(kValidYaml);
  spec.mutable_data()->set_train("data/\xff\xfe.jsonl");
  EXPECT_EQ(ValidateJobSpec(spec).message(), "data.train: must be valid UTF-8");
  spec.mutable_data()->set_train("data/\xed\xa0\x80.jsonl");  // a UTF-16 surrogate
  EXPECT_EQ(ValidateJobSpec(spec).message(), "data.train: must be valid UTF-8");
  spec.mutable_data()->set_train("data/\xc0\xaf.jsonl");  // overlong '/'
  EXPECT_EQ(ValidateJobSpec(spec).message(), "data.train: must be valid UTF-8");
  spec.mutable_data()->set_train("data/\xf0\x9f\x98\x80.jsonl");  // an emoji is fine
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
}

TEST(JobSpecValidate, OutOfRangeEnumNumberIsNamed) {
  v1::JobSpec spec = *ParseJobSpecYaml(kValidYaml);
  spec.set_task(static_cast<v1::Task>(99));
  EXPECT_EQ(ValidateJobSpec(spec).message(),
            "task: required, one of classification | causal_lm (got 99)");
}

TEST(JobSpecValidate, FullMethodRefusesAdapterFieldsSetOverRpc) {
  v1::JobSpec spec = *ParseJobSpecYaml(kValidYaml);
  spec.mutable_adapter()->set_method(v1::ADAPTER_METHOD_FULL);
  EXPECT_THAT(std::string(ValidateJobSpec(spec).message()),
              HasSubstr("adapter: method full takes no rank"));
  spec.mutable_adapter()->Clear();
  spec.mutable_adapter()->set_method(v1::ADAPTER_METHOD_FULL);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
}

TEST(JobSpecValidate, LoraRefusesAFilterSetOverRpc) {
  v1::JobSpec spec = *ParseJobSpecYaml(kValidYaml);
  spec.mutable_adapter()->set_method(v1::ADAPTER_METHOD_LORA);
  EXPECT_EQ(ValidateJobSpec(spec).message(), "adapter.filter: only used with method loratrf");
}

// ----- files -------------------------------------------------------------------------------

class JobSpecFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("loratrf-spec-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(JobSpecFile, MissingFileNamesThePath) {
  std::string path = (dir_ / "nope.yaml").string();
  EXPECT_THAT(ErrorOf(LoadJobSpecFile(path)), HasSubstr(path + ": cannot read the spec file"));
}

TEST_F(JobSpecFile, DirectoryIsNotASpec) {
  EXPECT_THAT(ErrorOf(LoadJobSpecFile(dir_.string())), HasSubstr(": not a regular file"));
}

TEST_F(JobSpecFile, ErrorsCarryThePath) {
  std::string path = Write("bad.yaml", Replace("  rank: 8", "  rank: 0"));
  EXPECT_EQ(ErrorOf(LoadJobSpecFile(path)), path + ": adapter.rank: must be in [1, 1024], got 0");
}

TEST_F(JobSpecFile, JsonExtensionSelectsStrictJson) {
  // Valid YAML, invalid JSON: the .json file must be read as JSON.
  std::string path = Write("spec.json", kValidYaml);
  EXPECT_THAT(ErrorOf(LoadJobSpecFile(path)), HasSubstr("JSON parse error"));
  EXPECT_TRUE(LoadJobSpecFile(Write("spec.yml", kValidYaml)).ok());
}

TEST_F(JobSpecFile, OversizedFileIsRefusedWithoutReadingIt) {
  std::string path = Write("big.yaml", std::string(limits::kMaxSpecBytes + 1, '#'));
  EXPECT_THAT(ErrorOf(LoadJobSpecFile(path)), HasSubstr("is larger than the 1048576-byte limit"));
}

}  // namespace
}  // namespace loratrf::spec

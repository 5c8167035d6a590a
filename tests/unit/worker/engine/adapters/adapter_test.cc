// LoRA and LoRATRF layers and adapters: identity at init, LoRATRF-with-identity-filters equals
// LoRA, numerical gradients, merging, parameter counts, save/load.
#include <filesystem>
#include <fstream>
#include <map>

#include <torch/torch.h>

#include "worker/engine/adapters/adaptable_linear.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/adapter_model.h"
#include "worker/engine/checkpoint/safetensors.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/model/transformer.h"
#include "nlohmann/json.hpp"

namespace loratrf::engine {
namespace {

using ::testing::HasSubstr;

AdapterSettings Settings(AdapterMethod method, TrfFilter filter, int64_t rank = 2,
                         double alpha = 6.0) {
  AdapterSettings s;
  s.method = method;
  s.filter = method == AdapterMethod::kLora ? TrfFilter::kNone : filter;
  s.rank = rank;
  s.alpha = alpha;
  s.target_modules = {"q_proj", "v_proj"};
  return s;
}

// Every adapter tensor of `layer` set to random values (a trained adapter, not a fresh one).
void Randomize(torch::nn::Module& module, bool adapter_only = true) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    if (!adapter_only || IsAdapterParameter(item.key())) item.value().normal_(0.0, 0.5);
  }
}

AdaptableLinear MakeLayer(int64_t in, int64_t out, bool bias, torch::Dtype dtype = torch::kFloat32) {
  AdaptableLinear layer(in, out, bias, torch::dtype(dtype));
  torch::NoGradGuard no_grad;
  layer->weight.normal_();
  if (bias) layer->bias.normal_();
  return layer;
}

const std::vector<std::pair<AdapterMethod, TrfFilter>> kAllKinds = {
    {AdapterMethod::kLora, TrfFilter::kNone},
    {AdapterMethod::kLoratrf, TrfFilter::kBottleneck},
    {AdapterMethod::kLoratrf, TrfFilter::kOutput},
    {AdapterMethod::kLoratrf, TrfFilter::kBoth}};

TEST(AdaptableLinear, FreshAdapterChangesNothingEvenWithDropout) {
  torch::manual_seed(1);
  for (auto [method, filter] : kAllKinds) {
    AdaptableLinear layer = MakeLayer(6, 5, true);
    torch::Tensor x = torch::randn({3, 4, 6});
    torch::Tensor before = layer(x);
    AdapterSettings s = Settings(method, filter);
    s.dropout = 0.5;
    layer->AddAdapter(s);
    layer->train();
    EXPECT_TRUE(torch::equal(layer(x), before));
    // ... but it is trainable: A is random, and the loss has a gradient for B.
    EXPECT_GT(layer->named_parameters()["lora_A.weight"].abs().sum().item<double>(), 0);
  }
}

TEST(AdaptableLinear, LoratrfWithIdentityFiltersEqualsLoraExactly) {
  torch::manual_seed(2);
  AdaptableLinear lora = MakeLayer(6, 5, true);
  AdaptableLinear trf(6, 5, true, torch::dtype(torch::kFloat32));
  {
    torch::NoGradGuard no_grad;
    trf->weight.copy_(lora->weight);
    trf->bias.copy_(lora->bias);
  }
  lora->AddAdapter(Settings(AdapterMethod::kLora, TrfFilter::kNone));
  trf->AddAdapter(Settings(AdapterMethod::kLoratrf, TrfFilter::kBoth));
  Randomize(*lora);
  {
    torch::NoGradGuard no_grad;
    auto p = trf->named_parameters();
    p["lora_A.weight"].copy_(lora->named_parameters()["lora_A.weight"]);
    p["lora_B.weight"].copy_(lora->named_parameters()["lora_B.weight"]);
  }
  torch::Tensor x = torch::randn({4, 6});
  torch::Tensor w = torch::randn({4, 5});
  torch::Tensor y_lora = lora(x), y_trf = trf(x);
  EXPECT_TRUE(torch::equal(y_lora, y_trf));
  (y_lora * w).sum().backward();
  (y_trf * w).sum().backward();
  for (const char* name : {"lora_A.weight", "lora_B.weight"}) {
    SCOPED_TRACE(name);
    torch::Tensor g_lora = lora->named_parameters()[name].grad();
    torch::Tensor g_trf = trf->named_parameters()[name].grad();
    EXPECT_TRUE(torch::allclose(g_lora, g_trf, 1e-6, 1e-7));
    EXPECT_GT(g_lora.abs().sum().item<double>(), 0);
  }
  // The filters learn from the first step.
  EXPECT_GT(trf->named_parameters()["trf_G.weight"].grad().abs().sum().item<double>(), 0);
  EXPECT_GT(trf->named_parameters()["trf_u"].grad().abs().sum().item<double>(), 0);
}

TEST(AdaptableLinear, GradientsOfEveryAdapterTensorMatchFiniteDifferences) {
  torch::manual_seed(3);
  for (auto [method, filter] : kAllKinds) {
    AdaptableLinear layer = MakeLayer(4, 3, true);
    layer->AddAdapter(Settings(method, filter, 2, 3.0));
    layer->to(torch::kFloat64);
    Randomize(*layer);
    torch::Tensor x = torch::randn({5, 4}, torch::kFloat64);
    torch::Tensor w = torch::randn({5, 3}, torch::kFloat64);
    auto loss = [&] { return (layer(x) * w).sum(); };
    layer->zero_grad();
    loss().backward();
    for (auto& item : layer->named_parameters()) {
      if (!IsAdapterParameter(item.key())) continue;
      SCOPED_TRACE(item.key());
      torch::Tensor p = item.value();
      torch::Tensor analytic = p.grad().clone().view(-1);
      torch::Tensor flat = p.data().view(-1);
      for (int64_t i = 0; i < flat.numel(); ++i) {
        torch::NoGradGuard no_grad;
        const double h = 1e-6, saved = flat[i].item<double>();
        flat[i] = saved + h;
        double up = loss().item<double>();
        flat[i] = saved - h;
        double down = loss().item<double>();
        flat[i] = saved;
        EXPECT_NEAR(analytic[i].item<double>(), (up - down) / (2 * h), 1e-6) << "element " << i;
      }
    }
  }
}

TEST(AdaptableLinear, MergeReproducesLoraAndTheOutputFilter) {
  torch::manual_seed(4);
  for (auto [method, filter] : {std::make_pair(AdapterMethod::kLora, TrfFilter::kNone),
                                std::make_pair(AdapterMethod::kLoratrf, TrfFilter::kOutput)}) {
    for (bool bias : {true, false}) {
      AdaptableLinear layer = MakeLayer(6, 5, bias);
      layer->AddAdapter(Settings(method, filter));
      Randomize(*layer);
      layer->eval();
      torch::Tensor x = torch::randn({3, 6});
      torch::Tensor adapted = layer(x).detach();
      ASSERT_TRUE(layer->Merge().ok());
      EXPECT_FALSE(layer->adapted());
      EXPECT_EQ(layer->named_parameters().size(), bias ? 2u : 1u);  // only the base is left
      EXPECT_TRUE(torch::allclose(layer(x), adapted, 1e-5, 1e-5));
    }
  }
}

TEST(AdaptableLinear, BottleneckFilterRefusesToMergeAndStaysIntact) {
  torch::manual_seed(5);
  for (TrfFilter filter : {TrfFilter::kBottleneck, TrfFilter::kBoth}) {
    AdaptableLinear layer = MakeLayer(6, 5, true);
    layer->AddAdapter(Settings(AdapterMethod::kLoratrf, filter));
    Randomize(*layer);
    torch::Tensor x = torch::randn({3, 6});
    torch::Tensor before = layer(x).detach();
    absl::Status status = layer->Merge();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(status.message()), HasSubstr("bottleneck filter cannot be merged"));
    EXPECT_TRUE(layer->adapted());
    EXPECT_TRUE(torch::equal(layer(x), before));
  }
}

// A tiny Llama made in code: hidden 32, intermediate 64, 2 layers, 4 heads of 8, 2 KV heads.
ModelConfig TinyLlama() {
  ModelConfig c;
  c.model_type = "llama";
  c.architecture = "LlamaForCausalLM";
  c.family = ModelFamily::kDecoder;
  c.head = HeadKind::kCausalLm;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 128;
  return c;
}

TEST(AdapterModel, TrainableParametersFollowTheSpecFormulas) {
  // Base: embed 64x32 + 2 x (q 32x32, k 32x16, v 32x16, o 32x32, gate/up/down 3 x 32x64,
  // two norms 2 x 32) + final norm 32 + lm_head 64x32.
  const int64_t base = 2048 + 2 * (1024 + 512 + 512 + 1024 + 3 * 2048 + 64) + 32 + 2048;
  // q_proj 32→32 and v_proj 32→16 in each of 2 layers, rank 4:
  //   LoRA        r(d_in + d_out)                    = 4*64 + 4*48           = 448 a layer
  //   bottleneck  + r*r + r per adapted module       = 448 + 2*(16 + 4)      = 488
  //   output      + d_out per adapted module         = 448 + 32 + 16         = 496
  //   both                                           = 448 + 40 + 48         = 536
  const std::vector<std::pair<std::pair<AdapterMethod, TrfFilter>, int64_t>> expected = {
      {kAllKinds[0], 2 * 448}, {kAllKinds[1], 2 * 488}, {kAllKinds[2], 2 * 496},
      {kAllKinds[3], 2 * 536}};
  for (const auto& [kind, trainable] : expected) {
    auto model = BuildModel(TinyLlama(), HeadKind::kCausalLm, 0,
                            torch::TensorOptions().device(torch::kMeta));
    ASSERT_TRUE(ApplyAdapter(*model, Settings(kind.first, kind.second, 4, 8)).ok());
    ParameterCounts counts = CountParameters(*model);
    EXPECT_EQ(counts.trainable, trainable);
    EXPECT_EQ(counts.total, base + trainable);
    EXPECT_EQ(counts.adapted_layers, 4);
    int64_t by_formula = 0;
    for (auto [d_in, d_out] : {std::make_pair(32, 32), std::make_pair(32, 16)}) {
      by_formula += 2 * AdapterParameterCount(Settings(kind.first, kind.second, 4, 8), d_in, d_out);
    }
    EXPECT_EQ(by_formula, trainable);
  }
}

// What a bf16 GPU job does (on the CPU here): frozen weights made in bf16, adapters and the
// trained head in float32, drawn exactly as in a float32 model of the same seed.
TEST(AdapterModel, Bf16BaseWeightsKeepFloat32AdaptersAndHeadsDrawnAsInFloat32) {
  std::map<std::string, torch::Tensor> trained_in_float32;
  for (torch::Dtype dtype : {torch::kFloat32, torch::kBFloat16}) {
    torch::manual_seed(11);
    auto model = BuildModel(TinyLlama(), HeadKind::kSequenceClassification, 3, torch::dtype(dtype));
    for (auto& item : model->named_parameters()) {
      if (model->IsHeadParameter(item.key())) model->InitHead(item.key(), item.value());
    }
    AdapterSettings settings = Settings(AdapterMethod::kLoratrf, TrfFilter::kBoth);
    settings.modules_to_save = model->HeadModules();
    ASSERT_TRUE(ApplyAdapter(*model, settings).ok());
    for (auto& item : model->named_parameters()) {
      const torch::Tensor& p = item.value();
      if (!p.requires_grad()) {
        EXPECT_EQ(p.scalar_type(), dtype) << item.key();
        continue;
      }
      EXPECT_EQ(p.scalar_type(), torch::kFloat32) << item.key();
      if (dtype == torch::kFloat32) {
        trained_in_float32[item.key()] = p.detach().clone();
      } else {
        ASSERT_TRUE(trained_in_float32.count(item.key())) << item.key();
        EXPECT_TRUE(torch::equal(p.detach(), trained_in_float32[item.key()])) << item.key();
      }
    }
  }
  EXPECT_TRUE(trained_in_float32.count("score.weight"));
  EXPECT_TRUE(trained_in_float32.count("model.layers.0.self_attn.q_proj.lora_A.weight"));
}

TEST(AdapterModel, FullFineTuningTrainsEveryWeightInFloat32) {
  auto model = BuildModel(TinyLlama(), HeadKind::kCausalLm, 0, torch::dtype(torch::kBFloat16));
  EnableFullFineTuning(*model);
  for (auto& item : model->named_parameters()) {
    EXPECT_TRUE(item.value().requires_grad()) << item.key();
    EXPECT_EQ(item.value().scalar_type(), torch::kFloat32) << item.key();
  }
}

TEST(AdapterModel, UnmatchedTargetsNameTheLayersThereAre) {
  auto model = BuildModel(TinyLlama(), HeadKind::kCausalLm, 0, torch::TensorOptions().device(torch::kMeta));
  AdapterSettings s = Settings(AdapterMethod::kLora, TrfFilter::kNone);
  s.target_modules = {"query", "value"};
  auto adapted = ApplyAdapter(*model, s);
  ASSERT_FALSE(adapted.ok());
  EXPECT_THAT(std::string(adapted.status().message()),
              HasSubstr("target_modules [query, value] match no linear layer of this llama model; "
                        "its linear layers are named: down_proj, gate_proj, k_proj, lm_head, o_proj, "
                        "q_proj, up_proj, v_proj"));
}

class AdapterFiles : public ::testing::Test {
 public:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("loratrf-adapter-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    torch::manual_seed(6);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A classification model over the tiny Llama with random base weights.
  std::shared_ptr<TransformerModel> Model() {
    auto model = BuildModel(TinyLlama(), HeadKind::kSequenceClassification, 3, torch::dtype(torch::kFloat32));
    torch::manual_seed(7);  // the same base every time
    Randomize(*model, /*adapter_only=*/false);
    return model;
  }
  std::string Dir() const { return dir_.string(); }

 protected:
  std::filesystem::path dir_;
};

TEST_F(AdapterFiles, SaveThenLoadIsBitExact) {
  for (auto [method, filter] : kAllKinds) {
    auto trained = Model();
    AdapterSettings s = Settings(method, filter);
    s.modules_to_save = trained->HeadModules();
    ASSERT_TRUE(ApplyAdapter(*trained, s).ok());
    torch::manual_seed(8);
    Randomize(*trained);
    {
      torch::NoGradGuard no_grad;
      trained->named_parameters()["score.weight"].normal_();  // a trained head
    }
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ASSERT_TRUE(SaveAdapter(*trained, s, "/models/tiny", Dir()).ok());

    auto loaded = Model();
    auto settings = LoadAdapter(*loaded, Dir());
    ASSERT_TRUE(settings.ok()) << settings.status();
    EXPECT_EQ(settings->filter, s.filter);
    auto expected = trained->named_parameters();
    for (auto& item : loaded->named_parameters()) {
      SCOPED_TRACE(item.key());
      EXPECT_TRUE(torch::equal(item.value(), *expected.find(item.key())));
    }
    trained->eval();
    loaded->eval();
    torch::Tensor ids = torch::randint(1, 64, {2, 7});
    EXPECT_TRUE(torch::equal(trained->Forward(ids, {}).logits, loaded->Forward(ids, {}).logits));
  }
}

TEST_F(AdapterFiles, FilesFollowPeftsLayout) {
  auto model = Model();
  AdapterSettings s = Settings(AdapterMethod::kLoratrf, TrfFilter::kBoth);
  s.modules_to_save = {"score"};
  ASSERT_TRUE(ApplyAdapter(*model, s).ok());
  ASSERT_TRUE(SaveAdapter(*model, s, "/models/tiny", Dir()).ok());
  auto file = SafetensorsFile::Open(Dir() + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> names;
  for (const TensorEntry& e : (*file)->tensors()) names.push_back(e.name);
  const std::string p = "base_model.model.model.layers.0.self_attn.q_proj.";
  EXPECT_THAT(names, ::testing::IsSupersetOf({p + "lora_A.weight", p + "lora_B.weight",
                                              p + "trf_G.weight", p + "trf_G.bias", p + "trf_u",
                                              std::string("base_model.model.score.weight")}));
  EXPECT_EQ(names.size(), 4u * 5 + 1);  // 4 adapted modules x 5 tensors + the head
  EXPECT_EQ((*file)->Find(p + "lora_A.weight")->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ((*file)->Find(p + "trf_G.weight")->shape, (std::vector<int64_t>{2, 2}));

  std::ifstream in(Dir() + "/adapter_config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(config["peft_type"], "LORATRF");
  EXPECT_EQ(config["trf_filter"], "both");
  EXPECT_EQ(config["r"], 2);
  EXPECT_EQ(config["lora_alpha"], 6.0);
  EXPECT_EQ(config["task_type"], "SEQ_CLS");
  EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "v_proj"}));
  EXPECT_EQ(config["modules_to_save"], nlohmann::json({"score"}));
  EXPECT_EQ(config["bias"], "none");
  EXPECT_EQ(config["base_model_name_or_path"], "/models/tiny");
  for (const char* key : {"fan_in_fan_out", "use_rslora", "use_dora"}) EXPECT_EQ(config[key], false) << key;
}

TEST_F(AdapterFiles, LoraConfigHasNoLoratrfKeys) {
  auto model = Model();
  AdapterSettings s = Settings(AdapterMethod::kLora, TrfFilter::kNone);
  ASSERT_TRUE(ApplyAdapter(*model, s).ok());
  ASSERT_TRUE(SaveAdapter(*model, s, "m", Dir()).ok());
  std::ifstream in(Dir() + "/adapter_config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_FALSE(config.contains("trf_filter"));
}

// Saves a LoRA adapter, then lets `edit` damage its config or tensors; loading must fail with
// `expected` in the message.
void ExpectLoadFails(AdapterFiles& t, const std::function<void(nlohmann::json&,
                     std::vector<std::pair<std::string, torch::Tensor>>&)>& edit,
                     const std::string& expected) {
  auto model = t.Model();
  AdapterSettings s = Settings(AdapterMethod::kLora, TrfFilter::kNone);
  ASSERT_TRUE(ApplyAdapter(*model, s).ok());
  ASSERT_TRUE(SaveAdapter(*model, s, "m", t.Dir()).ok());
  std::ifstream in(t.Dir() + "/adapter_config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  auto file = SafetensorsFile::Open(t.Dir() + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const TensorEntry& e : (*file)->tensors()) tensors.emplace_back(e.name, *ReadTensor(**file, e));
  file->reset();
  edit(config, tensors);
  std::ofstream(t.Dir() + "/adapter_config.json") << config.dump();
  ASSERT_TRUE(WriteTensors(t.Dir() + "/adapter_model.safetensors", tensors).ok());
  auto fresh = t.Model();
  auto loaded = LoadAdapter(*fresh, t.Dir());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(expected));
}

TEST_F(AdapterFiles, UnsupportedPeftOptionsAreRefusedByName) {
  ExpectLoadFails(*this, [](auto& c, auto&) { c["use_dora"] = true; }, "use_dora: must be false");
  ExpectLoadFails(*this, [](auto& c, auto&) { c["fan_in_fan_out"] = true; }, "fan_in_fan_out: must be false");
  ExpectLoadFails(*this, [](auto& c, auto&) { c["peft_type"] = "PREFIX_TUNING"; },
                  "peft_type: unsupported \"PREFIX_TUNING\"");
  ExpectLoadFails(*this, [](auto& c, auto&) { c["layers_to_transform"] = {0}; },
                  "layers_to_transform: not supported");
  ExpectLoadFails(*this, [](auto& c, auto&) { c.erase("r"); }, "r: must be an integer");
  ExpectLoadFails(*this, [](auto& c, auto&) { c["peft_type"] = "LORATRF"; },
                  "trf_filter: required for LORATRF");
}

// adapter_config.json up to its size limit is answered after one pass: unknown keys are
// ignored however many, deep nesting is refused.
TEST_F(AdapterFiles, WideAndDeepConfigsAreAnswered) {
  auto model = Model();
  AdapterSettings s = Settings(AdapterMethod::kLora, TrfFilter::kNone);
  ASSERT_TRUE(ApplyAdapter(*model, s).ok());
  ASSERT_TRUE(SaveAdapter(*model, s, "m", Dir()).ok());
  std::ifstream in(Dir() + "/adapter_config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  std::string text = config.dump();
  text.pop_back();
  for (int i = 0; i < 80'000; ++i) config["x" + std::to_string(i)] = 0;
  std::ofstream(Dir() + "/adapter_config.json", std::ios::trunc) << config.dump();
  absl::StatusOr<AdapterSettings> wide = LoadAdapterConfig(Dir());
  EXPECT_TRUE(wide.ok()) << wide.status();

  std::ofstream(Dir() + "/adapter_config.json", std::ios::trunc)
      << text << R"(, "deep": )" << std::string(200'000, '[') << std::string(200'000, ']') << "}";
  absl::StatusOr<AdapterSettings> deep = LoadAdapterConfig(Dir());
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(std::string(deep.status().message()), HasSubstr("nested deeper than 64 levels"));
}

TEST_F(AdapterFiles, TensorsThatDoNotFitAreRefused) {
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  ExpectLoadFails(*this, [&](auto&, auto& t) {
    for (auto& [name, tensor] : t) if (name == q) tensor = torch::zeros({3, 32});
  }, "has shape [3, 32], this model needs [2, 32]");
  ExpectLoadFails(*this, [&](auto&, auto& t) {
    t.emplace_back("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", torch::zeros({2, 32}));
  }, "is not an adapter tensor of this model");
  ExpectLoadFails(*this, [&](auto&, auto& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [&](auto& e) { return e.first == q; }), t.end());
  }, q + " is missing");
  ExpectLoadFails(*this, [&](auto&, auto& t) {
    for (auto& [name, tensor] : t) if (name == q) tensor = torch::zeros({2, 32}, torch::kLong);
  }, "is I64, not floating point");
}

}  // namespace
}  // namespace loratrf::engine

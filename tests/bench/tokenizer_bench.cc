// Tokenizer throughput: encodes every line of a text file with a tokenizer.json and prints
// {"bytes", "lines", "tokens", "seconds", "mb_per_s"} as JSON. Loading is not timed; each pass
// starts from a fresh tokenizer (empty word cache). Used by tests/bench/tokenizer_throughput.sh.
//
//   tokenizer_bench --tokenizer PATH --input FILE [--threads N]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_split.h"
#include "common/command_line.h"
#include "worker/engine/tokenizer/hf_tokenizer.h"

int main(int argc, char** argv) {
  auto flags = loratrf::CommandLine::Parse(std::vector<std::string>(argv + 1, argv + argc),
                                           {{"--tokenizer", true}, {"--input", true},
                                            {"--threads", true}});
  if (!flags.ok()) {
    std::cerr << "tokenizer_bench: " << flags.status().message() << "\n";
    return 2;
  }
  auto threads = flags->GetInt("--threads", 1, 1, 256);
  auto tokenizer_path = flags->Require("--tokenizer");
  auto input_path = flags->Require("--input");
  if (!threads.ok() || !tokenizer_path.ok() || !input_path.ok()) {
    std::cerr << "tokenizer_bench: usage: --tokenizer PATH --input FILE [--threads N]\n";
    return 2;
  }
  auto tokenizer = loratrf::engine::tokenizer::HfTokenizer::Load(*tokenizer_path);
  if (!tokenizer.ok()) {
    std::cerr << "tokenizer_bench: " << tokenizer.status().message() << "\n";
    return 2;
  }
  std::ifstream in(*input_path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());

  std::vector<size_t> tokens(static_cast<size_t>(*threads), 0);
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < *threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < lines.size(); i += static_cast<size_t>(*threads)) {
        auto ids = (*tokenizer)->Encode(lines[i], false);
        if (!ids.ok()) {
          std::cerr << "tokenizer_bench: line " << i + 1 << ": " << ids.status().message() << "\n";
          std::exit(1);
        }
        tokens[static_cast<size_t>(t)] += ids->size();
      }
    });
  }
  for (auto& worker : workers) worker.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  size_t total_tokens = 0;
  for (size_t n : tokens) total_tokens += n;
  std::printf("{\"bytes\": %zu, \"lines\": %zu, \"tokens\": %zu, \"seconds\": %.4f, "
              "\"mb_per_s\": %.3f}\n",
              text.size(), lines.size(), total_tokens, seconds, text.size() / seconds / 1e6);
  return 0;
}

// loratrf-worker tokenize --tokenizer PATH --input FILE.txt [--add-special-tokens]: one JSON
// array of token ids per input line, exactly as Hugging Face's tokenizers library encodes it.
//
// Lines are split on '\n' only (a '\r' stays part of its line, as the reference library sees
// it); a final '\n' does not start another line. Output is streamed, so a file of any size
// works; a line that cannot be encoded (invalid UTF-8) stops with "FILE:LINE: ..." and exit 2.
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/command_line.h"
#include "common/status_macros.h"
#include "worker/commands/commands.h"
#include "worker/engine/tokenizer/hf_tokenizer.h"

namespace loratrf::worker {
namespace {

absl::Status Tokenize(const CommandLine& flags) {
  ASSIGN_OR_RETURN(std::string tokenizer_path, flags.Require("--tokenizer"));
  ASSIGN_OR_RETURN(std::string input_path, flags.Require("--input"));
  const bool add_special_tokens = flags.Has("--add-special-tokens");
  ASSIGN_OR_RETURN(auto tokenizer, engine::tokenizer::HfTokenizer::Load(tokenizer_path));

  std::ifstream input(input_path, std::ios::binary);
  if (!input) return absl::InvalidArgumentError(absl::StrCat(input_path, ": cannot be opened"));
  std::string line, out;
  for (int64_t number = 1; std::getline(input, line); ++number) {
    absl::StatusOr<std::vector<int64_t>> ids = tokenizer->Encode(line, add_special_tokens);
    if (!ids.ok()) {
      std::fflush(stdout);
      return absl::InvalidArgumentError(
          absl::StrCat(input_path, ":", number, ": ", ids.status().message()));
    }
    out.clear();
    out.push_back('[');
    for (size_t i = 0; i < ids->size(); ++i) {
      if (i > 0) out.push_back(',');
      absl::StrAppend(&out, (*ids)[i]);
    }
    out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  if (input.bad()) return absl::InvalidArgumentError(absl::StrCat(input_path, ": read failed"));
  if (std::fflush(stdout) != 0) return absl::InternalError("cannot write to stdout");
  return absl::OkStatus();
}

}  // namespace

int RunTokenize(const std::vector<std::string>& args) {
  return RunCommand("tokenize", args,
                    {{"--tokenizer", true}, {"--input", true}, {"--add-special-tokens", false}},
                    Tokenize);
}

}  // namespace loratrf::worker

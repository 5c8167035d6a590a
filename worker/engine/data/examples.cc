#include "worker/engine/data/examples.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/atomic_file.h"
#include "common/json_parse.h"
#include "common/read_file.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "nlohmann/json.hpp"

namespace loratrf::engine {
namespace {

using json = nlohmann::json;

// Data lines nest two levels ({"input_ids": [...]}); anything much deeper is not our format,
// and refusing it before parsing keeps nlohmann's recursive parser off a deep stack.
constexpr int kMaxJsonDepth = 8;
// How many bad lines one status lists; the rest are counted. Enough to show a pattern (every
// line lacks "label") without a megabyte of message.
constexpr int kMaxReportedErrors = 5;
constexpr uint64_t kMaxLabelMapBytes = 16 << 20;
constexpr size_t kReadChunk = size_t{1} << 20;

// A value from a data line, as an error quotes it.
std::string Show(const json& value) {
  return Excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace), 40);
}

const char* TypeName(const json& value) {
  if (value.is_null()) return "null";
  if (value.is_boolean()) return "a boolean";
  if (value.is_number()) return "a number";
  if (value.is_string()) return "a string";
  if (value.is_array()) return "an array";
  return "an object";
}

absl::Status FieldError(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rule));
}

// A required string field: present, a string, not empty.
absl::StatusOr<std::string> RequiredText(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return FieldError(key, "missing");
  if (!it->is_string()) return FieldError(key, absl::StrCat("must be a string, got ", TypeName(*it)));
  std::string text = it->get<std::string>();
  if (text.empty()) return FieldError(key, "empty");
  return text;
}

// An id list: a non-empty array of integers in [0, vocab_size).
absl::StatusOr<std::vector<int64_t>> Ids(const json& object, const char* key, int64_t vocab_size) {
  auto it = object.find(key);
  if (it == object.end()) return FieldError(key, "missing");
  if (!it->is_array()) {
    return FieldError(key, absl::StrCat("must be an array of token ids, got ", TypeName(*it)));
  }
  if (it->empty()) return FieldError(key, "empty");
  std::vector<int64_t> ids;
  ids.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& v = (*it)[i];
    std::string field = absl::StrCat(key, "[", i, "]");
    if (!v.is_number_integer()) {
      return FieldError(field, absl::StrCat("must be an integer token id, got ", Show(v)));
    }
    bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() < static_cast<uint64_t>(vocab_size)
                                           : v.get<int64_t>() >= 0 && v.get<int64_t>() < vocab_size;
    if (!in_range) {
      return FieldError(field, absl::StrCat(Show(v), " is out of the vocabulary [0, ", vocab_size, ")"));
    }
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

// Causal labels given beside input_ids: one per token, each -100 or a token id.
absl::StatusOr<std::vector<int64_t>> GivenLabels(const json& labels, size_t length,
                                                 int64_t vocab_size) {
  if (!labels.is_array()) {
    return FieldError("labels", absl::StrCat("must be an array of token ids or -100, got ",
                                             TypeName(labels)));
  }
  if (labels.size() != length) {
    return FieldError("labels", absl::StrCat("has ", labels.size(), " entries but input_ids has ",
                                             length, " (one label per token)"));
  }
  std::vector<int64_t> out;
  out.reserve(length);
  for (size_t i = 0; i < labels.size(); ++i) {
    const json& v = labels[i];
    std::string field = absl::StrCat("labels[", i, "]");
    // A huge unsigned value must not wrap around to -100 when read as int64.
    bool ok = v.is_number_integer() &&
              !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX});
    int64_t id = ok ? v.get<int64_t>() : 0;
    if (!ok || !(id == kIgnoreIndex || (id >= 0 && id < vocab_size))) {
      return FieldError(field, absl::StrCat("must be -100 or a token id in [0, ", vocab_size,
                                            "), got ", Show(v)));
    }
    out.push_back(id);
  }
  return out;
}

// A label as written on the line; string labels get their ids once the whole file is read.
using RawLabel = std::variant<int64_t, std::string>;

// What one line needs to know about the whole read.
struct LineContext {
  const DataOptions& options;
  bool needs_tokenizer = false;  // set with the error when a text line meets no tokenizer
};

absl::StatusOr<std::vector<int64_t>> Tokenize(LineContext& context, absl::string_view field,
                                              absl::string_view text, bool add_special_tokens,
                                              absl::string_view pair = {}) {
  const Tokenizer* tokenizer = context.options.tokenizer;
  if (tokenizer == nullptr) {
    context.needs_tokenizer = true;
    return FieldError(field, "text needs a tokenizer, and the model directory has no "
                             "tokenizer.json (add one, or give input_ids instead of text)");
  }
  absl::StatusOr<std::vector<int64_t>> ids =
      pair.empty() ? tokenizer->Encode(text, add_special_tokens) : tokenizer->EncodePair(text, pair);
  if (!ids.ok()) {
    return absl::Status(ids.status().code(),
                        absl::StrCat(field, ": cannot be tokenized: ", ids.status().message()));
  }
  // A tokenizer whose added tokens go past the model's embedding would index out of bounds.
  for (int64_t id : *ids) {
    if (id < 0 || id >= context.options.vocab_size) {
      return FieldError(field, absl::StrCat("the tokenizer gave id ", id,
                                            ", outside the model's vocabulary [0, ",
                                            context.options.vocab_size, ")"));
    }
  }
  return ids;
}

absl::StatusOr<RawLabel> ParseLabel(const json& object) {
  auto it = object.find("label");
  if (it == object.end()) return FieldError("label", "missing");
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t{INT64_MAX}) {
      return FieldError("label", absl::StrCat(Show(*it), " is out of range"));
    }
    return RawLabel(it->get<int64_t>());
  }
  if (it->is_string()) {
    std::string name = it->get<std::string>();
    if (name.empty()) return FieldError("label", "empty");
    return RawLabel(std::move(name));
  }
  return FieldError("label", absl::StrCat("must be an integer or a string, got ", Show(*it)));
}

absl::Status ParseClassification(LineContext& context, const json& object, Example& example,
                                 RawLabel& label) {
  const DataOptions& options = context.options;
  if (object.contains("input_ids")) {
    ASSIGN_OR_RETURN(example.input_ids, Ids(object, "input_ids", options.vocab_size));
  } else {
    ASSIGN_OR_RETURN(std::string text, RequiredText(object, "text"));
    if (object.contains("text_pair") && !object["text_pair"].is_null()) {
      ASSIGN_OR_RETURN(std::string pair, RequiredText(object, "text_pair"));
      ASSIGN_OR_RETURN(example.input_ids, Tokenize(context, "text", text, true, pair));
    } else {
      ASSIGN_OR_RETURN(example.input_ids, Tokenize(context, "text", text, true));
    }
    if (example.input_ids.empty()) return FieldError("text", "encodes to no tokens");
  }
  ASSIGN_OR_RETURN(label, ParseLabel(object));
  return absl::OkStatus();
}

// Fills example.input_ids/labels; `target_field` names the field whose tokens are the targets
// (for the "nothing left to learn" error).
absl::Status ParseCausal(LineContext& context, const json& object, Example& example,
                         std::string& target_field, int64_t& prompt_length) {
  const DataOptions& options = context.options;
  prompt_length = 0;
  if (object.contains("input_ids")) {
    ASSIGN_OR_RETURN(example.input_ids, Ids(object, "input_ids", options.vocab_size));
    auto labels = object.find("labels");
    if (labels != object.end() && !labels->is_null()) {
      ASSIGN_OR_RETURN(example.labels,
                       GivenLabels(*labels, example.input_ids.size(), options.vocab_size));
      target_field = "labels";
    } else {
      example.labels = example.input_ids;  // plain language modelling: every token is a target
      target_field = "input_ids";
    }
    return absl::OkStatus();
  }
  std::vector<int64_t> prompt, completion;
  if (object.contains("prompt_ids")) {
    ASSIGN_OR_RETURN(prompt, Ids(object, "prompt_ids", options.vocab_size));
    ASSIGN_OR_RETURN(completion, Ids(object, "completion_ids", options.vocab_size));
    target_field = "completion_ids";
  } else {
    std::string prompt_text, completion_text;
    if (object.contains("instruction")) {
      ASSIGN_OR_RETURN(std::string instruction, RequiredText(object, "instruction"));
      std::string input;
      auto it = object.find("input");
      if (it != object.end() && !it->is_null()) {
        if (!it->is_string()) {
          return FieldError("input", absl::StrCat("must be a string, got ", TypeName(*it)));
        }
        input = it->get<std::string>();
      }
      prompt_text = absl::StrReplaceAll(input.empty() ? kAlpacaPromptNoInput : kAlpacaPromptWithInput,
                                        {{"{instruction}", instruction}, {"{input}", input}});
      ASSIGN_OR_RETURN(completion_text, RequiredText(object, "output"));
      target_field = "output";
    } else if (object.contains("prompt")) {
      ASSIGN_OR_RETURN(prompt_text, RequiredText(object, "prompt"));
      ASSIGN_OR_RETURN(completion_text, RequiredText(object, "completion"));
      target_field = "completion";
    } else {
      return absl::InvalidArgumentError(
          "no known fields: a causal_lm line needs \"prompt\" and \"completion\", \"instruction\" "
          "and \"output\", \"input_ids\", or \"prompt_ids\" and \"completion_ids\"");
    }
    ASSIGN_OR_RETURN(prompt, Tokenize(context, target_field == "output" ? "instruction" : "prompt",
                                      prompt_text, true));
    ASSIGN_OR_RETURN(completion, Tokenize(context, target_field, completion_text, false));
    if (completion.empty()) return FieldError(target_field, "encodes to no tokens");
    if (std::optional<int64_t> eos = options.tokenizer->eos_id(); eos.has_value()) {
      completion.push_back(*eos);
    }
  }
  prompt_length = static_cast<int64_t>(prompt.size());
  example.input_ids = prompt;
  example.input_ids.insert(example.input_ids.end(), completion.begin(), completion.end());
  example.labels.assign(prompt.size(), kIgnoreIndex);
  example.labels.insert(example.labels.end(), completion.begin(), completion.end());
  return absl::OkStatus();
}

// One data line as a JSON object; the error says what is wrong and where on the line.
absl::StatusOr<json> ParseObject(absl::string_view text) {
  // Duplicate keys are allowed, the last one wins, as in Python's json (which wrote most data).
  JsonProblem problem;
  absl::StatusOr<json> parsed =
      ParseJson(text, JsonLimits{kMaxJsonDepth, /*allow_duplicate_keys=*/true}, &problem);
  if (problem.kind == JsonProblem::Kind::kTooDeep) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a data line: JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  json object;
  if (parsed.ok()) {
    object = *std::move(parsed);
  } else {
    // The message is "parse error at line 1, column 5: ..."; the column is what a user needs.
    std::string what(parsed.status().message());
    size_t at = what.find("column");
    std::string reason = at == std::string::npos ? what : what.substr(at);
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON (", reason, ")"));
  }
  if (!object.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("not a JSON object (got ", TypeName(object), ")"));
  }
  return object;
}

// The first label's kind (integer or string) fixes the file's kind.
class LabelKindRule {
 public:
  absl::Status Check(const RawLabel& label, int64_t line_number) {
    const bool is_string = std::holds_alternative<std::string>(label);
    if (!strings_.has_value()) {
      strings_ = is_string;
      first_line_ = line_number;
    }
    if (is_string == *strings_) return absl::OkStatus();
    return FieldError("label", absl::StrCat("is ", is_string ? "a string" : "an integer",
                                            " but line ", first_line_, " has ",
                                            is_string ? "an integer" : "a string",
                                            " label (use one kind throughout)"));
  }
  bool strings() const { return strings_.value_or(false); }

 private:
  std::optional<bool> strings_;
  int64_t first_line_ = 0;
};

// Calls `handle(line_number, text, overlong)` for each line of the data file `path` (at most
// `max_file_bytes`), until it returns false. Lines are assembled from fixed-size reads so that
// one huge line cannot allocate more than kMaxLineBytes: the excess is skipped, not buffered,
// and the line is handed over as overlong. A UTF-8 BOM at the start is dropped.
absl::Status ForEachLine(const std::string& path, uint64_t max_file_bytes,
                         const std::function<bool(int64_t, absl::string_view, bool)>& handle) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such data file"));
  }
  if (!S_ISREG(info.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  if (static_cast<uint64_t>(info.st_size) > max_file_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", info.st_size, " bytes, more than the limit of ",
                                                   max_file_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open"));
  auto deliver = [&](int64_t line_number, absl::string_view text, bool overlong) {
    if (line_number == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    return handle(line_number, text, overlong);
  };
  std::vector<char> buffer(kReadChunk);
  std::string line;
  bool overlong = false;
  int64_t line_number = 0;
  uint64_t total_bytes = 0;
  bool stopped = false;
  while (!stopped) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const size_t n = static_cast<size_t>(in.gcount());
    if (n == 0) break;
    total_bytes += n;
    if (total_bytes > max_file_bytes) {  // the file grew since stat()
      return absl::InvalidArgumentError(absl::StrCat(path, ": more than the limit of ",
                                                     max_file_bytes, " bytes"));
    }
    size_t start = 0;
    while (start <= n && !stopped) {
      const char* newline = static_cast<const char*>(std::memchr(buffer.data() + start, '\n', n - start));
      const size_t end = newline != nullptr ? static_cast<size_t>(newline - buffer.data()) : n;
      if (!overlong) {
        if (line.size() + (end - start) > kMaxLineBytes) {
          overlong = true;
          std::string().swap(line);
        } else {
          line.append(buffer.data() + start, end - start);
        }
      }
      if (newline == nullptr) break;
      stopped = !deliver(++line_number, line, overlong);
      line.clear();
      overlong = false;
      start = end + 1;
    }
  }
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path, ": read error"));
  if (!stopped && (!line.empty() || overlong)) deliver(++line_number, line, overlong);
  return absl::OkStatus();
}

// Collects up to kMaxReportedErrors "path:line: message" errors and counts the rest.
class LineErrors {
 public:
  explicit LineErrors(const std::string& path) : path_(path) {}
  void Report(int64_t line, absl::string_view message) {
    if (++count_ <= kMaxReportedErrors) errors_.push_back(absl::StrCat(path_, ":", line, ": ", message));
  }
  bool empty() const { return count_ == 0; }
  absl::Status ToStatus() const {
    std::string message = absl::StrJoin(errors_, "; ");
    if (count_ > kMaxReportedErrors) {
      absl::StrAppend(&message, "; and ", count_ - kMaxReportedErrors, " more bad lines");
    }
    return absl::InvalidArgumentError(message);
  }

 private:
  const std::string& path_;
  std::vector<std::string> errors_;
  int64_t count_ = 0;
};

// Parses one non-blank line into `example` (+ `label` for classification); the error names the
// field, the caller adds file:line.
absl::Status ParseLine(LineContext& context, absl::string_view text, Example& example,
                       RawLabel& label, bool& truncated) {
  ASSIGN_OR_RETURN(json object, ParseObject(text));
  const DataOptions& options = context.options;
  const size_t max_len = static_cast<size_t>(options.max_seq_len);
  truncated = false;
  if (options.task == DataTask::kClassification) {
    RETURN_IF_ERROR(ParseClassification(context, object, example, label));
    if (example.input_ids.size() > max_len) {
      example.input_ids.resize(max_len);  // cut the end (final special tokens may go with it)
      truncated = true;
    }
    return absl::OkStatus();
  }
  std::string target_field;
  int64_t prompt_length = 0;
  RETURN_IF_ERROR(ParseCausal(context, object, example, target_field, prompt_length));
  if (CountLossTokens(example.labels) == 0) {
    // Nothing to learn even before truncation: the shifted loss never uses labels[0].
    return FieldError(target_field,
                      example.input_ids.size() < 2
                          ? "a single token has nothing to predict (needs at least 2 tokens)"
                          : "no label after the first token is other than -100 (nothing to learn)");
  }
  if (example.input_ids.size() > max_len) {
    example.input_ids.resize(max_len);  // keep the prompt's start, cut the end
    example.labels.resize(max_len);
    truncated = true;
    if (CountLossTokens(example.labels) == 0) {
      std::string detail =
          prompt_length > 0 ? absl::StrCat(" (the prompt alone has ", prompt_length, " tokens)") : "";
      return FieldError(target_field,
                        absl::StrCat("nothing left to learn after truncation to max_seq_len ",
                                     options.max_seq_len, detail,
                                     "; raise max_seq_len or shorten this example"));
    }
  }
  return absl::OkStatus();
}

bool IsBlank(absl::string_view line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

absl::Status ValidateOptions(const DataOptions& options) {
  if (options.max_seq_len <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_seq_len must be positive, got ", options.max_seq_len));
  }
  if (options.vocab_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size must be positive, got ", options.vocab_size));
  }
  if (options.num_labels < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_labels must be >= 0, got ", options.num_labels));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t CountLossTokens(const std::vector<int64_t>& labels) {
  int64_t count = 0;
  for (size_t t = 1; t < labels.size(); ++t) count += labels[t] != kIgnoreIndex;
  return count;
}

// ---- LabelMap ----

absl::StatusOr<LabelMap> LabelMap::Create(std::vector<std::string> names) {
  std::set<absl::string_view> seen;
  for (const std::string& name : names) {
    if (name.empty()) return absl::InvalidArgumentError("labels: a label name is empty");
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("labels: \"", Excerpt(name), "\" appears twice"));
    }
  }
  return LabelMap(std::move(names));
}

std::string LabelMap::ToJson() const {
  return json{{"labels", names_}}.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

absl::StatusOr<LabelMap> LabelMap::FromJson(absl::string_view text) {
  JsonProblem problem;
  absl::StatusOr<json> parsed = ParseJson(text, JsonLimits{kMaxJsonDepth, false}, &problem);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        problem.kind == JsonProblem::Kind::kSyntax
            ? std::string("label map: not valid JSON")
            : absl::StrCat("label map: ", parsed.status().message()));
  }
  json object = *std::move(parsed);
  if (!object.is_object()) return absl::InvalidArgumentError("label map: not a JSON object");
  auto it = object.find("labels");
  if (it == object.end()) return absl::InvalidArgumentError("labels: missing");
  if (!it->is_array()) return absl::InvalidArgumentError("labels: must be an array of strings");
  std::vector<std::string> names;
  for (size_t i = 0; i < it->size(); ++i) {
    if (!(*it)[i].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("labels[", i, "]: must be a string, got ", Show((*it)[i])));
    }
    names.push_back((*it)[i].get<std::string>());
  }
  return Create(std::move(names));
}

absl::Status LabelMap::Save(const std::string& path) const {
  return WriteFileAtomically(path, ToJson());
}

absl::StatusOr<LabelMap> LabelMap::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileWithLimit(path, kMaxLabelMapBytes));
  absl::StatusOr<LabelMap> map = FromJson(text);
  if (!map.ok()) {
    return absl::Status(map.status().code(), absl::StrCat(path, ": ", map.status().message()));
  }
  return map;
}

std::optional<int64_t> LabelMap::Find(absl::string_view name) const {
  // Linear: label maps are small, and this keeps the class a plain vector of names.
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return static_cast<int64_t>(i);
  }
  return std::nullopt;
}

// ---- ReadDataset ----

absl::StatusOr<Dataset> ReadDataset(const std::string& path, const DataOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  const bool classification = options.task == DataTask::kClassification;
  Dataset dataset;
  LineContext context{options};
  LineErrors errors(path);
  // String labels, by example index, resolved to ids after the whole file is read (the ids are
  // the sorted order of all names).
  std::vector<std::pair<size_t, std::string>> string_labels;
  LabelKindRule label_kind;
  const int64_t int_label_bound =
      options.num_labels > 0 ? options.num_labels
                             : (options.label_map != nullptr ? options.label_map->size() : 0);

  auto report = [&](int64_t line, absl::string_view message) { errors.Report(line, message); };

  // Returns false when the read must stop (a text line and no tokenizer: every later text line
  // would say the same).
  auto handle_line = [&](int64_t line_number, absl::string_view text, bool overlong) -> bool {
    if (overlong) {
      report(line_number, absl::StrCat("line longer than ", kMaxLineBytes, " bytes"));
      return true;
    }
    if (IsBlank(text)) return true;
    Example example;
    example.line = line_number;
    RawLabel label;
    bool truncated = false;
    absl::Status status = ParseLine(context, text, example, label, truncated);
    // Label checks need the line's context (the first label's kind, the bounds).
    if (status.ok() && classification) status = label_kind.Check(label, line_number);
    if (status.ok() && classification) {
      if (!std::holds_alternative<std::string>(label)) {
        int64_t id = std::get<int64_t>(label);
        if (int_label_bound == 0) {
          status = FieldError("label", "integer labels need num_labels (the model's number of classes)");
        } else if (id < 0 || id >= int_label_bound) {
          status = FieldError("label", absl::StrCat(id, " is out of range [0, ", int_label_bound, ")"));
        } else {
          example.label = id;
        }
      } else if (options.label_map != nullptr) {
        const std::string& name = std::get<std::string>(label);
        std::optional<int64_t> id = options.label_map->Find(name);
        if (!id.has_value()) {
          std::string known = Excerpt(absl::StrJoin(options.label_map->names(), ", "), 200);
          status = FieldError("label", absl::StrCat("\"", Excerpt(name), "\" is not one of the training labels [",
                                                    known, "]"));
        } else {
          example.label = *id;
        }
      } else {
        string_labels.emplace_back(dataset.examples.size(), std::get<std::string>(label));
      }
    }
    if (!status.ok()) {
      report(line_number, status.message());
      return !context.needs_tokenizer;
    }
    dataset.num_truncated += truncated;
    dataset.num_tokens += static_cast<int64_t>(example.input_ids.size());
    dataset.examples.push_back(std::move(example));
    return true;
  };

  RETURN_IF_ERROR(ForEachLine(path, options.max_file_bytes, handle_line));

  // String labels of training data: ids are the sorted names, whatever order the lines had.
  if (errors.empty() && !string_labels.empty()) {
    std::set<std::string> names;
    for (const auto& [index, name] : string_labels) names.insert(name);
    std::vector<std::string> sorted(names.begin(), names.end());
    ASSIGN_OR_RETURN(dataset.label_map, LabelMap::Create(std::move(sorted)));
    for (const auto& [index, name] : string_labels) {
      Example& example = dataset.examples[index];
      example.label = *dataset.label_map.Find(name);
      if (options.num_labels > 0 && example.label >= options.num_labels) {
        report(example.line, absl::StrCat("label: \"", Excerpt(name), "\" makes ", dataset.label_map.size(),
                                          " distinct labels, more than num_labels ", options.num_labels));
      }
    }
  } else if (options.label_map != nullptr && label_kind.strings()) {
    dataset.label_map = *options.label_map;
  }

  if (!errors.empty()) return errors.ToStatus();
  if (dataset.examples.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no examples (the file is empty or blank)"));
  }
  return dataset;
}

absl::StatusOr<int64_t> CountClasses(const std::string& path, uint64_t max_file_bytes) {
  LineErrors errors(path);
  LabelKindRule label_kind;
  int64_t max_id = -1;
  std::set<std::string> names;
  auto handle_line = [&](int64_t line_number, absl::string_view text, bool overlong) {
    if (overlong) {
      errors.Report(line_number, absl::StrCat("line longer than ", kMaxLineBytes, " bytes"));
      return true;
    }
    if (IsBlank(text)) return true;
    absl::StatusOr<json> object = ParseObject(text);
    absl::StatusOr<RawLabel> label = object.ok() ? ParseLabel(*object) : object.status();
    absl::Status status = label.ok() ? label_kind.Check(*label, line_number) : label.status();
    if (status.ok() && !label_kind.strings()) {
      const int64_t id = std::get<int64_t>(*label);
      if (id < 0 || id >= kMaxClasses) {
        status = FieldError("label", absl::StrCat(id, " is out of range [0, ", kMaxClasses, ")"));
      } else {
        max_id = std::max(max_id, id);
      }
    } else if (status.ok() && names.size() < static_cast<size_t>(kMaxClasses)) {
      names.insert(std::get<std::string>(*label));
    }
    if (!status.ok()) errors.Report(line_number, status.message());
    return true;
  };
  RETURN_IF_ERROR(ForEachLine(path, max_file_bytes, handle_line));
  if (!errors.empty()) return errors.ToStatus();
  const int64_t count = label_kind.strings() ? static_cast<int64_t>(names.size()) : max_id + 1;
  if (count < 2) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": fewer than 2 classes"));
  }
  return count;
}

}  // namespace loratrf::engine

#include "worker/engine/tokenizer/post_processors.h"

#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "common/status_macros.h"

namespace loratrf::engine::tokenizer {
namespace {

// One element of a template: special token ids, or the text A or B.
struct TemplatePiece {
  enum Kind { kSpecial, kSequenceA, kSequenceB } kind;
  std::vector<int32_t> ids;  // kSpecial only
};
using Template = std::vector<TemplatePiece>;

std::vector<int32_t> Fill(const Template& pieces, const std::vector<int32_t>& a,
                          const std::vector<int32_t>* b) {
  std::vector<int32_t> out;
  out.reserve(a.size() + (b != nullptr ? b->size() : 0) + 8);
  for (const TemplatePiece& piece : pieces) {
    switch (piece.kind) {
      case TemplatePiece::kSpecial: out.insert(out.end(), piece.ids.begin(), piece.ids.end()); break;
      case TemplatePiece::kSequenceA: out.insert(out.end(), a.begin(), a.end()); break;
      case TemplatePiece::kSequenceB:
        if (b != nullptr) out.insert(out.end(), b->begin(), b->end());
        break;
    }
  }
  return out;
}

class TemplateProcessor : public PostProcessor {
 public:
  TemplateProcessor(Template single, Template pair)
      : single_(std::move(single)), pair_(std::move(pair)) {}
  std::vector<int32_t> Process(const std::vector<int32_t>& a,
                               const std::vector<int32_t>* b) const override {
    return b == nullptr ? Fill(single_, a, nullptr) : Fill(pair_, a, b);
  }
  std::vector<int32_t> SpecialIds() const override {
    std::vector<int32_t> ids;
    for (const Template* pieces : {&single_, &pair_}) {
      for (const TemplatePiece& piece : *pieces) ids.insert(ids.end(), piece.ids.begin(), piece.ids.end());
    }
    return ids;
  }

 private:
  Template single_, pair_;
};

absl::StatusOr<int32_t> TokenTupleId(const Json& json, absl::string_view path, const char* key) {
  ASSIGN_OR_RETURN(const Json* tuple, Member(json, path, key));
  if (!tuple->is_array() || tuple->size() != 2 || !(*tuple)[0].is_string() ||
      !(*tuple)[1].is_number_integer() || (*tuple)[1].get<int64_t>() < 0 ||
      (*tuple)[1].get<int64_t>() > INT32_MAX) {
    return FieldError(absl::StrCat(path, ".", key), "must be [\"token\", id]");
  }
  return static_cast<int32_t>((*tuple)[1].get<int64_t>());
}

absl::StatusOr<Template> ParseTemplate(
    const Json& json, absl::string_view path, const char* key,
    const absl::flat_hash_map<std::string, std::vector<int32_t>>& special_tokens) {
  ASSIGN_OR_RETURN(const Json* list, Member(json, path, key));
  std::string list_path = absl::StrCat(path, ".", key);
  if (!list->is_array()) return FieldError(list_path, "must be a list");
  Template pieces;
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& item = (*list)[i];
    std::string item_path = absl::StrCat(list_path, "[", i, "]");
    if (item.is_object() && item.contains("SpecialToken")) {
      ASSIGN_OR_RETURN(std::string id, StringField(item["SpecialToken"], item_path, "id"));
      auto it = special_tokens.find(id);
      if (it == special_tokens.end()) {
        return FieldError(item_path, absl::StrCat("special token \"", id,
                                                  "\" is not in special_tokens"));
      }
      pieces.push_back({TemplatePiece::kSpecial, it->second});
    } else if (item.is_object() && item.contains("Sequence")) {
      ASSIGN_OR_RETURN(std::string id, StringField(item["Sequence"], item_path, "id"));
      if (id != "A" && id != "B") return FieldError(item_path, "sequence id must be A or B");
      pieces.push_back({id == "A" ? TemplatePiece::kSequenceA : TemplatePiece::kSequenceB, {}});
    } else {
      return FieldError(item_path, "must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
  }
  return pieces;
}

absl::StatusOr<std::unique_ptr<PostProcessor>> ParseTemplateProcessing(const Json& json,
                                                                       absl::string_view path) {
  absl::flat_hash_map<std::string, std::vector<int32_t>> special_tokens;
  if (auto it = json.find("special_tokens"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) return FieldError(absl::StrCat(path, ".special_tokens"), "must be an object");
    for (auto token = it->begin(); token != it->end(); ++token) {
      std::string token_path = absl::StrCat(path, ".special_tokens.", Excerpt(token.key()));
      ASSIGN_OR_RETURN(const Json* ids, Member(*token, token_path, "ids"));
      std::vector<int32_t> values;
      if (!ids->is_array()) return FieldError(absl::StrCat(token_path, ".ids"), "must be a list");
      for (const Json& id : *ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
          return FieldError(absl::StrCat(token_path, ".ids"), "must hold non-negative ids");
        }
        values.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
      special_tokens[token.key()] = std::move(values);
    }
  }
  ASSIGN_OR_RETURN(Template single, ParseTemplate(json, path, "single", special_tokens));
  ASSIGN_OR_RETURN(Template pair, ParseTemplate(json, path, "pair", special_tokens));
  return std::make_unique<TemplateProcessor>(std::move(single), std::move(pair));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& json,
                                                                  absl::string_view path) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, path));
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>();  // offsets only
  if (type == "TemplateProcessing") return ParseTemplateProcessing(json, path);
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    ASSIGN_OR_RETURN(int32_t cls, TokenTupleId(json, path, "cls"));
    ASSIGN_OR_RETURN(int32_t sep, TokenTupleId(json, path, "sep"));
    // BERT: [CLS] A [SEP] B [SEP]; RoBERTa: <s> A </s> </s> B </s>.
    Template single = {{TemplatePiece::kSpecial, {cls}},
                       {TemplatePiece::kSequenceA, {}},
                       {TemplatePiece::kSpecial, {sep}}};
    Template pair = single;
    if (type == "RobertaProcessing") pair.push_back({TemplatePiece::kSpecial, {sep}});
    pair.push_back({TemplatePiece::kSequenceB, {}});
    pair.push_back({TemplatePiece::kSpecial, {sep}});
    return std::make_unique<TemplateProcessor>(std::move(single), std::move(pair));
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, Member(json, path, "processors"));
    if (!list->is_array()) return FieldError(absl::StrCat(path, ".processors"), "must be a list");
    // Only one step may change ids (the others, ByteLevel, adjust offsets): a sequence of two
    // templates has no meaning we could check against Hugging Face.
    std::unique_ptr<PostProcessor> result;
    for (size_t i = 0; i < list->size(); ++i) {
      std::string step_path = absl::StrCat(path, ".processors[", i, "]");
      ASSIGN_OR_RETURN(auto step, ParsePostProcessor((*list)[i], step_path));
      if (step == nullptr) continue;
      if (result != nullptr) {
        return FieldError(step_path, "a second id-changing post-processor is not supported");
      }
      result = std::move(step);
    }
    return result;
  }
  return Unsupported(path, "post-processor", type,
                     "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence");
}

}  // namespace loratrf::engine::tokenizer

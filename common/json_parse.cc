#include "common/json_parse.h"

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/text.h"

namespace loratrf {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxKeyInMessage = 64;
constexpr size_t kMaxMessage = 300;

// A SAX handler that builds the DOM the way nlohmann's own json_sax_dom_parser does (a stack of
// open containers, a slot for the value after an object key), plus the limits. Pointers on the
// stack stay valid: a container only grows by its innermost child, which is closed before its
// parent grows again.
class LimitedDomBuilder {
 public:
  LimitedDomBuilder(json& root, const JsonLimits& limits, JsonProblem& problem)
      : root_(root), limits_(limits), problem_(problem) {}

  bool null() { return Scalar(nullptr); }
  bool boolean(bool value) { return Scalar(value); }
  bool number_integer(json::number_integer_t value) { return Scalar(value); }
  bool number_unsigned(json::number_unsigned_t value) { return Scalar(value); }
  bool number_float(json::number_float_t value, const std::string&) { return Scalar(value); }
  bool string(json::string_t& value) { return Scalar(std::move(value)); }
  bool binary(json::binary_t& value) { return Scalar(std::move(value)); }

  bool start_object(std::size_t) { return Open(json::value_t::object); }
  bool start_array(std::size_t) { return Open(json::value_t::array); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }

  bool key(json::string_t& key) {
    json& object = *open_.back();
    if (!limits_.allow_duplicate_keys && object.find(key) != object.end()) {
      problem_.kind = JsonProblem::Kind::kDuplicateKey;
      problem_.path = Path();
      problem_.key = key;
      return false;
    }
    slot_ = &object[key];
    keys_.back() = std::move(key);
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    problem_.kind = JsonProblem::Kind::kSyntax;
    syntax_message_ = WithoutJsonExceptionTag(e.what());
    problem_.path = Path();
    return false;
  }

  const std::string& syntax_message() const { return syntax_message_; }

 private:
  // Places a finished scalar or a new empty container; returns where it went.
  template <typename V>
  json* Place(V&& value) {
    if (open_.empty()) {
      root_ = json(std::forward<V>(value));
      return &root_;
    }
    json& top = *open_.back();
    if (top.is_array()) {
      top.emplace_back(std::forward<V>(value));
      return &top.back();
    }
    *slot_ = json(std::forward<V>(value));
    return slot_;
  }

  template <typename V>
  bool Scalar(V&& value) {
    Place(std::forward<V>(value));
    return true;
  }

  bool Open(json::value_t type) {
    if (open_.size() >= static_cast<size_t>(limits_.max_depth)) {
      problem_.kind = JsonProblem::Kind::kTooDeep;
      problem_.path = Path();
      return false;
    }
    open_.push_back(Place(type));
    keys_.emplace_back();
    return true;
  }

  bool Close() {
    open_.pop_back();
    keys_.pop_back();
    return true;
  }

  // Where the parser is now: the key of each open object's current value, or the position in
  // each open array.
  std::vector<std::string> Path() const {
    std::vector<std::string> path;
    for (size_t i = 0; i + 1 < open_.size(); ++i) {
      if (open_[i]->is_array()) {
        path.push_back(absl::StrCat("[", open_[i]->size() - 1, "]"));
      } else {
        path.push_back(keys_[i]);
      }
    }
    return path;
  }

  json& root_;
  const JsonLimits& limits_;
  JsonProblem& problem_;
  std::vector<json*> open_;
  std::vector<std::string> keys_;  // per open container: an object's current key
  json* slot_ = nullptr;           // where the value after the last key goes
  std::string syntax_message_;
};

}  // namespace

std::string JsonPathString(const std::vector<std::string>& path) {
  std::string out;
  for (const std::string& part : path) {
    if (!out.empty() && !(part.size() > 1 && part.front() == '[' && part.back() == ']')) {
      out += '.';
    }
    out += SanitizeText(part, kMaxKeyInMessage);
  }
  return out;
}

absl::StatusOr<json> ParseJson(absl::string_view text, const JsonLimits& limits,
                               JsonProblem* problem) {
  JsonProblem local;
  JsonProblem& found = problem != nullptr ? *problem : local;
  found = JsonProblem();
  json root;
  LimitedDomBuilder builder(root, limits, found);
  bool ok = json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json,
                            /*strict=*/true, /*ignore_comments=*/false);
  if (ok && found.kind == JsonProblem::Kind::kNone) return root;
  std::string where;
  if (!found.path.empty()) where = absl::StrCat(" (at ", JsonPathString(found.path), ")");
  std::string message;
  switch (found.kind) {
    case JsonProblem::Kind::kTooDeep:
      message = absl::StrCat("nested deeper than ", limits.max_depth, " levels", where);
      break;
    case JsonProblem::Kind::kDuplicateKey:
      message = absl::StrCat("duplicate key '", SanitizeText(found.key, kMaxKeyInMessage), "'",
                             where);
      break;
    case JsonProblem::Kind::kSyntax:
    case JsonProblem::Kind::kNone:
      found.kind = JsonProblem::Kind::kSyntax;
      message = builder.syntax_message();
      if (message.empty()) message = "syntax error";
      break;
  }
  return absl::InvalidArgumentError(SanitizeText(message, kMaxMessage));
}

}  // namespace loratrf

// Parsing and printing of job specs. Both directions walk the proto descriptor, so a field
// added to JobSpec in job.proto is readable and printable without touching this file; only the
// adapter's method-dependent fields are special (kUnusedAdapterFields).
#include "proto/spec/job_spec.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <set>
#include <sys/stat.h>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_parse.h"
#include "common/text.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "nlohmann/json.hpp"
#include "proto/contract/limits.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace loratrf::spec {
namespace {

using json = nlohmann::json;
namespace pb = google::protobuf;

// Deeper nesting or more nodes than this is not a job spec; the caps keep hostile input
// (deep brackets, YAML alias bombs) from exhausting the stack or memory.
constexpr int kMaxDepth = 32;
constexpr size_t kMaxNodes = 100000;

absl::Status FieldError(absl::string_view path, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(path.empty() ? "spec" : path, ": ", message));
}

// A value for "got ..." in an error message: short, on one line.
std::string Describe(const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      return "a mapping";
    case json::value_t::array:
      return "a list";
    case json::value_t::null:
      return "null";
    case json::value_t::number_float:
      return FormatNumber(value.get<double>());
    default: {
      std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
      if (text.size() > 64) text = text.substr(0, 61) + "...";
      return text;
    }
  }
}

std::string JoinPath(const std::string& parent, absl::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
}

// Adapter fields that a method does not use: the parser refuses them, the printer leaves them
// out, and the validator requires them to be unset.
std::vector<std::string> UnusedAdapterFields(v1::AdapterMethod method) {
  switch (method) {
    case v1::ADAPTER_METHOD_FULL:
      return {"rank", "alpha", "dropout", "target_modules", "filter"};
    case v1::ADAPTER_METHOD_LORA:
      return {"filter"};
    default:
      return {};
  }
}

std::string MethodName(const v1::AdapterSpec& adapter) {
  return EnumValueName(*v1::AdapterMethod_descriptor()->FindValueByNumber(adapter.method()));
}

// ----- YAML → json -------------------------------------------------------------------------

bool IsAllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Resolves a plain (unquoted) YAML scalar by the YAML 1.2 core schema: null, bool, int, float,
// else string. yaml-cpp leaves every scalar as text, so this is where `3` becomes a number.
json ResolvePlainScalar(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
    return nullptr;
  }
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;

  absl::string_view body = text;
  bool negative = false;
  if (body[0] == '-' || body[0] == '+') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (IsAllDigits(body)) {
    if (negative) {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec == std::errc() && end == text.data() + text.size()) return v;
    } else {
      uint64_t v = 0;
      auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
      if (ec == std::errc() && end == body.data() + body.size()) return v;
    }
    return std::strtod(text.c_str(), nullptr);  // too large for 64 bits: keep it as a float
  }
  std::string lower = absl::AsciiStrToLower(body);
  if (lower == ".inf") {
    return negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
  }
  if (lower == ".nan" && text[0] != '-' && text[0] != '+') {
    return std::numeric_limits<double>::quiet_NaN();
  }
  // [0-9]*(.[0-9]*)?([eE][-+]?[0-9]+)? with at least one digit before the exponent.
  size_t i = 0, digits = 0;
  while (i < body.size() && absl::ascii_isdigit(body[i])) ++i, ++digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && absl::ascii_isdigit(body[i])) ++i, ++digits;
  }
  if (digits > 0 && i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
    size_t exp_start = i;
    while (i < body.size() && absl::ascii_isdigit(body[i])) ++i;
    if (i == exp_start) digits = 0;
  }
  if (digits > 0 && i == body.size()) return std::strtod(text.c_str(), nullptr);
  return text;
}

// Builds json straight from yaml-cpp's parse events. (YAML::Load builds yaml-cpp's own node
// graph first, and YAML::LoadAll loops forever on some malformed input, as fuzzing found.)
// The event API has no way to stop the parser, so a problem throws Abort out of it.
class JsonBuilder : public YAML::EventHandler {
 public:
  struct Abort {
    absl::Status status;
  };

  json TakeRoot() { return std::move(root_); }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Add(mark, nullptr, "", anchor, 1);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) Fail(mark, PathOfNext(), "alias to an unknown anchor");
    Add(mark, it->second.value, "", YAML::NullAnchor, it->second.nodes);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& text) override {
    json value;
    if (tag == "!" || tag == "tag:yaml.org,2002:str") {
      value = text;  // quoted, or explicitly a string
    } else if (tag == "?") {
      value = ResolvePlainScalar(text);
    } else {
      Fail(mark, PathOfNext(), absl::StrCat("unsupported YAML tag '", tag, "'"));
    }
    Add(mark, std::move(value), text, anchor, 1);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, tag, json::array(), anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, tag, json::object(), anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Container {
    json value;
    std::string path;
    YAML::anchor_t anchor;
    size_t nodes = 1;
    std::optional<std::string> key;  // maps: the key whose value comes next
  };
  struct Anchored {
    json value;
    size_t nodes;
  };

  [[noreturn]] static void Fail(const YAML::Mark& mark, const std::string& path,
                                absl::string_view message) {
    throw Abort{FieldError(path, absl::StrCat(message, " (line ", mark.line + 1, ")"))};
  }

  // The path of the value the next event brings.
  std::string PathOfNext() const {
    if (open_.empty()) return "";
    const Container& top = open_.back();
    if (top.value.is_array()) return absl::StrCat(top.path, "[", top.value.size(), "]");
    return top.key ? JoinPath(top.path, *top.key) : top.path;
  }

  void Count(const YAML::Mark& mark, size_t nodes) {
    nodes_ += nodes;
    if (nodes_ > kMaxNodes) Fail(mark, PathOfNext(), "too many YAML nodes (aliases expanding?)");
  }

  void Open(const YAML::Mark& mark, const std::string& tag, json empty, YAML::anchor_t anchor) {
    if (tag != "?" && tag != "!" && tag != "tag:yaml.org,2002:seq" &&
        tag != "tag:yaml.org,2002:map") {
      Fail(mark, PathOfNext(), absl::StrCat("unsupported YAML tag '", tag, "'"));
    }
    if (!open_.empty() && open_.back().value.is_object() && !open_.back().key) {
      Fail(mark, open_.back().path, "a mapping key must be a string");
    }
    if (open_.size() >= kMaxDepth) Fail(mark, PathOfNext(), "nested too deeply");
    Count(mark, 1);
    open_.push_back(Container{std::move(empty), PathOfNext(), anchor, 1, std::nullopt});
    marks_.push_back(mark);
  }

  void Close() {
    Container done = std::move(open_.back());
    YAML::Mark mark = marks_.back();
    open_.pop_back();
    marks_.pop_back();
    if (done.anchor != YAML::NullAnchor) anchors_[done.anchor] = {done.value, done.nodes};
    Insert(mark, std::move(done.value), "", done.nodes);
  }

  void Add(const YAML::Mark& mark, json value, const std::string& text, YAML::anchor_t anchor,
           size_t nodes) {
    Count(mark, nodes);
    if (anchor != YAML::NullAnchor) anchors_[anchor] = {value, nodes};
    Insert(mark, std::move(value), text, nodes);
  }

  // Places a finished value in the open container (or as the root). `text` is the scalar's
  // source text: a mapping key is kept as written (`1: x` has the key "1").
  void Insert(const YAML::Mark& mark, json value, const std::string& text, size_t nodes) {
    if (open_.empty()) {
      root_ = std::move(value);
      return;
    }
    Container& top = open_.back();
    top.nodes += nodes;
    if (top.value.is_array()) {
      top.value.push_back(std::move(value));
    } else if (!top.key) {
      if (value.is_object() || value.is_array()) {
        Fail(mark, top.path, "a mapping key must be a string");
      }
      if (top.value.contains(text)) Fail(mark, JoinPath(top.path, text), "duplicate key");
      top.key = text;
    } else {
      top.value[*top.key] = std::move(value);
      top.key.reset();
    }
  }

  json root_;
  std::vector<Container> open_;
  std::vector<YAML::Mark> marks_;  // where each open container started
  std::map<YAML::anchor_t, Anchored> anchors_;
  size_t nodes_ = 0;
};

// Sees whether the parser has anything after the first document.
class AnyEvent : public YAML::EventHandler {
 public:
  bool content = false;
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { content = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    content = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    content = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    content = true;
  }
  void OnMapEnd() override {}
};

absl::StatusOr<json> ParseYamlText(absl::string_view text) {
  std::istringstream stream{std::string(text)};
  try {
    YAML::Parser parser(stream);
    JsonBuilder builder;
    if (!parser.HandleNextDocument(builder)) {
      return absl::InvalidArgumentError("spec: empty document");
    }
    // Only one more document is looked at: a malformed tail can make yaml-cpp produce empty
    // documents without end.
    AnyEvent next;
    if (parser.HandleNextDocument(next)) {
      return absl::InvalidArgumentError(next.content
                                            ? "spec: expected one YAML document, got more"
                                            : "spec: unexpected text after the YAML document");
    }
    return builder.TakeRoot();
  } catch (const JsonBuilder::Abort& abort) {
    return abort.status;
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(absl::StrCat("YAML syntax error at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("YAML error: ", e.msg));
  }
}

// ----- JSON text → json --------------------------------------------------------------------

absl::StatusOr<json> ParseJsonText(absl::string_view text) {
  // Duplicate keys are refused: JSON allows them and nlohmann keeps the last, a spec must not.
  JsonProblem problem;
  absl::StatusOr<json> value = ParseJson(text, JsonLimits{kMaxDepth, false}, &problem);
  if (value.ok()) return value;
  switch (problem.kind) {
    case JsonProblem::Kind::kTooDeep:
      return absl::InvalidArgumentError("spec: JSON nested too deeply");
    case JsonProblem::Kind::kDuplicateKey: {
      std::string path;
      for (const std::string& part : problem.path) {
        path = !part.empty() && part.front() == '[' ? path + part : JoinPath(path, part);
      }
      return FieldError(JoinPath(path, problem.key), "duplicate key");
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("JSON ", value.status().message()));
  }
}

// ----- json → JobSpec ----------------------------------------------------------------------

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string EnumPrefix(const pb::EnumDescriptor& type) {
  // TASK_UNSPECIFIED → TASK_; every enum in the API starts with its *_UNSPECIFIED value.
  std::string zero = type.value(0)->name();
  return zero.substr(0, zero.size() - absl::string_view("UNSPECIFIED").size());
}

std::string EnumChoices(const pb::EnumDescriptor& type) {
  std::vector<std::string> names;
  for (int i = 1; i < type.value_count(); ++i) names.push_back(EnumValueName(*type.value(i)));
  return absl::StrJoin(names, " | ");
}

class SpecReader {
 public:
  // Dotted paths of the fields the text gave, e.g. "adapter.rank".
  const std::set<std::string>& present() const { return present_; }

  absl::Status ReadMessage(const json& object, pb::Message* message, const std::string& path) {
    if (!object.is_object()) {
      return FieldError(path, absl::StrCat("must be a mapping, got ", Describe(object)));
    }
    const pb::Descriptor& type = *message->GetDescriptor();
    for (const auto& [key, value] : object.items()) {
      std::string field_path = JoinPath(path, key);
      const pb::FieldDescriptor* field = type.FindFieldByName(key);
      if (field == nullptr) return UnknownField(type, key, field_path);
      // proto3's JSON mapping reads null as the field's default, i.e. as if it were absent
      // (YAML's ~, null and an empty value read the same).
      if (value.is_null()) continue;
      present_.insert(field_path);
      RETURN_IF_ERROR(ReadField(value, *field, message, field_path));
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status UnknownField(const pb::Descriptor& type, const std::string& key,
                                   const std::string& path) {
    std::string best;
    size_t best_distance = 3;  // suggest only near misses
    for (int i = 0; i < type.field_count(); ++i) {
      size_t d = EditDistance(key, type.field(i)->name());
      if (d < best_distance) best_distance = d, best = type.field(i)->name();
    }
    return FieldError(path, best.empty() ? "unknown field"
                                         : absl::StrCat("unknown field (did you mean '", best,
                                                        "'?)"));
  }

  absl::Status ReadField(const json& value, const pb::FieldDescriptor& field,
                         pb::Message* message, const std::string& path) {
    const pb::Reflection& reflection = *message->GetReflection();
    if (field.is_map()) {
      // map<string, string> (labels): a mapping of strings.
      const pb::Descriptor& entry_type = *field.message_type();
      const pb::FieldDescriptor* key_field = entry_type.map_key();
      const pb::FieldDescriptor* value_field = entry_type.map_value();
      if (key_field->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING ||
          value_field->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING) {
        return absl::InternalError(absl::StrCat(path, ": map of non-string fields"));
      }
      if (!value.is_object()) {
        return FieldError(path, absl::StrCat("must be a mapping of strings, got ", Describe(value)));
      }
      reflection.ClearField(message, &field);
      for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) {
          return FieldError(JoinPath(path, key),
                            absl::StrCat("must be a string, got ", Describe(item),
                                         " (quote it)"));
        }
        pb::Message* entry = reflection.AddMessage(message, &field);
        entry->GetReflection()->SetString(entry, key_field, key);
        entry->GetReflection()->SetString(entry, value_field, item.get<std::string>());
      }
      return absl::OkStatus();
    }
    if (field.is_repeated()) {
      if (field.cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING) {
        return absl::InternalError(absl::StrCat(path, ": repeated non-string field"));
      }
      if (!value.is_array()) {
        return FieldError(path, absl::StrCat("must be a list of strings, got ", Describe(value)));
      }
      reflection.ClearField(message, &field);
      for (size_t i = 0; i < value.size(); ++i) {
        if (!value[i].is_string()) {
          return FieldError(absl::StrCat(path, "[", i, "]"),
                            absl::StrCat("must be a string, got ", Describe(value[i])));
        }
        reflection.AddString(message, &field, value[i].get<std::string>());
      }
      return absl::OkStatus();
    }
    switch (field.cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        return ReadMessage(value, reflection.MutableMessage(message, &field), path);
      case pb::FieldDescriptor::CPPTYPE_STRING:
        if (!value.is_string()) {
          return FieldError(path, absl::StrCat("must be a string, got ", Describe(value)));
        }
        reflection.SetString(message, &field, value.get<std::string>());
        return absl::OkStatus();
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumDescriptor& type = *field.enum_type();
        const pb::EnumValueDescriptor* found = nullptr;
        if (value.is_string()) {
          const std::string& text = value.get_ref<const std::string&>();
          if (text == absl::AsciiStrToLower(text)) {
            found = type.FindValueByName(EnumPrefix(type) + absl::AsciiStrToUpper(text));
          }
        }
        if (found == nullptr || found->number() == 0) {
          return FieldError(path, absl::StrCat("unknown value ", Describe(value), " (expected ",
                                               EnumChoices(type), ")"));
        }
        reflection.SetEnum(message, &field, found);
        return absl::OkStatus();
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        if (!value.is_boolean()) {
          return FieldError(path, absl::StrCat("must be true or false, got ", Describe(value)));
        }
        reflection.SetBool(message, &field, value.get<bool>());
        return absl::OkStatus();
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        if (!value.is_number()) {
          return FieldError(path, absl::StrCat("must be a number, got ", Describe(value)));
        }
        if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
          reflection.SetFloat(message, &field, value.get<float>());
        } else {
          reflection.SetDouble(message, &field, value.get<double>());
        }
        return absl::OkStatus();
      case pb::FieldDescriptor::CPPTYPE_INT32:
        return ReadInteger(value, path, std::numeric_limits<int32_t>::min(),
                           std::numeric_limits<int32_t>::max(), [&](int64_t v, uint64_t) {
                             reflection.SetInt32(message, &field, static_cast<int32_t>(v));
                           });
      case pb::FieldDescriptor::CPPTYPE_INT64:
        return ReadInteger(value, path, std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::max(),
                           [&](int64_t v, uint64_t) { reflection.SetInt64(message, &field, v); });
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        return ReadInteger(value, path, 0, std::numeric_limits<uint32_t>::max(),
                           [&](int64_t, uint64_t v) {
                             reflection.SetUInt32(message, &field, static_cast<uint32_t>(v));
                           });
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        return ReadInteger(value, path, 0, std::numeric_limits<uint64_t>::max(),
                           [&](int64_t, uint64_t v) { reflection.SetUInt64(message, &field, v); });
    }
    return absl::InternalError(absl::StrCat(path, ": unsupported field type"));
  }

  // Accepts an integer in [lo, hi] (a float only when it is integral, e.g. 3.0) and hands it
  // to `set` both as int64 and as uint64; the caller uses the one that matches its type.
  template <typename Set>
  static absl::Status ReadInteger(const json& value, const std::string& path, int64_t lo,
                                  uint64_t hi, Set set) {
    auto out_of_range = [&] {
      return FieldError(path, absl::StrCat("must be an integer in [", lo, ", ", hi, "], got ",
                                           Describe(value)));
    };
    if (value.is_number_unsigned()) {
      uint64_t v = value.get<uint64_t>();
      if (v > hi) return out_of_range();
      set(static_cast<int64_t>(v), v);
      return absl::OkStatus();
    }
    if (value.is_number_integer()) {
      int64_t v = value.get<int64_t>();
      if (v < lo || (v > 0 && static_cast<uint64_t>(v) > hi)) return out_of_range();
      set(v, static_cast<uint64_t>(v));
      return absl::OkStatus();
    }
    if (value.is_number_float()) {
      double v = value.get<double>();
      if (!std::isfinite(v) || v != std::floor(v)) {
        return FieldError(path, absl::StrCat("must be an integer, got ", Describe(value)));
      }
      if (v < static_cast<double>(lo) || v > static_cast<double>(hi)) return out_of_range();
      if (v < 0) {
        set(static_cast<int64_t>(v), 0);
      } else {
        set(static_cast<int64_t>(std::min(v, 9.2e18)), static_cast<uint64_t>(v));
      }
      return absl::OkStatus();
    }
    return FieldError(path, absl::StrCat("must be an integer, got ", Describe(value)));
  }

  std::set<std::string> present_;
};

absl::StatusOr<v1::JobSpec> SpecFromJson(const json& root) {
  if (root.is_null()) return absl::InvalidArgumentError("spec: empty document");
  v1::JobSpec spec = DefaultJobSpec();
  SpecReader reader;
  RETURN_IF_ERROR(reader.ReadMessage(root, &spec, ""));

  // Method-dependent adapter fields: refuse the ones the method does not use, and drop their
  // defaults so the validator sees them unset.
  v1::AdapterSpec* adapter = spec.mutable_adapter();
  const pb::Descriptor& adapter_type = *adapter->GetDescriptor();
  for (const std::string& name : UnusedAdapterFields(adapter->method())) {
    std::string path = absl::StrCat("adapter.", name);
    if (reader.present().count(path)) {
      return FieldError(path, absl::StrCat("not used with method ", MethodName(*adapter)));
    }
    adapter->GetReflection()->ClearField(adapter, adapter_type.FindFieldByName(name));
  }
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  return spec;
}

// ----- JobSpec → json ----------------------------------------------------------------------

json MessageToJson(const pb::Message& message) {
  json out = json::object();
  const pb::Descriptor& type = *message.GetDescriptor();
  const pb::Reflection& reflection = *message.GetReflection();
  for (int i = 0; i < type.field_count(); ++i) {
    const pb::FieldDescriptor& field = *type.field(i);
    const std::string& key = field.name();
    if (field.is_map()) {
      json items = json::object();
      const pb::Descriptor& entry_type = *field.message_type();
      for (int j = 0; j < reflection.FieldSize(message, &field); ++j) {
        const pb::Message& entry = reflection.GetRepeatedMessage(message, &field, j);
        items[entry.GetReflection()->GetString(entry, entry_type.map_key())] =
            entry.GetReflection()->GetString(entry, entry_type.map_value());
      }
      out[key] = std::move(items);
      continue;
    }
    if (field.is_repeated()) {
      json items = json::array();
      for (int j = 0; j < reflection.FieldSize(message, &field); ++j) {
        items.push_back(reflection.GetRepeatedString(message, &field, j));
      }
      out[key] = std::move(items);
      continue;
    }
    switch (field.cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        out[key] = MessageToJson(reflection.GetMessage(message, &field));
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        out[key] = reflection.GetString(message, &field);
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        out[key] = EnumValueName(*reflection.GetEnum(message, &field));
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        out[key] = reflection.GetBool(message, &field);
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        out[key] = reflection.GetDouble(message, &field);
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        out[key] = reflection.GetFloat(message, &field);
        break;
      case pb::FieldDescriptor::CPPTYPE_INT32:
        out[key] = reflection.GetInt32(message, &field);
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        out[key] = reflection.GetInt64(message, &field);
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        out[key] = reflection.GetUInt32(message, &field);
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        out[key] = reflection.GetUInt64(message, &field);
        break;
    }
  }
  return out;
}

json SpecToJsonTree(const v1::JobSpec& spec) {
  json out = MessageToJson(spec);
  for (const std::string& name : UnusedAdapterFields(spec.adapter().method())) {
    out["adapter"].erase(name);
  }
  return out;
}

// The field order of job.proto, which reads better than json's sorted keys.
void EmitYaml(const pb::Descriptor* type, const json& value, YAML::Emitter& out) {
  if (value.is_object() && (type == nullptr || type->options().map_entry())) {
    // A map field (labels): its own keys, sorted.
    out << YAML::BeginMap;
    for (const auto& [key, item] : value.items()) {
      out << YAML::Key << key << YAML::Value;
      EmitYaml(nullptr, item, out);
    }
    out << YAML::EndMap;
  } else if (value.is_object()) {
    out << YAML::BeginMap;
    for (int i = 0; i < type->field_count(); ++i) {
      const pb::FieldDescriptor& field = *type->field(i);
      auto it = value.find(field.name());
      if (it == value.end()) continue;
      out << YAML::Key << field.name() << YAML::Value;
      EmitYaml(field.message_type(), *it, out);
    }
    out << YAML::EndMap;
  } else if (value.is_array()) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const json& item : value) EmitYaml(nullptr, item, out);
    out << YAML::EndSeq;
  } else if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    // Quote strings a YAML reader would take for something else ("123", "true", "").
    json resolved = ResolvePlainScalar(text);
    if (!resolved.is_string()) out << YAML::DoubleQuoted;
    out << text;
  } else if (value.is_number_float()) {
    double v = value.get<double>();
    out << (std::isnan(v) ? ".nan" : std::isinf(v) ? (v > 0 ? ".inf" : "-.inf") : FormatNumber(v));
  } else if (value.is_number_unsigned()) {
    out << value.get<uint64_t>();
  } else if (value.is_number_integer()) {
    out << value.get<int64_t>();
  } else if (value.is_boolean()) {
    out << (value.get<bool>() ? "true" : "false");
  } else {
    out << YAML::Null;
  }
}

}  // namespace

std::string EnumValueName(const pb::EnumValueDescriptor& value) {
  return absl::AsciiStrToLower(value.name().substr(EnumPrefix(*value.type()).size()));
}

std::string FormatNumber(double value) {
  char buffer[32];
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof buffer, "%.0f", value);  // 10000, not 1e+04
    return buffer;
  }
  // The shortest decimal that reads back as the same double.
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

v1::JobSpec DefaultJobSpec() {
  v1::JobSpec spec;
  v1::AdapterSpec& adapter = *spec.mutable_adapter();
  adapter.set_method(v1::ADAPTER_METHOD_LORATRF);
  adapter.set_rank(8);
  adapter.set_alpha(16);
  adapter.set_dropout(0.05);
  adapter.set_filter(v1::TRF_FILTER_BOTTLENECK);
  v1::TrainingSpec& training = *spec.mutable_training();
  training.set_epochs(3);
  training.set_batch_size(32);
  training.set_micro_batch_size(8);
  training.set_learning_rate(3e-4);
  training.set_lr_scheduler(v1::LR_SCHEDULER_COSINE);
  training.set_warmup_ratio(0.06);
  training.set_max_grad_norm(1.0);
  training.set_seed(42);
  training.set_max_seq_len(256);
  training.set_precision(v1::PRECISION_FP32);
  training.set_eval_every_steps(0);
  training.set_checkpoint_every_steps(100);
  training.set_keep_checkpoints(3);
  training.set_weight_decay(0.0);
  v1::ResourceSpec& resources = *spec.mutable_resources();
  resources.set_workers(1);
  resources.set_slots_per_worker(1);
  resources.set_device(v1::DEVICE_CPU);
  spec.set_priority(0);
  spec.set_max_restarts(3);
  return spec;
}

absl::StatusOr<v1::JobSpec> ParseJobSpecYaml(absl::string_view text) {
  if (text.size() > limits::kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: ", text.size(), " bytes is larger than the ", limits::kMaxSpecBytes,
                     "-byte limit"));
  }
  ASSIGN_OR_RETURN(json root, ParseYamlText(text));
  return SpecFromJson(root);
}

absl::StatusOr<v1::JobSpec> ParseJobSpecJson(absl::string_view text) {
  if (text.size() > limits::kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: ", text.size(), " bytes is larger than the ", limits::kMaxSpecBytes,
                     "-byte limit"));
  }
  ASSIGN_OR_RETURN(json root, ParseJsonText(text));
  return SpecFromJson(root);
}

absl::StatusOr<v1::JobSpec> LoadJobSpecFile(const std::string& path) {
  auto error = [&](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
  };
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return error("cannot read the spec file (not found)");
  if (!S_ISREG(info.st_mode)) return error("not a regular file");
  if (static_cast<uint64_t>(info.st_size) > limits::kMaxSpecBytes) {
    return error(absl::StrCat(info.st_size, " bytes is larger than the ", limits::kMaxSpecBytes,
                              "-byte limit"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return error("cannot open the spec file");
  std::string text(static_cast<size_t>(info.st_size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (static_cast<size_t>(in.gcount()) != text.size()) return error("short read");
  absl::StatusOr<v1::JobSpec> spec = absl::EndsWith(path, ".json") ? ParseJobSpecJson(text)
                                                                    : ParseJobSpecYaml(text);
  if (!spec.ok()) return error(spec.status().message());
  return spec;
}

std::string JobSpecToJson(const v1::JobSpec& spec) {
  return SpecToJsonTree(spec).dump(2, ' ', false, json::error_handler_t::replace);
}

std::string JobSpecToYaml(const v1::JobSpec& spec) {
  YAML::Emitter out;
  EmitYaml(v1::JobSpec::descriptor(), SpecToJsonTree(spec), out);
  return std::string(out.c_str()) + "\n";
}

}  // namespace loratrf::spec

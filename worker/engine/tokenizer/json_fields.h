// Reading tokenizer.json fields with errors that name the field's path ("pre_tokenizer.
// pretokenizers[0].pattern"): every value is checked for presence and type before use.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/text.h"

namespace loratrf::engine::tokenizer {

using Json = nlohmann::json;

// Values and keys from the file that a message quotes go through Excerpt where they are
// quoted; the whole message is bounded here too, since paths carry keys of the file.
inline absl::Status FieldError(absl::string_view path, absl::string_view message) {
  return absl::InvalidArgumentError(Excerpt(absl::StrCat(path, ": ", message), 512));
}

// `parent` must be an object; the member must exist and not be null.
inline absl::StatusOr<const Json*> Member(const Json& parent, absl::string_view path,
                                          const char* key) {
  if (!parent.is_object()) return FieldError(path, "must be an object");
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) {
    return FieldError(absl::StrCat(path, ".", key), "is missing");
  }
  return &*it;
}

inline absl::StatusOr<std::string> StringField(const Json& parent, absl::string_view path,
                                               const char* key) {
  auto member = Member(parent, path, key);
  if (!member.ok()) return member.status();
  if (!(*member)->is_string()) return FieldError(absl::StrCat(path, ".", key), "must be a string");
  return (*member)->get<std::string>();
}

// A string field that may be absent or null.
inline absl::StatusOr<std::optional<std::string>> OptionalStringField(const Json& parent,
                                                                      absl::string_view path,
                                                                      const char* key) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return FieldError(absl::StrCat(path, ".", key), "must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

inline absl::StatusOr<bool> BoolField(const Json& parent, absl::string_view path, const char* key,
                                      bool default_value) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return default_value;
  if (!it->is_boolean()) return FieldError(absl::StrCat(path, ".", key), "must be true or false");
  return it->get<bool>();
}

// A non-negative integer no larger than `max`.
inline absl::StatusOr<uint64_t> UintField(const Json& parent, absl::string_view path,
                                          const char* key, uint64_t default_value, uint64_t max) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return default_value;
  if (!it->is_number_integer() || (it->is_number_integer() && it->get<int64_t>() < 0 &&
                                   !it->is_number_unsigned())) {
    return FieldError(absl::StrCat(path, ".", key), "must be a non-negative integer");
  }
  uint64_t value = it->get<uint64_t>();
  if (value > max) {
    return FieldError(absl::StrCat(path, ".", key), absl::StrCat("must be at most ", max));
  }
  return value;
}

// The component's "type" string.
inline absl::StatusOr<std::string> TypeOf(const Json& component, absl::string_view path) {
  return StringField(component, path, "type");
}

// A Sequence component's list `key` ("normalizers", "decoders", ...), each element parsed by
// `parse(element, path)`, which returns StatusOr<std::unique_ptr<T>>.
template <typename T, typename Parse>
absl::StatusOr<std::vector<std::unique_ptr<T>>> ParseComponentList(const Json& json,
                                                                   absl::string_view path,
                                                                   const char* key, Parse parse) {
  auto list = Member(json, path, key);
  if (!list.ok()) return list.status();
  std::string list_path = absl::StrCat(path, ".", key);
  if (!(*list)->is_array()) return FieldError(list_path, "must be a list");
  std::vector<std::unique_ptr<T>> steps;
  for (size_t i = 0; i < (*list)->size(); ++i) {
    auto step = parse((**list)[i], absl::StrCat(list_path, "[", i, "]"));
    if (!step.ok()) return step.status();
    steps.push_back(std::move(*step));
  }
  return steps;
}

inline absl::Status Unsupported(absl::string_view path, absl::string_view kind,
                                absl::string_view type, absl::string_view supported) {
  return FieldError(path, absl::StrCat(kind, " \"", Excerpt(type), "\" is not supported (supported: ",
                                       supported, ")"));
}

}  // namespace loratrf::engine::tokenizer

#include "proto/contract/names.h"

#include "absl/strings/str_cat.h"
#include "proto/contract/limits.h"

namespace loratrf::contract {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rule));
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsWorkerNameChar(char c) { return IsLowerAlnum(c) || c == '-' || c == '.'; }
bool IsUserNameChar(char c) {
  return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '@' || c == '-';
}
bool IsIdChar(char c) {
  return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-';
}

}  // namespace

absl::Status CheckJobName(absl::string_view field, absl::string_view name) {
  if (name.empty()) return Invalid(field, "required");
  if (name.size() > limits::kMaxJobNameLength) {
    return Invalid(field, absl::StrCat("must be at most ", limits::kMaxJobNameLength,
                                       " characters, got ", name.size()));
  }
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') return Invalid(field, "may contain only a-z, 0-9 and '-'");
  }
  if (name.front() == '-' || name.back() == '-') {
    return Invalid(field, "must start and end with a letter or digit");
  }
  return absl::OkStatus();
}

absl::Status CheckWorkerName(absl::string_view field, absl::string_view name) {
  if (name.empty()) return Invalid(field, "required");
  if (name.size() > limits::kMaxWorkerNameBytes) {
    return Invalid(field, absl::StrCat(name.size(), " bytes, at most ",
                                       limits::kMaxWorkerNameBytes, " allowed"));
  }
  for (char c : name) {
    if (!IsWorkerNameChar(c)) return Invalid(field, "may contain only a-z, 0-9, '-' and '.'");
  }
  return absl::OkStatus();
}

absl::Status CheckUserName(absl::string_view field, absl::string_view name) {
  if (name.empty()) return Invalid(field, "required");
  if (name.size() > limits::kMaxOwnerBytes) {
    return Invalid(field, absl::StrCat(name.size(), " bytes, at most ", limits::kMaxOwnerBytes,
                                       " allowed"));
  }
  for (char c : name) {
    if (!IsUserNameChar(c)) {
      return Invalid(field, "may contain only A-Z, a-z, 0-9, '.', '_', '@' and '-'");
    }
  }
  return absl::OkStatus();
}

std::string WorkerNameFromHostName(absl::string_view host) {
  std::string name;
  for (char c : host.substr(0, limits::kMaxWorkerNameBytes)) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    name.push_back(IsWorkerNameChar(c) ? c : '-');
  }
  return name.empty() ? "worker" : name;
}

absl::Status CheckId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return Invalid(field, "required");
  if (id.size() > limits::kMaxIdBytes) {
    return Invalid(field, absl::StrCat(id.size(), " bytes, at most ", limits::kMaxIdBytes,
                                       " allowed"));
  }
  for (char c : id) {
    if (!IsIdChar(c)) return Invalid(field, "may contain only A-Z, a-z, 0-9, '.', '_' and '-'");
  }
  if (id == "." || id == "..") return Invalid(field, "must not be '.' or '..'");
  return absl::OkStatus();
}

absl::Status CheckIdempotencyKey(absl::string_view field, absl::string_view key) {
  bool ok = !key.empty() && key.size() <= limits::kMaxIdempotencyKeyBytes;
  for (char c : key) ok = ok && c >= 0x21 && c <= 0x7e;
  if (!ok) {
    return Invalid(field, absl::StrCat("must be 1 to ", limits::kMaxIdempotencyKeyBytes,
                                       " printable ASCII characters without spaces"));
  }
  return absl::OkStatus();
}

absl::Status CheckJobLabel(absl::string_view field, absl::string_view key,
                           absl::string_view value) {
  bool key_ok = !key.empty() && key.size() <= limits::kMaxJobLabelKeyBytes;
  for (char c : key) {
    key_ok = key_ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '/' || c == '-');
  }
  if (!key_ok) {
    return Invalid(field, absl::StrCat("a label key must be 1 to ", limits::kMaxJobLabelKeyBytes,
                                       " of [a-z0-9._/-]"));
  }
  bool value_ok = value.size() <= limits::kMaxJobLabelValueBytes;
  for (char c : value) value_ok = value_ok && c >= 0x20 && c <= 0x7e;
  if (!value_ok) {
    return Invalid(absl::StrCat(field, ".", key),
                   absl::StrCat("a label value must be at most ", limits::kMaxJobLabelValueBytes,
                                " printable ASCII characters"));
  }
  return absl::OkStatus();
}

}  // namespace loratrf::contract

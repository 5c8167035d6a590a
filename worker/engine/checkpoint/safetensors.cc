#include "worker/engine/checkpoint/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/text.h"
#include "common/json_parse.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace loratrf::engine {
namespace {

using json = nlohmann::json;

// The official library's cap (safetensors/src/tensor.rs MAX_HEADER_SIZE): a reader that parses
// what it refuses to write, or the reverse, would make files that only one side accepts.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// Doubles represent integers exactly only up to 2^53, and JSON readers in other languages
// (Python's is fine, JavaScript's is not) would silently round larger dims.
constexpr uint64_t kMaxDim = uint64_t{1} << 53;
// A valid header nests three levels (root → entry → shape); refuse deep input before nlohmann
// builds it.
constexpr int kMaxJsonDepth = 8;
constexpr char kMetadataKey[] = "__metadata__";

constexpr DType kAllDTypes[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16,
                                DType::kI64, DType::kI32, DType::kI16, DType::kI8,
                                DType::kU8,  DType::kBool};

bool ParseDType(absl::string_view name, DType* dtype) {
  for (DType candidate : kAllDTypes) {
    if (name == DTypeName(candidate)) {
      *dtype = candidate;
      return true;
    }
  }
  return false;
}

std::string SupportedDTypes() {
  std::vector<std::string> names;
  for (DType dtype : kAllDTypes) names.push_back(DTypeName(dtype));
  return absl::StrJoin(names, ", ");
}

// Offset of the first byte that is not part of well-formed UTF-8 (no overlong forms, no
// surrogates, nothing above U+10FFFF), or npos.
size_t FindInvalidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  size_t i = 0;
  auto continuation = [&](size_t at, unsigned char lo, unsigned char hi) {
    return at < n && s[at] >= lo && s[at] <= hi;
  };
  while (i < n) {
    unsigned char c = s[i];
    size_t length;
    bool ok;
    if (c < 0x80) {
      length = 1;
      ok = true;
    } else if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
      ok = continuation(i + 1, 0x80, 0xBF);
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
      unsigned char hi = c == 0xED ? 0x9F : 0xBF;
      ok = continuation(i + 1, lo, hi) && continuation(i + 2, 0x80, 0xBF);
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
      unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
      ok = continuation(i + 1, lo, hi) && continuation(i + 2, 0x80, 0xBF) &&
           continuation(i + 3, 0x80, 0xBF);
    } else {
      length = 1;
      ok = false;
    }
    if (!ok) return i;
    i += length;
  }
  return absl::string_view::npos;
}


// A short rendering of a JSON value for error messages (a hostile header can hold huge ones).
std::string ShowJson(const json& value) {
  return Excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace), 40);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

enum class IntKind { kOk, kNegative, kNotInteger };

// JSON non-negative integer → u64. nlohmann reads "-0" as a signed zero; that is still zero.
IntKind ReadUnsigned(const json& value, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
    return IntKind::kOk;
  }
  if (value.is_number_integer()) {
    if (value.get<int64_t>() < 0) return IntKind::kNegative;
    *out = 0;
    return IntKind::kOk;
  }
  return IntKind::kNotInteger;
}

// Parses the header, refusing duplicate keys (JSON allows them and nlohmann keeps the last, which
// would let two readers of one file disagree on a tensor's offsets), and words each refusal for
// the place it is in.
absl::StatusOr<json> ParseHeaderJson(absl::string_view text) {
  JsonProblem problem;
  absl::StatusOr<json> value = ParseJson(text, JsonLimits{kMaxJsonDepth, false}, &problem);
  if (value.ok()) return value;
  const std::vector<std::string>& path = problem.path;
  const std::string key = SanitizeText(problem.key, 64);
  switch (problem.kind) {
    case JsonProblem::Kind::kTooDeep:
      return absl::InvalidArgumentError(
          absl::StrCat("header JSON is nested deeper than ", kMaxJsonDepth, " levels"));
    case JsonProblem::Kind::kDuplicateKey:
      if (path.empty()) {
        return absl::InvalidArgumentError(
            key == kMetadataKey ? absl::StrCat("header has more than one ", kMetadataKey)
                                : absl::StrCat("duplicate tensor name '", key, "'"));
      }
      if (path.size() == 1 && path[0] == kMetadataKey) {
        return absl::InvalidArgumentError(
            absl::StrCat(kMetadataKey, ": duplicate key '", key, "'"));
      }
      if (path.size() == 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", SanitizeText(path[0], 64), "': duplicate key '", key, "'"));
      }
      return absl::InvalidArgumentError(absl::StrCat("header has duplicate key '", key, "'"));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("header is not valid JSON: ", value.status().message()));
  }
}

// Checks one tensor entry against everything but its neighbours.
absl::StatusOr<TensorEntry> ParseEntry(const std::string& name, const json& entry,
                                       uint64_t data_size) {
  auto error = [&](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", Excerpt(name), "': ", message));
  };
  if (!entry.is_object()) {
    return error(absl::StrCat("entry is not a JSON object (got ", entry.type_name(), ")"));
  }
  for (const auto& item : entry.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      return error(absl::StrCat("unknown key '", Excerpt(item.key()),
                                "' (expected dtype, shape, data_offsets)"));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) return error(absl::StrCat("missing key '", key, "'"));
  }

  TensorEntry result;
  result.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) {
    return error(absl::StrCat("dtype is not a string (got ", ShowJson(dtype), ")"));
  }
  if (!ParseDType(dtype.get_ref<const std::string&>(), &result.dtype)) {
    std::string spelled = Excerpt(dtype.get_ref<const std::string&>(), 40);
    return error(absl::StrCat("unsupported dtype '", spelled, "' (supported: ",
                              SupportedDTypes(), ")"));
  }

  const json& shape = entry["shape"];
  if (!shape.is_array()) {
    return error(absl::StrCat("shape is not an array (got ", ShowJson(shape), ")"));
  }
  uint64_t byte_size = 1;  // numel, then × dtype size
  bool overflow = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    uint64_t dim = 0;
    switch (ReadUnsigned(shape[i], &dim)) {
      case IntKind::kOk:
        break;
      case IntKind::kNegative:
        return error(absl::StrCat("shape[", i, "] is negative (", ShowJson(shape[i]), ")"));
      case IntKind::kNotInteger:
        return error(absl::StrCat("shape[", i, "] is not an integer (got ", ShowJson(shape[i]),
                                  ")"));
    }
    if (dim > kMaxDim) {
      return error(absl::StrCat("shape[", i, "] is ", dim, ", larger than 2^53"));
    }
    result.shape.push_back(static_cast<int64_t>(dim));
    overflow = overflow || __builtin_mul_overflow(byte_size, dim, &byte_size);
  }
  overflow = overflow || __builtin_mul_overflow(byte_size, uint64_t{DTypeSize(result.dtype)},
                                                &byte_size);
  if (overflow) {
    return error(absl::StrCat("shape ", ShapeString(result.shape), " of ",
                              DTypeName(result.dtype),
                              ": element count × dtype size overflows 64 bits"));
  }

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    return error(absl::StrCat("data_offsets is not an array of two integers (got ",
                              ShowJson(offsets), ")"));
  }
  uint64_t bounds[2];
  for (size_t i = 0; i < 2; ++i) {
    if (ReadUnsigned(offsets[i], &bounds[i]) != IntKind::kOk) {
      return error(absl::StrCat("data_offsets[", i, "] is not an unsigned integer (got ",
                                ShowJson(offsets[i]), ")"));
    }
  }
  result.begin = bounds[0];
  result.end = bounds[1];
  if (result.begin > result.end) {
    return error(absl::StrCat("data_offsets [", result.begin, ", ", result.end,
                              "] begin is after end"));
  }
  if (result.end > data_size) {
    return error(absl::StrCat("data_offsets end ", result.end, " is past the end of the ",
                              data_size, "-byte data section"));
  }
  if (result.end - result.begin != byte_size) {
    return error(absl::StrCat("data_offsets [", result.begin, ", ", result.end, "] hold ",
                              result.end - result.begin, " bytes but shape ",
                              ShapeString(result.shape), " of ", DTypeName(result.dtype),
                              " needs ", byte_size));
  }
  return result;
}

// JSON string literal, escaped as serde_json (the official library) does.
void AppendJsonString(std::string* out, absl::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      return 1;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF64: return "F64";
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI16: return "I16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
  }
  return "?";
}

// ----- reading ---------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(std::string path, const uint8_t* base, size_t size)
    : path_(std::move(path)), base_(base), size_(size) {}

SafetensorsFile::~SafetensorsFile() {
  ::munmap(const_cast<uint8_t*>(base_), size_);
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  auto invalid = [&](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
  };
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before fstat could
  // refuse it. It changes nothing for regular files.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat(path, ": cannot open"));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int error = errno;
    ::close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat(path, ": cannot stat"));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return invalid("not a regular file");
  }
  auto size = static_cast<uint64_t>(info.st_size);
  if (size < 8) {
    ::close(fd);
    return invalid(absl::StrCat("file is ", size,
                                " bytes, shorter than the 8-byte header length prefix"));
  }
  if (size > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    return invalid("file is too large to map");
  }
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_error = errno;
  ::close(fd);  // the mapping keeps the file open
  if (mapping == MAP_FAILED) {
    return absl::ErrnoToStatus(map_error, absl::StrCat(path, ": cannot mmap"));
  }
  // Owned from here on: every early return unmaps.
  std::shared_ptr<SafetensorsFile> file(
      new SafetensorsFile(path, static_cast<const uint8_t*>(mapping), size));

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | file->base_[i];
  if (header_size > kMaxHeaderBytes) {
    return invalid(absl::StrCat("header length ", header_size, " is larger than the ",
                                kMaxHeaderBytes, "-byte limit"));
  }
  if (header_size > size - 8) {
    return invalid(absl::StrCat("header length ", header_size, " runs past the end of the file (",
                                size - 8, " bytes follow the length prefix)"));
  }
  absl::string_view header(reinterpret_cast<const char*>(file->base_) + 8, header_size);
  file->data_start_ = 8 + header_size;
  const uint64_t data_size = size - file->data_start_;

  if (size_t bad = FindInvalidUtf8(header); bad != absl::string_view::npos) {
    return invalid(absl::StrCat("header is not valid UTF-8 (byte ", bad, " of the header)"));
  }
  absl::StatusOr<json> root = ParseHeaderJson(header);
  if (!root.ok()) return invalid(root.status().message());
  if (!root->is_object()) {
    return invalid(absl::StrCat("header is not a JSON object (got ", root->type_name(), ")"));
  }

  for (const auto& item : root->items()) {
    if (item.key() == kMetadataKey) {
      if (!item.value().is_object()) {
        return invalid(absl::StrCat(kMetadataKey, " is not a JSON object (got ",
                                    item.value().type_name(), ")"));
      }
      for (const auto& meta : item.value().items()) {
        if (!meta.value().is_string()) {
          return invalid(absl::StrCat(kMetadataKey, "['", Excerpt(meta.key()),
                                      "'] is not a string (got ", ShowJson(meta.value()), ")"));
        }
        file->metadata_.emplace(meta.key(), meta.value().get<std::string>());
      }
      continue;
    }
    absl::StatusOr<TensorEntry> entry = ParseEntry(item.key(), item.value(), data_size);
    if (!entry.ok()) return invalid(entry.status().message());
    file->tensors_.push_back(*std::move(entry));
  }

  // The tensors must tile the data section exactly, as the official reader demands: overlaps
  // would alias two tensors, holes hide bytes no tensor accounts for.
  std::sort(file->tensors_.begin(), file->tensors_.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  uint64_t covered = 0;          // [0, covered) belongs to the tensors seen so far
  const TensorEntry* reaching = nullptr;  // the one that ends at `covered`
  for (const TensorEntry& entry : file->tensors_) {
    if (entry.begin < covered) {
      return invalid(absl::StrCat("tensors '", Excerpt(reaching->name), "' [", reaching->begin, ", ",
                                  reaching->end, ") and '", Excerpt(entry.name), "' [", entry.begin, ", ",
                                  entry.end, ") overlap"));
    }
    if (entry.begin > covered) {
      return invalid(absl::StrCat("bytes [", covered, ", ", entry.begin,
                                  ") of the data section belong to no tensor (a gap before '",
                                  Excerpt(entry.name), "')"));
    }
    if (entry.end > covered || reaching == nullptr) {
      covered = entry.end;
      reaching = &entry;
    }
  }
  if (covered != data_size) {
    return invalid(absl::StrCat("bytes [", covered, ", ", data_size,
                                ") at the end of the data section belong to no tensor"));
  }

  for (size_t i = 0; i < file->tensors_.size(); ++i) file->index_.emplace(file->tensors_[i].name, i);
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

const TensorEntry* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* SafetensorsFile::Data(const TensorEntry& entry) const {
  const uint64_t data_size = size_ - data_start_;
  if (entry.begin > entry.end || entry.end > data_size) return nullptr;
  return base_ + data_start_ + entry.begin;
}

int64_t SafetensorsFile::NumElements(const TensorEntry& entry) const {
  int64_t count = 1;
  for (int64_t dim : entry.shape) {
    if (dim < 0 || __builtin_mul_overflow(count, dim, &count)) return -1;
  }
  return count;
}

// ----- writing ---------------------------------------------------------------------------------

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  auto invalid = [&](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
  };
  std::vector<const TensorToWrite*> order;
  std::set<absl::string_view> names;
  for (const TensorToWrite& tensor : tensors) {
    auto error = [&](absl::string_view message) {
      return invalid(absl::StrCat("tensor '", tensor.name, "': ", message));
    };
    if (tensor.name.empty()) return invalid("a tensor has an empty name");
    if (tensor.name == kMetadataKey) return error("the name is reserved for metadata");
    if (FindInvalidUtf8(tensor.name) != absl::string_view::npos) {
      return error("the name is not valid UTF-8");
    }
    if (!names.insert(tensor.name).second) return error("duplicate tensor name");
    if (DTypeSize(tensor.dtype) == 0) return error("invalid dtype");
    uint64_t byte_size = DTypeSize(tensor.dtype);
    for (size_t i = 0; i < tensor.shape.size(); ++i) {
      int64_t dim = tensor.shape[i];
      if (dim < 0) return error(absl::StrCat("shape[", i, "] is negative (", dim, ")"));
      if (static_cast<uint64_t>(dim) > kMaxDim) {
        return error(absl::StrCat("shape[", i, "] is ", dim, ", larger than 2^53"));
      }
      if (__builtin_mul_overflow(byte_size, static_cast<uint64_t>(dim), &byte_size)) {
        return error(absl::StrCat("shape ", ShapeString(tensor.shape),
                                  ": element count × dtype size overflows 64 bits"));
      }
    }
    if (tensor.size_bytes != byte_size) {
      return error(absl::StrCat("size_bytes is ", tensor.size_bytes, " but shape ",
                                ShapeString(tensor.shape), " of ", DTypeName(tensor.dtype),
                                " needs ", byte_size));
    }
    if (tensor.data == nullptr && tensor.size_bytes > 0) return error("data is null");
    order.push_back(&tensor);
  }
  for (const auto& [key, value] : metadata) {
    if (FindInvalidUtf8(key) != absl::string_view::npos ||
        FindInvalidUtf8(value) != absl::string_view::npos) {
      return invalid(absl::StrCat(kMetadataKey, " key or value is not valid UTF-8"));
    }
  }
  std::sort(order.begin(), order.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });

  std::string header = "{";
  if (!metadata.empty()) {
    AppendJsonString(&header, kMetadataKey);
    header += ":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      AppendJsonString(&header, key);
      header += ':';
      AppendJsonString(&header, value);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const TensorToWrite* tensor : order) {
    if (header.size() > 1) header += ',';
    AppendJsonString(&header, tensor->name);
    uint64_t end = 0;
    if (__builtin_add_overflow(offset, uint64_t{tensor->size_bytes}, &end)) {
      return invalid("the tensors add up to more than 2^64 bytes");
    }
    absl::StrAppend(&header, ":{\"dtype\":\"", DTypeName(tensor->dtype), "\",\"shape\":[",
                    absl::StrJoin(tensor->shape, ","), "],\"data_offsets\":[", offset, ",", end,
                    "]}");
    offset = end;
  }
  header += '}';
  // The data section then starts at a multiple of 8, so 8-byte dtypes can be aligned.
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kMaxHeaderBytes) {
    return invalid(absl::StrCat("header would be ", header.size(), " bytes, more than the ",
                                kMaxHeaderBytes, "-byte limit readers accept"));
  }

  char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> writer, AtomicFileWriter::Open(path));
  RETURN_IF_ERROR(writer->Write(absl::string_view(length, sizeof(length))));
  RETURN_IF_ERROR(writer->Write(header));
  for (const TensorToWrite* tensor : order) {
    if (tensor->size_bytes == 0) continue;
    RETURN_IF_ERROR(
        writer->Write(absl::string_view(static_cast<const char*>(tensor->data), tensor->size_bytes)));
  }
  return writer->Commit();
}

}  // namespace loratrf::engine

#include "worker/engine/checkpoint/tensor_io.h"

#include <cstring>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"

namespace loratrf::engine {
namespace {

at::ScalarType ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kF64: return at::kDouble;
    case DType::kF32: return at::kFloat;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kI64: return at::kLong;
    case DType::kI32: return at::kInt;
    case DType::kI16: return at::kShort;
    case DType::kI8: return at::kChar;
    case DType::kU8: return at::kByte;
    case DType::kBool: return at::kBool;
  }
  return at::kFloat;
}

std::optional<DType> FromScalarType(at::ScalarType type) {
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32,
                  DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    if (ToScalarType(d) == type) return d;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<at::Tensor> ReadTensor(const SafetensorsFile& file, const TensorEntry& entry,
                                      std::optional<at::ScalarType> dtype) {
  const uint8_t* data = file.Data(entry);
  if (data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": ", entry.name, ": not in this file"));
  }
  // Copy into a fresh (aligned) tensor: the mapping may be misaligned for the dtype.
  at::Tensor raw = torch::empty(entry.shape, torch::dtype(ToScalarType(entry.dtype)));
  if (entry.end > entry.begin) std::memcpy(raw.data_ptr(), data, entry.end - entry.begin);
  if (dtype && *dtype != raw.scalar_type()) return raw.to(*dtype);
  return raw;
}

absl::Status WriteTensors(const std::string& path,
                          const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> keep_alive;
  std::vector<TensorToWrite> out;
  keep_alive.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    std::optional<DType> dtype = FromScalarType(tensor.scalar_type());
    if (!dtype) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": dtype ", c10::toString(tensor.scalar_type()),
                                                     " cannot be stored in safetensors here"));
    }
    keep_alive.push_back(tensor.detach().to(torch::kCPU).contiguous());
    const at::Tensor& t = keep_alive.back();
    out.push_back(TensorToWrite{name, *dtype, t.sizes().vec(), t.data_ptr(),
                                static_cast<size_t>(t.numel()) * t.element_size()});
  }
  return WriteSafetensors(path, out, metadata);
}

}  // namespace loratrf::engine

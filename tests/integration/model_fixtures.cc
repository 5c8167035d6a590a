#include "tests/integration/model_fixtures.h"

#include <algorithm>
#include <cmath>

#include "worker/engine/checkpoint/safetensors.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "gtest/gtest.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {

const std::string kReferenceDir = std::string(LORATRF_SOURCE_DIR) + "/tests/reference/";

void MustRun(const std::vector<std::string>& argv) {
  ProcessResult r = RunProcess(argv, "", 300);
  ASSERT_EQ(r.exit_code, 0) << argv[0] << " " << (argv.size() > 1 ? argv[1] : "") << "\n"
                            << r.err;
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void ExpectSameTensors(const std::string& actual_path, const std::string& expected_path,
                       double tolerance) {
  auto actual_file = engine::SafetensorsFile::Open(actual_path);
  auto expected_file = engine::SafetensorsFile::Open(expected_path);
  ASSERT_TRUE(actual_file.ok()) << actual_file.status();
  ASSERT_TRUE(expected_file.ok()) << expected_file.status();
  ASSERT_EQ((*actual_file)->tensors().size(), (*expected_file)->tensors().size());
  for (const engine::TensorEntry& expected : (*expected_file)->tensors()) {
    SCOPED_TRACE(expected.name);
    const engine::TensorEntry* actual = (*actual_file)->Find(expected.name);
    ASSERT_NE(actual, nullptr) << "missing from " << actual_path;
    ASSERT_EQ(actual->shape, expected.shape);
    auto a = engine::ReadTensor(**actual_file, *actual, at::kDouble);
    auto b = engine::ReadTensor(**expected_file, expected, at::kDouble);
    ASSERT_TRUE(a.ok() && b.ok());
    const double* x = a->data_ptr<double>();
    const double* y = b->data_ptr<double>();
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < b->numel(); ++i) {
      scale = std::max(scale, std::abs(y[i]));
      worst = std::max(worst, std::abs(x[i] - y[i]));
    }
    EXPECT_GT(scale, 1e-3) << "expected output is trivially small: the test would prove nothing";
    EXPECT_LE(worst, tolerance * std::max(1.0, scale)) << "largest difference " << worst;
  }
}

}  // namespace loratrf::testing

// Helpers for integration tests that run models: running the reference scripts and the
// binaries, and comparing safetensors outputs.
#pragma once

#include <string>
#include <vector>

namespace loratrf::testing {

// tests/reference/, where make_tiny_model.py, make_tiny_adapter.py and hf_reference.py live.
extern const std::string kReferenceDir;

// Runs argv and fails the current test (ASSERT) unless it exits 0.
void MustRun(const std::vector<std::string>& argv);

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b);

// Asserts that two safetensors files hold the same tensor names and shapes, and values within
// `tolerance` relative to each tensor's largest magnitude (which must not be trivially small).
void ExpectSameTensors(const std::string& actual_path, const std::string& expected_path,
                       double tolerance);

}  // namespace loratrf::testing

// Replays a fuzz target's corpus (LORATRF_FUZZ_CORPUS) as an ordinary test.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

TEST(FuzzCorpusReplay, EveryCorpusFileRunsCleanly) {
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(LORATRF_FUZZ_CORPUS)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(entry.path().string());
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                                     bytes.size()),
              0);
    ++files;
  }
  EXPECT_GT(files, 0u) << "empty corpus: " << LORATRF_FUZZ_CORPUS;
}

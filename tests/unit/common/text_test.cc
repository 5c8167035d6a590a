// Text helpers every module shares (common/text.h).
#include "common/text.h"

#include <string>

#include <gtest/gtest.h>

namespace loratrf {
namespace {

TEST(SanitizeText, KeepsUtf8AndReplacesTheRest) {
  EXPECT_EQ(SanitizeText("plain text", 100), "plain text");
  EXPECT_EQ(SanitizeText("caf\xc3\xa9", 100), "caf\xc3\xa9");
  EXPECT_EQ(SanitizeText("bad \xff byte\x01", 100), "bad ? byte?");
  EXPECT_EQ(SanitizeText("\xc0\xaf", 100), "??") << "overlong";
  EXPECT_EQ(SanitizeText("\xed\xa0\x80", 100), "???") << "a surrogate";
  EXPECT_EQ(SanitizeText("tab\tkept, del\x7f not", 100), "tab\tkept, del? not");
  EXPECT_EQ(SanitizeText("abcdef", 3), "abc");
  EXPECT_EQ(SanitizeText("ab\xc3\xa9", 3), "ab") << "never cuts a character in half";
  EXPECT_EQ(SanitizeText("", 3), "");
}

TEST(IsPlainFileName, OneComponentOnly) {
  EXPECT_TRUE(IsPlainFileName("adapter_model.safetensors"));
  for (const std::string& bad : {std::string(), std::string("."), std::string(".."),
                                std::string("a/b"), std::string("a\0b", 3), std::string(256, 'a')}) {
    EXPECT_FALSE(IsPlainFileName(bad)) << bad;
  }
}

}  // namespace
}  // namespace loratrf

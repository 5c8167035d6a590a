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

TEST(Excerpt, EscapesWhatIsNotPrintableAndStaysOneLine) {
  EXPECT_EQ(Excerpt("plain {\"a\": 1}"), "plain {\"a\": 1}");
  EXPECT_EQ(Excerpt("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(Excerpt("a\nb\xff"), "a\\x0ab\\xff");
  EXPECT_EQ(Excerpt(std::string("A=1\0B=2\r\t", 9)), "A=1\\x00B=2\\x0d\\x09");
  EXPECT_EQ(Excerpt("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(Excerpt("\xc2\x85"), "\\xc2\\x85") << "C1 control NEL";
  EXPECT_EQ(Excerpt("x\xe2\x80\xaey"), "x\\xe2\\x80\\xaey") << "right-to-left override";
  EXPECT_EQ(Excerpt("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "a surrogate is not UTF-8";
  EXPECT_EQ(Excerpt(""), "");
}

TEST(Excerpt, IsBoundedAndNeverCutsAnEscapeOrACharacter) {
  const std::string big(1 << 20, 'x');
  EXPECT_EQ(Excerpt(big), std::string(kMaxExcerptBytes, 'x') + "...");
  EXPECT_EQ(Excerpt("abcdef", 4), "abcd...");
  EXPECT_EQ(Excerpt("ab\ncd", 4), "ab...") << "an escape takes 4 bytes";
  EXPECT_EQ(Excerpt("ab\xc3\xa9", 3), "ab...");
  EXPECT_EQ(Excerpt("abcd", 4), "abcd") << "exactly the limit is not cut";
  std::string binary;
  for (int i = 0; i < 4096; ++i) binary.push_back(static_cast<char>(i % 256));
  const std::string excerpt = Excerpt(binary);
  EXPECT_LE(excerpt.size(), kMaxExcerptBytes + 3);
  EXPECT_EQ(excerpt.find('\n'), std::string::npos);
}

TEST(WithoutJsonExceptionTag, DropsTheTagAndBoundsTheQuotedInput) {
  EXPECT_EQ(WithoutJsonExceptionTag("[json.exception.parse_error.101] parse error at line 1, "
                                    "column 2: syntax error while parsing value - invalid "
                                    "literal; last read: 'x'"),
            "parse error at line 1, column 2: syntax error while parsing value - invalid "
            "literal; last read: 'x'");
  const std::string secret = "SECRET_TOKEN=" + std::string(10000, 'z') + "\n";
  const std::string message = WithoutJsonExceptionTag(
      "[json.exception.parse_error.101] parse error at line 1, column 9000: syntax error; "
      "last read: '" + secret + "'");
  EXPECT_LE(message.size(), 160u);
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(message.find(std::string(kMaxExcerptBytes, 'z')), std::string::npos);
}

}  // namespace
}  // namespace loratrf

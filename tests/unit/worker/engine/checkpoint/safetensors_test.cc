#include "worker/engine/checkpoint/safetensors.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::StartsWith;

// ----- helpers: files are built byte by byte, independently of the writer ---------------------

std::string Le64(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

// length prefix + header + data, with the header length taken from `header` itself.
std::string File(const std::string& header, const std::string& data = "") {
  return Le64(header.size()) + header + data;
}

std::string Zeros(size_t n) { return std::string(n, '\0'); }

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "safetensors_test.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Path(const std::string& name) const { return path_ + "/" + name; }
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string path_;
};

void WriteRaw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good());
}

std::string ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string TensorBytes(const SafetensorsFile& file, const TensorEntry& entry) {
  return std::string(reinterpret_cast<const char*>(file.Data(entry)), entry.end - entry.begin);
}

// ----- dtypes ----------------------------------------------------------------------------------

TEST(DType, SizesAndNamesFollowTheFormat) {
  struct Expected {
    DType dtype;
    size_t size;
    const char* name;
  };
  for (const Expected& e : {Expected{DType::kF64, 8, "F64"}, Expected{DType::kF32, 4, "F32"},
                            Expected{DType::kF16, 2, "F16"}, Expected{DType::kBF16, 2, "BF16"},
                            Expected{DType::kI64, 8, "I64"}, Expected{DType::kI32, 4, "I32"},
                            Expected{DType::kI16, 2, "I16"}, Expected{DType::kI8, 1, "I8"},
                            Expected{DType::kU8, 1, "U8"}, Expected{DType::kBool, 1, "BOOL"}}) {
    EXPECT_EQ(DTypeSize(e.dtype), e.size) << e.name;
    EXPECT_STREQ(DTypeName(e.dtype), e.name);
  }
}

// ----- writer: byte-exact output ---------------------------------------------------------------

TEST(WriteSafetensors, ByteExactAgainstAHandComputedFile) {
  TempDir dir;
  const int16_t b[] = {1, -2};
  const uint8_t a[] = {7, 8, 9};
  // Given out of order: the writer lays tensors out by name.
  ASSERT_TRUE(WriteSafetensors(dir.Path("t.safetensors"),
                               {{"b", DType::kI16, {2}, b, sizeof(b)},
                                {"a", DType::kU8, {3}, a, sizeof(a)}},
                               {{"k", "v"}})
                  .ok());
  // 131 bytes of compact JSON + 5 spaces = 136 = 0x88, a multiple of 8.
  std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) +
                         R"({"__metadata__":{"k":"v"},)"
                         R"("a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                         R"("b":{"dtype":"I16","shape":[2],"data_offsets":[3,7]}})"
                         "     " +
                         std::string("\x07\x08\x09" "\x01\x00" "\xfe\xff", 7);
  EXPECT_EQ(ReadRaw(dir.Path("t.safetensors")), expected);
}

// The expected bytes below are the ones the official library's own tests (safetensors/src/
// tensor.rs) expect from its serializer; a single tensor makes the layout order moot.
TEST(WriteSafetensors, ByteExactAgainstTheOfficialLibrarysVectors) {
  TempDir dir;
  const float values[] = {0, 1, 2, 3, 4, 5};
  const std::string data("\0\0\0\0" "\0\0\x80\x3f" "\0\0\0\x40" "\0\0\x40\x40" "\0\0\x80\x40"
                         "\0\0\xa0\x40", 24);
  ASSERT_EQ(std::memcmp(values, data.data(), 24), 0) << "this test assumes a little-endian host";

  // 64 bytes of JSON: no padding.
  ASSERT_TRUE(WriteSafetensors(dir.Path("1"), {{"attn.0", DType::kF32, {1, 2, 3}, values, 24}})
                  .ok());
  EXPECT_EQ(ReadRaw(dir.Path("1")),
            std::string("\x40\0\0\0\0\0\0\0", 8) +
                R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})" + data);

  // 65 bytes of JSON: 7 spaces bring it to 72.
  ASSERT_TRUE(
      WriteSafetensors(dir.Path("2"), {{"attn0", DType::kF32, {1, 1, 2, 3}, values, 24}}).ok());
  EXPECT_EQ(ReadRaw(dir.Path("2")),
            std::string("\x48\0\0\0\0\0\0\0", 8) +
                R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" +
                "       " + data);

  // No tensors: "{}" + 6 spaces.
  ASSERT_TRUE(WriteSafetensors(dir.Path("3"), {}).ok());
  EXPECT_EQ(ReadRaw(dir.Path("3")), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));

  // Metadata only: 35 bytes + 5 spaces.
  ASSERT_TRUE(WriteSafetensors(dir.Path("4"), {}, {{"framework", "pt"}}).ok());
  EXPECT_EQ(ReadRaw(dir.Path("4")), std::string("\x28\0\0\0\0\0\0\0", 8) +
                                        R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

TEST(WriteSafetensors, HeaderIsPaddedWithSpacesToAMultipleOf8) {
  TempDir dir;
  const uint8_t byte = 42;
  for (size_t length = 1; length <= 16; ++length) {
    std::string name(length, 'w');
    std::string path = dir.Path(name);
    ASSERT_TRUE(WriteSafetensors(path, {{name, DType::kU8, {1}, &byte, 1}}).ok());
    std::string bytes = ReadRaw(path);
    uint64_t header_size = 0;
    std::memcpy(&header_size, bytes.data(), 8);
    EXPECT_EQ(header_size % 8, 0u) << name;
    ASSERT_EQ(bytes.size(), 8 + header_size + 1) << name;
    std::string header = bytes.substr(8, header_size);
    size_t close = header.rfind('}');
    EXPECT_LT(header.size() - 1 - close, 8u) << "at most 7 spaces: " << header;
    EXPECT_EQ(header.substr(close + 1), std::string(header.size() - 1 - close, ' '));
    EXPECT_EQ(bytes.back(), '\x2a');
  }
}

TEST(WriteSafetensors, NamesAndMetadataAreJsonEscaped) {
  TempDir dir;
  const uint8_t byte = 1;
  std::string name = "quote\" back\\ tab\t nl\n ctl\x01 utf8 \xc3\xa9";
  ASSERT_TRUE(WriteSafetensors(dir.Path("e"), {{name, DType::kBool, {}, &byte, 1}},
                               {{"key\"", "line\nbreak"}})
                  .ok());
  std::string bytes = ReadRaw(dir.Path("e"));
  EXPECT_THAT(bytes, HasSubstr(R"("quote\" back\\ tab\t nl\n ctl\u0001 utf8 )"
                               "\xc3\xa9\""));
  auto file = SafetensorsFile::Open(dir.Path("e"));
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_NE((*file)->Find(name), nullptr);
  EXPECT_THAT((*file)->metadata(), ElementsAre(Pair("key\"", "line\nbreak")));
}

// ----- round trips -----------------------------------------------------------------------------

TEST(Safetensors, RoundTripOfEveryDTypeEmptyTensorsAndMetadata) {
  TempDir dir;
  const double f64[] = {1.5, -2.25, 1e300};
  const float f32[] = {1.0f, -0.0f, 3.5f, 1e-30f, 7.0f, 8.0f};
  const uint16_t f16[] = {0x3c00, 0xc000};                  // 1.0, -2.0
  const uint16_t bf16[] = {0x3f80, 0x4040, 0xbf80, 0x0000};  // 1, 3, -1, 0
  const int64_t i64[] = {INT64_MIN, -1, INT64_MAX};
  const int32_t i32[] = {INT32_MIN, 0, INT32_MAX, 5};
  const int16_t i16[] = {-32768, 32767};
  const int8_t i8[] = {-128, 0, 127};
  const uint8_t u8[] = {0, 128, 255};
  const uint8_t boolean[] = {1, 0, 1, 1};
  std::vector<TensorToWrite> tensors = {
      {"f64", DType::kF64, {3}, f64, sizeof(f64)},
      {"f32", DType::kF32, {2, 3}, f32, sizeof(f32)},
      {"f16", DType::kF16, {2}, f16, sizeof(f16)},
      {"bf16", DType::kBF16, {2, 1, 2}, bf16, sizeof(bf16)},
      {"i64", DType::kI64, {3}, i64, sizeof(i64)},
      {"i32", DType::kI32, {4}, i32, sizeof(i32)},
      {"i16", DType::kI16, {2}, i16, sizeof(i16)},
      {"i8", DType::kI8, {3, 1}, i8, sizeof(i8)},
      {"u8", DType::kU8, {3}, u8, sizeof(u8)},
      {"bool", DType::kBool, {2, 2}, boolean, sizeof(boolean)},
      {"scalar", DType::kF32, {}, f32 + 2, 4},
      {"empty", DType::kF32, {0, 3}, nullptr, 0},
      {"empty.too", DType::kI64, {4, 0}, f64, 0},
      {"layers.0.self_attn.q_proj.lora_A.weight", DType::kBF16, {1, 2}, bf16 + 2, 4},
  };
  std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"loratrf", "{\"rank\": 8}"}, {"empty", ""}};
  std::string path = dir.Path("adapter.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());
  EXPECT_THAT(dir.Entries(), ElementsAre("adapter.safetensors"));  // no temp file left

  auto opened = SafetensorsFile::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status();
  const SafetensorsFile& file = **opened;
  EXPECT_EQ(file.path(), path);
  EXPECT_EQ(file.metadata(), metadata);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (const TensorToWrite& written : tensors) {
    SCOPED_TRACE(written.name);
    const TensorEntry* entry = file.Find(written.name);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->name, written.name);
    EXPECT_EQ(entry->dtype, written.dtype);
    EXPECT_EQ(entry->shape, written.shape);
    EXPECT_EQ(entry->end - entry->begin, written.size_bytes);
    int64_t numel = 1;
    for (int64_t dim : written.shape) numel *= dim;
    EXPECT_EQ(file.NumElements(*entry), numel);
    ASSERT_NE(file.Data(*entry), nullptr);
    if (written.size_bytes > 0) {
      EXPECT_EQ(std::memcmp(file.Data(*entry), written.data, written.size_bytes), 0);
    }
  }
  // Laid out contiguously in name order, and tensors() lists them by offset.
  uint64_t offset = 0;
  std::string previous;
  for (const TensorEntry& entry : file.tensors()) {
    EXPECT_EQ(entry.begin, offset) << entry.name;
    EXPECT_LT(previous, entry.name);
    offset = entry.end;
    previous = entry.name;
  }
  EXPECT_EQ(file.Find("absent"), nullptr);
  EXPECT_EQ(file.Find(""), nullptr);
  EXPECT_EQ(file.Find("f3"), nullptr);
}

TEST(Safetensors, ZeroTensorFileRoundTrips) {
  TempDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.Path("none"), {}).ok());
  auto file = SafetensorsFile::Open(dir.Path("none"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_THAT((*file)->tensors(), IsEmpty());
  EXPECT_THAT((*file)->metadata(), IsEmpty());
}

TEST(Safetensors, WriterReplacesAnExistingFileWhileOldReadersKeepTheirData) {
  TempDir dir;
  std::string path = dir.Path("w.safetensors");
  const float one[] = {1, 1};
  const float two[] = {2, 2, 2};
  ASSERT_TRUE(WriteSafetensors(path, {{"w", DType::kF32, {2}, one, sizeof(one)}}).ok());
  auto before = SafetensorsFile::Open(path);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(WriteSafetensors(path, {{"w", DType::kF32, {3}, two, sizeof(two)}}).ok());
  auto after = SafetensorsFile::Open(path);
  ASSERT_TRUE(after.ok());
  // The rename replaced the directory entry; the old mapping still sees the old inode.
  EXPECT_EQ(std::memcmp((*before)->Data(*(*before)->Find("w")), one, sizeof(one)), 0);
  EXPECT_EQ(std::memcmp((*after)->Data(*(*after)->Find("w")), two, sizeof(two)), 0);
  EXPECT_THAT(dir.Entries(), ElementsAre("w.safetensors"));
}

TEST(Safetensors, SharedAcrossThreads) {
  TempDir dir;
  std::vector<int32_t> values(1000);
  for (int i = 0; i < 1000; ++i) values[i] = i * 7;
  ASSERT_TRUE(WriteSafetensors(dir.Path("s"), {{"v", DType::kI32, {1000}, values.data(), 4000}})
                  .ok());
  auto file = SafetensorsFile::Open(dir.Path("s"));
  ASSERT_TRUE(file.ok());
  std::shared_ptr<const SafetensorsFile> shared = *file;
  std::vector<int> matches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 100; ++round) {
        const TensorEntry* entry = shared->Find("v");
        matches[t] += entry != nullptr &&
                      std::memcmp(shared->Data(*entry), values.data(), 4000) == 0;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(matches, ElementsAre(100, 100, 100, 100));
}

// ----- reader: valid files from other writers --------------------------------------------------

TEST(SafetensorsFile, ReadsTheOfficialDocExampleWithAnUnpaddedHeader) {
  TempDir dir;
  // From the official crate's documentation: 60-byte header, not padded.
  WriteRaw(dir.Path("doc"),
           File(R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})", Zeros(16)));
  auto file = SafetensorsFile::Open(dir.Path("doc"));
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorEntry* entry = (*file)->Find("test");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->dtype, DType::kI32);
  EXPECT_THAT(entry->shape, ElementsAre(2, 2));
  EXPECT_EQ((*file)->NumElements(*entry), 4);
  EXPECT_EQ(TensorBytes(**file, *entry), Zeros(16));
}

TEST(SafetensorsFile, TensorsAreListedByOffsetWhateverTheKeyOrder) {
  TempDir dir;
  WriteRaw(dir.Path("order"),
           File("\n { \"z\" : {\"shape\":[1],\"data_offsets\":[0,2],\"dtype\":\"BF16\"},\n"
                "   \"a\" : {\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},\n"
                "   \"e2\": {\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[4,4]},\n"
                "   \"e1\": {\"dtype\":\"F64\",\"shape\":[3,0],\"data_offsets\":[4,4]},\n"
                "   \"e0\": {\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]},\n"
                "   \"__metadata__\": {}} \t",
                "ZZaa"));
  auto file = SafetensorsFile::Open(dir.Path("order"));
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> names;
  for (const TensorEntry& entry : (*file)->tensors()) names.push_back(entry.name);
  EXPECT_THAT(names, ElementsAre("e0", "z", "a", "e1", "e2"));
  EXPECT_EQ(TensorBytes(**file, *(*file)->Find("z")), "ZZ");
  EXPECT_EQ(TensorBytes(**file, *(*file)->Find("a")), "aa");
  EXPECT_EQ((*file)->NumElements(*(*file)->Find("e1")), 0);
  EXPECT_THAT((*file)->metadata(), IsEmpty());
}

TEST(SafetensorsFile, DataOfAForeignEntryOutsideTheMappingIsNull) {
  TempDir dir;
  WriteRaw(dir.Path("f"), File(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                               "abcd"));
  auto file = SafetensorsFile::Open(dir.Path("f"));
  ASSERT_TRUE(file.ok());
  TensorEntry foreign{"x", DType::kU8, {100}, 0, 100};
  EXPECT_EQ((*file)->Data(foreign), nullptr);
}

// A header's names and values are quoted in errors as a bounded, one-line excerpt.
TEST(SafetensorsFile, ErrorsQuoteABoundedSanitisedExcerptOfTheHeader) {
  TempDir dir;
  const std::string long_name = std::string(3000, 'n') + "\\n\\u001b";
  const std::vector<std::string> headers = {
      "{\"" + long_name + "\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,3]}}",
      "{\"a\":{\"dtype\":\"" + long_name + "\",\"shape\":[4],\"data_offsets\":[0,4]}}",
      "{\"a\":{\"" + long_name + "\":1,\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[\"" + long_name + "\"],\"data_offsets\":[0,4]}}",
      "{\"__metadata__\":{\"" + long_name + "\":1},\"a\":{\"dtype\":\"U8\",\"shape\":[4],"
      "\"data_offsets\":[0,4]}}",
  };
  for (const std::string& header : headers) {
    WriteRaw(dir.Path("h"), File(header, "abcd"));
    auto file = SafetensorsFile::Open(dir.Path("h"));
    ASSERT_FALSE(file.ok()) << header.substr(0, 80);
    const std::string message(file.status().message());
    EXPECT_LT(message.size(), 400u) << message;
    EXPECT_EQ(message.find(std::string(100, 'n')), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_EQ(message.find('\x1b'), std::string::npos) << message;
  }
}

TEST(SafetensorsFile, MissingFileAndNonRegularFiles) {
  TempDir dir;
  auto missing = SafetensorsFile::Open(dir.Path("missing.safetensors"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            dir.Path("missing.safetensors") + ": cannot open: No such file or directory");

  auto directory = SafetensorsFile::Open(dir.Path(""));
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(directory.status().message(), HasSubstr(": not a regular file"));

  // A FIFO must be refused at once, not block waiting for a writer.
  ASSERT_EQ(::mkfifo(dir.Path("fifo").c_str(), 0600), 0);
  auto fifo = SafetensorsFile::Open(dir.Path("fifo"));
  EXPECT_EQ(fifo.status().message(), dir.Path("fifo") + ": not a regular file");
}

// ----- writer: refused input -------------------------------------------------------------------

struct BadWrite {
  std::string name;
  std::vector<TensorToWrite> tensors;
  std::map<std::string, std::string> metadata;
  std::string error;
};

void PrintTo(const BadWrite& c, std::ostream* os) { *os << c.name << " → \"" << c.error << "\""; }

class WriteSafetensorsRefuses : public ::testing::TestWithParam<BadWrite> {};

const float kFour[4] = {1, 2, 3, 4};

std::vector<BadWrite> BadWrites() {
  return {
      {"EmptyName", {{"", DType::kF32, {1}, kFour, 4}}, {}, "a tensor has an empty name"},
      {"DuplicateName",
       {{"w", DType::kF32, {1}, kFour, 4}, {"w", DType::kF32, {1}, kFour, 4}},
       {},
       "tensor 'w': duplicate tensor name"},
      {"ReservedName",
       {{"__metadata__", DType::kF32, {1}, kFour, 4}},
       {},
       "tensor '__metadata__': the name is reserved for metadata"},
      {"NameNotUtf8",
       {{"bad\xff", DType::kF32, {1}, kFour, 4}},
       {},
       "the name is not valid UTF-8"},
      {"NegativeDim",
       {{"w", DType::kF32, {2, -2}, kFour, 16}},
       {},
       "tensor 'w': shape[1] is negative (-2)"},
      {"DimAbove2To53",
       {{"w", DType::kU8, {(int64_t{1} << 53) + 1}, kFour, 4}},
       {},
       "tensor 'w': shape[0] is 9007199254740993, larger than 2^53"},
      {"SizeOverflow",
       {{"w", DType::kF32, {int64_t{1} << 32, int64_t{1} << 31}, kFour, 4}},
       {},
       "tensor 'w': shape [4294967296, 2147483648]: element count × dtype size overflows"},
      {"SizeMismatch",
       {{"w", DType::kF32, {2, 2}, kFour, 12}},
       {},
       "tensor 'w': size_bytes is 12 but shape [2, 2] of F32 needs 16"},
      {"NullData", {{"w", DType::kF32, {2}, nullptr, 8}}, {}, "tensor 'w': data is null"},
      {"MetadataNotUtf8", {}, {{"k", "\xc0\xaf"}}, "__metadata__ key or value is not valid UTF-8"},
  };
}

TEST_P(WriteSafetensorsRefuses, AndWritesNothing) {
  TempDir dir;
  std::string path = dir.Path("out.safetensors");
  absl::Status status = WriteSafetensors(path, GetParam().tensors, GetParam().metadata);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith(path + ": "));
  EXPECT_THAT(status.message(), HasSubstr(GetParam().error));
  EXPECT_THAT(dir.Entries(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(BadInput, WriteSafetensorsRefuses, ::testing::ValuesIn(BadWrites()),
                         [](const ::testing::TestParamInfo<BadWrite>& info) {
                           return info.param.name;
                         });

TEST(WriteSafetensors, MissingDirectoryNamesThePath) {
  TempDir dir;
  std::string path = dir.Path("no/such/dir/x.safetensors");
  absl::Status status = WriteSafetensors(path, {});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(path));
}

// ----- reader: a corpus of malformed files -----------------------------------------------------

struct Malformed {
  std::string name;   // the test's name
  std::string bytes;  // the whole file
  std::string error;  // a substring the error message must contain
};

void PrintTo(const Malformed& c, std::ostream* os) {
  *os << c.name << " (" << c.bytes.size() << " bytes) → \"" << c.error << "\"";
}

// One tensor entry's JSON.
std::string Entry(const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return absl::StrCat(R"({"dtype":")", dtype, R"(","shape":)", shape, R"(,"data_offsets":)",
                      offsets, "}");
}

std::vector<Malformed> MalformedFiles() {
  const std::string w8 = Entry("F32", "[2]", "[0,8]");  // a valid 8-byte tensor
  return {
      // The length prefix.
      {"EmptyFile", "", "file is 0 bytes, shorter than the 8-byte header length prefix"},
      {"ShorterThan8Bytes", "abc", "file is 3 bytes, shorter than the 8-byte header length"},
      {"HeaderLengthOverCap", Le64(100'000'001) + "{}",
       "header length 100000001 is larger than the 100000000-byte limit"},
      {"HeaderLengthHuge", Le64(~uint64_t{0}) + "{}",
       "header length 18446744073709551615 is larger than"},
      {"HeaderLengthPastEnd", Le64(100) + "{}",
       "header length 100 runs past the end of the file (2 bytes follow the length prefix)"},
      // The header as text.
      {"HeaderNotUtf8", File("{\"w\xff\":1}"), "header is not valid UTF-8 (byte 3"},
      {"HeaderOverlongUtf8", File("{\"\xc0\xaf\":1}"),
       "header is not valid UTF-8 (byte 2 of the header)"},
      {"HeaderUtf8Surrogate", File("{\"x\xed\xa0\x80\":1}"),
       "header is not valid UTF-8 (byte 3 of the header)"},
      {"EmptyHeader", File(""),
       "header is not valid JSON: parse error at line 1, column 1: syntax error while parsing "
       "value - unexpected end of input"},
      {"HeaderNotJson", File("{nope}"),
       "header is not valid JSON: parse error at line 1, column 3: syntax error while parsing "
       "object key"},
      {"HeaderTrailingGarbage", File("{} x"),
       "header is not valid JSON: parse error at line 1, column 4: syntax error while parsing "
       "value - invalid literal; last read: '{} x'; expected end of input"},
      {"HeaderNestedTooDeeply", File("{\"__metadata__\":[[[[[[[[[]]]]]]]]]}"),
       "header JSON is nested deeper than 8 levels"},
      {"HeaderNotAnObject", File("[1, 2]"), "header is not a JSON object (got array)"},
      {"HeaderIsAString", File("\"{}\""), "header is not a JSON object (got string)"},
      // Duplicate keys.
      {"DuplicateTensorName",
       File(absl::StrCat(R"({"w":)", w8, R"(,"w":)", w8, "}"), Zeros(8)),
       "duplicate tensor name 'w'"},
      {"DuplicateEntryKey",
       File(R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Zeros(8)),
       "tensor 'w': duplicate key 'dtype'"},
      {"DuplicateMetadata", File(R"({"__metadata__":{},"__metadata__":{}})"),
       "header has more than one __metadata__"},
      {"DuplicateMetadataKey", File(R"({"__metadata__":{"k":"a","k":"b"}})"),
       "__metadata__: duplicate key 'k'"},
      // One entry's structure.
      {"EntryNotAnObject", File(R"({"w":[0,8]})", Zeros(8)),
       "tensor 'w': entry is not a JSON object (got array)"},
      {"EntryMissingKey", File(R"({"w":{"dtype":"F32","shape":[2]}})", Zeros(8)),
       "tensor 'w': missing key 'data_offsets'"},
      {"EntryExtraKey",
       File(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"offsets":[0,8]}})",
            Zeros(8)),
       "tensor 'w': unknown key 'offsets' (expected dtype, shape, data_offsets)"},
      // dtype.
      {"DTypeNotAString",
       File(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", Zeros(8)),
       "tensor 'w': dtype is not a string (got 4)"},
      {"DTypeUnknown", File(absl::StrCat(R"({"w":)", Entry("F8_E4M3", "[2]", "[0,2]"), "}"),
                            Zeros(2)),
       "tensor 'w': unsupported dtype 'F8_E4M3' (supported: F64, F32, F16, BF16, I64, I32, I16, "
       "I8, U8, BOOL)"},
      {"DTypeWrongCase", File(absl::StrCat(R"({"w":)", Entry("f32", "[2]", "[0,8]"), "}"),
                              Zeros(8)),
       "tensor 'w': unsupported dtype 'f32'"},
      // shape.
      {"ShapeNotAnArray", File(absl::StrCat(R"({"w":)", Entry("F32", "2", "[0,8]"), "}"), Zeros(8)),
       "tensor 'w': shape is not an array (got 2)"},
      {"ShapeFloat", File(absl::StrCat(R"({"w":)", Entry("F32", "[2.0]", "[0,8]"), "}"), Zeros(8)),
       "tensor 'w': shape[0] is not an integer (got 2.0)"},
      {"ShapeExponent",
       File(absl::StrCat(R"({"w":)", Entry("F32", "[1,2e0]", "[0,8]"), "}"), Zeros(8)),
       "tensor 'w': shape[1] is not an integer (got 2.0)"},
      {"ShapeString", File(absl::StrCat(R"({"w":)", Entry("F32", "[\"2\"]", "[0,8]"), "}"),
                           Zeros(8)),
       "tensor 'w': shape[0] is not an integer (got \"2\")"},
      {"ShapeNegative",
       File(absl::StrCat(R"({"w":)", Entry("F32", "[2,-1]", "[0,8]"), "}"), Zeros(8)),
       "tensor 'w': shape[1] is negative (-1)"},
      {"ShapeAbove2To53",
       File(absl::StrCat(R"({"w":)", Entry("U8", "[9007199254740993]", "[0,8]"), "}"), Zeros(8)),
       "tensor 'w': shape[0] is 9007199254740993, larger than 2^53"},
      {"ShapeBeyondU64",
       File(absl::StrCat(R"({"w":)", Entry("U8", "[18446744073709551616]", "[0,8]"), "}"),
            Zeros(8)),
       "tensor 'w': shape[0] is not an integer"},
      {"ElementCountOverflow",
       File(absl::StrCat(R"({"w":)", Entry("U8", "[4294967296,4294967296]", "[0,8]"), "}"),
            Zeros(8)),
       "tensor 'w': shape [4294967296, 4294967296] of U8: element count × dtype size overflows "
       "64 bits"},
      {"ByteSizeOverflow",
       File(absl::StrCat(R"({"w":)", Entry("F32", "[4294967296,2147483648]", "[0,8]"), "}"),
            Zeros(8)),
       "tensor 'w': shape [4294967296, 2147483648] of F32: element count × dtype size overflows"},
      // data_offsets.
      {"OffsetsNotAPair", File(absl::StrCat(R"({"w":)", Entry("F32", "[2]", "[0]"), "}"), Zeros(8)),
       "tensor 'w': data_offsets is not an array of two integers (got [0])"},
      {"OffsetsNotAnArray",
       File(absl::StrCat(R"({"w":)", Entry("F32", "[2]", "{\"begin\":0}"), "}"), Zeros(8)),
       "tensor 'w': data_offsets is not an array of two integers (got {\"begin\":0})"},
      {"OffsetNegative", File(absl::StrCat(R"({"w":)", Entry("F32", "[2]", "[-1,7]"), "}"),
                              Zeros(8)),
       "tensor 'w': data_offsets[0] is not an unsigned integer (got -1)"},
      {"OffsetFloat", File(absl::StrCat(R"({"w":)", Entry("F32", "[2]", "[0,8.5]"), "}"), Zeros(8)),
       "tensor 'w': data_offsets[1] is not an unsigned integer (got 8.5)"},
      {"OffsetsReversed", File(absl::StrCat(R"({"w":)", Entry("F32", "[0]", "[8,0]"), "}"),
                               Zeros(8)),
       "tensor 'w': data_offsets [8, 0] begin is after end"},
      {"OffsetPastDataSection",
       File(absl::StrCat(R"({"w":)", Entry("F32", "[4]", "[0,16]"), "}"), Zeros(8)),
       "tensor 'w': data_offsets end 16 is past the end of the 8-byte data section"},
      {"OffsetHugePastDataSection",
       File(absl::StrCat(R"({"w":)", Entry("U8", "[0]", "[18446744073709551615,"
                                                         "18446744073709551615]"),
                         "}")),
       "tensor 'w': data_offsets end 18446744073709551615 is past the end of the 0-byte data"},
      {"ByteLengthMismatch",
       File(absl::StrCat(R"({"w":)", Entry("F32", "[2]", "[0,4]"), "}"), Zeros(4)),
       "tensor 'w': data_offsets [0, 4] hold 4 bytes but shape [2] of F32 needs 8"},
      // How the tensors tile the data section.
      {"Overlap",
       File(absl::StrCat(R"({"a":)", w8, R"(,"b":)", Entry("F32", "[2]", "[4,12]"), "}"),
            Zeros(12)),
       "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
      {"SameRange", File(absl::StrCat(R"({"a":)", w8, R"(,"b":)", w8, "}"), Zeros(8)),
       "tensors 'a' [0, 8) and 'b' [0, 8) overlap"},
      {"EmptyTensorInsideAnother",
       File(absl::StrCat(R"({"a":)", w8, R"(,"e":)", Entry("F32", "[0]", "[4,4]"), "}"),
            Zeros(8)),
       "tensors 'a' [0, 8) and 'e' [4, 4) overlap"},
      {"Hole",
       File(absl::StrCat(R"({"a":)", Entry("F32", "[1]", "[0,4]"), R"(,"b":)",
                         Entry("F32", "[1]", "[8,12]"), "}"),
            Zeros(12)),
       "bytes [4, 8) of the data section belong to no tensor (a gap before 'b')"},
      {"HoleAtStart", File(absl::StrCat(R"({"b":)", Entry("F32", "[1]", "[4,8]"), "}"), Zeros(8)),
       "bytes [0, 4) of the data section belong to no tensor (a gap before 'b')"},
      {"TrailingBytes",
       File(absl::StrCat(R"({"a":)", Entry("F32", "[1]", "[0,4]"), "}"), Zeros(8)),
       "bytes [4, 8) at the end of the data section belong to no tensor"},
      {"NoTensorsButData", File("{}", "junk"),
       "bytes [0, 4) at the end of the data section belong to no tensor"},
      // __metadata__.
      {"MetadataNotAnObject", File(R"({"__metadata__":["k","v"]})"),
       "__metadata__ is not a JSON object (got array)"},
      {"MetadataValueNotAString", File(R"({"__metadata__":{"k":1}})"),
       "__metadata__['k'] is not a string (got 1)"},
      {"MetadataValueNull", File(R"({"__metadata__":{"k":null}})"),
       "__metadata__['k'] is not a string (got null)"},
  };
}

class SafetensorsFileRejects : public ::testing::TestWithParam<Malformed> {};

TEST_P(SafetensorsFileRejects, WithAClearError) {
  TempDir dir;
  std::string path = dir.Path("bad.safetensors");
  WriteRaw(path, GetParam().bytes);
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok()) << "accepted " << ::testing::PrintToString(GetParam());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(file.status().message()), StartsWith(path + ": "));
  EXPECT_THAT(file.status().message(), HasSubstr(GetParam().error));
}

INSTANTIATE_TEST_SUITE_P(Corpus, SafetensorsFileRejects, ::testing::ValuesIn(MalformedFiles()),
                         [](const ::testing::TestParamInfo<Malformed>& info) {
                           return info.param.name;
                         });

TEST(SafetensorsFileRejects, EveryCaseHasItsOwnMessage) {
  std::set<std::string> errors;
  for (const Malformed& c : MalformedFiles()) {
    EXPECT_TRUE(errors.insert(c.error).second) << c.name;
  }
}

// Truncating a valid file at every length must give an error, never a crash or an over-read.
TEST(SafetensorsFileRejects, EveryTruncationOfAValidFile) {
  TempDir dir;
  const float values[] = {1, 2, 3};
  const uint8_t bytes[] = {4, 5};
  ASSERT_TRUE(WriteSafetensors(dir.Path("full"),
                               {{"a", DType::kF32, {3}, values, 12},
                                {"b", DType::kU8, {2}, bytes, 2}},
                               {{"k", "v"}})
                  .ok());
  std::string full = ReadRaw(dir.Path("full"));
  for (size_t length = 0; length < full.size(); ++length) {
    WriteRaw(dir.Path("cut"), full.substr(0, length));
    auto file = SafetensorsFile::Open(dir.Path("cut"));
    EXPECT_FALSE(file.ok()) << "accepted the first " << length << " bytes";
  }
  EXPECT_TRUE(SafetensorsFile::Open(dir.Path("full")).ok());
}

// Wide and deep headers: each is answered after one pass over the header (the callback parser
// this reader used before needed 18 s for 40,000 entries and did not finish 100,000).
std::string WideHeader(int entries, const std::string& extra = "") {
  std::string header = "{";
  for (int i = 0; i < entries; ++i) {
    absl::StrAppend(&header, i ? "," : "", "\"t", i, "\":{\"dtype\":\"U8\",\"shape\":[1],",
                    "\"data_offsets\":[", i, ",", i + 1, "]}");
  }
  return header + extra + "}";
}

TEST(SafetensorsFileWide, TwoHundredThousandTensorsAreRead) {
  TempDir dir;
  WriteRaw(dir.Path("wide"), File(WideHeader(200'000), Zeros(200'000)));
  auto file = SafetensorsFile::Open(dir.Path("wide"));
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 200'000u);
  EXPECT_EQ((*file)->tensors().back().name, "t199999");
  EXPECT_EQ((*file)->tensors().back().begin, 199'999u);
}

TEST(SafetensorsFileWide, ADuplicateAfterTwoHundredThousandTensorsIsFound) {
  TempDir dir;
  WriteRaw(dir.Path("dup"),
           File(WideHeader(200'000, R"(,"t7":{"dtype":"U8","shape":[1],"data_offsets":[0,1]})"),
                Zeros(200'000)));
  auto file = SafetensorsFile::Open(dir.Path("dup"));
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr("duplicate tensor name 't7'"));
}

TEST(SafetensorsFileWide, AMillionMetadataKeysAreRead) {
  std::string header = R"({"__metadata__":{)";
  for (int i = 0; i < 1'000'000; ++i) absl::StrAppend(&header, i ? "," : "", "\"k", i, "\":\"v\"");
  header += "}}";
  TempDir dir;
  WriteRaw(dir.Path("meta"), File(header));
  auto file = SafetensorsFile::Open(dir.Path("meta"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().size(), 1'000'000u);
}

TEST(SafetensorsFileWide, AMillionLevelsAreRefused) {
  TempDir dir;
  WriteRaw(dir.Path("deep"), File(R"({"__metadata__":)" + std::string(1'000'000, '[') +
                                  std::string(1'000'000, ']') + "}"));
  auto file = SafetensorsFile::Open(dir.Path("deep"));
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr("header JSON is nested deeper than 8 levels"));
}

}  // namespace
}  // namespace loratrf::engine

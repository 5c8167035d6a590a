// The checkpoint file-set rule and chunk order (proto/contract/checkpoint_files.h), which the
// artifact store, the agent and the CLI all apply.
#include "proto/contract/checkpoint_files.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/sha256.h"
#include "proto/contract/limits.h"

namespace loratrf::contract {
namespace {

using ::testing::HasSubstr;

FileEntry File(const std::string& path, const std::string& content) {
  return {path, content.size(), Sha256Hex(content)};
}

TEST(CheckpointFilePath, AcceptsPlainRelativePaths) {
  for (const char* ok : {"adapter_model.safetensors", "adapter/adapter_config.json",
                         "a/b/c/d/e/f/g/h", ".hidden", "x..y", "MANIFEST.json"}) {
    EXPECT_TRUE(CheckCheckpointFilePath("path", ok).ok()) << ok;
  }
}

TEST(CheckpointFilePath, RejectsAnythingThatCouldEscape) {
  for (const std::string& bad :
       {std::string(), std::string("/etc/passwd"), std::string("../x"), std::string("a/../../x"),
        std::string("a/.."), std::string("."), std::string("a/./b"), std::string("a//b"),
        std::string("a/"), std::string("a\\b"), std::string("a b"), std::string("a/b/c/d/e/f/g/h/i"),
        std::string("~/x"), std::string("a:b"), std::string("a\0b", 3),
        std::string(limits::kMaxCheckpointPathBytes + 1, 'a'),
        std::string(limits::kMaxPathComponentBytes + 1, 'a')}) {
    absl::Status s = CheckCheckpointFilePath("files[0].path", bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("files[0].path: ")) << bad;
  }
  // The path is quoted escaped: it could move a terminal's cursor.
  EXPECT_EQ(std::string(CheckCheckpointFilePath("p", "x\x1b[2J").message()),
            "p: 'x\\x1b[2J' may contain only [A-Za-z0-9._-] and '/'");
  EXPECT_EQ(std::string(CheckCheckpointFilePath("f", "../etc/passwd").message()),
            "f: '../etc/passwd' must not have '.' or '..' components");
}

TEST(CheckpointFileSet, WholeListRules) {
  std::vector<FileEntry> ok = {File("a/x", "1"), File("b", "2")};
  EXPECT_TRUE(CheckCheckpointFileSet("checkpoint.files", ok).ok());

  EXPECT_THAT(std::string(CheckCheckpointFileSet("checkpoint.files", {}).message()),
              HasSubstr("at least one file"));
  std::vector<FileEntry> dup = ok;
  dup.push_back(File("b", "3"));
  EXPECT_THAT(std::string(CheckCheckpointFileSet("checkpoint.files", dup).message()),
              HasSubstr("checkpoint.files[2].path: 'b' is listed twice"));
  for (const char* nested : {"b/y", "a"}) {
    std::vector<FileEntry> both = ok;
    both.push_back(File(nested, "3"));
    EXPECT_THAT(std::string(CheckCheckpointFileSet("checkpoint.files", both).message()),
                HasSubstr("both a file and a directory"))
        << nested;
  }
  std::vector<FileEntry> siblings = {File("a", "1"), File("a0", "2"), File("a.b/c", "3")};
  EXPECT_TRUE(CheckCheckpointFileSet("f", siblings).ok()) << "a prefix is not a directory";
  std::vector<FileEntry> bad_sha = ok;
  bad_sha[0].sha256 = "ABC";
  EXPECT_THAT(std::string(CheckCheckpointFileSet("checkpoint.files", bad_sha).message()),
              HasSubstr("checkpoint.files[0].sha256"));
  std::vector<FileEntry> huge = ok;
  huge[0].size_bytes = limits::kMaxCheckpointFileBytes + 1;
  EXPECT_THAT(std::string(CheckCheckpointFileSet("checkpoint.files", huge).message()),
              HasSubstr("size_bytes"));
  std::vector<FileEntry> many;
  for (int i = 0; i <= limits::kMaxCheckpointFiles; ++i) many.push_back(File("f" + std::to_string(i), ""));
  EXPECT_THAT(std::string(CheckCheckpointFileSet("checkpoint.files", many).message()),
              HasSubstr("at most 256"));
}

TEST(ChunkSequence, InOrderContiguousWithinSize) {
  ChunkSequence chunks({File("a", "abc"), File("empty", ""), File("b", "de")});
  EXPECT_EQ(*chunks.Accept("a", 0, 2), 0);
  EXPECT_EQ(*chunks.Accept("a", 2, 1), 0);
  EXPECT_EQ(*chunks.Accept("b", 0, 2), 2) << "an empty file may send no chunk";
  EXPECT_TRUE(chunks.CheckComplete().ok());
  EXPECT_EQ(chunks.written(0), 3u);
}

TEST(ChunkSequence, EveryWayOutOfLineIsRefused) {
  struct Case {
    const char* name;
    std::vector<std::tuple<std::string, uint64_t, size_t>> chunks;
    const char* expected;
  };
  std::vector<Case> cases = {
      {"gap", {{"a", 1, 2}}, "offset 1 is out of order (expected 0)"},
      {"overlap", {{"a", 0, 2}, {"a", 1, 1}}, "offset 1 is out of order (expected 2)"},
      {"too long", {{"a", 0, 4}}, "past the file's size of 3"},
      {"skips a file", {{"b", 0, 2}}, "'a' has 0 of 3 bytes"},
      {"back to a finished file", {{"a", 0, 3}, {"b", 0, 1}, {"a", 3, 0}}, "already finished"},
      {"unknown", {{"../etc", 0, 1}}, "not a file of this checkpoint"},
      {"oversized chunk", {{"a", 0, limits::kMaxChunkBytes + 1}}, "chunk limit"},
  };
  for (const Case& k : cases) {
    ChunkSequence chunks({File("a", "abc"), File("b", "de")});
    absl::Status status;
    for (const auto& [path, offset, size] : k.chunks) {
      status = chunks.Accept(path, offset, size).status();
      if (!status.ok()) break;
    }
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << k.name << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(k.expected)) << k.name;
  }
  ChunkSequence incomplete({File("a", "abc"), File("b", "de")});
  ASSERT_TRUE(incomplete.Accept("a", 0, 3).ok());
  EXPECT_THAT(std::string(incomplete.CheckComplete().message()), HasSubstr("checkpoint file 'b': incomplete: 0 of 2 bytes"));
}

}  // namespace
}  // namespace loratrf::contract

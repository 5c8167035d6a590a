// ArtifactStore on real files in a temp directory: uploads, verification, path rules, reads.
#include "server/artifacts/artifact_store.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "artifact_store_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto store = ArtifactStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A checkpoint whose files hold `contents` (path → bytes), in that map's order.
  static v1::Checkpoint MakeCheckpoint(
      const std::vector<std::pair<std::string, std::string>>& contents,
      const std::string& id = "c1") {
    v1::Checkpoint checkpoint;
    checkpoint.set_id(id);
    checkpoint.set_job_id("j1");
    checkpoint.set_step(10);
    for (const auto& [path, bytes] : contents) {
      v1::CheckpointFile* file = checkpoint.add_files();
      file->set_path(path);
      file->set_size_bytes(bytes.size());
      file->set_sha256(Sha256Hex(bytes));
    }
    return checkpoint;
  }

  static v1::FileChunk Chunk(const std::string& path, uint64_t offset, const std::string& data) {
    v1::FileChunk chunk;
    chunk.set_path(path);
    chunk.set_offset(offset);
    chunk.set_data(data);
    return chunk;
  }

  // Uploads every file in chunks of `chunk_size` bytes and commits.
  absl::Status UploadAll(const v1::Checkpoint& checkpoint,
                         const std::vector<std::pair<std::string, std::string>>& contents,
                         size_t chunk_size = limits::kMaxChunkBytes) {
    auto upload = store_->BeginUpload(checkpoint);
    if (!upload.ok()) return upload.status();
    for (const auto& [path, bytes] : contents) {
      for (size_t offset = 0; offset < bytes.size(); offset += chunk_size) {
        absl::Status status =
            (*upload)->Write(Chunk(path, offset, bytes.substr(offset, chunk_size)));
        if (!status.ok()) return status;
      }
    }
    return (*upload)->Commit();
  }

  // Reads a checkpoint back through a Reader: path → bytes, checking chunk order and size.
  absl::StatusOr<std::map<std::string, std::string>> ReadAll(const v1::Checkpoint& checkpoint) {
    auto reader = store_->Read(checkpoint);
    if (!reader.ok()) return reader.status();
    std::map<std::string, std::string> files;
    v1::FileChunk chunk;
    while (true) {
      absl::StatusOr<bool> more = (*reader)->Next(chunk);
      if (!more.ok()) return more.status();
      if (!*more) break;
      EXPECT_LE(chunk.data().size(), limits::kMaxChunkBytes);
      std::string& file = files[chunk.path()];
      EXPECT_EQ(chunk.offset(), file.size()) << chunk.path();
      file += chunk.data();
    }
    return files;
  }

  std::vector<std::string> TmpEntries() const {
    std::vector<std::string> entries;
    for (const auto& entry : fs::directory_iterator(dir_ + "/artifacts/tmp")) {
      entries.push_back(entry.path().filename().string());
    }
    return entries;
  }

  bool Committed(const std::string& id = "c1") const {
    return fs::exists(dir_ + "/artifacts/j1/" + id);
  }

  std::string dir_;
  std::unique_ptr<ArtifactStore> store_;
};

TEST_F(ArtifactStoreTest, RoundTripThroughReader) {
  std::string big(limits::kMaxChunkBytes * 2 + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
  std::vector<std::pair<std::string, std::string>> contents = {
      {"adapter/adapter_model.safetensors", big},
      {"adapter/adapter_config.json", "{\"r\": 8}"},
      {"empty.txt", ""},
      {"MANIFEST.json", "{}"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents, 100000).ok());

  // Server-made names only, in the file list's order; nothing left in tmp/.
  EXPECT_TRUE(fs::exists(dir_ + "/artifacts/j1/c1/f0"));
  EXPECT_TRUE(fs::exists(dir_ + "/artifacts/j1/c1/f3"));
  EXPECT_FALSE(fs::exists(dir_ + "/artifacts/j1/c1/adapter"));
  EXPECT_EQ(fs::file_size(dir_ + "/artifacts/j1/c1/f0"), big.size());
  EXPECT_TRUE(TmpEntries().empty());

  auto files = ReadAll(checkpoint);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 4u);  // the empty file comes as one empty chunk
  for (const auto& [path, bytes] : contents) EXPECT_EQ((*files)[path], bytes) << path;
}

TEST_F(ArtifactStoreTest, CommittedCheckpointIsNotOverwritten) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "x"}};
  ASSERT_TRUE(UploadAll(MakeCheckpoint(contents), contents).ok());
  auto again = store_->BeginUpload(MakeCheckpoint(contents));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ArtifactStoreTest, RemoveDeletesACommittedCheckpoint) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abcdef"}, {"d/b", "xy"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents).ok());
  std::vector<std::pair<std::string, std::string>> other_contents = {{"a", "other"}};
  v1::Checkpoint other = MakeCheckpoint(other_contents, "c2");
  ASSERT_TRUE(UploadAll(other, other_contents).ok());

  ASSERT_TRUE(store_->Remove(checkpoint).ok());
  EXPECT_FALSE(Committed("c1"));
  EXPECT_TRUE(TmpEntries().empty());  // deleted, not just moved aside
  EXPECT_EQ(store_->Read(checkpoint).status().code(), absl::StatusCode::kNotFound);
  // Only that checkpoint: the job's other one is untouched.
  auto files = ReadAll(other);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ((*files)["a"], "other");
}

TEST_F(ArtifactStoreTest, RemoveOfAMissingCheckpointIsNotFound) {
  EXPECT_EQ(store_->Remove(MakeCheckpoint({{"a", "x"}}, "never-uploaded")).code(),
            absl::StatusCode::kNotFound);
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "x"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents).ok());
  ASSERT_TRUE(store_->Remove(checkpoint).ok());
  EXPECT_EQ(store_->Remove(checkpoint).code(), absl::StatusCode::kNotFound);  // twice
  // An upload in progress (in tmp/) is not a committed checkpoint.
  auto upload = store_->BeginUpload(checkpoint);
  ASSERT_TRUE(upload.ok()) << upload.status();
  EXPECT_EQ(store_->Remove(checkpoint).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(TmpEntries().size(), 1u);
}

TEST_F(ArtifactStoreTest, RemoveChecksIds) {
  for (const char* bad : {"", "..", "tmp", "a/b"}) {
    v1::Checkpoint checkpoint = MakeCheckpoint({{"a", "x"}}, bad);
    EXPECT_EQ(store_->Remove(checkpoint).code(), absl::StatusCode::kInvalidArgument) << bad;
    checkpoint.set_id("c1");
    checkpoint.set_job_id(bad);
    EXPECT_EQ(store_->Remove(checkpoint).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(fs::exists(dir_ + "/artifacts/tmp"));
}

// An orphan (committed files whose record the coordinator never wrote): BeginUpload refuses
// it, and after Remove the same checkpoint uploads again.
TEST_F(ArtifactStoreTest, OrphanIsReuploadedAfterRemove) {
  std::vector<std::pair<std::string, std::string>> first = {{"a", "first"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(first);
  ASSERT_TRUE(UploadAll(checkpoint, first).ok());
  EXPECT_EQ(store_->BeginUpload(checkpoint).status().code(), absl::StatusCode::kAlreadyExists);

  ASSERT_TRUE(store_->Remove(checkpoint).ok());
  std::vector<std::pair<std::string, std::string>> second = {{"a", "second"}};
  v1::Checkpoint again = MakeCheckpoint(second);
  ASSERT_TRUE(UploadAll(again, second).ok());
  auto files = ReadAll(again);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ((*files)["a"], "second");
}

// A crash after the rename into tmp/: the job holds nothing, and Open clears the rest.
TEST_F(ArtifactStoreTest, RemovalLeftInTmpIsClearedAtOpen) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "x"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents).ok());
  // What Remove leaves if the process dies between its rename and its remove_all.
  fs::rename(dir_ + "/artifacts/j1/c1", dir_ + "/artifacts/tmp/r0-1-2");
  EXPECT_EQ(store_->Remove(checkpoint).code(), absl::StatusCode::kNotFound);
  auto reopened = ArtifactStore::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(TmpEntries().empty());
}

TEST_F(ArtifactStoreTest, OutOfOrderChunkOffset) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "hello world"}};
  auto upload = store_->BeginUpload(MakeCheckpoint(contents));
  ASSERT_TRUE(upload.ok());
  absl::Status status = (*upload)->Write(Chunk("a", 5, " world"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("out of order"));
  // A failed upload is spent and leaves nothing behind.
  EXPECT_FALSE((*upload)->Commit().ok());
  EXPECT_FALSE(Committed());
  EXPECT_TRUE(TmpEntries().empty());
}

TEST_F(ArtifactStoreTest, OutOfOrderFiles) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "aaaa"}, {"b", "bbbb"}};
  {
    // b before a is finished.
    auto upload = store_->BeginUpload(MakeCheckpoint(contents));
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Write(Chunk("a", 0, "aa")).ok());
    absl::Status status = (*upload)->Write(Chunk("b", 0, "bbbb"));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("'a' has 2 of 4 bytes"));
  }
  {
    // Back to a after b started.
    auto upload = store_->BeginUpload(MakeCheckpoint(contents));
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Write(Chunk("a", 0, "aaaa")).ok());
    ASSERT_TRUE((*upload)->Write(Chunk("b", 0, "bb")).ok());
    EXPECT_EQ((*upload)->Write(Chunk("a", 4, "")).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(TmpEntries().empty());
}

TEST_F(ArtifactStoreTest, ChunkPastSizeOrUnknownPathOrTooLarge) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abc"}};
  {
    auto upload = store_->BeginUpload(MakeCheckpoint(contents));
    ASSERT_TRUE(upload.ok());
    absl::Status status = (*upload)->Write(Chunk("a", 0, "abcd"));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("past the file's size"));
  }
  {
    auto upload = store_->BeginUpload(MakeCheckpoint(contents));
    ASSERT_TRUE(upload.ok());
    EXPECT_EQ((*upload)->Write(Chunk("../etc/passwd", 0, "x")).code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    std::string big(limits::kMaxChunkBytes + 1, 'x');
    std::vector<std::pair<std::string, std::string>> big_contents = {{"big", big + big}};
    auto upload = store_->BeginUpload(MakeCheckpoint(big_contents));
    ASSERT_TRUE(upload.ok());
    absl::Status status = (*upload)->Write(Chunk("big", 0, big));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("chunk limit"));
  }
  EXPECT_TRUE(TmpEntries().empty());
}

TEST_F(ArtifactStoreTest, WrongSha256CommitsNothing) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "good"}, {"b/c", "data"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  checkpoint.mutable_files(1)->set_sha256(Sha256Hex("other"));
  absl::Status status = UploadAll(checkpoint, contents);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'b/c'"));
  EXPECT_THAT(status.message(), HasSubstr("sha256"));
  EXPECT_FALSE(Committed());
  EXPECT_TRUE(TmpEntries().empty());
  EXPECT_EQ(store_->Read(checkpoint).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ArtifactStoreTest, IncompleteUploadIsNotCommitted) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abcdef"}};
  auto upload = store_->BeginUpload(MakeCheckpoint(contents));
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Write(Chunk("a", 0, "abc")).ok());
  absl::Status status = (*upload)->Commit();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("incomplete"));
  EXPECT_FALSE(Committed());
}

TEST_F(ArtifactStoreTest, AbandonedUploadIsRemovedWhenDropped) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abcdef"}};
  {
    auto upload = store_->BeginUpload(MakeCheckpoint(contents));
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Write(Chunk("a", 0, "abc")).ok());
    EXPECT_EQ(TmpEntries().size(), 1u);
  }
  EXPECT_TRUE(TmpEntries().empty());
}

TEST_F(ArtifactStoreTest, BadPathsAreRejected) {
  const std::vector<std::string> bad = {
      "",          "..",         "../x",   "a/../b",   "/abs",    "a//b",   "a/",
      ".",         "a/./b",      "a b",    "a\\b",     "a\nb",    "é",      "a:b",
      "1/2/3/4/5/6/7/8/9",       std::string(256, 'a'), std::string("a\0b", 3)};
  for (const std::string& path : bad) {
    v1::Checkpoint checkpoint = MakeCheckpoint({{path, "x"}});
    auto upload = store_->BeginUpload(checkpoint);
    EXPECT_EQ(upload.status().code(), absl::StatusCode::kInvalidArgument) << "'" << path << "'";
    if (!upload.ok()) {
      EXPECT_THAT(upload.status().message(), HasSubstr("files[0].path")) << path;
    }
  }
  // Eight deep is the limit, not an error.
  EXPECT_TRUE(store_->BeginUpload(MakeCheckpoint({{"1/2/3/4/5/6/7/8", "x"}})).ok());
  EXPECT_TRUE(store_->BeginUpload(MakeCheckpoint({{"A-z_0.9/.hidden", "x"}})).ok());
}

TEST_F(ArtifactStoreTest, DuplicateAndConflictingPaths) {
  auto duplicate = store_->BeginUpload(MakeCheckpoint({{"a/b", "x"}, {"a/b", "y"}}));
  EXPECT_EQ(duplicate.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(duplicate.status().message(), HasSubstr("listed twice"));
  auto file_and_dir = store_->BeginUpload(MakeCheckpoint({{"a", "x"}, {"a/b", "y"}}));
  EXPECT_EQ(file_and_dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file_and_dir.status().message(), HasSubstr("both a file and a directory"));
  EXPECT_TRUE(store_->BeginUpload(MakeCheckpoint({{"a", "x"}, {"a.b", "y"}, {"ab/c", "z"}})).ok());
}

TEST_F(ArtifactStoreTest, FileListLimits) {
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i <= limits::kMaxCheckpointFiles; ++i) many.push_back({"f" + std::to_string(i), "x"});
  auto too_many = store_->BeginUpload(MakeCheckpoint(many));
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), HasSubstr("at most 256"));
  many.pop_back();
  EXPECT_TRUE(store_->BeginUpload(MakeCheckpoint(many)).ok());

  EXPECT_EQ(store_->BeginUpload(MakeCheckpoint({})).status().code(),
            absl::StatusCode::kInvalidArgument);

  v1::Checkpoint huge = MakeCheckpoint({{"a", "x"}});
  huge.mutable_files(0)->set_size_bytes(limits::kMaxCheckpointFileBytes + 1);
  EXPECT_EQ(store_->BeginUpload(huge).status().code(), absl::StatusCode::kInvalidArgument);

  v1::Checkpoint bad_digest = MakeCheckpoint({{"a", "x"}});
  bad_digest.mutable_files(0)->set_sha256("ABC");
  EXPECT_EQ(store_->BeginUpload(bad_digest).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ArtifactStoreTest, BadIdsAreRejected) {
  for (std::string id : {"", "..", "a/b", "tmp", "x y"}) {
    v1::Checkpoint checkpoint = MakeCheckpoint({{"a", "x"}}, id);
    EXPECT_EQ(store_->BeginUpload(checkpoint).status().code(), absl::StatusCode::kInvalidArgument)
        << id;
    v1::Checkpoint other_job = MakeCheckpoint({{"a", "x"}});
    other_job.set_job_id(id);
    EXPECT_EQ(store_->BeginUpload(other_job).status().code(), absl::StatusCode::kInvalidArgument)
        << id;
  }
}

TEST_F(ArtifactStoreTest, OpenCleansTmp) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abcdef"}};
  auto upload = store_->BeginUpload(MakeCheckpoint(contents));
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Write(Chunk("a", 0, "abc")).ok());
  std::ofstream(dir_ + "/artifacts/tmp/stray-file") << "x";
  ASSERT_EQ(TmpEntries().size(), 2u);
  // A new process (a restart after a crash) opens the same data dir.
  auto reopened = ArtifactStore::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(TmpEntries().empty());
  upload->reset();
}

TEST_F(ArtifactStoreTest, CommittedCheckpointsSurviveReopen) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abcdef"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents).ok());
  store_.reset();
  auto reopened = ArtifactStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  store_ = std::move(*reopened);
  auto files = ReadAll(checkpoint);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ((*files)["a"], "abcdef");
}

// usage() feeds loratrf_artifacts and loratrf_checkpoint_stored_bytes: it follows commits and
// removals, ignores failed uploads, and is counted again from the files after a reopen.
TEST_F(ArtifactStoreTest, UsageCountsCommittedCheckpointsAcrossReopen) {
  EXPECT_EQ(store_->usage().checkpoints, 0);
  EXPECT_EQ(store_->usage().bytes, 0u);
  std::vector<std::pair<std::string, std::string>> first = {{"a", "abcdef"}, {"d/b", "xy"}};
  std::vector<std::pair<std::string, std::string>> second = {{"a", "0123456789"}};
  v1::Checkpoint c1 = MakeCheckpoint(first, "c1");
  v1::Checkpoint c2 = MakeCheckpoint(second, "c2");
  ASSERT_TRUE(UploadAll(c1, first).ok());
  ASSERT_TRUE(UploadAll(c2, second).ok());
  EXPECT_EQ(store_->usage().checkpoints, 2);
  EXPECT_EQ(store_->usage().bytes, 18u);

  // A failed upload holds nothing.
  v1::Checkpoint bad = MakeCheckpoint({{"a", "xyz"}}, "c3");
  auto upload = store_->BeginUpload(bad);
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Write(Chunk("a", 0, "abc")).ok());
  EXPECT_FALSE((*upload)->Commit().ok());
  EXPECT_EQ(store_->usage().checkpoints, 2);

  ASSERT_TRUE(store_->Remove(c1).ok());
  EXPECT_EQ(store_->usage().checkpoints, 1);
  EXPECT_EQ(store_->usage().bytes, 10u);

  store_.reset();
  auto reopened = ArtifactStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  store_ = std::move(*reopened);
  EXPECT_EQ(store_->usage().checkpoints, 1) << "counted from the data dir";
  EXPECT_EQ(store_->usage().bytes, 10u);
}

TEST_F(ArtifactStoreTest, ReadingMissingCheckpointIsNotFound) {
  v1::Checkpoint checkpoint = MakeCheckpoint({{"a", "x"}}, "never-uploaded");
  EXPECT_EQ(store_->Read(checkpoint).status().code(), absl::StatusCode::kNotFound);

  // A committed directory that lost a file: NotFound when the reader reaches it.
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "x"}, {"b", "y"}};
  v1::Checkpoint partial = MakeCheckpoint(contents, "c2");
  ASSERT_TRUE(UploadAll(partial, contents).ok());
  fs::remove(dir_ + "/artifacts/j1/c2/f1");
  EXPECT_EQ(ReadAll(partial).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ArtifactStoreTest, CorruptedFileIsDataLossOnRead) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abcdef"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents).ok());
  std::ofstream(dir_ + "/artifacts/j1/c1/f0", std::ios::trunc) << "abcdeX";
  EXPECT_EQ(ReadAll(checkpoint).status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(dir_ + "/artifacts/j1/c1/f0", std::ios::trunc) << "abc";
  EXPECT_EQ(ReadAll(checkpoint).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ArtifactStoreTest, AReaderOpenedBeforeRemoveReadsToTheEnd) {
  std::vector<std::pair<std::string, std::string>> contents = {
      {"a", std::string(3 * limits::kMaxChunkBytes / 2, 'a')}, {"b", "second file"}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents).ok());
  auto reader = store_->Read(checkpoint);
  ASSERT_TRUE(reader.ok()) << reader.status();
  v1::FileChunk chunk;
  ASSERT_TRUE(*(*reader)->Next(chunk));  // part of the first file sent
  ASSERT_TRUE(store_->Remove(checkpoint).ok());
  EXPECT_FALSE(Committed("c1"));
  std::map<std::string, std::string> files;
  files[chunk.path()] += chunk.data();
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(chunk);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    files[chunk.path()] += chunk.data();
  }
  EXPECT_EQ(files["a"], contents[0].second);
  EXPECT_EQ(files["b"], "second file");
}

TEST_F(ArtifactStoreTest, RemoveUnrecordedKeepsOnlyRecordedCheckpoints) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abc"}};
  ASSERT_TRUE(UploadAll(MakeCheckpoint(contents, "kept"), contents).ok());
  ASSERT_TRUE(UploadAll(MakeCheckpoint(contents, "orphan"), contents).ok());
  fs::create_directories(dir_ + "/artifacts/j2/x");
  std::ofstream(dir_ + "/artifacts/j2/x/f0") << "12345";
  std::ofstream(dir_ + "/artifacts/loose") << "1";
  // As at a coordinator's start: the store opened on what is there, then the sweep.
  auto reopened = ArtifactStore::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  ASSERT_EQ(store_->usage().checkpoints, 3);
  auto removed = store_->RemoveUnrecorded({{"j1", "kept"}});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->checkpoints, 2);
  EXPECT_EQ(removed->bytes, 3u + 5u);
  EXPECT_TRUE(Committed("kept"));
  EXPECT_FALSE(Committed("orphan"));
  EXPECT_FALSE(fs::exists(dir_ + "/artifacts/j2"));  // emptied job directory goes too
  EXPECT_FALSE(fs::exists(dir_ + "/artifacts/loose"));
  EXPECT_TRUE(TmpEntries().empty());
  EXPECT_EQ(store_->usage().checkpoints, 1);
}

// ---- Check (fsck) ---------------------------------------------------------------------------

TEST_F(ArtifactStoreTest, CheckFindsNothingWrongInACleanStore) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abc"}, {"d/e", ""}};
  v1::Checkpoint checkpoint = MakeCheckpoint(contents);
  ASSERT_TRUE(UploadAll(checkpoint, contents).ok());
  auto problems = ArtifactStore::Check(dir_, {checkpoint});
  ASSERT_TRUE(problems.ok()) << problems.status();
  EXPECT_TRUE(problems->empty()) << (*problems)[0];
  // An empty data dir with no records is clean too.
  std::string empty = dir_ + "/empty";
  fs::create_directories(empty);
  problems = ArtifactStore::Check(empty, {});
  ASSERT_TRUE(problems.ok());
  EXPECT_TRUE(problems->empty());
}

TEST_F(ArtifactStoreTest, CheckNamesEveryProblemOnItsOwnLine) {
  std::vector<std::pair<std::string, std::string>> contents = {{"a", "abc"}, {"b", "xyz"}};
  v1::Checkpoint missing = MakeCheckpoint(contents, "missing-file");
  v1::Checkpoint corrupt = MakeCheckpoint(contents, "wrong-sha");
  v1::Checkpoint short_file = MakeCheckpoint(contents, "wrong-size");
  v1::Checkpoint gone = MakeCheckpoint(contents, "no-dir");
  for (const v1::Checkpoint& c : {missing, corrupt, short_file}) {
    ASSERT_TRUE(UploadAll(c, contents).ok());
  }
  ASSERT_TRUE(UploadAll(MakeCheckpoint(contents, "orphan"), contents).ok());
  fs::remove(dir_ + "/artifacts/j1/missing-file/f1");
  std::ofstream(dir_ + "/artifacts/j1/wrong-sha/f0", std::ios::trunc) << "abX";
  std::ofstream(dir_ + "/artifacts/j1/wrong-size/f0", std::ios::trunc) << "ab";
  std::ofstream(dir_ + "/artifacts/j1/wrong-sha/extra") << "?";
  fs::create_directories(dir_ + "/artifacts/tmp/u7-1-2");

  auto problems = ArtifactStore::Check(dir_, {missing, corrupt, short_file, gone});
  ASSERT_TRUE(problems.ok()) << problems.status();
  auto mentions = [&](const std::string& a, const std::string& b) {
    return std::count_if(problems->begin(), problems->end(), [&](const std::string& line) {
      return line.find(a) != std::string::npos && line.find(b) != std::string::npos;
    });
  };
  EXPECT_EQ(mentions("j1/missing-file", "'b'"), 1);
  EXPECT_EQ(mentions("j1/wrong-sha", "sha256"), 1);
  EXPECT_EQ(mentions("j1/wrong-size", "2 bytes"), 1);
  EXPECT_EQ(mentions("j1/no-dir", "missing"), 1);
  EXPECT_EQ(mentions("unreferenced", "j1/orphan"), 1);
  EXPECT_EQ(mentions("unreferenced", "wrong-sha/extra"), 1);
  EXPECT_EQ(mentions("unreferenced", "tmp/u7-1-2"), 1);
  EXPECT_EQ(problems->size(), 7u);
  for (const std::string& line : *problems) EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST_F(ArtifactStoreTest, CheckWithRecordsButNoArtifactAreaIsNotFound) {
  std::string empty = dir_ + "/empty";
  fs::create_directories(empty);
  EXPECT_EQ(ArtifactStore::Check(empty, {MakeCheckpoint({{"a", "x"}})}).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace loratrf::server

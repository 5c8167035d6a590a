// Crash-safe checkpoints: SHA-256, commit, verification, a SIGKILL mid-write, retention.
#include "worker/engine/checkpoint/checkpoint_store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PiecewiseEqualsWhole) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>(i * 7);
  for (size_t piece : {1, 3, 55, 56, 63, 64, 65, 200}) {
    Sha256 hash;
    for (size_t at = 0; at < text.size(); at += piece) hash.Update(absl::string_view(text).substr(at, piece));
    EXPECT_EQ(hash.HexDigest(), Sha256Hex(text)) << piece;
  }
}

class CheckpointStore : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("loratrf-ckpt-test-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string Checkpoints() const { return (root_ / "checkpoints").string(); }

  CheckpointManifest Commit(uint64_t step, const std::string& payload,
                            std::map<std::string, double> metrics = {}) {
    auto writer = CheckpointWriter::Begin(Checkpoints(), step);
    EXPECT_TRUE(writer.ok()) << writer.status();
    EXPECT_TRUE(WriteFileAtomically(writer->dir() + "/adapter_model.safetensors", payload).ok());
    EXPECT_TRUE(WriteFileAtomically(writer->dir() + "/trainer_state.json", "{}").ok());
    auto manifest = writer->Commit(metrics);
    EXPECT_TRUE(manifest.ok()) << manifest.status();
    return *manifest;
  }
  std::vector<uint64_t> Steps() const {
    std::vector<uint64_t> steps;
    for (const auto& m : ListCheckpoints(Checkpoints())) steps.push_back(m.step);
    return steps;
  }

  fs::path root_;
};

TEST_F(CheckpointStore, CommittedCheckpointVerifiesWithEveryFileHashed) {
  CheckpointManifest m = Commit(50, "weights", {{"eval_loss", 0.5}});
  EXPECT_EQ(m.dir, Checkpoints() + "/50");
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(m.files[0].path, "adapter_model.safetensors");
  EXPECT_EQ(m.files[0].size_bytes, 7u);
  EXPECT_EQ(m.files[0].sha256, Sha256Hex("weights"));
  auto verified = VerifyCheckpoint(m.dir);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->step, 50u);
  EXPECT_EQ(verified->metrics["eval_loss"], 0.5);
  EXPECT_THAT(Steps(), ::testing::ElementsAre(50));
}

TEST_F(CheckpointStore, AnAbandonedWriterLeavesNothing) {
  {
    auto writer = CheckpointWriter::Begin(Checkpoints(), 10);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(WriteFileAtomically(writer->dir() + "/x", "data").ok());
  }
  EXPECT_TRUE(fs::is_empty(Checkpoints()));
}

TEST_F(CheckpointStore, DamageIsDetectedAndNamed) {
  CheckpointManifest m = Commit(1, "weights");
  {
    std::fstream f(m.dir + "/adapter_model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.put('X');
  }
  auto changed = VerifyCheckpoint(m.dir);
  ASSERT_FALSE(changed.ok());
  EXPECT_THAT(std::string(changed.status().message()),
              HasSubstr("adapter_model.safetensors: does not match the manifest"));
  std::vector<std::string> rejected;
  EXPECT_TRUE(ListCheckpoints(Checkpoints(), &rejected).empty());
  ASSERT_EQ(rejected.size(), 1u);

  CheckpointManifest m2 = Commit(2, "weights");
  std::ofstream(m2.dir + "/stray.bin") << "x";
  EXPECT_THAT(std::string(VerifyCheckpoint(m2.dir).status().message()), HasSubstr("stray.bin: not in the manifest"));
  fs::remove(m2.dir + "/stray.bin");
  fs::remove(m2.dir + "/trainer_state.json");
  EXPECT_THAT(std::string(VerifyCheckpoint(m2.dir).status().message()),
              HasSubstr("trainer_state.json: listed in the manifest but missing"));
  fs::remove(m2.dir + "/MANIFEST.json");
  EXPECT_THAT(std::string(VerifyCheckpoint(m2.dir).status().message()), HasSubstr("not committed"));
}

TEST_F(CheckpointStore, SigkillWhileWritingKeepsTheLastCommittedCheckpoint) {
  Commit(100, "good");
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto writer = CheckpointWriter::Begin(Checkpoints(), 200);
    if (!writer.ok()) _exit(3);
    (void)WriteFileAtomically(writer->dir() + "/adapter_model.safetensors", std::string(1 << 20, 'x'));
    ::kill(::getpid(), SIGKILL);  // dies before the manifest: no destructor, no cleanup
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_THAT(Steps(), ::testing::ElementsAre(100));  // the partial step 200 does not count
  bool partial_left = false;
  for (const auto& e : fs::directory_iterator(Checkpoints())) {
    partial_left |= e.path().filename().string().rfind(".partial-200", 0) == 0;
  }
  EXPECT_TRUE(partial_left);
  RemovePartialCheckpoints(Checkpoints());
  for (const auto& e : fs::directory_iterator(Checkpoints())) EXPECT_EQ(e.path().filename(), "100");
}

TEST_F(CheckpointStore, APresentStepIsNeverOverwritten) {
  Commit(5, "a");
  auto again = CheckpointWriter::Begin(Checkpoints(), 5);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(CheckpointStore, PruningKeepsTheNewestAndTheBest) {
  Commit(10, "a", {{"eval_accuracy", 0.5}});
  Commit(20, "b", {{"eval_accuracy", 0.9}});
  Commit(30, "c", {{"eval_accuracy", 0.6}});
  Commit(40, "d", {{"eval_accuracy", 0.7}});
  Commit(50, "e", {{"eval_accuracy", 0.8}});
  ASSERT_TRUE(PruneCheckpoints(Checkpoints(), 2, "eval_accuracy").ok());
  EXPECT_THAT(Steps(), ::testing::ElementsAre(20, 40, 50));
  ASSERT_TRUE(PruneCheckpoints(Checkpoints(), 1).ok());
  EXPECT_THAT(Steps(), ::testing::ElementsAre(50));
}

TEST_F(CheckpointStore, FinalDirectoryIsCommittedTheSameWay) {
  std::string final_dir = (root_ / "final").string();
  auto writer = CheckpointWriter::BeginFinal(final_dir, 77);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(WriteFileAtomically(writer->dir() + "/adapter_config.json", "{}").ok());
  EXPECT_FALSE(fs::exists(final_dir));
  ASSERT_TRUE(writer->Commit({}).ok());
  auto verified = VerifyCheckpoint(final_dir);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->final);
  EXPECT_EQ(verified->step, 77u);
  EXPECT_FALSE(CheckpointWriter::BeginFinal(final_dir, 78).ok());
}

}  // namespace
}  // namespace loratrf::engine

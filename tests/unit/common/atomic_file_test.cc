#include "common/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "atomic_file_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

  static bool Exists(const std::string& path) {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0;
  }

  std::string dir_;
};

TEST_F(AtomicFileTest, WriteFileAtomicallyCreatesTheFileAndNothingElse) {
  ASSERT_TRUE(WriteFileAtomically(Path("out.txt"), "hello\n").ok());
  EXPECT_EQ(Read(Path("out.txt")), "hello\n");
  EXPECT_THAT(Entries(), ElementsAre("out.txt"));
}

TEST_F(AtomicFileTest, WriteFileAtomicallyReplacesTheOldContent) {
  ASSERT_TRUE(WriteFileAtomically(Path("out.txt"), "a much longer old content").ok());
  ASSERT_TRUE(WriteFileAtomically(Path("out.txt"), "new").ok());
  EXPECT_EQ(Read(Path("out.txt")), "new");
  EXPECT_THAT(Entries(), ElementsAre("out.txt"));
}

TEST_F(AtomicFileTest, EmptyAndBinaryContent) {
  ASSERT_TRUE(WriteFileAtomically(Path("empty"), "").ok());
  EXPECT_EQ(Read(Path("empty")), "");
  std::string binary("\0\1\2\xff\0", 5);
  ASSERT_TRUE(WriteFileAtomically(Path("binary"), binary).ok());
  EXPECT_EQ(Read(Path("binary")), binary);
}

TEST_F(AtomicFileTest, WritesInPiecesGoToAHiddenTempFileUntilCommit) {
  auto writer = AtomicFileWriter::Open(Path("model.bin"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  AtomicFileWriter& w = **writer;
  EXPECT_EQ(w.path(), Path("model.bin"));
  EXPECT_THAT(w.temp_path(), StartsWith(absl::StrCat(Path(".model.bin.tmp-"), ::getpid(), "-")));

  std::string big(8 << 20, 'x');  // several write() calls' worth
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  ASSERT_TRUE(w.Write("head:").ok());
  ASSERT_TRUE(w.Write(big).ok());
  ASSERT_TRUE(w.Write("").ok());

  EXPECT_FALSE(Exists(Path("model.bin")));
  std::string temp_name = std::filesystem::path(w.temp_path()).filename().string();
  EXPECT_THAT(Entries(), ElementsAre(temp_name));
  struct stat info {};
  ASSERT_EQ(::stat(w.temp_path().c_str(), &info), 0);
  mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(info.st_mode & 0777, 0644 & ~mask);

  ASSERT_TRUE(w.Commit().ok());
  EXPECT_EQ(Read(Path("model.bin")), "head:" + big);
  EXPECT_THAT(Entries(), ElementsAre("model.bin"));
  EXPECT_FALSE(Exists(w.temp_path()));
}

TEST_F(AtomicFileTest, NoTempFileLeftAfterCommitAndDestruction) {
  {
    auto writer = AtomicFileWriter::Open(Path("out"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write("x").ok());
    ASSERT_TRUE((*writer)->Commit().ok());
  }
  EXPECT_THAT(Entries(), ElementsAre("out"));
}

TEST_F(AtomicFileTest, AbandonedWriterLeavesTheOldFileIntactAndRemovesItsTemp) {
  ASSERT_TRUE(WriteFileAtomically(Path("state.json"), "old").ok());
  {
    auto writer = AtomicFileWriter::Open(Path("state.json"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write("new but never committed").ok());
    EXPECT_THAT(Entries(), SizeIs(2));
  }
  EXPECT_EQ(Read(Path("state.json")), "old");
  EXPECT_THAT(Entries(), ElementsAre("state.json"));
}

TEST_F(AtomicFileTest, AbandonedWriterCreatesNothing) {
  {
    auto writer = AtomicFileWriter::Open(Path("never"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write("partial").ok());
  }
  EXPECT_THAT(Entries(), IsEmpty());
}

TEST_F(AtomicFileTest, MissingDirectoryIsAnErrorNamingThePath) {
  std::string path = Path("no/such/dir/out.bin");
  auto writer = AtomicFileWriter::Open(path);
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(writer.status().message(), HasSubstr(path));
  EXPECT_THAT(writer.status().message(), HasSubstr("No such file or directory"));

  absl::Status status = WriteFileAtomically(path, "x");
  EXPECT_THAT(status.message(), HasSubstr(path));
  EXPECT_THAT(Entries(), IsEmpty());
}

TEST_F(AtomicFileTest, PathsWithoutAFileNameAreRefused) {
  EXPECT_EQ(AtomicFileWriter::Open("").status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& path : {dir_ + "/", dir_ + "/.", dir_ + "/.."}) {
    auto writer = AtomicFileWriter::Open(path);
    ASSERT_FALSE(writer.ok()) << path;
    EXPECT_EQ(writer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(writer.status().message(), path + ": not a file path");
  }
}

TEST_F(AtomicFileTest, RelativePathUsesTheCurrentDirectory) {
  std::string saved = std::filesystem::current_path().string();
  ASSERT_EQ(::chdir(dir_.c_str()), 0);
  absl::Status status = WriteFileAtomically("relative.txt", "here");
  ASSERT_EQ(::chdir(saved.c_str()), 0);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(Read(Path("relative.txt")), "here");
  EXPECT_THAT(Entries(), ElementsAre("relative.txt"));
}

TEST_F(AtomicFileTest, LongFileNameStillFitsTheTempName) {
  std::string name(250, 'n');  // the temp name would pass NAME_MAX if the stem were not cut
  ASSERT_TRUE(WriteFileAtomically(Path(name), "long").ok());
  EXPECT_EQ(Read(Path(name)), "long");
  EXPECT_THAT(Entries(), ElementsAre(name));
}

TEST_F(AtomicFileTest, CommitOnceThenRefuse) {
  auto writer = AtomicFileWriter::Open(Path("once"));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_EQ((*writer)->Commit().code(), absl::StatusCode::kFailedPrecondition);
  absl::Status late = (*writer)->Write("late");
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.message(), HasSubstr(Path("once")));
  EXPECT_EQ(Read(Path("once")), "");
}

TEST_F(AtomicFileTest, FailedRenameIsReportedAndCleansUp) {
  // A directory in the way: rename(file, dir) fails with EISDIR.
  ASSERT_TRUE(std::filesystem::create_directory(Path("target")));
  {
    auto writer = AtomicFileWriter::Open(Path("target"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write("x").ok());
    absl::Status status = (*writer)->Commit();
    ASSERT_FALSE(status.ok());
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("to ", Path("target"))));
    EXPECT_THAT(status.message(), HasSubstr("Is a directory"));
    EXPECT_EQ((*writer)->Commit().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_THAT(Entries(), ElementsAre("target"));
  EXPECT_TRUE(std::filesystem::is_directory(Path("target")));
}

TEST_F(AtomicFileTest, FsyncDirectory) {
  EXPECT_TRUE(FsyncDirectory(dir_).ok());
  absl::Status missing = FsyncDirectory(Path("missing"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr(Path("missing")));
  ASSERT_TRUE(WriteFileAtomically(Path("file"), "x").ok());
  EXPECT_THAT(FsyncDirectory(Path("file")).message(), HasSubstr("Not a directory"));
}

// A writer process killed (SIGKILL: no destructors, no atexit) after writing but before
// Commit(): the target must be exactly as before. The parent deliberately cleans nothing up.
class AtomicFileKillTest : public AtomicFileTest, public ::testing::WithParamInterface<bool> {};

TEST_P(AtomicFileKillTest, KilledBeforeCommitLeavesTheTargetUntouched) {
  const bool target_existed = GetParam();
  const std::string target = Path("checkpoint.bin");
  if (target_existed) {
    ASSERT_TRUE(WriteFileAtomically(target, "committed v1").ok());
  }

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto writer = AtomicFileWriter::Open(target);
    if (!writer.ok() || !(*writer)->Write(std::string(1 << 20, 'p')).ok()) ::_exit(1);
    char byte = 'r';
    if (::write(ready[1], &byte, 1) != 1) ::_exit(1);
    for (;;) ::pause();  // wait for SIGKILL, Commit() never comes
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child could not write";
  ::close(ready[0]);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus));
  EXPECT_EQ(WTERMSIG(wstatus), SIGKILL);

  if (target_existed) {
    EXPECT_EQ(Read(target), "committed v1");
  } else {
    EXPECT_FALSE(Exists(target));
  }
  // The partial bytes exist only in the dead writer's temp file.
  std::vector<std::string> entries = Entries();
  std::string temp_prefix = absl::StrCat(".checkpoint.bin.tmp-", child, "-");
  auto temp = std::find_if(entries.begin(), entries.end(), [&](const std::string& name) {
    return absl::StartsWith(name, temp_prefix);
  });
  ASSERT_NE(temp, entries.end());
  EXPECT_EQ(Read(Path(*temp)), std::string(1 << 20, 'p'));
  EXPECT_THAT(entries, SizeIs(target_existed ? 2 : 1));
}

INSTANTIATE_TEST_SUITE_P(Target, AtomicFileKillTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Existing" : "Absent";
                         });

}  // namespace
}  // namespace loratrf

// CheckpointsToDelete: one test per promise of the retention rule (server/core/retention.h).
#include "server/core/retention.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

v1::Checkpoint At(uint64_t step, bool final = false) {
  v1::Checkpoint checkpoint;
  checkpoint.set_id(std::string("s") + std::to_string(step) + (final ? "-final" : ""));
  checkpoint.set_step(step);
  checkpoint.set_final(final);
  return checkpoint;
}

v1::Checkpoint WithEval(v1::Checkpoint checkpoint, double accuracy, double loss) {
  checkpoint.mutable_eval()->set_accuracy(accuracy);
  checkpoint.mutable_eval()->set_loss(loss);
  return checkpoint;
}

TEST(RetentionTest, KeepsTheLastKByStep) {
  std::vector<v1::Checkpoint> all = {At(10), At(20), At(30), At(40), At(50)};
  EXPECT_THAT(CheckpointsToDelete(all, 2, {}), ElementsAre("s10", "s20", "s30"));
  EXPECT_THAT(CheckpointsToDelete(all, 5, {}), IsEmpty());
  EXPECT_THAT(CheckpointsToDelete(all, 9, {}), IsEmpty());
}

TEST(RetentionTest, OrderOfTheListDoesNotMatterOnlySteps) {
  std::vector<v1::Checkpoint> all = {At(50), At(10), At(40), At(20)};
  EXPECT_THAT(CheckpointsToDelete(all, 2, {}), ElementsAre("s10", "s20"));
}

TEST(RetentionTest, EqualStepsTheLaterInTheListIsNewer) {
  v1::Checkpoint a = At(10), b = At(10);
  a.set_id("s10-a1");
  b.set_id("s10-a2");
  EXPECT_THAT(CheckpointsToDelete({a, b}, 1, {}), ElementsAre("s10-a1"));
}

TEST(RetentionTest, KeepsTheFinalOnes) {
  std::vector<v1::Checkpoint> all = {At(10), At(20, /*final=*/true), At(30), At(40)};
  EXPECT_THAT(CheckpointsToDelete(all, 1, {}), ElementsAre("s10", "s30"));
}

TEST(RetentionTest, KeepsTheBestByAccuracyThenLoss) {
  std::vector<v1::Checkpoint> all = {WithEval(At(10), 0.7, 0.5), WithEval(At(20), 0.9, 0.4),
                                     WithEval(At(30), 0.9, 0.3), WithEval(At(40), 0.6, 0.9),
                                     At(50)};
  // s30 ties s20 on accuracy with a lower loss: s30 is the best.
  EXPECT_THAT(CheckpointsToDelete(all, 1, {}), ElementsAre("s10", "s20", "s40"));
}

TEST(RetentionTest, AFullTieGoesToTheLaterStep) {
  std::vector<v1::Checkpoint> all = {WithEval(At(10), 0.8, 0.2), WithEval(At(20), 0.8, 0.2),
                                     At(30)};
  EXPECT_THAT(CheckpointsToDelete(all, 1, {}), ElementsAre("s10"));
}

TEST(RetentionTest, WithoutAnyEvalNoneIsBest) {
  std::vector<v1::Checkpoint> all = {At(10), At(20), At(30)};
  EXPECT_THAT(CheckpointsToDelete(all, 1, {}), ElementsAre("s10", "s20"));
}

TEST(RetentionTest, KeepsPinnedCheckpoints) {
  std::vector<v1::Checkpoint> all = {At(10), At(20), At(30), At(40)};
  EXPECT_THAT(CheckpointsToDelete(all, 1, {"s20"}), ElementsAre("s10", "s30"));
}

TEST(RetentionTest, KeepZeroKeepsEverything) {
  std::vector<v1::Checkpoint> all = {At(10), At(20), At(30)};
  EXPECT_THAT(CheckpointsToDelete(all, 0, {}), IsEmpty());
}

TEST(RetentionTest, NoCheckpointsNothingToDelete) {
  EXPECT_THAT(CheckpointsToDelete({}, 3, {}), IsEmpty());
}

}  // namespace
}  // namespace loratrf::server

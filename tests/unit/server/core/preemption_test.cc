// The victim picker (server/core/preemption.h) alone: one test per promise of the header, each
// built so that it fails when that promise is broken.
#include "server/core/preemption.h"

#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loratrf::server {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

const absl::Duration kMinRun = absl::Minutes(5);

SchedulerJob Waiting(uint32_t workers, uint32_t slots, int32_t priority = 10) {
  return {"waiter", "alice", priority, 0, v1::DEVICE_CPU, workers, slots};
}
SchedulerWorker Worker(const std::string& name, uint32_t slots, uint32_t free) {
  return {name, v1::DEVICE_CPU, slots, free, true};
}
PreemptionCandidate Running(const std::string& id, std::vector<std::string> workers,
                            uint32_t slots, int32_t priority = 0,
                            absl::Duration ran_for = absl::Hours(1)) {
  PreemptionCandidate candidate;
  candidate.id = id;
  candidate.priority = priority;
  candidate.workers = std::move(workers);
  candidate.slots_per_worker = slots;
  candidate.ran_for = ran_for;
  return candidate;
}

TEST(PickVictims, StopsTheOneLowerPriorityJobThatMakesRoom) {
  auto plan = PickVictims(Waiting(1, 4), {Worker("w1", 4, 0)}, {Running("low", {"w1"}, 4)},
                          kMinRun);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("low"));
  EXPECT_THAT(plan->workers, ElementsAre("w1"));
}

TEST(PickVictims, OnlyStrictlyLowerPriority) {
  EXPECT_FALSE(PickVictims(Waiting(1, 4, /*priority=*/5), {Worker("w1", 4, 0)},
                           {Running("equal", {"w1"}, 4, /*priority=*/5)}, kMinRun)
                   .has_value());
  EXPECT_FALSE(PickVictims(Waiting(1, 4, 5), {Worker("w1", 4, 0)},
                           {Running("higher", {"w1"}, 4, 6)}, kMinRun)
                   .has_value());
}

TEST(PickVictims, NeverAJobThatOptedOut) {
  PreemptionCandidate protected_job = Running("protected", {"w1"}, 4);
  protected_job.never_preempt = true;
  EXPECT_FALSE(PickVictims(Waiting(1, 4), {Worker("w1", 4, 0)}, {protected_job}, kMinRun)
                   .has_value());
  // With another way to make room, that way is taken.
  auto plan = PickVictims(Waiting(1, 4), {Worker("w1", 4, 0), Worker("w2", 4, 0)},
                          {protected_job, Running("other", {"w2"}, 4)}, kMinRun);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("other"));
}

TEST(PickVictims, NotBeforeTheMinimumRunTime) {
  EXPECT_FALSE(PickVictims(Waiting(1, 4), {Worker("w1", 4, 0)},
                           {Running("young", {"w1"}, 4, 0, absl::Minutes(4))}, kMinRun)
                   .has_value());
  EXPECT_TRUE(PickVictims(Waiting(1, 4), {Worker("w1", 4, 0)},
                          {Running("old-enough", {"w1"}, 4, 0, absl::Minutes(5))}, kMinRun)
                  .has_value());
}

TEST(PickVictims, NothingWhenEvictingEveryAllowedJobWouldNotHelp) {
  // A 2-worker gang, but only one worker can be freed (the other runs a protected job).
  PreemptionCandidate protected_job = Running("protected", {"w2"}, 4);
  protected_job.never_preempt = true;
  EXPECT_FALSE(PickVictims(Waiting(2, 4), {Worker("w1", 4, 0), Worker("w2", 4, 0)},
                           {Running("low", {"w1"}, 4), protected_job}, kMinRun)
                   .has_value());
  // A job bigger than any worker.
  EXPECT_FALSE(PickVictims(Waiting(1, 8), {Worker("w1", 4, 0)}, {Running("low", {"w1"}, 4)},
                           kMinRun)
                   .has_value());
  // Victims on a cordoned (not ready) worker free nothing usable.
  SchedulerWorker cordoned = Worker("w1", 4, 0);
  cordoned.ready = false;
  EXPECT_FALSE(PickVictims(Waiting(1, 4), {cordoned}, {Running("low", {"w1"}, 4)}, kMinRun)
                   .has_value());
}

TEST(PickVictims, GangAwareWholeJobsOnly) {
  // The waiting gang needs two workers with 2 slots each. A 2-worker victim frees both at once;
  // evicting it is the only one-victim answer (two 1-worker jobs would be two victims).
  auto plan = PickVictims(
      Waiting(2, 2),
      {Worker("w1", 2, 0), Worker("w2", 2, 0), Worker("w3", 2, 0), Worker("w4", 2, 0)},
      {Running("z-gang", {"w1", "w2"}, 2), Running("a-single", {"w3"}, 2),
       Running("b-single", {"w4"}, 2)},
      kMinRun);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("z-gang"));
  EXPECT_THAT(plan->workers, UnorderedElementsAre("w1", "w2"));
}

TEST(PickVictims, FreeSlotsCountSoOnlyTheMissingPartIsEvicted) {
  // w1 has 2 free already; the waiting 2x2 gang needs one more worker.
  auto plan = PickVictims(Waiting(2, 2), {Worker("w1", 2, 2), Worker("w2", 2, 0)},
                          {Running("low", {"w2"}, 2)}, kMinRun);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("low"));
  EXPECT_THAT(plan->workers, UnorderedElementsAre("w1", "w2"));
}

TEST(PickVictims, PrefersFewestThenLowestPriorityThenMostRecentlyStarted) {
  // Fewest: one 4-slot job rather than two 2-slot jobs of lower priority.
  auto fewest = PickVictims(Waiting(1, 4, 10), {Worker("w1", 4, 0), Worker("w2", 4, 0)},
                            {Running("a", {"w1"}, 2, 0), Running("b", {"w1"}, 2, 0),
                             Running("big", {"w2"}, 4, 5)},
                            kMinRun);
  ASSERT_TRUE(fewest.has_value());
  EXPECT_THAT(fewest->victims, ElementsAre("big"));
  // Lowest priority among equally many.
  auto lowest = PickVictims(Waiting(1, 4, 10), {Worker("w1", 4, 0), Worker("w2", 4, 0)},
                            {Running("p3", {"w1"}, 4, 3), Running("p1", {"w2"}, 4, 1)}, kMinRun);
  ASSERT_TRUE(lowest.has_value());
  EXPECT_THAT(lowest->victims, ElementsAre("p1"));
  // Most recently started among equal priorities: the least work to redo.
  auto recent = PickVictims(Waiting(1, 4, 10), {Worker("w1", 4, 0), Worker("w2", 4, 0)},
                            {Running("old", {"w1"}, 4, 0, absl::Hours(3)),
                             Running("new", {"w2"}, 4, 0, absl::Minutes(10))},
                            kMinRun);
  ASSERT_TRUE(recent.has_value());
  EXPECT_THAT(recent->victims, ElementsAre("new"));
}

TEST(PickVictims, NoVictimItDoesNotNeed) {
  // Many small jobs on one worker: exactly the two that free 4 slots on w1 go, none more.
  std::vector<PreemptionCandidate> running;
  for (int i = 0; i < 8; ++i) running.push_back(Running("s" + std::to_string(i), {"w1"}, 1));
  auto plan = PickVictims(Waiting(1, 4), {Worker("w1", 10, 2)}, running, kMinRun);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->victims.size(), 2u);
  // More candidates than the exhaustive search takes: the greedy path prunes to what it needs.
  running.clear();
  for (int i = 0; i < 30; ++i) running.push_back(Running("t" + std::to_string(i), {"w1"}, 1));
  auto many = PickVictims(Waiting(1, 28), {Worker("w1", 30, 0)}, running, kMinRun);
  ASSERT_TRUE(many.has_value());
  EXPECT_EQ(many->victims.size(), 28u);
}

TEST(PickVictims, OnlyWorkersOfTheWaitingJobsDevice) {
  SchedulerWorker gpu = Worker("gpu", 4, 0);
  gpu.device = v1::DEVICE_CUDA;
  EXPECT_FALSE(PickVictims(Waiting(1, 4), {gpu}, {Running("low", {"gpu"}, 4)}, kMinRun)
                   .has_value());
}

}  // namespace
}  // namespace loratrf::server

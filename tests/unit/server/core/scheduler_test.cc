// The scheduling policy (server/core/scheduler.h) alone: one test per promise of the header, each
// built so that it fails when that promise is broken.
#include "server/core/scheduler.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loratrf::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

SchedulerJob Job(const std::string& id, uint32_t workers, uint32_t slots, int32_t priority = 0,
                 uint64_t order = 0, const std::string& owner = "alice") {
  return {id, owner, priority, order, v1::DEVICE_CPU, workers, slots};
}
SchedulerWorker Worker(const std::string& name, uint32_t slots, uint32_t free) {
  return {name, v1::DEVICE_CPU, slots, free, true};
}

// The ids of the placed jobs, in the order they were placed.
std::vector<std::string> Placed(const SchedulingDecision& decision) {
  std::vector<std::string> ids;
  for (const Placement& placement : decision.placements) ids.push_back(placement.job_id);
  return ids;
}

TEST(Scheduler, PacksGangsPrioritisesAndBackfills) {
  // Packing: the 2-slot job goes to the worker with the fewest free slots that fit.
  auto decision = Schedule({Job("a", 1, 2)}, {Worker("big", 8, 8), Worker("small", 4, 2)}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 1u);
  EXPECT_THAT(decision.placements[0].workers, ElementsAre("small"));
  // Gang: two workers with 2 free slots each or nothing.
  decision = Schedule({Job("gang", 2, 2)}, {Worker("w1", 4, 2), Worker("w2", 4, 1)}, {}, 0);
  EXPECT_TRUE(decision.placements.empty());
  EXPECT_TRUE(decision.unschedulable.empty()) << "it fits an idle fleet, so it waits";
  // Priority first, then FIFO; a job that does not fit does not block a smaller one.
  decision = Schedule({Job("low", 1, 1, 0, 1), Job("high", 1, 3, 5, 2), Job("later", 1, 1, 0, 3)},
                      {Worker("w1", 4, 3)}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 1u);
  EXPECT_EQ(decision.placements[0].job_id, "high");
  decision = Schedule({Job("big", 1, 4, 9, 1), Job("small", 1, 1, 0, 2)}, {Worker("w1", 4, 2)}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 1u);
  EXPECT_EQ(decision.placements[0].job_id, "small");
  // Per-owner limit.
  decision = Schedule({Job("a1", 1, 1, 0, 1), Job("a2", 1, 1, 0, 2), Job("b1", 1, 1, 0, 3, "bob")},
                      {Worker("w1", 8, 8)}, {{"alice", 1}}, 2);
  std::vector<std::string> placed;
  for (const Placement& p : decision.placements) placed.push_back(p.job_id);
  EXPECT_THAT(placed, ElementsAre("a1", "b1"));
  // Unschedulable: more workers than the fleet has, or more slots than any worker has.
  decision = Schedule({Job("wide", 3, 1), Job("fat", 1, 9)}, {Worker("w1", 8, 8), Worker("w2", 8, 0)}, {}, 0,
                      /*fail_unschedulable=*/false);
  EXPECT_TRUE(decision.unschedulable.empty()) << "an unsettled fleet may still grow";
  decision = Schedule({Job("wide", 3, 1), Job("fat", 1, 9)}, {Worker("w1", 8, 8), Worker("w2", 8, 0)}, {}, 0);
  ASSERT_EQ(decision.unschedulable.size(), 2u);
  EXPECT_THAT(decision.unschedulable[0].reason, HasSubstr("needs 3 cpu worker(s)"));
}

// "queue order: priority (higher first)": with room for one job, the higher priority wins even
// though it was submitted last and is listed last.
TEST(Scheduler, HigherPriorityGoesFirstWhateverTheSubmissionOrder) {
  auto decision = Schedule({Job("early-low", 1, 2, 0, 1), Job("mid", 1, 2, 3, 2),
                            Job("late-high", 1, 2, 7, 3)},
                           {Worker("w1", 2, 2)}, {}, 0);
  EXPECT_THAT(Placed(decision), ElementsAre("late-high"));
  // Negative priorities come after the default.
  decision = Schedule({Job("negative", 1, 2, -1, 1), Job("default", 1, 2, 0, 2)},
                      {Worker("w1", 2, 2)}, {}, 0);
  EXPECT_THAT(Placed(decision), ElementsAre("default"));
}

// "then submission order": within a priority, the lower `order` first, whatever order the queue
// is passed in.
TEST(Scheduler, WithinAPriorityTheEarlierSubmissionGoesFirst) {
  auto decision = Schedule({Job("third", 1, 1, 0, 30), Job("first", 1, 1, 0, 10),
                            Job("second", 1, 1, 0, 20)},
                           {Worker("w1", 2, 2)}, {}, 0);
  EXPECT_THAT(Placed(decision), ElementsAre("first", "second"));
}

// "gang: `workers` distinct READY workers of its device, each with `slots_per_worker` free
// slots, all at once or not at all".
TEST(Scheduler, AGangGetsAllItsWorkersAtOnceOrNothing) {
  // Three distinct workers, in node rank order, each giving up the job's slots.
  auto decision = Schedule({Job("gang", 3, 2), Job("after", 1, 1, 0, 1)},
                           {Worker("w1", 2, 2), Worker("w2", 2, 2), Worker("w3", 3, 3)}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 2u);
  EXPECT_EQ(decision.placements[0].job_id, "gang");
  EXPECT_THAT(decision.placements[0].workers, ElementsAre("w1", "w2", "w3"));
  EXPECT_THAT(decision.placements[1].workers, ElementsAre("w3")) << "w3's last slot";
  // Distinct: one worker with room for both nodes does not host a 2-worker gang.
  decision = Schedule({Job("gang", 2, 1)}, {Worker("w1", 8, 8)}, {}, 0);
  EXPECT_THAT(decision.placements, IsEmpty());
  // Nothing, not a part: w1 fits one node of the gang, w2 does not, and w1's slots stay free
  // for a later job that needs all of them.
  decision = Schedule({Job("gang", 2, 2, 0, 1), Job("whole-w1", 1, 2, 0, 2)},
                      {Worker("w1", 2, 2), Worker("w2", 2, 1)}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 1u);
  EXPECT_EQ(decision.placements[0].job_id, "whole-w1");
  EXPECT_THAT(decision.placements[0].workers, ElementsAre("w1"));
  // READY only: a draining worker takes no new node.
  SchedulerWorker draining = Worker("w2", 2, 2);
  draining.ready = false;
  decision = Schedule({Job("gang", 2, 1)}, {Worker("w1", 2, 2), draining}, {}, 0);
  EXPECT_THAT(decision.placements, IsEmpty());
  EXPECT_THAT(decision.unschedulable, IsEmpty()) << "it fits once w2 is ready again";
}

// "packing: among workers that fit, the one with the fewest free slots first (ties: name)".
TEST(Scheduler, PackingPrefersTheFullestWorkerThatFitsThenTheName) {
  // Fewest free slots among those that fit: "two" (2), not "one" (1: too few) nor "eight".
  auto decision = Schedule({Job("job", 1, 2)},
                           {Worker("eight", 8, 8), Worker("one", 8, 1), Worker("two", 8, 2),
                            Worker("four", 8, 4)},
                           {}, 0);
  ASSERT_EQ(decision.placements.size(), 1u);
  EXPECT_THAT(decision.placements[0].workers, ElementsAre("two"));
  // Free slots counted as the pass goes: the second job finds "two" full and takes "four".
  decision = Schedule({Job("a", 1, 2, 0, 1), Job("b", 1, 2, 0, 2)},
                      {Worker("eight", 8, 8), Worker("two", 8, 2), Worker("four", 8, 4)}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 2u);
  EXPECT_THAT(decision.placements[0].workers, ElementsAre("two"));
  EXPECT_THAT(decision.placements[1].workers, ElementsAre("four"));
  // Ties by name, whatever the fleet's order; a gang's nodes in that order too.
  decision = Schedule({Job("gang", 2, 1)},
                      {Worker("w-c", 4, 3), Worker("w-b", 4, 3), Worker("w-a", 4, 3)}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 1u);
  EXPECT_THAT(decision.placements[0].workers, ElementsAre("w-a", "w-b"));
}

// "backfill: a job that does not fit now does not stop a later one that does". The header
// promises no reservation for the head of the queue: the later job takes the slots now.
TEST(Scheduler, ALaterJobThatFitsRunsWhenTheHeadOfTheQueueDoesNot) {
  auto decision = Schedule({Job("head", 1, 4, 5, 1), Job("small", 1, 1, 0, 2),
                            Job("too-big-too", 1, 3, 0, 3), Job("small-too", 1, 1, 0, 4)},
                           {Worker("w1", 4, 2)}, {}, 0);
  EXPECT_THAT(Placed(decision), ElementsAre("small", "small-too"));
  EXPECT_THAT(decision.unschedulable, IsEmpty()) << "the head fits an idle w1: it waits";
}

// "per owner: at most `max_running_per_owner` SCHEDULED+RUNNING jobs (0: no limit)", counting
// what runs already and what this pass places.
TEST(Scheduler, AnOwnerRunsAtMostTheLimitCountingThisPass) {
  std::vector<SchedulerJob> queue = {Job("a1", 1, 1, 0, 1), Job("a2", 1, 1, 0, 2),
                                     Job("a3", 1, 1, 0, 3), Job("b1", 1, 1, 0, 4, "bob"),
                                     Job("b2", 1, 1, 0, 5, "bob")};
  // alice runs none yet: two of hers this pass; bob runs one: one more of his.
  auto decision = Schedule(queue, {Worker("w1", 8, 8)}, {{"bob", 1}}, 2);
  EXPECT_THAT(Placed(decision), ElementsAre("a1", "a2", "b1"));
  // At the limit already: nothing of hers, however much room.
  decision = Schedule(queue, {Worker("w1", 8, 8)}, {{"alice", 2}}, 2);
  EXPECT_THAT(Placed(decision), ElementsAre("b1", "b2"));
  // 0: no limit.
  decision = Schedule(queue, {Worker("w1", 8, 8)}, {{"alice", 5}, {"bob", 5}}, 0);
  EXPECT_THAT(Placed(decision), ElementsAre("a1", "a2", "a3", "b1", "b2"));
}

// "unschedulable: a job that would not fit even if every current worker were idle fails, but
// only when the caller says the fleet has settled ... and never when the fleet is empty".
TEST(Scheduler, AJobThatCanNeverFitIsReportedOnlyOnceTheFleetSettled) {
  std::vector<SchedulerWorker> fleet = {Worker("w1", 4, 0), Worker("w2", 2, 0)};
  std::vector<SchedulerJob> queue = {Job("too-wide", 3, 1, 0, 1), Job("too-fat", 1, 5, 0, 2),
                                     Job("fits-when-idle", 2, 2, 0, 3)};
  auto decision = Schedule(queue, fleet, {}, 0, /*fail_unschedulable=*/false);
  EXPECT_THAT(decision.unschedulable, IsEmpty()) << "the fleet may still grow";
  EXPECT_THAT(decision.placements, IsEmpty());
  decision = Schedule(queue, fleet, {}, 0, /*fail_unschedulable=*/true);
  ASSERT_EQ(decision.unschedulable.size(), 2u) << "busy workers count as idle: the third waits";
  EXPECT_EQ(decision.unschedulable[0].job_id, "too-wide");
  EXPECT_THAT(decision.unschedulable[0].reason, HasSubstr("needs 3 cpu worker(s)"));
  EXPECT_THAT(decision.unschedulable[0].reason, HasSubstr("the fleet has 2 worker(s)"));
  EXPECT_EQ(decision.unschedulable[1].job_id, "too-fat");
  EXPECT_THAT(decision.unschedulable[1].reason, HasSubstr("with 5 slot(s) each"));
  // A draining worker still counts: it may come back.
  SchedulerWorker draining = Worker("w3", 4, 4);
  draining.ready = false;
  decision = Schedule({Job("wide", 3, 1)}, {Worker("w1", 4, 4), Worker("w2", 4, 4), draining}, {},
                      0, true);
  EXPECT_THAT(decision.unschedulable, IsEmpty());
  // An empty fleet fails nothing: agents may not have started yet.
  decision = Schedule(queue, {}, {}, 0, true);
  EXPECT_THAT(decision.unschedulable, IsEmpty());
  EXPECT_THAT(decision.placements, IsEmpty());
  // Reported once per pass, not placed, and it takes nothing from jobs behind it.
  decision = Schedule({Job("too-fat", 1, 9, 9, 1), Job("fits", 1, 4, 0, 2)},
                      {Worker("w1", 4, 4)}, {}, 0, true);
  ASSERT_EQ(decision.unschedulable.size(), 1u);
  EXPECT_THAT(Placed(decision), ElementsAre("fits"));
}

// A job asks for a device kind; only workers of that kind count, for placement and for
// "could it ever fit".
TEST(Scheduler, AJobRunsOnlyOnWorkersOfItsDevice) {
  SchedulerJob cuda = Job("cuda-job", 1, 1);
  cuda.device = v1::DEVICE_CUDA;
  SchedulerWorker gpu = Worker("gpu", 8, 8);
  gpu.device = v1::DEVICE_CUDA;
  // The cpu worker is fuller (packing would pick it), but only the gpu worker has the device.
  auto decision = Schedule({cuda, Job("cpu-job", 1, 1, 0, 1)}, {Worker("cpu", 2, 1), gpu}, {}, 0);
  ASSERT_EQ(decision.placements.size(), 2u);
  EXPECT_EQ(decision.placements[0].job_id, "cuda-job");
  EXPECT_THAT(decision.placements[0].workers, ElementsAre("gpu"));
  EXPECT_THAT(decision.placements[1].workers, ElementsAre("cpu"));
  // A cpu-only fleet never fits it: unschedulable once settled, with the device named.
  decision = Schedule({cuda}, {Worker("cpu", 64, 64)}, {}, 0, true);
  EXPECT_THAT(decision.placements, IsEmpty());
  ASSERT_EQ(decision.unschedulable.size(), 1u);
  EXPECT_THAT(decision.unschedulable[0].reason, HasSubstr("cuda worker(s)"));
  // A cpu job does not take a gpu worker either.
  decision = Schedule({Job("cpu-job", 1, 1)}, {gpu}, {}, 0, false);
  EXPECT_THAT(decision.placements, IsEmpty());
}

}  // namespace
}  // namespace loratrf::server

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
using ::testing::UnorderedElementsAre;

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
  EXPECT_THAT(Placed(decision), UnorderedElementsAre("a1", "b1"));
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
  // 0: no limit (and fair share between the two, who run as much: they take turns).
  decision = Schedule(queue, {Worker("w1", 8, 8)}, {{"alice", 5}, {"bob", 5}}, 0);
  EXPECT_THAT(Placed(decision), ElementsAre("a1", "b1", "a2", "b2", "a3"));
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

// ---- the ordered queue, fair share, slot limits, queue statuses ------------------------------

// A queue and a full-walk policy, for the tests below.
struct Pass {
  JobQueue queue;
  SchedulerPolicy policy;
  std::map<std::string, OwnerUsage> running;
  std::vector<SlotRelease> releases;

  Pass& Add(SchedulerJob job) {
    queue.Add(std::move(job));
    return *this;
  }
  SchedulingDecision Run(std::vector<SchedulerWorker> fleet) const {
    return Schedule(queue, std::move(fleet), running, releases, policy);
  }
};

// The status the decision gives `id`, or a default one (reason UNSPECIFIED) when it has none.
v1::QueueStatus StatusOf(const SchedulingDecision& decision, const std::string& id) {
  for (const QueueVerdict& verdict : decision.waiting) {
    if (verdict.job->id == id) return verdict.status;
  }
  return {};
}

// "JobQueue: Add and Remove"; the walk follows priority then order without a sort.
TEST(JobQueue, KeepsSchedulingOrderAcrossAddsAndRemoves) {
  Pass pass;
  pass.Add(Job("low", 1, 1, 0, 1)).Add(Job("high", 1, 1, 5, 3)).Add(Job("mid", 1, 1, 2, 2));
  pass.Add(Job("gone", 1, 1, 5, 0));
  EXPECT_EQ(pass.queue.size(), 4u);
  EXPECT_TRUE(pass.queue.Remove(Job("gone", 1, 1, 5, 0)));
  EXPECT_FALSE(pass.queue.Remove(Job("gone", 1, 1, 5, 0))) << "already removed";
  EXPECT_FALSE(pass.queue.Remove(Job("low", 1, 1, 0, 99))) << "the order is part of the key";
  pass.Add(Job("mid", 1, 1, 2, 2));  // the same key again replaces, not duplicates
  EXPECT_EQ(pass.queue.size(), 3u);
  EXPECT_EQ(pass.queue.QueuedFor("alice"), 3);
  EXPECT_EQ(pass.queue.QueuedFor("bob"), 0);
  auto decision = pass.Run({Worker("w1", 3, 3)});
  EXPECT_THAT(Placed(decision), ElementsAre("high", "mid", "low"));
  // Positions follow the same order when nothing fits.
  decision = pass.Run({Worker("w1", 3, 0)});
  EXPECT_EQ(StatusOf(decision, "high").position(), 1u);
  EXPECT_EQ(StatusOf(decision, "mid").position(), 2u);
  EXPECT_EQ(StatusOf(decision, "low").position(), 3u);
  // A preempted job (an order below every submission's) goes ahead of its priority's queue.
  pass.Add(Job("preempted", 1, 1, 2, 0));
  decision = pass.Run({Worker("w1", 3, 0)});
  EXPECT_EQ(StatusOf(decision, "preempted").position(), 2u);
  EXPECT_EQ(StatusOf(decision, "mid").position(), 3u);
}

// "fair share: the owner with the fewest running slots per unit of weight first, ties by
// submission order".
TEST(Scheduler, FairShareFavoursTheOwnerFurthestBelowItsWeightedShare) {
  Pass pass;
  for (int i = 0; i < 4; ++i) {
    pass.Add(Job("a" + std::to_string(i), 1, 1, 0, 1 + i));          // alice first in time
    pass.Add(Job("b" + std::to_string(i), 1, 1, 0, 10 + i, "bob"));
  }
  // alice holds 3 slots already, bob none: bob's jobs go first until he holds as many.
  pass.running = {{"alice", {3, 3}}};
  auto decision = pass.Run({Worker("w1", 8, 5)});
  EXPECT_THAT(Placed(decision), ElementsAre("b0", "b1", "b2", "a0", "b3"))
      << "bob to 3 slots, then turns, ties by submission order";
  // Weights: bob weighs 3, so he gets three slots for each of alice's.
  pass.running.clear();
  pass.policy.owner_weights = {{"bob", 3.0}};
  decision = pass.Run({Worker("w1", 8, 4)});
  EXPECT_THAT(Placed(decision), ElementsAre("a0", "b0", "b1", "b2"));
  // Only within a priority: a higher-priority job of the owner above its share still wins.
  pass.policy.owner_weights.clear();
  pass.running = {{"alice", {3, 3}}};
  pass.Add(Job("a-urgent", 1, 1, 9, 50));
  decision = pass.Run({Worker("w1", 8, 1)});
  EXPECT_THAT(Placed(decision), ElementsAre("a-urgent"));
  // The waiting alice job that bob's later ones passed says so.
  decision = pass.Run({Worker("w1", 8, 2)});
  EXPECT_THAT(Placed(decision), ElementsAre("a-urgent", "b0"));
  EXPECT_EQ(StatusOf(decision, "a0").reason(), v1::QUEUE_REASON_FAIR_SHARE);
  EXPECT_THAT(StatusOf(decision, "a0").message(), HasSubstr("fair share"));
}

// "per owner: at most `max_running_slots_per_owner` slots held by them".
TEST(Scheduler, AnOwnerHoldsAtMostTheSlotLimitCountingThisPass) {
  Pass pass;
  pass.Add(Job("two", 1, 2, 0, 1)).Add(Job("three", 1, 3, 0, 2)).Add(Job("one", 1, 1, 0, 3));
  pass.Add(Job("bobs", 1, 4, 0, 4, "bob"));
  pass.policy.max_running_slots_per_owner = 4;
  pass.running = {{"alice", {1, 1}}};
  auto decision = pass.Run({Worker("w1", 16, 16)});
  // alice: 1 + 2 = 3; three more would make 6; one more makes 4. bob: 4.
  EXPECT_THAT(Placed(decision), UnorderedElementsAre("two", "one", "bobs"));
  const v1::QueueStatus three = StatusOf(decision, "three");
  EXPECT_EQ(three.reason(), v1::QUEUE_REASON_OWNER_LIMIT);
  EXPECT_THAT(three.message(), HasSubstr("max running slots per owner 4"));
  EXPECT_EQ(three.slots_needed(), 3u);
  EXPECT_EQ(three.position(), 1u) << "the only job left waiting";
  // The job-count limit says which limit it is.
  pass.policy.max_running_slots_per_owner = 0;
  pass.policy.max_running_per_owner = 1;
  decision = pass.Run({Worker("w1", 16, 16)});
  EXPECT_EQ(StatusOf(decision, "two").reason(), v1::QUEUE_REASON_OWNER_LIMIT);
  EXPECT_THAT(StatusOf(decision, "two").message(), HasSubstr("max running jobs per owner 1"));
}

// Every waiting job gets a reason, a position, the slots it needs and, when the running jobs'
// estimates cover it, an ETA.
TEST(Scheduler, AFullWalkGivesEveryWaitingJobItsReason) {
  Pass pass;
  SchedulerJob paused = Job("paused", 1, 1, 9, 1);
  paused.paused = true;
  SchedulerJob cuda = Job("cuda", 1, 1, 0, 2);
  cuda.device = v1::DEVICE_CUDA;
  pass.Add(paused).Add(cuda);
  pass.Add(Job("wide", 3, 1, 0, 3));        // 3 workers; the fleet has 2
  pass.Add(Job("big", 1, 4, 5, 4));         // higher priority, waits for 4 slots
  pass.Add(Job("small", 1, 2, 0, 5));       // behind it
  pass.Add(Job("gang", 2, 1, 5, 6));        // two workers; w2 drains
  pass.policy.fail_unschedulable = false;
  SchedulerWorker draining = Worker("w2", 4, 4);
  draining.ready = false;
  // Running jobs give back 2 cpu slots in 60 s and 2 more in 120 s.
  pass.releases = {{v1::DEVICE_CPU, absl::Seconds(120), 2}, {v1::DEVICE_CPU, absl::Seconds(60), 2}};
  auto decision = pass.Run({Worker("w1", 4, 1), draining});
  EXPECT_THAT(Placed(decision), IsEmpty());
  EXPECT_TRUE(decision.walked_all);
  ASSERT_EQ(decision.waiting.size(), 6u);
  EXPECT_EQ(StatusOf(decision, "paused").reason(), v1::QUEUE_REASON_PAUSED);
  EXPECT_EQ(StatusOf(decision, "paused").position(), 1u) << "highest priority: first in line";
  EXPECT_EQ(StatusOf(decision, "cuda").reason(), v1::QUEUE_REASON_NO_WORKERS);
  EXPECT_THAT(StatusOf(decision, "cuda").message(), HasSubstr("no cuda worker"));
  EXPECT_EQ(StatusOf(decision, "wide").reason(), v1::QUEUE_REASON_GANG);
  EXPECT_EQ(StatusOf(decision, "gang").reason(), v1::QUEUE_REASON_GANG);
  EXPECT_THAT(StatusOf(decision, "gang").message(), HasSubstr("1 of the 2"));
  const v1::QueueStatus big = StatusOf(decision, "big");
  EXPECT_EQ(big.reason(), v1::QUEUE_REASON_WAITING_FOR_SLOTS);
  EXPECT_THAT(big.message(), HasSubstr("waiting for 4 free cpu slot(s); 1 free now"));
  EXPECT_EQ(big.slots_needed(), 4u);
  EXPECT_EQ(big.position(), 2u);
  // 4 needed, 1 free: 3 more, given back by the 60 s and the 120 s releases.
  EXPECT_EQ(big.eta().seconds(), 120);
  const v1::QueueStatus small = StatusOf(decision, "small");
  EXPECT_EQ(small.reason(), v1::QUEUE_REASON_BEHIND_HIGHER_PRIORITY);
  EXPECT_FALSE(small.has_eta()) << "4 + 2 slots needed, 1 free + 4 released: unknown";
  // Positions are 1..6 in scheduling order, each once.
  std::vector<uint32_t> positions;
  for (const QueueVerdict& verdict : decision.waiting) positions.push_back(verdict.status.position());
  EXPECT_THAT(positions, ElementsAre(1, 2, 3, 4, 5, 6));
}

// "without it the walk ends once no ready worker has a free slot": a pass over a long queue
// with a full fleet does nothing, and says it did not walk it all.
TEST(Scheduler, APassWithoutFreeSlotsStopsAtOnceUnlessAFullWalkIsAsked) {
  Pass pass;
  for (int i = 0; i < 50; ++i) pass.Add(Job("j" + std::to_string(i), 1, 1, 0, i));
  pass.policy.full_walk = false;
  auto decision = pass.Run({Worker("w1", 4, 0)});
  EXPECT_FALSE(decision.walked_all);
  EXPECT_THAT(decision.waiting, IsEmpty());
  // With two free slots it places two and stops there.
  decision = pass.Run({Worker("w1", 4, 2)});
  EXPECT_THAT(Placed(decision), ElementsAre("j0", "j1"));
  EXPECT_FALSE(decision.walked_all);
  pass.policy.full_walk = true;
  decision = pass.Run({Worker("w1", 4, 2)});
  EXPECT_TRUE(decision.walked_all);
  EXPECT_EQ(decision.waiting.size(), 48u);
  EXPECT_EQ(StatusOf(decision, "j2").position(), 1u);
  EXPECT_EQ(StatusOf(decision, "j49").position(), 48u);
}

TEST(Scheduler, APassPlacesAtMostItsLimitAndSaysItStoppedThere) {
  Pass pass;
  for (int i = 0; i < 10; ++i) pass.Add(Job("j" + std::to_string(i), 1, 1, 0, i));
  pass.policy.max_placements = 3;
  auto decision = pass.Run({Worker("w1", 8, 8)});
  EXPECT_THAT(Placed(decision), ElementsAre("j0", "j1", "j2")) << "in queue order";
  EXPECT_TRUE(decision.capped);
  EXPECT_FALSE(decision.walked_all) << "the statuses of the jobs after the cap are not known";
  // Under the limit the pass is not capped and walks everything.
  pass.policy.max_placements = 20;
  decision = pass.Run({Worker("w1", 8, 8)});
  EXPECT_EQ(Placed(decision).size(), 8u);
  EXPECT_FALSE(decision.capped);
  EXPECT_TRUE(decision.walked_all);
}

}  // namespace
}  // namespace loratrf::server

// StoreSync (server/core/store_sync.h): callers that wait at the same time share one
// JobStore::Sync, nobody returns before a Sync that began after their write, and OnDurable
// callbacks run once their write is durable.
#include "server/core/store_sync.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "server/store/in_memory_job_store.h"

namespace loratrf::server {
namespace {

// A store whose Sync blocks until the test opens the gate, and counts the calls.
class GatedSyncStore final : public InMemoryJobStore {
 public:
  absl::Status Sync() override {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return opened_ >= calls_; });
    return absl::OkStatus();
  }
  // Lets the `n`th Sync call return.
  void Open(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    opened_ = n;
    changed_.notify_all();
  }
  void WaitForCalls(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return calls_ >= n; });
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int calls_ = 0;
  int opened_ = 0;
};

TEST(StoreSyncTest, WaitersShareASyncAndNoneReturnsBeforeTheirWriteIsSynced) {
  GatedSyncStore store;
  StoreSync sync(&store);
  const uint64_t first = sync.Wrote();
  std::thread leader([&] { sync.WaitFor(first); });
  store.WaitForCalls(1);  // the leader's Sync covers write 1 only

  // Two more writes while it syncs: their waiters must not take that Sync as theirs.
  const uint64_t second = sync.Wrote(), third = sync.Wrote();
  std::atomic<int> returned{0};
  std::thread a([&] { sync.WaitFor(second); returned.fetch_add(1); });
  std::thread b([&] { sync.WaitFor(third); returned.fetch_add(1); });
  bool called_back = false;
  sync.OnDurable(third, [&] { called_back = true; });
  EXPECT_FALSE(sync.Durable(first));

  store.Open(1);
  leader.join();
  EXPECT_TRUE(sync.Durable(first));
  // One of a and b leads the next Sync, for both writes; neither is back before it returns.
  store.WaitForCalls(2);
  EXPECT_EQ(returned.load(), 0);
  EXPECT_FALSE(sync.Durable(second));
  store.Open(2);
  a.join();
  b.join();
  EXPECT_EQ(returned.load(), 2);
  EXPECT_TRUE(sync.Durable(third));
  EXPECT_TRUE(called_back);
  EXPECT_EQ(store.calls(), 2) << "three writes, two syncs";
  EXPECT_EQ(sync.syncs(), 2u);

  // Durable already: no Sync, and OnDurable runs at once.
  sync.WaitFor(third);
  bool at_once = false;
  sync.OnDurable(third, [&] { at_once = true; });
  EXPECT_TRUE(at_once);
  EXPECT_EQ(store.calls(), 2);
}

}  // namespace
}  // namespace loratrf::server

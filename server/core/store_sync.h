// StoreSync: group commit for the core's store writes (docs/control-plane.md, "Durability").
//
// The core writes to the store under its one mutex, in publication order. With a store whose
// writes return before they are on the disk (SqliteJobStore::SyncMode::kGroupCommit), the
// fsync that makes them durable happens here, outside that mutex: every write is counted
// (Wrote), and before a caller lets anything depend on its writes (a reply, a wake-up, a
// stream item, a read of the state they changed) it waits until they are durable (WaitFor).
// One caller at a time runs JobStore::Sync for everything written so far; the others wait for
// it and find their writes covered, so one fsync serves the writes of many callers.
//
// A Sync that fails ends the process (after logging why): the kernel may have dropped the
// pages it could not write, so the writes can neither be acknowledged nor retried. Nothing was
// acknowledged or shown for them, and a restart recovers from what is durable.
//
// Threading: thread-safe. Wrote is called with the core's mutex held (so the count follows
// the store's commit order); WaitFor blocks and must be called without it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

#include "server/store/job_store.h"

namespace loratrf::server {

class StoreSync {
 public:
  explicit StoreSync(JobStore* store) : store_(store) {}

  // A store write returned (committed, maybe not yet durable). Returns its number.
  uint64_t Wrote() { return written_.fetch_add(1, std::memory_order_acq_rel) + 1; }
  // Writes counted so far.
  uint64_t written() const { return written_.load(std::memory_order_acquire); }
  // Whether write number `seq` (and every one before it) is durable.
  bool Durable(uint64_t seq) const { return durable_.load(std::memory_order_acquire) >= seq; }
  // Blocks until write `seq` and every write before it are durable.
  void WaitFor(uint64_t seq);
  // Runs `callback` once write `seq` is durable: at once (on this thread) if it is, else on
  // the thread whose Sync makes it so. For a stream that found a not yet durable item: it
  // waits (Poll::kWait) and is woken here. `callback` must not block (a stream's notify).
  void OnDurable(uint64_t seq, std::function<void()> callback);
  // How many JobStore::Sync calls were made (for tests and the benchmark's story).
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }

 private:
  JobStore* const store_;
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> durable_{0};  // only grows; written under mu_
  std::atomic<uint64_t> syncs_{0};
  std::mutex mu_;
  std::condition_variable synced_;
  bool syncing_ = false;  // guarded by mu_: a caller is inside JobStore::Sync
  std::multimap<uint64_t, std::function<void()>> waiting_;  // guarded by mu_: OnDurable's
};

}  // namespace loratrf::server

#include "server/core/store_sync.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/logging.h"

namespace loratrf::server {

void StoreSync::WaitFor(uint64_t seq) {
  if (Durable(seq)) return;
  std::unique_lock<std::mutex> lock(mu_);
  while (!Durable(seq)) {
    if (syncing_) {
      synced_.wait(lock);
      continue;
    }
    // Lead: everything counted now has returned from the store, so one Sync covers it all.
    syncing_ = true;
    const uint64_t target = written();
    lock.unlock();
    absl::Status synced = store_->Sync();
    lock.lock();
    syncing_ = false;
    syncs_.fetch_add(1, std::memory_order_relaxed);
    if (!synced.ok()) {
      LOG_ERROR("the job store could not make its writes durable, stopping (a restart "
                "recovers what is on the disk): {}",
                std::string(synced.message()));
      spdlog::default_logger()->flush();
      std::abort();
    }
    durable_.store(std::max(durable_.load(std::memory_order_relaxed), target),
                   std::memory_order_release);
    synced_.notify_all();
    std::vector<std::function<void()>> ready;
    while (!waiting_.empty() && Durable(waiting_.begin()->first)) {
      ready.push_back(std::move(waiting_.begin()->second));
      waiting_.erase(waiting_.begin());
    }
    if (!ready.empty()) {
      lock.unlock();
      for (auto& callback : ready) callback();
      lock.lock();
    }
  }
}

void StoreSync::OnDurable(uint64_t seq, std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Checked under mu_: a Sync finishing now either sees this entry or has already made
    // `seq` durable.
    if (!Durable(seq)) {
      waiting_.emplace(seq, std::move(callback));
      return;
    }
  }
  callback();
}

}  // namespace loratrf::server

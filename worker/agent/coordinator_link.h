// What an attempt needs from the agent to talk to the coordinator: the stubs, a context that
// carries the bearer token, the worker's name and current lease, and a way back from a
// FAILED_PRECONDITION (a lapsed lease is renewed by registering again; a valid lease means the
// attempt itself is stale). The Agent implements it; tests of the pieces may fake it.
//
// Threading: every method is safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/client_context.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"

namespace loratrf::worker::agent {

class CoordinatorLink {
 public:
  virtual ~CoordinatorLink() = default;
  // A context with the `authorization` metadata and, unless `timeout` is infinite, a deadline.
  virtual std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout) = 0;
  virtual v1::WorkerService::StubInterface& workers() = 0;
  virtual v1::JobService::StubInterface& jobs() = 0;
  virtual const std::string& worker_name() const = 0;
  virtual uint64_t lease_id() = 0;
  // Called after a call made with `used_lease` failed with FAILED_PRECONDITION. True when the
  // lease has changed since (registered again: retry the call with lease_id()); false when the
  // lease is still valid, so the call was refused for its own reason (a stale attempt). An
  // error when the coordinator cannot be asked right now.
  virtual absl::StatusOr<bool> RecoverLease(uint64_t used_lease) = 0;
};

// Lets one thread cancel the call another thread has in flight, and every later one.
// Threading: thread-safe; mu_ guards both fields.
class CallCanceller {
 public:
  void Set(grpc::ClientContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    context_ = context;
    if (context_ != nullptr && cancelled_) context_->TryCancel();
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

 private:
  mutable std::mutex mu_;
  grpc::ClientContext* context_ = nullptr;  // guarded by mu_: the call in flight, if any
  bool cancelled_ = false;                  // guarded by mu_
};

// Registers a context with a canceller for the scope of one call.
class ScopedCall {
 public:
  ScopedCall(CallCanceller& canceller, grpc::ClientContext* context) : canceller_(canceller) {
    canceller_.Set(context);
  }
  ~ScopedCall() { canceller_.Set(nullptr); }
  ScopedCall(const ScopedCall&) = delete;
  ScopedCall& operator=(const ScopedCall&) = delete;

 private:
  CallCanceller& canceller_;
};

}  // namespace loratrf::worker::agent

// Collectives between the ranks of one job, behind an interface (docs/architecture.md, convention
// 8): Gloo over TCP on CPUs (c10d's ProcessGroupGloo, rendezvous through c10d's TCPStore, which
// rank 0 hosts), NCCL on GPUs. Every collective has a timeout, so a hung or dead peer becomes an
// error on every surviving rank instead of a silent hang.
//
// Threading: a Communicator is used by the one training thread of its rank.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>

namespace loratrf::engine {

// A collective that has been started and not yet waited for.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Blocks until the collective is done on this rank (its result may then be read), or fails
  // as the blocking collectives do (DEADLINE_EXCEEDED, UNAVAILABLE).
  virtual absl::Status Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Sums each tensor across ranks, in place. Tensors must be contiguous and the same shape on
  // every rank. DEADLINE_EXCEEDED or UNAVAILABLE when a peer does not take part in time.
  virtual absl::Status AllReduceSum(std::vector<at::Tensor>& tensors) = 0;
  // Starts summing `tensor` across ranks, in place, and returns at once, so that the caller can
  // go on computing (the next gradients) while it runs. Every rank must start its collectives in
  // the same order. This default runs it to completion before returning.
  virtual absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceSum(at::Tensor tensor);
  // Copies `tensor` from `root` to every rank, in place.
  virtual absl::Status Broadcast(at::Tensor& tensor, int root) = 0;
  virtual absl::Status Barrier() = 0;
};

struct RendezvousOptions {
  std::string master_addr = "127.0.0.1";  // rank 0's host: the TCPStore
  int master_port = 0;
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};  // rendezvous and each collective
};

// World size 1: every collective is a no-op.
std::unique_ptr<Communicator> MakeSingleProcessCommunicator();

// Joins the job's Gloo group: rank 0 hosts the TCPStore at master_addr:master_port, every rank
// connects to it. Each rank's Gloo device binds this host's address on the route to
// master_addr (what the peers dial), so the ranks of a job may be on different hosts. Fails
// (instead of waiting forever) when the group is not complete in time.
absl::StatusOr<std::unique_ptr<Communicator>> ConnectGloo(const RendezvousOptions& options);

// Joins the job's NCCL group (CUDA tensors only), on CUDA device `device`: the NCCL unique id
// goes from rank 0 to the others through the same TCPStore rendezvous. Collectives run on the
// legacy default stream, so they are ordered after libtorch's work without any torch CUDA
// header here; a collective that does not finish within the timeout aborts the communicator.
// UNIMPLEMENTED in a build without NCCL (loratrf-worker info says which).
absl::StatusOr<std::unique_ptr<Communicator>> ConnectNccl(const RendezvousOptions& options,
                                                          int device);

}  // namespace loratrf::engine

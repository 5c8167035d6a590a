// The NCCL communicator. Only nccl.h and cuda_runtime.h: no torch CUDA headers, so it compiles
// and links wherever the CUDA toolkit is, even against a CPU-only libtorch (CI builds it so);
// it runs where a GPU is.
#include "worker/engine/dist/communicator.h"

#include "absl/strings/str_cat.h"

#ifdef LORATRF_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "worker/engine/dist/rendezvous.h"
#include <torch/torch.h>
#endif

namespace loratrf::engine {

#ifndef LORATRF_HAVE_NCCL

absl::StatusOr<std::unique_ptr<Communicator>> ConnectNccl(const RendezvousOptions&, int) {
  return absl::UnimplementedError("this loratrf-worker was built without NCCL");
}

#else

namespace {

constexpr char kUniqueIdKey[] = "loratrf/nccl_unique_id";

absl::Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", cudaGetErrorString(error)));
}

absl::Status NcclStatus(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", ncclGetErrorString(result)));
}

// The communicator is non-blocking (config.blocking = 0), so that a peer that never shows up
// cannot hang this rank inside NCCL: a call may answer ncclInProgress, and its outcome is then
// read with ncclCommGetAsyncError. Waits for `result` to settle, until `deadline`; on an error or
// the deadline the communicator is aborted (and `comm` set to null).
absl::Status Settle(ncclComm_t& comm, ncclResult_t result, const char* what,
                    std::chrono::steady_clock::time_point deadline) {
  while (result == ncclInProgress) {
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm);
      comm = nullptr;
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": the other ranks did not join in time (a peer died or is unreachable)"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (ncclCommGetAsyncError(comm, &result) != ncclSuccess) result = ncclInternalError;
  }
  if (result == ncclSuccess) return absl::OkStatus();
  if (comm != nullptr) ncclCommAbort(comm);
  comm = nullptr;
  return NcclStatus(result, what);
}

absl::StatusOr<ncclDataType_t> NcclType(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    default:
      return absl::InvalidArgumentError(absl::StrCat("NCCL cannot reduce ", c10::toString(t.scalar_type())));
  }
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(c10::intrusive_ptr<c10d::Store> store, ncclComm_t comm, int rank, int world,
                   int device, std::chrono::milliseconds timeout)
      : store_(std::move(store)), comm_(comm), rank_(rank), world_(world), device_(device),
        timeout_(timeout) {}
  ~NcclCommunicator() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    if (side_stream_ != nullptr) cudaStreamDestroy(side_stream_);
  }

  // On a stream of its own, after the work queued so far on the default stream (which computed
  // the tensor): the default stream goes on with the next gradients meanwhile. Wait() puts the
  // default stream behind the collective and waits for it, with the timeout.
  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceSum(at::Tensor t) override {
    if (comm_ == nullptr) return Aborted();
    if (!t.is_cuda() || !t.is_contiguous()) {
      return absl::InvalidArgumentError("NCCL all-reduce needs contiguous CUDA tensors");
    }
    auto type = NcclType(t);
    if (!type.ok()) return type.status();
    if (side_stream_ == nullptr) {
      absl::Status status = CudaStatus(
          cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
      if (!status.ok()) return status;
    }
    cudaEvent_t computed = nullptr;
    absl::Status status = CudaStatus(
        cudaEventCreateWithFlags(&computed, cudaEventDisableTiming), "cudaEventCreate");
    if (!status.ok()) return status;
    status = CudaStatus(cudaEventRecord(computed, nullptr), "cudaEventRecord");
    if (status.ok()) status = CudaStatus(cudaStreamWaitEvent(side_stream_, computed, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(computed);  // released once it has fired
    if (!status.ok()) return status;
    status = Settle(comm_,
                    ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), *type,
                                  ncclSum, comm_, side_stream_),
                    "ncclAllReduce", Deadline());
    if (!status.ok()) return status;
    cudaEvent_t reduced = nullptr;
    status = CudaStatus(cudaEventCreateWithFlags(&reduced, cudaEventDisableTiming), "cudaEventCreate");
    if (status.ok()) status = CudaStatus(cudaEventRecord(reduced, side_stream_), "cudaEventRecord");
    if (!status.ok()) {
      if (reduced != nullptr) cudaEventDestroy(reduced);
      return status;
    }
    return std::unique_ptr<PendingCollective>(std::make_unique<Pending>(*this, reduced, std::move(t)));
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  absl::Status AllReduceSum(std::vector<at::Tensor>& tensors) override {
    if (comm_ == nullptr) return Aborted();
    for (at::Tensor& t : tensors) {
      if (!t.is_cuda() || !t.is_contiguous()) {
        return absl::InvalidArgumentError("NCCL all-reduce needs contiguous CUDA tensors");
      }
      auto type = NcclType(t);
      if (!type.ok()) return type.status();
      absl::Status status = Settle(
          comm_,
          ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), *type, ncclSum,
                        comm_, /*stream=*/nullptr),
          "ncclAllReduce", Deadline());
      if (!status.ok()) return status;
    }
    return Wait("all-reduce");
  }

  absl::Status Broadcast(at::Tensor& tensor, int root) override {
    if (comm_ == nullptr) return Aborted();
    if (!tensor.is_cuda() || !tensor.is_contiguous()) {
      return absl::InvalidArgumentError("NCCL broadcast needs a contiguous CUDA tensor");
    }
    auto type = NcclType(tensor);
    if (!type.ok()) return type.status();
    absl::Status status = Settle(
        comm_,
        ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                      *type, root, comm_, nullptr),
        "ncclBroadcast", Deadline());
    return status.ok() ? Wait("broadcast") : status;
  }

  absl::Status Barrier() override {
    std::vector<at::Tensor> token = {
        torch::zeros({1}, torch::TensorOptions().device(torch::kCUDA, device_))};
    return AllReduceSum(token);
  }

 private:
  std::chrono::steady_clock::time_point Deadline() const {
    return std::chrono::steady_clock::now() + timeout_;
  }
  static absl::Status Aborted() {
    return absl::FailedPreconditionError("the NCCL communicator was aborted after an error");
  }

  class Pending : public PendingCollective {
   public:
    Pending(NcclCommunicator& owner, cudaEvent_t reduced, at::Tensor tensor)
        : owner_(owner), reduced_(reduced), tensor_(std::move(tensor)) {}
    ~Pending() override { cudaEventDestroy(reduced_); }
    absl::Status Wait() override {
      absl::Status status =
          CudaStatus(cudaStreamWaitEvent(nullptr, reduced_, 0), "cudaStreamWaitEvent");
      if (!status.ok()) return status;
      return owner_.Wait("all-reduce", [this] { return cudaEventQuery(reduced_); });
    }

   private:
    NcclCommunicator& owner_;
    cudaEvent_t reduced_;
    at::Tensor tensor_;  // kept alive while the collective may still write it
  };

  absl::Status Wait(const char* what) {
    return Wait(what, [] { return cudaStreamQuery(nullptr); });
  }

  // Polls `done` for completion so that a dead peer turns into an error after the timeout
  // instead of a hang: NCCL itself would wait forever.
  template <typename Query>
  absl::Status Wait(const char* what, const Query& done) {
    auto deadline = Deadline();
    while (true) {
      cudaError_t state = done();
      if (state == cudaSuccess) return absl::OkStatus();
      if (state != cudaErrorNotReady) return CudaStatus(state, what);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        return NcclStatus(async, what);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        return absl::DeadlineExceededError(absl::StrCat("NCCL ", what, " timed out"));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  ncclComm_t comm_;
  int rank_;
  int world_;
  int device_;
  std::chrono::milliseconds timeout_;
  cudaStream_t side_stream_ = nullptr;  // where started all-reduces run
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> ConnectNccl(const RendezvousOptions& options,
                                                          int device) {
  try {
    absl::Status status = CudaStatus(cudaSetDevice(device), "cudaSetDevice");
    if (!status.ok()) return status;
    auto store = ConnectStore(options);
    ncclUniqueId id;
    if (options.rank == 0) {
      status = NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId");
      if (!status.ok()) return status;
      std::vector<uint8_t> bytes(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof id);
      store->set(kUniqueIdKey, bytes);
    } else {
      std::vector<uint8_t> bytes = store->get(kUniqueIdKey);  // waits up to the store's timeout
      if (bytes.size() != sizeof id) return absl::DataLossError("malformed NCCL unique id");
      std::memcpy(&id, bytes.data(), sizeof id);
    }
    // Non-blocking initialisation with a deadline: a peer that died after the id exchange would
    // otherwise block ncclCommInitRank forever (Gloo's rendezvous times out; so does this).
    ncclComm_t comm = nullptr;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t init = ncclCommInitRankConfig(&comm, options.world_size, id, options.rank, &config);
    if (init != ncclSuccess && init != ncclInProgress) return NcclStatus(init, "ncclCommInitRankConfig");
    status = Settle(comm, init, "ncclCommInitRankConfig",
                    std::chrono::steady_clock::now() + options.timeout);
    if (!status.ok()) return status;
    return std::unique_ptr<Communicator>(std::make_unique<NcclCommunicator>(
        store, comm, options.rank, options.world_size, device, options.timeout));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("NCCL rendezvous failed: ", e.what()));
  }
}

#endif  // LORATRF_HAVE_NCCL

}  // namespace loratrf::engine

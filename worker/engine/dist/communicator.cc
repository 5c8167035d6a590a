#include "worker/engine/dist/communicator.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include "worker/engine/dist/rendezvous.h"
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/text.h"

namespace loratrf::engine {
namespace {

class FinishedCollective : public PendingCollective {
 public:
  absl::Status Wait() override { return absl::OkStatus(); }
};

}  // namespace

absl::StatusOr<std::unique_ptr<PendingCollective>> Communicator::StartAllReduceSum(
    at::Tensor tensor) {
  std::vector<at::Tensor> one = {std::move(tensor)};
  absl::Status status = AllReduceSum(one);
  if (!status.ok()) return status;
  return std::unique_ptr<PendingCollective>(std::make_unique<FinishedCollective>());
}

namespace {

class SingleProcessCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status AllReduceSum(std::vector<at::Tensor>&) override { return absl::OkStatus(); }
  absl::Status Broadcast(at::Tensor&, int) override { return absl::OkStatus(); }
  absl::Status Barrier() override { return absl::OkStatus(); }
};

// c10d reports a timeout or a lost peer by throwing; both become statuses here.
absl::Status FromException(const char* what, const std::exception& e) {
  std::string message = FirstLine(e.what());
  bool timeout = message.find("imed out") != std::string::npos ||
                 message.find("imeout") != std::string::npos;
  return timeout ? absl::DeadlineExceededError(absl::StrCat(what, " timed out: ", message))
                 : absl::UnavailableError(absl::StrCat(what, " failed: ", message));
}

// The address of this host that its Gloo device binds to and publishes to the peers, which dial
// it for every pair. It must be an address of this host (the master's address, used before,
// cannot be bound on any other host) that the other hosts can reach. It is the source address
// the kernel picks for packets to the master: a UDP connect() sends nothing, it only looks up
// the route. That address belongs to the interface that faces the master, so the peers, which
// reach the master over the same network, reach it too; on the master's host it is the master
// address itself, and for a one-machine run on 127.0.0.1 it is 127.0.0.1. It needs no setting,
// so a rank started by hand (`loratrf-worker run --rank`) binds as well as one an agent starts,
// and it is always an address this host can bind. Not chosen: the host name
// (createDefaultDevice), which Debian resolves to 127.0.1.1 and network namespaces share; the
// agent's --address, which may be a name that resolves differently here than on the peers
// (the same 127.0.1.1) and would need passing to every rank.
absl::StatusOr<std::string> LocalAddressToward(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int error = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); error != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve the master address ", host, ": ", ::gai_strerror(error)));
  }
  std::string local;
  for (addrinfo* candidate = found; candidate != nullptr && local.empty();
       candidate = candidate->ai_next) {
    int fd = ::socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC,
                      candidate->ai_protocol);
    if (fd < 0) continue;
    sockaddr_storage self{};
    socklen_t length = sizeof self;
    char numeric[NI_MAXHOST] = {};
    if (::connect(fd, candidate->ai_addr, candidate->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &length) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&self), length, numeric, sizeof numeric,
                      nullptr, 0, NI_NUMERICHOST) == 0) {
      local = numeric;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (local.empty()) {
    return absl::UnavailableError(
        absl::StrCat("no route from this host to the master address ", host));
  }
  return local;
}

class GlooPending : public PendingCollective {
 public:
  GlooPending(c10::intrusive_ptr<c10d::Work> work, std::chrono::milliseconds timeout)
      : work_(std::move(work)), timeout_(timeout) {}
  absl::Status Wait() override {
    try {
      if (!work_->wait(timeout_)) return absl::DeadlineExceededError("all-reduce timed out");
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return FromException("all-reduce", e);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::chrono::milliseconds timeout_;
};

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(c10::intrusive_ptr<c10d::Store> store,
                   c10::intrusive_ptr<c10d::ProcessGroupGloo> group, int rank, int world_size,
                   std::chrono::milliseconds timeout)
      : store_(std::move(store)), group_(std::move(group)), rank_(rank),
        world_size_(world_size), timeout_(timeout) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduceSum(std::vector<at::Tensor>& tensors) override {
    try {
      for (at::Tensor& t : tensors) {
        std::vector<at::Tensor> one = {t};
        auto work = group_->allreduce(one);
        if (!work->wait(timeout_)) return absl::DeadlineExceededError("all-reduce timed out");
      }
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return FromException("all-reduce", e);
    }
  }

  // Gloo runs the collective on its own threads; Wait() is the work's wait, with the timeout.
  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceSum(at::Tensor tensor) override {
    try {
      std::vector<at::Tensor> one = {std::move(tensor)};
      return std::unique_ptr<PendingCollective>(
          std::make_unique<GlooPending>(group_->allreduce(one), timeout_));
    } catch (const std::exception& e) {
      return FromException("all-reduce", e);
    }
  }

  absl::Status Broadcast(at::Tensor& tensor, int root) override {
    try {
      std::vector<at::Tensor> one = {tensor};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      auto work = group_->broadcast(one, options);
      if (!work->wait(timeout_)) return absl::DeadlineExceededError("broadcast timed out");
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return FromException("broadcast", e);
    }
  }

  absl::Status Barrier() override {
    // An all-reduce of one element: unlike c10d's barrier it honours our timeout the same way.
    std::vector<at::Tensor> token = {torch::zeros({1})};
    return AllReduceSum(token);
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;  // kept alive: rank 0's hosts the rendezvous
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  int rank_;
  int world_size_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<Communicator> MakeSingleProcessCommunicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

absl::StatusOr<std::unique_ptr<Communicator>> ConnectGloo(const RendezvousOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", options.rank, " is outside world size ",
                                                   options.world_size));
  }
  if (options.master_port < 1 || options.master_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("master port ", options.master_port, " is not a TCP port"));
  }
  absl::StatusOr<std::string> local_address =
      LocalAddressToward(options.master_addr, options.master_port);
  if (!local_address.ok()) return local_address.status();
  try {
    auto store = ConnectStore(options);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create();
    gloo_options->timeout = options.timeout;
    gloo_options->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(*local_address));
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank,
                                                             options.world_size, gloo_options);
    return std::unique_ptr<Communicator>(std::make_unique<GlooCommunicator>(
        store, group, options.rank, options.world_size, options.timeout));
  } catch (const std::exception& e) {
    return FromException(absl::StrCat("rendezvous with ", options.master_addr, ":",
                                      options.master_port).c_str(),
                         e);
  }
}

}  // namespace loratrf::engine

#include "flatmin/distributed/communicator.h"

#include <chrono>
#include <cstdlib>
#include <map>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "flatmin/core/error.h"

namespace flatmin::distributed {
namespace {

// A variable of the environment as an integer in [lo, hi]; `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  check(end != value && *end == '\0' && v >= lo && v <= hi,
        std::string(name) + "=" + value + ": must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(v);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

}  // namespace

World world_from_env() {
  World w;
  const bool has_rank = std::getenv("RANK") != nullptr, has_size = std::getenv("WORLD_SIZE") != nullptr;
  check(has_rank == has_size, std::string(has_rank ? "RANK" : "WORLD_SIZE") + " is set without " +
                                  (has_rank ? "WORLD_SIZE" : "RANK") + " (a launcher sets both: flatmin launch, torchrun)");
  if (!has_size) return w;
  w.size = env_int("WORLD_SIZE", 1, 1, 65536);
  w.rank = env_int("RANK", 0, 0, w.size - 1);
  w.local_rank = env_int("LOCAL_RANK", w.rank, 0, w.size - 1);
  w.local_size = env_int("LOCAL_WORLD_SIZE", w.size, 1, w.size);
  w.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') w.master_addr = addr;
  return w;
}

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

Communicator::Communicator(const World& world, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()), world_(world) {
  check(world.size >= 1 && world.rank >= 0 && world.rank < world.size, "distributed: rank out of range");
  const std::string where = world.master_addr + ":" + std::to_string(world.master_port);
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(world.master_port);
  options.isServer = world.rank == 0;
  options.numWorkers = static_cast<size_t>(world.size);
  options.waitWorkers = false;
  options.timeout = timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(world.master_addr, options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(world.rank) + ": cannot " +
                (world.rank == 0 ? "serve the rendezvous store at " : "reach the rendezvous store at ") + where +
                " within " + std::to_string(timeout.count() / 1000) + " s (" +
                (world.rank == 0 ? "is the port taken?" : "is rank 0 running, and MASTER_ADDR/MASTER_PORT right?") +
                "): " + first_line(e.what()));
  }
  auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
  group_options->devices.push_back(is_loopback(world.master_addr)
                                       ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                       : c10d::ProcessGroupGloo::createDefaultDevice());
  group_options->threads = 1;
  try {
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, world.rank, world.size, group_options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(world.rank) + ": the " + std::to_string(world.size) +
                " ranks did not all meet at " + where + " within " + std::to_string(timeout.count() / 1000) +
                " s: " + first_line(e.what()));
  }
}

Communicator::~Communicator() = default;

namespace {

template <typename F>
void collective(int rank, const char* what, F&& run) {
  try {
    run();
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(rank) + ": " + what +
                " failed: another rank stopped or stopped answering (" + first_line(e.what()) + ")");
  }
}

}  // namespace

void Communicator::sum(const std::vector<at::Tensor>& tensors) {
  if (world_.size == 1) return;
  const auto t0 = std::chrono::steady_clock::now();
  std::map<at::ScalarType, std::vector<at::Tensor>> by_dtype;
  for (const auto& t : tensors)
    if (t.defined()) by_dtype[t.scalar_type()].push_back(t);
  for (auto& [dtype, group] : by_dtype) {
    std::vector<at::Tensor> flat_parts;
    for (const auto& t : group) flat_parts.push_back(t.reshape({-1}));
    std::vector<at::Tensor> buffer{at::cat(flat_parts)};
    collective(world_.rank, "allreduce", [&] { impl_->group->allreduce(buffer)->wait(); });
    int64_t offset = 0;
    for (auto& t : group) {
      t.copy_(buffer[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
    ++collectives_;
  }
  collective_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Communicator::mean(const std::vector<at::Tensor>& tensors) {
  if (world_.size == 1) return;
  sum(tensors);
  for (const auto& t : tensors)
    if (t.defined()) t.div_(static_cast<double>(world_.size));
}

void Communicator::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (world_.size == 1) return;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    std::vector<at::Tensor> one{t.contiguous()};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    collective(world_.rank, "broadcast", [&] { impl_->group->broadcast(one, options)->wait(); });
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

void Communicator::barrier() {
  if (world_.size == 1) return;
  collective(world_.rank, "barrier", [&] { impl_->group->barrier()->wait(); });
}

}  // namespace flatmin::distributed

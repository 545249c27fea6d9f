#pragma once
/// Several processes, the way the PyTorch world runs them: torch.distributed's c10d (ProcessGroupGloo on
/// CPUs), rendezvous through its TCPStore, configured by torchrun's environment variables. flatmin adds no
/// transport of its own.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace flatmin::distributed {

/// torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool distributed() const { return size > 1; }
};

/// The world this process belongs to; one process when WORLD_SIZE is unset or 1. Throws flatmin::Error
/// naming the variable when one is malformed or missing (RANK without WORLD_SIZE, RANK ≥ WORLD_SIZE, ...).
World world_from_env();

/// A Gloo process group over the world. Construction meets the other ranks at the store
/// (MASTER_ADDR:MASTER_PORT, served by rank 0); a rank that cannot reach it within `timeout` gets a
/// flatmin::Error saying so, never a hang. Every collective also fails after `timeout` (a rank that died
/// or stopped answering), with a flatmin::Error naming this rank and the operation.
class Communicator {
 public:
  Communicator(const World& world, std::chrono::milliseconds timeout);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return world_.rank; }
  int size() const { return world_.size; }

  /// tensors[i] ← Σ over ranks of tensors[i], in place. Tensors of any shapes travel flattened into one
  /// buffer per dtype: one allreduce per dtype, not one per tensor (undefined tensors are skipped).
  void sum(const std::vector<at::Tensor>& tensors);
  /// tensors[i] ← mean over ranks.
  void mean(const std::vector<at::Tensor>& tensors);
  /// tensors[i] ← rank root's tensors[i].
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  void barrier();

  /// Seconds spent in collectives since construction (the benchmark's allreduce share).
  double collective_seconds() const { return collective_seconds_; }
  int64_t collectives() const { return collectives_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  World world_;
  double collective_seconds_ = 0;
  int64_t collectives_ = 0;
};

}  // namespace flatmin::distributed

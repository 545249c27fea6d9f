"""flatmin.optim under torch's DistributedDataParallel: two Gloo processes on this machine, each with half of
the batch, end where one process with the whole batch ends (NSO draws the same noise on every rank; SAM's
ascent is synced), and a SAM whose closure skips the ascent pass's sync (per-replica ascent) keeps the ranks
equal to each other but not to one process."""
import contextlib
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from flatmin import optim

STEPS = 3


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)


def make_model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def make_optimizer(name, params):
    if name == "nso":
        return optim.NSO(params, torch.optim.SGD, sigma=0.05, k=2, seed=4, lr=0.1, momentum=0.9)
    return optim.SAM(params, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)


def train(model, opt, x, y, per_replica_ascent=False):
    for _ in range(STEPS):
        def closure():
            opt.zero_grad()
            skip_sync = per_replica_ascent and opt.current_pass == 0
            with model.no_sync() if skip_sync else contextlib.nullcontext():
                loss = F.cross_entropy(model(x), y)
                loss.backward()
            return loss

        opt.step(closure)


def worker(rank, port, name, per_replica, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    x, y = data()
    model = torch.nn.parallel.DistributedDataParallel(make_model())
    opt = make_optimizer(name, model.parameters())
    train(model, opt, x[rank * 16:(rank + 1) * 16], y[rank * 16:(rank + 1) * 16], per_replica)
    torch.save([p.detach() for p in model.module.parameters()], os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name,per_replica", [("nso", False), ("sam", False), ("sam", True)])
def test_two_ddp_processes_take_the_whole_batchs_step(name, per_replica, tmp_path):
    mp.spawn(worker, args=(free_port(), name, per_replica, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for a, b in zip(*ranks):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)  # the ranks agree
    single = make_model()
    x, y = data()
    train(single, make_optimizer(name, single.parameters()), x, y)
    close = all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(ranks[0], single.parameters()))
    # Synced: one process's step within 1e-6. Per-replica ascent: each rank ascends along its half's
    # gradient, another step.
    assert close != per_replica

#!/usr/bin/python3
"""flatmin.optim driven from Python, side by side in one run with (a) the same methods written in plain
Python (python_baseline.py's steps, the reference repositories' style) and (b) flatmin's C++ step
(bench_step, the CLI's optimizer), on the same models, batches and thread count.

    PYTHONPATH=build/python /usr/bin/python3 benchmarks/python_flatmin.py --bench-step build/benchmarks/bench_step

Prints one line per (model, batch, method): ms/step of flatmin.optim from Python, of plain Python and of
the C++ step, and the two ratios. The three are interleaved round by round (round r: bench_step for a short round of its own,
then flatmin.optim and plain Python alternately), so the machine's load falls on all alike; each figure is the
median over rounds and each ratio the median of the per-round ratios.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

# One BLAS thread unless told otherwise, as flatmin sets its own: OpenBLAS's pool would otherwise spin on
# every core beside torch's threads (17 ms instead of 1.5 ms for the MLP's step on a loaded 2-core machine).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import python_baseline as baseline  # noqa: E402

import flatmin  # noqa: E402

FLATMIN = {"nso": lambda p: flatmin.optim.NSO(p, torch.optim.SGD, sigma=0.01, k=1, lr=0.01, momentum=0.9),
           "sam": lambda p: flatmin.optim.SAM(p, torch.optim.SGD, rho=0.05, lr=0.01, momentum=0.9),
           "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)}


def flatmin_step(model, method, x, y):
    opt = FLATMIN[method](model.parameters())

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    def step():
        if method == "sgd":
            closure()
            opt.step()
        else:
            opt.step(closure)

    return step


def time_steps(step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps


def bench_step_ms(binary, model, batch, methods, threads, rounds=3):
    out = subprocess.run([binary, "--models", model, "--batches", str(batch), "--methods", ",".join(methods),
                          "--threads", str(threads), "--rounds", str(rounds), "--no-noise", "--no-memory"],
                         check=True, capture_output=True, text=True).stdout
    ms = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0] == model and fields[1] == str(batch) and re.match(r"^[\d.]+$", fields[4]):
            ms[fields[2]] = float(fields[4])
    return ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench-step", default="build/benchmarks/bench_step")
    parser.add_argument("--cases", default="mlp/32,cnn/128", help="model/batch pairs")
    parser.add_argument("--methods", default="sgd,nso,sam")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="about this long per round and variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    print(f"# flatmin.optim from Python vs plain Python vs the C++ step | torch {torch.__version__} | "
          f"{args.threads} thread(s) | median of {args.rounds} interleaved rounds")
    print(f"{'case':12s} {'method':6s} {'flatmin.optim':>13s} {'plain python':>12s} {'C++ step':>9s} "
          f"{'optim/C++':>9s} {'optim/plain':>11s}")
    for case in args.cases.split(","):
        name, batch = case.split("/")
        batch = int(batch)
        torch.manual_seed(0)
        x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
        steps = {m: (flatmin_step(getattr(baseline, name)(), m, x, y), baseline.Step(getattr(baseline, name)(), m, x, y))
                 for m in methods}
        counts = {}
        for m, (ours, plain) in steps.items():
            for _ in range(3):  # warm-up
                ours()
                plain()
            counts[m] = max(3, int(args.seconds * 1000 / max(time_steps(ours, 3), 1e-3)))
        times = {m: ([], [], []) for m in methods}  # flatmin.optim, plain Python, C++ per round
        for _ in range(args.rounds):
            cpp = bench_step_ms(args.bench_step, name, batch, methods, args.threads)
            for m, (ours, plain) in steps.items():
                times[m][0].append(time_steps(ours, counts[m]))
                times[m][1].append(time_steps(plain, counts[m]))
                times[m][2].append(cpp.get(m, float("nan")))
        for m in methods:
            a, b, c = times[m]
            to_cpp = statistics.median(x / z for x, z in zip(a, c))
            to_plain = statistics.median(x / z for x, z in zip(a, b))
            print(f"{case:12s} {m:6s} {statistics.median(a):13.3f} {statistics.median(b):12.3f} "
                  f"{statistics.median(c):9.3f} {to_cpp:9.3f} {to_plain:11.3f}", flush=True)

if __name__ == "__main__":
    main()

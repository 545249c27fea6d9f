#!/usr/bin/python3
"""Whole runs of `flatmin train` / `flatmin geometry`, timed side by side with the same work written in PyTorch
the way a PyTorch user would (Debian's python3-torch: the same 1.13 kernels as flatmin's LibTorch).

Three parts, each interleaved (round r runs every variant once, in the same order) and reported as medians
over the rounds, so that a shared, noisy machine hits every variant alike:

  eval      Evaluation throughput against the evaluation batch size: `flatmin train --eval-batch-size B`
            (its summary.json `eval_seconds`) and the same three evaluation passes in PyTorch (model.eval(),
            torch.no_grad(), 1 thread), for the models mlp, cnn and resnet18 (width 8). Seconds per 10,000
            examples.
  geometry  `flatmin geometry --measures trace` (20 Hutchinson probes, 1,000 examples) of a 1-epoch CNN run
            against `--batch-size`.
  finetune  A whole small fine-tuning run (NSO, ResNet-18 width 8, from a checkpoint pretrained here): the
            wall time of the `flatmin train --init` process against a Python process doing the same run,
            with each one's evaluation share; plus the same flatmin run at the old evaluation batch 1,000.

Usage (from the repository root; build/flatmin must exist):

    /usr/bin/python3 benchmarks/bench_run.py                      # everything, 3 rounds (~40 min here)
    /usr/bin/python3 benchmarks/bench_run.py --quick              # a short version of everything (~5 min)
    /usr/bin/python3 benchmarks/bench_run.py --parts eval --models cnn --eval-batches 100,1000 --rounds 5
    /usr/bin/python3 benchmarks/bench_run.py --parts finetune --rounds 5 --json /tmp/finetune.json

The report (Markdown tables, each followed by the exact commands that reproduce its figures) goes to
stdout, progress to stderr. `--json FILE` also writes every raw measurement. The Python side runs as
separate processes of this same script (`--worker eval` / `--worker finetune`, printed with the tables),
so that both sides include interpreter and library start-up where whole processes are compared.

Python mirrors flatmin's run, not its bits: the same class filter, split sizes, normalisation (per-channel
mean/std of the training split), architecture, step (NSO: g(W+U) and g(W−U), U ~ N(0, σ²), their mean to
SGD with momentum and weight decay, cosine learning rate per step), per-epoch evaluation of a train-eval
subset, validation and test in eval mode at the same evaluation batch size, and a saved model at the end.
The examples drawn and the initial weights differ (timing does not depend on them); the Python run starts
from random weights instead of the pretrained ones.
"""
import argparse
import gzip
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
SCRIPT = "benchmarks/bench_run.py"
DATA_DIR = Path(os.environ.get("FLATMIN_DATA_DIR", "/usr/share/datasets/fashion-mnist"))


# ------------------------------------------------------------------------------------------------ PyTorch side
# Imported lazily: the parent process only starts processes and reads their results.

def read_idx(path):
    """An IDX file (gzip or not) as a uint8 numpy array."""
    import numpy as np
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist():
    import torch

    def pair(prefix):
        def find(name):
            for p in (DATA_DIR / name, DATA_DIR / (name + ".gz")):
                if p.exists():
                    return p
            raise FileNotFoundError(DATA_DIR / name)
        x = torch.from_numpy(read_idx(find(f"{prefix}-images-idx3-ubyte")).copy()).float().div_(255).unsqueeze(1)
        y = torch.from_numpy(read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype("int64"))
        return x, y
    return pair("train"), pair("t10k")


def make_splits(classes, per_class, val_size, test_size, seed=0):
    """flatmin's split recipe (data/dataset.h): keep `classes` (relabelled 0..C-1), val = val_size random
    training examples, train = per_class random ones of each class from the rest, test = test_size random
    test examples of the kept classes; standardised with the training split's mean and std."""
    import torch
    (xtr, ytr), (xte, yte) = load_fashion_mnist()
    classes = classes or list(range(10))
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))

    def keep(x, y):
        new = remap[y]
        idx = (new >= 0).nonzero().squeeze(1)
        return x[idx], new[idx]
    xtr, ytr = keep(xtr, ytr)
    xte, yte = keep(xte, yte)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ytr), generator=g)
    val_idx, rest = perm[:val_size], perm[val_size:]
    if per_class > 0:
        labels = ytr[rest]
        rest = torch.cat([rest[(labels == c).nonzero().squeeze(1)[:per_class]] for c in range(len(classes))])
    rest, val_idx = rest.sort().values, val_idx.sort().values
    test_idx = torch.randperm(len(yte), generator=g)[:test_size].sort().values if test_size > 0 else torch.arange(len(yte))
    train = (xtr[rest], ytr[rest])
    val = (xtr[val_idx], ytr[val_idx])
    test = (xte[test_idx], yte[test_idx])
    mean, std = train[0].mean(dim=(0, 2, 3), keepdim=True), train[0].std(dim=(0, 2, 3), unbiased=False, keepdim=True)
    norm = lambda d: ((d[0] - mean) / std, d[1])
    return norm(train), norm(val), norm(test), len(classes)


def build_model(name, num_classes, width=0):
    """flatmin's models (src/models/models.cpp), as a PyTorch user writes them."""
    import torch.nn as nn
    import torch.nn.functional as F

    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, width or 128), nn.ReLU(), nn.Linear(width or 128, num_classes))
    if name == "cnn":
        w = width or 32
        return nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 128), nn.ReLU(), nn.Linear(128, num_classes))
    assert name == "resnet18", name

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(planes))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))

    class ResNet(nn.Module):  # CIFAR-style: 3×3 stem, no max-pool, stages of widths w·{1,2,4,8}
        def __init__(self, width, num_classes, blocks=(2, 2, 2, 2)):
            super().__init__()
            self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
            self.stem_bn = nn.BatchNorm2d(width)
            layers, in_planes = [], width
            for stage, n in enumerate(blocks):
                planes = width << stage
                for b in range(n):
                    layers.append(BasicBlock(in_planes, planes, 2 if stage > 0 and b == 0 else 1))
                    in_planes = planes
            self.stages = nn.Sequential(*layers)
            self.head = nn.Linear(in_planes, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = F.relu(self.stem_bn(self.stem(x)))
            x = self.stages(x)
            return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))

    return ResNet(width or 64, num_classes)


def evaluate(model, data, batch_size):
    """Mean loss and accuracy in eval mode without gradients (flatmin's training::evaluate)."""
    import torch
    import torch.nn.functional as F
    x, y = data
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(x[start:start + batch_size])
            t = y[start:start + batch_size]
            loss_sum += F.cross_entropy(logits, t, reduction="sum").item()
            correct += (logits.argmax(1) == t).sum().item()
    model.train()
    return loss_sum / len(y), correct / len(y)


def train_eval_subset(train, size, seed=0):
    import torch
    if size <= 0 or size >= len(train[1]):
        return train
    idx = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(seed ^ 0x5EED))[:size]
    return train[0][idx], train[1][idx]


def worker_eval(a):
    """What `flatmin train --method sgd --epochs 1 ... --eval-batch-size B` does, timing its evaluation."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train, val, test, classes = make_splits(None, a.per_class, a.val_size, a.test_size, a.seed)
    model = build_model(a.model, classes, a.width)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    perm = torch.randperm(len(train[1]))
    for start in range(0, len(perm), 64):  # one epoch at batch 64, as the flatmin run before its evaluation
        idx = perm[start:start + 64]
        opt.zero_grad()
        F.cross_entropy(model(train[0][idx]), train[1][idx]).backward()
        opt.step()
    train_eval = train_eval_subset(train, a.train_eval_size, a.seed)
    t0 = time.perf_counter()
    for d in (train_eval, val, test):
        evaluate(model, d, a.eval_batch_size)
    seconds = time.perf_counter() - t0
    json.dump({"eval_seconds": seconds, "examples": len(train_eval[1]) + len(val[1]) + len(test[1]),
               "threads": torch.get_num_threads(), "torch": torch.__version__}, sys.stdout)
    print()


def worker_finetune(a):
    """The fine-tuning run of `flatmin train --init ... --method nso`, written as a plain PyTorch loop."""
    import torch
    import torch.nn.functional as F
    t_start = time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    train, val, test, num_classes = make_splits(classes, a.per_class, a.val_size, a.test_size, a.seed)
    model = build_model(a.model, num_classes, a.width)  # random weights: the timing does not depend on them
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    train_eval = train_eval_subset(train, a.train_eval_size, a.seed)
    n = len(train[1])
    steps_per_epoch = math.ceil(n / a.batch_size)
    total_steps = steps_per_epoch * a.epochs
    step, eval_seconds, train_seconds = 0, 0.0, 0.0
    t_loop = time.perf_counter()
    for epoch in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        objective = 0.0
        for b in range(steps_per_epoch):
            for group in opt.param_groups:  # cosine schedule, per step
                group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            idx = perm[b * a.batch_size:(b + 1) * a.batch_size]
            x, y = train[0][idx], train[1][idx]
            opt.zero_grad()
            if a.method == "sgd":
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                objective += loss.item()
                step += 1
                continue
            # NSO (the NSO repository's two-point loop): g(W+U) + g(W−U), halved, to the base optimizer
            with torch.no_grad():
                noise = [torch.randn_like(p) * a.sigma for p in params]
                for p, u in zip(params, noise):
                    p.add_(u)
            loss_plus = F.cross_entropy(model(x), y)
            loss_plus.backward()
            with torch.no_grad():
                for p, u in zip(params, noise):
                    p.sub_(2 * u)
            loss_minus = F.cross_entropy(model(x), y)
            loss_minus.backward()
            with torch.no_grad():
                for p, u in zip(params, noise):
                    p.add_(u)
                    p.grad.div_(2)
            opt.step()
            objective += 0.5 * (loss_plus.item() + loss_minus.item())
            step += 1
        t1 = time.perf_counter()
        va = evaluate(model, val, a.eval_batch_size)
        if not a.test_at_end or epoch + 1 == a.epochs:  # flatmin's default: validation every epoch, test at the end
            tr = evaluate(model, train_eval, a.eval_batch_size)
            te = evaluate(model, test, a.eval_batch_size)
        else:
            tr = te = (float("nan"), float("nan"))
        t2 = time.perf_counter()
        train_seconds += t1 - t0
        eval_seconds += t2 - t1
        print(f"epoch {epoch + 1}/{a.epochs}  obj {objective / steps_per_epoch:.4f}  train {tr[0]:.4f}/{tr[1]:.2%}  "
              f"val {va[0]:.4f}/{va[1]:.2%}  test {te[0]:.4f}/{te[1]:.2%}", file=sys.stderr)
    if a.save:
        torch.save(model.state_dict(), a.save)
    t_end = time.perf_counter()
    json.dump({"eval_seconds": eval_seconds, "train_seconds": train_seconds, "loop_seconds": t_end - t_loop,
               "process_seconds": t_end - t_start, "final_test_acc": te[1], "steps": step,
               "train_examples": n, "threads": torch.get_num_threads(), "torch": torch.__version__}, sys.stdout)
    print()


# ------------------------------------------------------------------------------------------------ the parent

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cmd_str(cmd):
    return " ".join(shlex.quote(str(c)) for c in cmd)


FLATMIN_SNAPSHOT = {}  # "bin": the copy of build/flatmin under test, "env": its environment


def snapshot_flatmin(work):
    """Copies build/flatmin and its libflatmin into `work`/bin: every round then measures the same binary,
    even when build/ is rebuilt meanwhile (a library relinked under a running process can crash it)."""
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "build" / "flatmin", bin_dir / "flatmin")
    for lib in (ROOT / "build").glob("libflatmin.so*"):
        if not lib.is_symlink():
            shutil.copy2(lib, bin_dir / lib.name)
            soname = ".".join(lib.name.split(".")[:3])  # libflatmin.so.0
            if not (bin_dir / soname).exists():
                os.symlink(lib.name, bin_dir / soname)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(bin_dir) + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    FLATMIN_SNAPSHOT.update(bin=str(bin_dir / "flatmin"), env=env)


def run_process(cmd, what, retries=1):
    """Runs `cmd` in the repository root; returns (wall seconds, stdout). A process killed by a signal is run
    again (once, logged); any other failure stops the benchmark."""
    cmd = [str(c) for c in cmd]
    env = None
    if FLATMIN_SNAPSHOT and cmd[0] in ("build/flatmin", FLATMIN_SNAPSHOT["bin"]):
        cmd[0], env = FLATMIN_SNAPSHOT["bin"], FLATMIN_SNAPSHOT["env"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode < 0 and retries > 0:
        log(f"WARNING: {what} killed by signal {-p.returncode}; running it again: {cmd_str(cmd)}")
        return run_process(cmd, what, retries - 1)
    if p.returncode != 0:
        raise SystemExit(f"{what} failed (exit {p.returncode}): {cmd_str(cmd)}\n{p.stdout[-2000:]}{p.stderr[-4000:]}")
    return wall, p.stdout


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits - 1}f}" if abs(x) >= 1 else f"{x:.{digits}f}"


def spread(xs):
    """'min–max' of the rounds, to show the noise next to a median."""
    return f" ({fmt(min(xs))}–{fmt(max(xs))})" if len(xs) > 1 else ""


class Bench:
    def __init__(self, args):
        self.a = args
        self.flatmin = ROOT / "build" / "flatmin"
        self.flatmin_rel = "build/flatmin"
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_run."))
        self.work.mkdir(parents=True, exist_ok=True)
        self.raw = {"machine": machine_note(), "args": vars(args)}
        self.out = []  # Markdown lines

    def emit(self, line=""):
        self.out.append(line)
        print(line, flush=True)

    def fresh_dir(self, name):
        d = self.work / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    # -------------------------------------------------------------------------------- part 1: evaluation
    def eval_commands(self, model, batch):
        a = self.a
        width = ["--width", "8"] if model == "resnet18" else []
        flat = [self.flatmin_rel, "train", "--model", model, *width, "--method", "sgd", "--per-class", a.eval_per_class,
                "--epochs", 1, "--eval-batch-size", batch, "--val-size", a.eval_val_size, "--test-size",
                a.eval_test_size, "--train-eval-size", 0, "--threads", 1, "--progress", "quiet", "--no-checkpoints",
                "--no-save-model", "--out", "DIR"]
        py = [PYTHON, SCRIPT, "--worker", "eval", "--model", model, *width, "--per-class", a.eval_per_class,
              "--eval-batch-size", batch, "--val-size", a.eval_val_size, "--test-size", a.eval_test_size,
              "--train-eval-size", 0, "--threads", 1]
        return flat, py

    def part_eval(self):
        a = self.a
        models = a.models.split(",")
        batches = [int(b) for b in a.eval_batches.split(",")]
        res = {(m, b): {"flatmin": [], "python": []} for m in models for b in batches}
        for r in range(a.rounds):
            for m in models:
                for b in batches:
                    flat, py = self.eval_commands(m, b)
                    d = self.fresh_dir(f"eval-{m}-{b}")
                    flat = [str(d) if c == "DIR" else c for c in flat]
                    run_process(flat, "flatmin train")
                    summary = json.loads((d / "summary.json").read_text())
                    config = json.loads((d / "config.json").read_text())
                    sp = config["split"]
                    n = sp["train_examples"] + sp["val_examples"] + sp["test_examples"]  # train-eval-size 0: all
                    fs = summary["eval_seconds"] * 10000 / n
                    _, outp = run_process(py, "python eval worker")
                    pj = json.loads(outp.strip().splitlines()[-1])
                    ps = pj["eval_seconds"] * 10000 / pj["examples"]
                    res[(m, b)]["flatmin"].append(fs)
                    res[(m, b)]["python"].append(ps)
                    res[(m, b)]["examples"] = (n, pj["examples"])
                    shutil.rmtree(d, ignore_errors=True)
                    log(f"[eval round {r + 1}/{a.rounds}] {m} batch {b}: flatmin {fs:.3f} s, python {ps:.3f} s per 10k")
        self.raw["eval"] = {f"{m}/{b}": v for (m, b), v in res.items()}
        n = next(iter(res.values()))["examples"][0]
        self.emit("### Evaluation time against the evaluation batch size")
        self.emit()
        self.emit(f"Seconds per 10,000 examples (eval mode, no gradients, 1 thread; {n:,} examples per measurement: "
                  f"train {a.eval_per_class * 10} + val {a.eval_val_size} + test {a.eval_test_size}), median of "
                  f"{a.rounds} interleaved rounds (range in brackets). `x python`: the median of the per-round "
                  f"ratios flatmin / PyTorch. `x best`: flatmin's time / its fastest batch size for that model.")
        self.emit()
        self.emit("| model | eval batch | flatmin s | PyTorch s | x python | x best |")
        self.emit("|---|---:|---:|---:|---:|---:|")
        for m in models:
            best = min(median(res[(m, b)]["flatmin"]) for b in batches)
            for b in batches:
                f, p = res[(m, b)]["flatmin"], res[(m, b)]["python"]
                ratio = median([x / y for x, y in zip(f, p)])
                self.emit(f"| {m}{' (width 8)' if m == 'resnet18' else ''} | {b} | {fmt(median(f))}{spread(f)} | "
                          f"{fmt(median(p))}{spread(p)} | {ratio:.2f} | {median(f) / best:.2f} |")
        self.emit()
        self.emit("Commands (B = the row's eval batch; flatmin's figure is `eval_seconds` of DIR/summary.json, the "
                  "worker prints its own):")
        self.emit()
        self.emit("```")
        for m in models:
            flat, py = self.eval_commands(m, "B")
            self.emit(cmd_str(flat))
            self.emit(cmd_str(py))
        self.emit("```")
        self.emit()

    # -------------------------------------------------------------------------------- part 1b: geometry
    def part_geometry(self):
        a = self.a
        batches = [int(b) for b in a.geometry_batches.split(",")]
        ck = self.fresh_dir("geometry-cnn")
        train_cmd = [self.flatmin_rel, "train", "--model", "cnn", "--per-class", 100, "--epochs", 1, "--threads", 1,
                     "--progress", "quiet", "--no-checkpoints", "--out", ck]
        log("[geometry] training the CNN checkpoint: " + cmd_str(train_cmd))
        run_process(train_cmd, "flatmin train (geometry checkpoint)")

        def geo_cmd(b, out):
            return [self.flatmin_rel, "geometry", "--checkpoint", ck, "--measures", "trace", "--max-probes",
                    a.geometry_probes, "--min-probes", a.geometry_probes, "--examples", a.geometry_examples,
                    "--batch-size", b, "--threads", 1, "--progress", "quiet", "--out", out]
        res = {b: {"wall": [], "seconds": [], "trace": [], "build": []} for b in batches}
        for r in range(a.rounds):
            for b in batches:
                out = self.work / f"geometry-{b}.json"
                wall, _ = run_process(geo_cmd(b, out), "flatmin geometry")
                j = json.loads(out.read_text())
                res[b]["wall"].append(wall)
                res[b]["seconds"].append(j["seconds"])
                res[b]["trace"].append(j["trace"]["seconds"])
                res[b]["build"].append(j["graph_cache"]["build_seconds"])
                res[b]["hvps"] = j["trace"]["hvps"]
                res[b]["estimate"] = j["trace"]["estimate"]
                res[b]["cached"] = f'{j["graph_cache"]["cached_batches"]}/{j["graph_cache"]["batches"]}'
                log(f"[geometry round {r + 1}/{a.rounds}] batch {b}: wall {wall:.2f} s, trace {j['trace']['seconds']:.2f} s")
        self.raw["geometry"] = {str(b): v for b, v in res.items()}
        best = min(median(res[b]["wall"]) for b in batches)
        self.emit("### Hessian trace against `flatmin geometry --batch-size`")
        self.emit()
        self.emit(f"CNN after one epoch on 1,000 examples; Hutchinson with exactly {a.geometry_probes} probes on "
                  f"{a.geometry_examples:,} training examples, 1 thread; median of {a.rounds} interleaved rounds. "
                  f"`wall`: the whole process; `geometry s`: geometry.json `seconds` (after loading); `trace s`: the "
                  f"probes alone (`trace.seconds`); `build s`: the first pass that caches the gradient graphs.")
        self.emit()
        self.emit("| batch | wall s | geometry s | trace s | ms per HVP | build s | graphs cached | x best wall |")
        self.emit("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for b in batches:
            v = res[b]
            self.emit(f"| {b} | {fmt(median(v['wall']))}{spread(v['wall'])} | {fmt(median(v['seconds']))} | "
                      f"{fmt(median(v['trace']))} | {fmt(1000 * median(v['trace']) / v['hvps'])} | "
                      f"{fmt(median(v['build']))} | {v['cached']} | {median(v['wall']) / best:.2f} |")
        self.emit()
        self.emit("Commands (the checkpoint once, then one geometry run per row, B = its batch):")
        self.emit()
        self.emit("```")
        self.emit(cmd_str([c if c != ck else "CNN" for c in train_cmd]))
        self.emit(cmd_str([{ck: "CNN", self.work / "geometry-B.json": "CNN/geometry.json"}.get(c, c)
                           for c in geo_cmd("B", self.work / "geometry-B.json")]))
        self.emit("```")
        self.emit()

    # -------------------------------------------------------------------------------- part 2: fine-tuning
    def part_finetune(self):
        a = self.a
        pre = self.fresh_dir("pretrained")
        pre_cmd = [self.flatmin_rel, "train", "--model", "resnet18", "--width", a.ft_width, "--classes", "0,1,2,3,4",
                   "--per-class", 200, "--epochs", 1, "--val-size", 500, "--test-size", 1000, "--progress", "quiet",
                   "--no-checkpoints", "--out", pre]
        log("[finetune] pretraining: " + cmd_str(pre_cmd))
        wall, _ = run_process(pre_cmd, "flatmin train (pretraining)")
        log(f"[finetune] pretrained in {wall:.1f} s")

        common = ["--classes", a.ft_classes, "--per-class", a.ft_per_class, "--epochs", a.ft_epochs,
                  "--batch-size", 32, "--lr", 0.01, "--momentum", 0.9, "--weight-decay", a.ft_weight_decay,
                  "--val-size", a.ft_val_size, "--test-size", a.ft_test_size, "--train-eval-size", a.ft_train_eval_size,
                  "--threads", 1]

        def flat_cmd(batch, out):
            return [self.flatmin_rel, "train", "--init", pre, "--method", "nso", "--sigma", 0.01, *common,
                    "--eval-batch-size", batch, "--progress", "quiet", "--out", out]

        def py_cmd(batch, save):
            return [PYTHON, SCRIPT, "--worker", "finetune", "--model", "resnet18", "--width", a.ft_width,
                    "--sigma", 0.01, *common, "--eval-batch-size", batch, "--save", save]

        default_batch = a.ft_eval_batch
        variants = [("flatmin", default_batch), ("python", default_batch), ("flatmin", 1000)]
        if a.ft_python_old:
            variants.append(("python", 1000))
        res = {v: {"wall": [], "eval": [], "total": [], "train": [], "acc": []} for v in variants}
        for r in range(a.rounds):
            for v in variants:
                kind, b = v
                if kind == "flatmin":
                    d = self.fresh_dir(f"finetune-{b}")
                    wall, _ = run_process(flat_cmd(b, d), "flatmin train --init")
                    s = json.loads((d / "summary.json").read_text())
                    res[v]["eval"].append(s["eval_seconds"])
                    res[v]["total"].append(s["total_seconds"])
                    res[v]["train"].append(s["train_seconds"])
                    res[v]["acc"].append(s["final_test_acc"])
                    shutil.rmtree(d, ignore_errors=True)
                else:
                    save = self.work / f"python-finetune-{b}.pt"
                    wall, outp = run_process(py_cmd(b, save), "python finetune worker")
                    pj = json.loads(outp.strip().splitlines()[-1])
                    res[v]["eval"].append(pj["eval_seconds"])
                    res[v]["total"].append(pj["loop_seconds"])
                    res[v]["train"].append(pj["train_seconds"])
                    res[v]["acc"].append(pj["final_test_acc"])
                res[v]["wall"].append(wall)
                log(f"[finetune round {r + 1}/{a.rounds}] {kind} eval batch {b}: wall {wall:.2f} s, "
                    f"eval {res[v]['eval'][-1]:.2f} s")
        self.raw["finetune"] = {f"{k}/{b}": v for (k, b), v in res.items()}

        base_py = res[("python", default_batch)]["wall"]
        self.emit("### A whole fine-tuning run: flatmin against the same run as a PyTorch loop")
        self.emit()
        self.emit(f"ResNet-18 (width {a.ft_width}) fine-tuned with NSO (σ 0.01, SGD lr 0.01, momentum 0.9, weight "
                  f"decay {a.ft_weight_decay}, cosine, batch 32) on classes {a.ft_classes}: {a.ft_per_class} training "
                  f"examples per class, {a.ft_epochs} epochs, evaluating after each epoch train-eval "
                  f"{a.ft_train_eval_size} + val {a.ft_val_size} + test {a.ft_test_size} examples; 1 thread. Whole "
                  f"processes, {a.rounds} interleaved rounds (order: "
                  + ", ".join(f"{k} {b}" for k, b in variants) + "), medians (range in brackets). `x python`: the "
                  f"median of the per-round ratios of wall time to the PyTorch run at evaluation batch {default_batch}. "
                  f"`eval / wall`: evaluation's share of the process; `eval / total`: of flatmin's `total_seconds` "
                  f"(summary.json, after data loading) or of the Python loop after data loading.")
        self.emit()
        self.emit("| run | eval batch | wall s | x python | train s | eval s | eval / wall | eval / total | test acc |")
        self.emit("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for v in variants:
            kind, b = v
            x = res[v]
            ratio = median([w / p for w, p in zip(x["wall"], base_py)])
            share_wall = median([e / w for e, w in zip(x["eval"], x["wall"])])
            share_total = median([e / t for e, t in zip(x["eval"], x["total"])])
            label = {"flatmin": "flatmin train --init", "python": "PyTorch loop"}[kind]
            if b != default_batch:
                label += " (old default)" if kind == "flatmin" else " (same batch)"
            self.emit(f"| {label} | {b} | {fmt(median(x['wall']))}{spread(x['wall'])} | {ratio:.2f} | "
                      f"{fmt(median(x['train']))} | {fmt(median(x['eval']))} | {100 * share_wall:.0f}% | "
                      f"{100 * share_total:.0f}% | {100 * median(x['acc']):.1f}% |")
        self.emit()
        self.emit("Commands (PRE: the pretrained run, made once; B: the row's eval batch):")
        self.emit()
        self.emit("```")
        rename = {pre: "PRE", self.work / "finetune-B": "OUT", self.work / "python-finetune-B.pt": "/tmp/model.pt"}
        self.emit(cmd_str([rename.get(c, c) for c in pre_cmd]))
        self.emit(cmd_str([rename.get(c, c) for c in flat_cmd("B", self.work / "finetune-B")]))
        self.emit(cmd_str([rename.get(c, c) for c in py_cmd("B", self.work / "python-finetune-B.pt")]))
        self.emit("```")
        self.emit()
        self.emit("The Python run starts from random weights (the timing does not depend on them), so its accuracy "
                  "is not comparable with flatmin's fine-tuned one.")
        self.emit()


    # ------------------------------------------------------------- part 4: a small run with default options
    def part_smallrun(self):
        """Where a small run's wall time goes: `flatmin train --method sgd --model cnn --per-class 100 --epochs 5`
        with every other option at its default, beside the same run as a PyTorch loop."""
        a = self.a
        args = ["--method", "sgd", "--model", "cnn", "--per-class", 100, "--epochs", 5]
        res = {k: {"wall": [], "train": [], "eval": [], "total": []} for k in ("flatmin", "python")}
        threads = None
        for r in range(a.rounds):
            d = self.fresh_dir("smallrun")
            wall, _ = run_process([self.flatmin_rel, "train", *args, "--progress", "quiet", "--out", d],
                                  "flatmin train (small run)")
            s = json.loads((d / "summary.json").read_text())
            threads = s["threads"]
            for key, value in (("wall", wall), ("train", s["train_seconds"]), ("eval", s["eval_seconds"]),
                               ("total", s["total_seconds"])):
                res["flatmin"][key].append(value)
            shutil.rmtree(d, ignore_errors=True)
            wall, outp = run_process(self.smallrun_python(threads), "python small-run worker")
            pj = json.loads(outp.strip().splitlines()[-1])
            for key, value in (("wall", wall), ("train", pj["train_seconds"]), ("eval", pj["eval_seconds"]),
                               ("total", pj["loop_seconds"])):
                res["python"][key].append(value)
            log(f"[smallrun round {r + 1}/{a.rounds}] flatmin {res['flatmin']['wall'][-1]:.2f} s "
                f"(train {res['flatmin']['train'][-1]:.2f}), python {wall:.2f} s (train {pj['train_seconds']:.2f})")
        self.raw["smallrun"] = res
        self.emit("### A small run with default options: where the wall time goes")
        self.emit()
        self.emit(f"`flatmin train {cmd_str(args)}` (1,000 training examples, validation 5,000 every epoch, the "
                  f"10,000 test examples and the training subset after the last epoch; {threads} thread(s)), beside "
                  f"the same run as a PyTorch loop. {a.rounds} interleaved rounds, medians (range). `outside "
                  f"training`: 1 − train s / wall s (start-up, data, evaluation, files).")
        self.emit()
        self.emit("| run | wall s | train s | eval s | start-up s (wall − loop) | outside training |")
        self.emit("|---|---:|---:|---:|---:|---:|")
        for kind, label in (("flatmin", "flatmin train"), ("python", "PyTorch loop")):
            x = res[kind]
            startup = [w - t for w, t in zip(x["wall"], x["total"])]
            outside = median([1 - t / w for t, w in zip(x["train"], x["wall"])])
            self.emit(f"| {label} | {fmt(median(x['wall']))}{spread(x['wall'])} | {fmt(median(x['train']))} | "
                      f"{fmt(median(x['eval']))} | {fmt(median(startup))} | {100 * outside:.0f}% |")
        self.emit()
        self.emit("```")
        self.emit(cmd_str(["build/flatmin", "train", *args, "--out", "OUT"]))
        self.emit(cmd_str(self.smallrun_python(threads)))
        self.emit("```")
        self.emit()

    def smallrun_python(self, threads):
        return [PYTHON, SCRIPT, "--worker", "finetune", "--method", "sgd", "--test-at-end", "--model", "cnn",
                "--per-class", 100, "--epochs", 5, "--batch-size", 64, "--lr", 0.05, "--momentum", 0.9,
                "--weight-decay", 0, "--val-size", 5000, "--test-size", 10000, "--train-eval-size", 0,
                "--threads", threads or 1]


def machine_note():
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "load_average": load, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["eval", "finetune"], help="run one Python-side measurement (internal)")
    ap.add_argument("--quick", action="store_true", help="a short version: 1 round, fewer examples and batch sizes")
    ap.add_argument("--parts", default="eval,geometry,finetune",
                    help="comma-separated: eval, geometry, finetune, smallrun (a small run with default options)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn,resnet18", help="eval part: models")
    ap.add_argument("--eval-batches", default="25,50,100,250,1000", help="eval part: evaluation batch sizes")
    ap.add_argument("--eval-per-class", type=int, default=10)
    ap.add_argument("--eval-val-size", type=int, default=5000)
    ap.add_argument("--eval-test-size", type=int, default=5000)
    ap.add_argument("--geometry-batches", default="50,100,250,1000")
    ap.add_argument("--geometry-probes", type=int, default=20)
    ap.add_argument("--geometry-examples", type=int, default=1000)
    ap.add_argument("--ft-width", type=int, default=8)
    ap.add_argument("--ft-classes", default="5,6,7,8,9")
    ap.add_argument("--ft-per-class", type=int, default=100)
    ap.add_argument("--ft-epochs", type=int, default=3)
    ap.add_argument("--ft-val-size", type=int, default=500)
    ap.add_argument("--ft-test-size", type=int, default=2000)
    ap.add_argument("--ft-train-eval-size", type=int, default=500)
    ap.add_argument("--ft-weight-decay", type=float, default=5e-4)
    ap.add_argument("--ft-eval-batch", type=int, default=100, help="flatmin's default evaluation batch")
    ap.add_argument("--ft-python-old", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the Python loop at eval batch 1000")
    ap.add_argument("--workdir", help="where runs are written (default: a fresh temporary directory, removed)")
    ap.add_argument("--json", help="also write every raw measurement here")
    # worker options (the same names as flatmin train's)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--width", type=int, default=0)
    ap.add_argument("--classes", default="")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--test-size", type=int, default=5000)
    ap.add_argument("--train-eval-size", type=int, default=0)
    ap.add_argument("--eval-batch-size", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--method", choices=["nso", "sgd"], default="nso", help="finetune worker: the update")
    ap.add_argument("--test-at-end", action="store_true",
                    help="finetune worker: score validation every epoch, the training subset and test at the end")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default="", help="finetune worker: save the state dict here at the end")
    a = ap.parse_args()

    if a.worker == "eval":
        return worker_eval(a)
    if a.worker == "finetune":
        return worker_finetune(a)

    if a.quick:
        a.rounds = 1
        a.eval_batches = "25,100,1000"
        a.eval_val_size, a.eval_test_size = 1000, 1000
        a.geometry_batches = "100,1000"
        a.geometry_probes = 5
        a.ft_epochs = 1
        a.ft_python_old = False
    flatmin = ROOT / "build" / "flatmin"
    if not flatmin.exists():
        raise SystemExit(f"{flatmin} not found: build it first (scripts/setup.sh all)")
    bench = Bench(a)
    snapshot_flatmin(bench.work)
    keep = a.workdir is not None
    parts = a.parts.split(",")
    t0 = time.perf_counter()
    m = bench.raw["machine"]
    try:
        bench.emit(f"<!-- {cmd_str([PYTHON, SCRIPT] + sys.argv[1:])} | {m['date']} | {m['cores']} cores ({m['cpu']}), "
                   f"load average {m['load_average'][0]:.2f} at the start -->")
        bench.emit()
        for part in parts:
            {"eval": bench.part_eval, "geometry": bench.part_geometry, "finetune": bench.part_finetune,
             "smallrun": bench.part_smallrun}[part]()
            if a.json:  # after every part: a later failure keeps what was measured
                Path(a.json).write_text(json.dumps(bench.raw, indent=1, default=str) + "\n")
    finally:
        if not keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    bench.raw["seconds"] = time.perf_counter() - t0
    bench.raw["load_average_end"] = os.getloadavg()
    bench.emit(f"<!-- {bench.raw['seconds']:.0f} s in all; load average {bench.raw['load_average_end'][0]:.2f} "
               f"at the end -->")
    if a.json:
        Path(a.json).write_text(json.dumps(bench.raw, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The same optimisation steps as flatmin's bench_step, written the way a PyTorch user would (the NSO and
SAM reference repositories' style), run with Debian's PyTorch (python3-torch: the same 1.13 kernels as
Debian's LibTorch). The baseline flatmin is compared with.

    /usr/bin/python3 benchmarks/python_baseline.py --threads 1 > baseline.json
    # on a GPU (any PyTorch with CUDA): CIFAR-style ResNet-18, width 64, 3x32x32 inputs
    python3 benchmarks/python_baseline.py --device cuda --models resnet18 --batches 128,512 \
        --methods sgd,nso,sam --layout channels-last --precision bf16 > gpu_baseline.json

Prints {"<model>/<batch>/<method>": ms_per_step, ...}: the median of interleaved rounds, like bench_step
(on a GPU each round ends with torch.cuda.synchronize()), plus "_..." metadata: device, precision, layout,
PyTorch version and GPU, so that bench_step compares like with like.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(width=64, classes=10):
    """The CIFAR ResNet-18 (3x3 stem, no max-pool), as flatmin's resnet18 with --width 64."""
    layers, cin = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()], width
    for i, blocks in enumerate([2, 2, 2, 2]):
        cout = width * 2 ** i
        for b in range(blocks):
            layers.append(BasicBlock(cin, cout, 2 if (b == 0 and i > 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


MODELS = {"mlp": (mlp, (1, 28, 28)), "cnn": (cnn, (1, 28, 28)), "resnet18": (resnet18, (3, 32, 32))}


class Step:
    """One method's step over a model and a base SGD optimizer (lr 0.01), closure-free like the repos."""

    def __init__(self, model, method, x, y, autocast=None):
        self.model, self.method, self.x, self.y = model, method, x, y
        self.autocast = autocast  # a torch.autocast context factory, or None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(self.params, lr=0.01, momentum=0.9)
        self.sigma, self.rho = 0.01, 0.05
        if method == "bsam":
            self.m = [torch.zeros_like(p) for p in self.params]
            self.s = [torch.ones_like(p) for p in self.params]

    def loss_backward(self):
        if self.autocast is None:
            loss = F.cross_entropy(self.model(self.x), self.y)
        else:
            with self.autocast():
                loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        return loss

    def grads(self):
        return [p.grad for p in self.params]

    def __call__(self):
        m = self.method
        self.opt.zero_grad()
        if m == "sgd":
            self.loss_backward()
        elif m == "wp-sgd":
            with torch.no_grad():
                saved = [p.clone() for p in self.params]
                for p in self.params:
                    p.add_(torch.randn_like(p) * self.sigma)
            self.loss_backward()
            with torch.no_grad():
                for p, w in zip(self.params, saved):
                    p.copy_(w)
        elif m.startswith("nso"):  # the NSO repository's two-point loop
            k = 2 if m == "nso-k2" else 1
            two_point = m != "nso-no-negative"
            for _ in range(k):
                if two_point:
                    with torch.no_grad():
                        noise = [torch.randn_like(p) * self.sigma for p in self.params]
                        for p, n in zip(self.params, noise):
                            p.add_(n)
                    self.loss_backward()
                    with torch.no_grad():
                        for p, n in zip(self.params, noise):
                            p.sub_(2 * n)
                    self.loss_backward()
                    with torch.no_grad():
                        for p, n in zip(self.params, noise):
                            p.add_(n)
                else:
                    for _ in range(2):
                        with torch.no_grad():
                            noise = [torch.randn_like(p) * self.sigma for p in self.params]
                            for p, n in zip(self.params, noise):
                                p.add_(n)
                        self.loss_backward()
                        with torch.no_grad():
                            for p, n in zip(self.params, noise):
                                p.sub_(n)
            with torch.no_grad():
                for p in self.params:
                    p.grad.div_(2 * k)
        elif m in ("sam", "usam", "asam"):  # davda54/sam's two-step form
            self.loss_backward()
            with torch.no_grad():
                if m == "asam":
                    t = [p.abs() + 0.01 for p in self.params]
                    norm = torch.norm(torch.stack([(ti * p.grad).norm(2) for ti, p in zip(t, self.params)]), 2)
                    eps = [ti * ti * p.grad * (0.5 / (norm + 1e-12)) for ti, p in zip(t, self.params)]
                else:
                    norm = torch.norm(torch.stack([p.grad.norm(2) for p in self.params]), 2)
                    scale = self.rho / (norm + 1e-12) if m == "sam" else self.rho
                    eps = [p.grad * scale for p in self.params]
                for p, e in zip(self.params, eps):
                    p.add_(e)
            self.opt.zero_grad()
            self.loss_backward()
            with torch.no_grad():
                for p, e in zip(self.params, eps):
                    p.sub_(e)
        elif m == "rsam":
            with torch.no_grad():
                saved = [p.clone() for p in self.params]
                delta = []
                for p in self.params:
                    z = torch.randn_like(p)
                    if p.dim() >= 2:
                        scale = p.flatten(1).norm(dim=1).view(-1, *([1] * (p.dim() - 1)))
                    else:
                        scale = p.norm()
                    delta.append(self.sigma * scale * z)
                for p, d in zip(self.params, delta):
                    p.add_(d)
            self.loss_backward()
            with torch.no_grad():
                v = [2.0 * p.grad + d for p, d in zip(self.params, delta)]
                norm = torch.norm(torch.stack([vi.norm(2) for vi in v]), 2)
                for p, w, vi in zip(self.params, saved, v):
                    p.copy_(w).add_(vi * (self.rho / (norm + 1e-12)))
            self.opt.zero_grad()
            self.loss_backward()
            with torch.no_grad():
                for p, w in zip(self.params, saved):
                    p.copy_(w)
        elif m == "crsam":  # the CR-SAM repository's three-gradient form
            gamma, beta = 0.1, 0.01
            self.loss_backward()
            with torch.no_grad():
                g_o = [p.grad.clone() for p in self.params]
                norm = torch.norm(torch.stack([g.norm(2) for g in g_o]), 2)
                v = [g * (self.rho / (norm + 1e-12)) for g in g_o]
                for p, vi in zip(self.params, v):
                    p.add_(vi)
            self.opt.zero_grad()
            self.loss_backward()
            with torch.no_grad():
                g_w = [p.grad.clone() for p in self.params]
                for p, vi in zip(self.params, v):
                    p.sub_(2 * vi)
            self.opt.zero_grad()
            self.loss_backward()
            with torch.no_grad():
                for p, vi, go, gw in zip(self.params, v, g_o, g_w):
                    p.add_(vi)
                    gb = p.grad
                    p.grad = gw + gamma * (gw + gb - 2 * go) + beta * (gw - gb)
        elif m == "bsam":  # the authors' update: noise from the precision, ascent scaled by 1/s
            n_data, rho, beta1, beta2, gamma, delta, lr = 60000, 0.05, 0.9, 0.999, 0.1, 25.0 / 60000, 0.01
            with torch.no_grad():
                saved = [p.clone() for p in self.params]
                for p, s in zip(self.params, self.s):
                    p.add_(torch.randn_like(p) / torch.sqrt(n_data * s))
            self.loss_backward()
            with torch.no_grad():
                g = [p.grad.clone() for p in self.params]
                for p, w, gi, s in zip(self.params, saved, g, self.s):
                    p.copy_(w).add_(rho * gi / s)
            self.opt.zero_grad()
            self.loss_backward()
            with torch.no_grad():
                for p, w, gi, m_, s in zip(self.params, saved, g, self.m, self.s):
                    g_hat = p.grad
                    h = torch.sqrt(s) * gi.abs()
                    m_.mul_(beta1).add_(g_hat + delta * w, alpha=1 - beta1)
                    p.copy_(w - lr * m_ / s)
                    s.mul_(beta2).add_(h + gamma + delta, alpha=1 - beta2)
            return  # its own update
        else:
            raise ValueError(m)
        self.opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--methods", default="sgd,wp-sgd,nso,nso-k2,nso-no-negative,sam,usam,asam,rsam,bsam,crsam")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: torch.autocast")
    ap.add_argument("--layout", default="nchw", choices=["nchw", "channels-last"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("python_baseline.py: --device %s: this PyTorch sees no CUDA GPU" % args.device)
    fmt = torch.channels_last if args.layout == "channels-last" else torch.contiguous_format
    autocast = None
    if args.precision == "bf16":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    results = {"_threads": torch.get_num_threads(), "_torch": torch.__version__, "_device": args.device,
               "_precision": args.precision, "_layout": args.layout}
    if device.type == "cuda":
        results["_gpu"] = torch.cuda.get_device_name(device)
        results["_cuda"] = torch.version.cuda
    for model_name in args.models.split(","):
        make, shape = MODELS[model_name]
        for batch in map(int, args.batches.split(",")):
            torch.manual_seed(0)
            x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
            x, y = x.to(device).contiguous(memory_format=fmt) if x.dim() == 4 else x.to(device), y.to(device)
            steps = {}
            for method in args.methods.split(","):
                torch.manual_seed(1)
                model = make().to(device)
                if x.dim() == 4:
                    model = model.to(memory_format=fmt)
                steps[method] = Step(model, method, x, y, autocast)
            for s in steps.values():
                for _ in range(3):
                    s()
            sync()
            t0 = time.perf_counter()
            for _ in range(5):
                steps["sgd"]()
            sync()
            n = max(3, int(0.3 / ((time.perf_counter() - t0) / 5)))
            rounds = {m: [] for m in steps}
            for _ in range(args.rounds):
                for m, s in steps.items():
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(n):
                        s()
                    sync()
                    rounds[m].append(1000 * (time.perf_counter() - t0) / n)
            for m in steps:
                results[f"{model_name}/{batch}/{m}"] = statistics.median(rounds[m])
                print(f"{model_name}/{batch}/{m}: {results[f'{model_name}/{batch}/{m}']:.3f} ms", file=sys.stderr)
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

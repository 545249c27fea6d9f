#!/usr/bin/python3
"""Is the gap E[f(W+U)] - f(W) above sigma^2/2 Tr because of ReLU's kinks?

A cross-check of docs/RESULTS.md section 4, outside flatmin (Debian's python3-torch, float64): the same
two-layer MLP (784-16-10, 12,730 weights) trained to near-zero loss on 500 Fashion-MNIST examples with a ReLU and with a
smooth activation (softplus, beta = 10, close to ReLU), then per sigma the antithetic gap
mean[(f(W+U) + f(W-U))/2 - f(W)] over 200 Gaussian draws against sigma^2/2 times the exact Hessian trace
(the sum of d^2 f / dw_i^2 over all weights, one Hessian row per weight).
A smooth loss has gap / (sigma^2/2 Tr) -> 1 as sigma -> 0; the autograd Hessian of a ReLU network misses
the curvature concentrated on the kinks, which perturbations still cross.

    /usr/bin/python3 docs/results/noise-stability/smoothness_check.py
"""
import gzip

import numpy as np
import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
ROOT = "/usr/share/datasets/fashion-mnist/"


def idx(name, offset):
    with gzip.open(ROOT + name) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


x = torch.tensor(idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:500] / 255.0)
y = torch.tensor(idx("train-labels-idx1-ubyte.gz", 8)[:500].astype(np.int64))


def make(activation):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 16), activation, torch.nn.Linear(16, 10))


def flat_loss(model, shapes):
    def f(w):
        params, start = {}, 0
        for name, shape in shapes:
            n = int(np.prod(shape))
            params[name] = w[start:start + n].view(shape)
            start += n
        return torch.nn.functional.cross_entropy(torch.nn.utils.stateless.functional_call(model, params, (x,)), y)
    return f


def exact_trace(f, w):
    w = w.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(w), w, create_graph=True)
    total = 0.0
    for i in range(w.numel()):  # e_i^T H e_i: one Hessian row per weight
        (row,) = torch.autograd.grad(g[i], w, retain_graph=True)
        total += row[i].item()
    return total


for label, activation in (("ReLU", torch.nn.ReLU()), ("softplus(beta=10)", torch.nn.Softplus(beta=10.0))):
    model = make(activation)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(1500):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    shapes = [(n, p.shape) for n, p in model.named_parameters()]
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    f = flat_loss(model, shapes)
    with torch.no_grad():
        f0 = f(w).item()
    trace = exact_trace(f, w)
    print(f"{label}: f(W) = {f0:.3g}, exact Tr = {trace:.4g} ({w.numel()} weights)")
    print("  sigma     gap        gap SE     sigma^2/2 Tr  gap / prediction")
    gen = torch.Generator().manual_seed(1)
    for sigma in (0.0025, 0.005, 0.01, 0.02):
        gaps = []
        with torch.no_grad():
            for _ in range(200):
                u = sigma * torch.randn(w.numel(), generator=gen)
                gaps.append(((f(w + u) + f(w - u)) / 2 - f0).item())
        gaps = np.array(gaps)
        predicted = sigma**2 / 2 * trace
        print(f"  {sigma:<8g}  {gaps.mean():.3e}  {gaps.std(ddof=1) / np.sqrt(len(gaps)):.1e}    {predicted:.3e}     "
              f"{gaps.mean() / predicted:.3f}")

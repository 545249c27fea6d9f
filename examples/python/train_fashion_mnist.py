"""Train the NSO paper's two-layer MLP on Fashion-MNIST from a plain PyTorch loop with flatmin's optimizer,
then measure the flatness of the result with flatmin.geometry.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/train_fashion_mnist.py            # NSO, 5 epochs
    PYTHONPATH=build/python /usr/bin/python3 examples/python/train_fashion_mnist.py --method sam --rho 0.05

Everything but the optimizer and the measurement is ordinary PyTorch: the data (Debian's
dataset-fashion-mnist, read from its IDX files), the model, the DataLoader, the scheduler.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import flatmin

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy())


def load(split, limit):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz"))[:limit].float().div(255).unsqueeze(1)
    y = read_idx(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz"))[:limit].long()
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="nso", choices=["nso", "sam", "sgd"])
    parser.add_argument("--sigma", type=float, default=0.01, help="NSO: the noise's std")
    parser.add_argument("--rho", type=float, default=0.05, help="SAM: the radius")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="use the first N training and test examples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    x_train, y_train = load("train", args.limit)
    x_test, y_test = load("test", args.limit)
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_train, y_train), batch_size=args.batch_size,
                                         shuffle=True)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    base = dict(lr=args.lr, momentum=0.9, weight_decay=1e-4)
    if args.method == "nso":
        opt = flatmin.optim.NSO(model.parameters(), torch.optim.SGD, sigma=args.sigma, k=1, seed=args.seed, **base)
    elif args.method == "sam":
        opt = flatmin.optim.SAM(model.parameters(), torch.optim.SGD, rho=args.rho, **base)
    else:
        opt = torch.optim.SGD(model.parameters(), **base)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * len(loader))
    print(f"{args.method}, {args.epochs} epochs over {len(y_train)} examples, batch {args.batch_size}"
          + (f" ({opt.evaluations} gradient evaluations per step)" if hasattr(opt, "evaluations") else ""))

    for epoch in range(1, args.epochs + 1):
        model.train()
        start, total, seen = time.time(), 0.0, 0
        for x, y in loader:
            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            loss = opt.step(closure)
            sched.step()
            total, seen = total + float(loss) * len(y), seen + len(y)
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"epoch {epoch}/{args.epochs}  train loss {total / seen:.4f}  test accuracy {100 * accuracy:.2f}%  "
              f"{time.time() - start:.1f} s")

    sample = (x_train[:1000], y_train[:1000])
    loss_fn = lambda m, batch: F.cross_entropy(m(batch[0]), batch[1])  # noqa: E731
    trace = flatmin.geometry.hessian_trace(model, loss_fn, sample, tol=0.02, seed=args.seed)
    top = flatmin.geometry.top_eigenvalues(model, loss_fn, sample, k=3)
    print(f"Hessian trace on 1,000 training examples: {trace.value:.4g} ± {trace.stderr:.2g} ({trace.probes} probes); "
          f"top eigenvalues {', '.join(f'{v:.4g}' for v in top.values)}")


if __name__ == "__main__":
    main()

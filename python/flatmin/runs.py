"""A flatmin run from Python: its trained model (``load``) and its metrics (``read_metrics``)."""
import csv
import io
import json
import math
import os

import torch

from . import _flatmin

__all__ = ["load", "read_metrics", "LoadedModel"]


class LoadedModel(torch.nn.Module):
    """A run's trained network as a runnable module: ``model(x)`` standardises x (in [0, 1], [N, C, H, W]) per
    channel as the run did in training, then applies the network (TorchScript, in eval mode). ``network`` is the
    bare TorchScript module (inputs already standardised); ``mean``/``std`` the per-channel statistics;
    ``config`` the run's configuration; ``epoch`` the epochs it had completed; ``checksum`` its crc32."""

    def __init__(self, info):
        super().__init__()
        self.network = torch.jit.load(io.BytesIO(info["script"]))
        channels = info["in_channels"]
        mean = info["mean"] or [0.0] * channels
        std = info["std"] or [1.0] * channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.path, self.name, self.epoch, self.checksum = info["path"], info["model"], info["epoch"], info["checksum"]
        self.input_shape = (channels, info["image_size"], info["image_size"])
        self.num_classes = info["num_classes"]
        self.config = json.loads(info["config"]) if info["config"] else {}
        self.eval()

    def forward(self, x):
        return self.network((x - self.mean) / self.std)

    def extra_repr(self):
        return f"{self.name}, epoch {self.epoch}, inputs {list(self.input_shape)}, {self.num_classes} classes, {self.path}"


def load(run_or_checkpoint):
    """The trained model of a run directory (its model.ckpt) or of a checkpoint file, ready to evaluate."""
    return LoadedModel(_flatmin.load_checkpoint(os.fspath(run_or_checkpoint)))


def read_metrics(run):
    """A run's metrics.csv as a dict of columns: {"epoch": [1, 2, ...], "test_acc": [...], ...}, numbers as
    floats (NaN where an epoch was not scored) and epoch as int."""
    path = os.path.join(os.fspath(run), "metrics.csv") if os.path.isdir(run) else os.fspath(run)
    if not os.path.isfile(path):
        raise _flatmin.Error(f"{path}: no metrics.csv (is {run} a flatmin run directory?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {name: [] for name in (rows[0].keys() if rows else [])}
    for row in rows:
        for name, text in row.items():
            try:
                value = float(text) if text not in ("", "nan") else math.nan
            except ValueError:
                value = text
            columns[name].append(int(value) if name == "epoch" and isinstance(value, float) else value)
    return columns

"""flatmin from Python: training toward flat minima (NSO, the SAM family) inside any PyTorch loop.

    import torch, flatmin
    opt = flatmin.optim.NSO(model.parameters(), torch.optim.SGD, sigma=0.01, k=1, lr=0.05, momentum=0.9)
    loss = opt.step(closure)   # the closure computes the loss and calls backward(); flatmin runs it per point

The C++ core (_flatmin) shares one LibTorch with ``import torch``: import torch first, as this does.
See docs/PYTHON.md.
"""
import torch  # noqa: F401  (loads LibTorch the way Python's torch does, before the extension needs it)

import os as _os

from ._flatmin import Error, method_names, noise, run_seeds, set_num_threads, tune_malloc, version

# As the CLI does: glibc's thresholds raised so that the large activation buffers of every pass stay in the
# heap instead of being mapped and unmapped (page-faulted) each time (docs/PERFORMANCE.md). Process-wide;
# FLATMIN_NO_MALLOC_TUNING=1 before the import keeps glibc's defaults.
if not _os.environ.get("FLATMIN_NO_MALLOC_TUNING"):
    tune_malloc()
from . import geometry, optim
from .jobs import TrainResult, landscape, measure, report, sensing, train
from .runs import LoadedModel, load, read_metrics

__all__ = ["Error", "optim", "geometry", "load", "read_metrics", "LoadedModel", "noise", "method_names",
           "run_seeds", "set_num_threads", "tune_malloc", "version", "train", "measure", "landscape", "sensing", "report", "TrainResult"]

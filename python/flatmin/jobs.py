"""The CLI's jobs from Python: ``flatmin.train(...)`` runs what ``flatmin train ...`` runs and
``flatmin.measure(run, ...)`` what ``flatmin geometry --checkpoint run ...`` runs, with the same options (keyword
arguments named as the flags, ``per_class=100`` for ``--per-class 100``), the same checks and the same files."""
import json
import os

from . import _flatmin
from .runs import load, read_metrics

__all__ = ["train", "measure", "landscape", "sensing", "report", "TrainResult"]


class TrainResult:
    """A finished run: ``out`` (its directory), ``summary`` (summary.json as a dict), ``metrics()`` (metrics.csv as
    columns) and ``model()`` (the trained network with its normalisation, as ``flatmin.load``)."""

    def __init__(self, out, summary):
        self.out, self.summary = out, summary

    def metrics(self):
        return read_metrics(self.out)

    def model(self):
        return load(self.out)

    def __repr__(self):
        acc = self.summary.get("final_test_acc")
        return f"TrainResult(out={self.out!r}, final_test_acc={acc!r})"


def _arguments(job, known, options):
    """Keyword arguments as the CLI's arguments: True → the flag, False/None → left out, a list → a, b, c."""
    args = []
    for key, value in options.items():
        name = key.replace("_", "-")
        if name in known["flags"]:
            if not isinstance(value, bool):
                raise TypeError(f"{job}(): {key} is a flag: True or False, got {value!r}")
            if value:
                args.append("--" + name)
        elif name in known["options"]:
            if value is None:
                continue
            if isinstance(value, bool):
                raise TypeError(f"{job}(): {key} takes a value, not {value!r}")
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, os.PathLike):
                value = os.fspath(value)
            args += ["--" + name, str(value)]
        else:
            names = sorted(n.replace("-", "_") for n in known["options"] + known["flags"])
            raise TypeError(f"{job}() got an unexpected option {key!r} (its options: {', '.join(names)})")
    return args


def train(**options):
    """Trains as ``flatmin train`` does and returns a :class:`TrainResult`.

    Every option of ``flatmin train --help`` is a keyword argument (``method="nso", sigma=0.01, model="cnn",
    per_class=100, augment=True, classes=[0, 1, 2], out="runs/nso"``); the defaults are the CLI's. Raises
    ``flatmin.Error`` on a bad option, ``flatmin.Error`` if the loss diverges (its message names the last good
    checkpoint), and ``KeyboardInterrupt`` on Ctrl-C after writing a checkpoint: ``flatmin.train(resume=out)``
    continues the run, bitwise as if never stopped. The thread count it sets for the run is restored after it.
    """
    result = _flatmin.train(_arguments("flatmin.train", _flatmin.train_options(), options))
    if result["status"] == "interrupted":
        raise KeyboardInterrupt(f"{result['message']}; resume with flatmin.train(resume={result['out']!r})")
    if result["status"] == "diverged":
        kept = result["last_checkpoint"]
        raise _flatmin.Error(result["message"] + (f"; the last good checkpoint is intact: {kept}" if kept else ""))
    return TrainResult(result["out"], json.loads(result["summary"]))


def measure(checkpoint, **options):
    """Measures a run's checkpoint as ``flatmin geometry`` does; returns geometry.json as a dict.

    ``checkpoint`` is a run directory or a checkpoint file; every other option of ``flatmin geometry --help`` is a
    keyword argument (``measures=["trace", "eigen", "pac-bayes"], examples=2000, trace_tol=0.01,
    sigmas=[0.01, 0.02], split="test"``). The JSON is written where the CLI writes it (geometry.json beside the
    checkpoint, or ``out=``). The split is rebuilt from the run's config, as the CLI does. Raises
    ``flatmin.Error`` (or ``TypeError`` for an unknown option) with one line.
    """
    args = ["--checkpoint", os.fspath(checkpoint)] + _arguments("flatmin.measure", _flatmin.measure_options(), options)
    result = _flatmin.measure(args)
    return json.loads(result["json"])


def landscape(checkpoints, **options):
    """Loss landscapes as ``flatmin landscape`` draws them: ``checkpoints`` (a run directory or checkpoint, or a
    list of them) along the same seeded filter-normalised directions (``dims=1`` or ``2``), or along the line to
    ``to=``. Writes landscape.csv, landscape.json and the figures (continuing a grid with the same settings);
    returns the output directory. Every other option of ``flatmin landscape --help`` is a keyword argument."""
    paths = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
    args = ["--checkpoint", ",".join(os.fspath(p) for p in paths)]
    return _flatmin.landscape(args + _arguments("flatmin.landscape", _flatmin.landscape_options(), options))


def sensing(**options):
    """The NSO paper's matrix sensing simulation, as ``flatmin sensing`` runs it (``method="nso"|"wp-gd"|"gd"``,
    ``sigma``, ``lr``, ``steps``, ``dimension``, ``measurements``, ``float64=True``, ...). Returns a
    :class:`TrainResult` (summary.json holds κ in its ``extra``); raises ``flatmin.Error`` if the loss diverges."""
    result = _flatmin.sensing(_arguments("flatmin.sensing", _flatmin.sensing_options(), options))
    if result["diverged"]:
        raise _flatmin.Error(f"flatmin.sensing: the loss diverged (see {result['out']}/diverged.json): lower lr")
    with open(os.path.join(result["out"], "summary.json")) as f:
        return TrainResult(result["out"], json.load(f))


def report(root, out=None, plots=True, formats=("svg", "png")):
    """A sweep's report, as ``flatmin report ROOT`` writes it: results.md, results.csv, results.json (every run
    too), paired.csv (per-seed paired differences), the gnuplot figures (``plots=False``: none) and index.html,
    in ``out`` (default ROOT/report). Returns {"out", "summary" (the printed text), "warnings", "files"};
    ``json.load(open(os.path.join(r["out"], "results.json")))`` has every figure."""
    return _flatmin.report(os.fspath(root), "" if out is None else os.fspath(out), bool(plots), list(formats))


train.__doc__ += "\nThe options, as ``flatmin train --help`` shows them:\n\n" + _flatmin.train_help()
measure.__doc__ += "\nThe options, as ``flatmin geometry --help`` shows them:\n\n" + _flatmin.measure_help()
landscape.__doc__ += "\nThe options, as ``flatmin landscape --help`` shows them:\n\n" + _flatmin.landscape_help()
sensing.__doc__ += "\nThe options, as ``flatmin sensing --help`` shows them:\n\n" + _flatmin.sensing_help()

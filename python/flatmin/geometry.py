"""Flatness of any PyTorch model: the Hessian trace (Hutchinson) and top eigenvalues (Lanczos) of a loss you
define, computed by flatmin's C++ measurements through Hessian-vector products on your model's parameters.

    t = flatmin.geometry.hessian_trace(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), batches, tol=0.01)
    print(t.value, t.stderr, t.probes, t.per_layer)

``loss_fn(model, batch)`` returns a scalar loss; ``batches`` is an iterable of batches (a DataLoader, a list)
or one batch (a tuple of tensors), read once and reused by every product. The objective is the mean of the
batch losses weighted by batch size (the length of a batch's first tensor). The model is measured in eval
mode (``mode="train"``: BatchNorm with batch statistics); its modes and buffers are left as they were found.
"""
import contextlib
import fnmatch

import torch

from . import _flatmin

__all__ = ["hessian_trace", "top_eigenvalues", "spectral_density", "noise_stability_gap", "normalized_trace",
           "pac_bayes", "TraceResult", "EigenResult", "Result"]


class TraceResult:
    """Hutchinson's estimate of Tr ∇²L: ``value`` ± ``stderr`` (std of the probes / √probes) after ``probes``
    Rademacher probes (``hvps`` Hessian-vector products); ``per_layer``: {name: (trace, stderr)} from the same
    probes, summing to ``value``; ``converged``: the stopping rule was met before ``max_probes``."""

    def __init__(self, d):
        self.value, self.stderr, self.probes = d["value"], d["stderr"], d["probes"]
        self.hvps, self.converged, self.probe_std, self.seconds = d["hvps"], d["converged"], d["probe_std"], d["seconds"]
        self.per_layer = {name: (v["trace"], v["stderr"]) for name, v in d["per_layer"].items()}

    def __repr__(self):
        return (f"TraceResult(value={self.value:.6g}, stderr={self.stderr:.3g}, probes={self.probes}, "
                f"converged={self.converged})")


class EigenResult:
    """The top ``k`` eigenvalues of ∇²L (largest first) by Lanczos, with each one's residual ‖Hv − λv‖."""

    def __init__(self, d):
        self.values, self.residuals = list(d["values"]), list(d["residuals"])
        self.converged, self.iterations, self.hvps, self.seconds = d["converged"], d["iterations"], d["hvps"], d["seconds"]

    def __repr__(self):
        return f"EigenResult(values={[float(f'{v:.6g}') for v in self.values]}, converged={self.converged})"


class Result:
    """A measurement's figures as attributes (and ``as_dict()``), for the measurements with many of them."""

    def __init__(self, d):
        self.__dict__.update(d)

    def as_dict(self):
        return dict(self.__dict__)

    def __repr__(self):
        shown = {k: v for k, v in self.__dict__.items() if not isinstance(v, (list, dict))}
        return f"Result({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _batches(batches):
    if isinstance(batches, tuple) and batches and all(isinstance(t, torch.Tensor) for t in batches):
        return [batches]  # one batch
    if isinstance(batches, torch.Tensor):
        return [batches]
    out = list(batches)
    if not out:
        raise _flatmin.Error("flatmin.geometry: no batches")
    return out


def _size(batch):
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    return len(first) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1


def _parameters(model, parameters):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if parameters is None:
        chosen = named
    else:
        patterns = [parameters] if isinstance(parameters, str) else list(parameters)
        ids = {id(t) for t in patterns if isinstance(t, torch.Tensor)}
        globs = [g for g in patterns if isinstance(g, str)]
        chosen = [(n, p) for n, p in named if id(p) in ids or any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if not chosen:
        raise _flatmin.Error("flatmin.geometry: no trainable parameter selected"
                             + ("" if parameters is None else f" by {parameters!r}"))
    return chosen


@contextlib.contextmanager
def _measuring(model, mode):
    if mode not in ("eval", "train"):
        raise _flatmin.Error(f"flatmin.geometry: mode {mode!r}: 'eval' or 'train'")
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def _objective(model, loss_fn, batches, parameters):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"flatmin.geometry: model must be a torch.nn.Module, got {type(model).__name__}")
    batches = _batches(batches)
    sizes = [_size(b) for b in batches]
    total = float(sum(sizes))
    return (_parameters(model, parameters), lambda b: loss_fn(model, batches[b]), [s / total for s in sizes])


def hessian_trace(model, loss_fn, batches, *, tol=0.01, max_probes=1000, min_probes=10, stop_rule="se", seed=0,
                  mode="eval", parameters=None):
    """Tr ∇²L by Hutchinson's estimator, stopped when its standard error is ``tol`` of the estimate (``se``), or
    by PyHessian's rule (``pyhessian``: the mean changed by less than ``tol``); ``parameters``: names, globs
    ("layer1.*") or tensors (default: every trainable parameter)."""
    params, loss, weights = _objective(model, loss_fn, batches, parameters)
    with _measuring(model, mode):
        return TraceResult(_flatmin.hessian_trace(params, loss, weights, float(tol), int(max_probes), int(min_probes),
                                                  stop_rule, int(seed)))


def top_eigenvalues(model, loss_fn, batches, k=1, *, tol=1e-3, max_iterations=100, seed=0, mode="eval",
                    parameters=None):
    """The ``k`` largest eigenvalues of ∇²L, converged when each Ritz pair's residual ‖Hv − λv‖ ≤ tol·|λ|."""
    params, loss, weights = _objective(model, loss_fn, batches, parameters)
    with _measuring(model, mode):
        return EigenResult(_flatmin.top_eigenvalues(params, loss, weights, int(k), float(tol), int(max_iterations),
                                                    int(seed)))


def spectral_density(model, loss_fn, batches, *, runs=1, iterations=100, grid_points=1000, seed=0, mode="eval",
                     parameters=None):
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature (PyHessian's method): ``grid`` and
    ``density`` (Gaussian-smoothed, ``bandwidth``), the Ritz ``nodes`` and ``weights`` of each run, and the
    trace it implies (``trace_estimate``)."""
    params, loss, weights = _objective(model, loss_fn, batches, parameters)
    with _measuring(model, mode):
        return Result(_flatmin.spectral_density(params, loss, weights, int(runs), int(iterations), int(grid_points),
                                                int(seed)))


def noise_stability_gap(model, loss_fn, batches, sigmas=(0.005, 0.01, 0.02), *, draws=100, noise="gaussian",
                        antithetic=None, trace=None, tol=0.01, max_probes=1000, seed=0, mode="eval", parameters=None):
    """E[f(W+U)] − f(W) for each σ in ``sigmas`` against its second-order prediction σ²/2·Tr∇²f (the NSO paper's
    Table 2): ``rows`` of {sigma, gap, gap_stderr, predicted, relative_error, z}, and the table's ``rss``.
    Antithetic pairs (f(W+U) + f(W−U))/2 by default for a mean-zero law; ``trace`` (else measured to ``tol``)."""
    params, loss, weights = _objective(model, loss_fn, batches, parameters)
    if antithetic is None:
        antithetic = noise != "binomial4"
    with _measuring(model, mode):
        result = Result(_flatmin.noise_stability_gap(
            params, loss, weights, [float(s) for s in sigmas], int(draws), noise, bool(antithetic),
            float("nan") if trace is None else float(trace), 0.0, float(tol), int(max_probes), int(seed)))
    result.rows = [Result(r) for r in result.rows]
    return result


def normalized_trace(model, loss_fn, batches, *, tol=0.01, max_probes=1000, seed=0, mode="eval", parameters=None):
    """CR-SAM's normalised trace C = Tr∇²L/‖∇L‖²: ``value`` and its ``stderr`` (the trace's, scaled), with
    the ``trace`` and ``grad_norm`` it divides."""
    params, loss, weights = _objective(model, loss_fn, batches, parameters)
    with _measuring(model, mode):
        g = _flatmin.gradient_norm(params, loss, weights)
        t = _flatmin.hessian_trace(params, loss, weights, float(tol), int(max_probes), 10, "se", int(seed))
    g2 = g["norm"] ** 2
    return Result({"value": t["value"] / g2 if g2 > 0 else float("inf"),
                   "stderr": t["stderr"] / g2 if g2 > 0 else float("nan"),
                   "trace": t["value"], "trace_stderr": t["stderr"], "grad_norm": g["norm"], "loss": g["loss"]})


def pac_bayes(model, loss_fn, examples, *, reference, n, train_loss, test_loss=float("nan"), loss_bound=None,
              probes=10, refine_top=5, refine_probes=None, seed=0, mode="eval", parameters=None):
    """The NSO paper's PAC-Bayes bound (Theorem 2.2 of the review version, 2.1 of the TMLR one), from measured
    inputs: L(W) ≤ L̂(W) + √(C·α·r²/n) (ε → 0, the O(n^(-3/4)) term dropped), as ``flatmin geometry --measures
    pac-bayes`` computes it.

    - α: the largest per-example Hessian trace Tr∇²ℓ over ``examples`` (an iterable of batches, each *one*
      example: the CLI takes a sample of the training and test sets), each by Hutchinson with ``probes`` probes
      (seed ``seed + i`` for example i); the ``refine_top`` largest are measured again with ``refine_probes``
      (default 10·probes) fresh probes, against the upward bias of a maximum of noisy estimates. Also the mean.
    - r = ‖W − W₀‖ over the measured parameters, W₀ from ``reference`` (a module with the same parameter names,
      or a state_dict: the initial or pretrained weights).
    - ``n`` training examples; ``train_loss`` L̂(W) (and ``test_loss`` for the observed gap); C =
      ``loss_bound``, default the largest loss among the examples.

    Returns ``alpha_max`` (± ``alpha_max_stderr``), ``alpha_mean`` (± ``alpha_mean_stderr``), ``radius``,
    ``loss_bound``, and for α max and α mean the ``complexity`` √(C·α·r²/n) and the ``bound``; ``observed_gap``.
    """
    params = _parameters(model, parameters)
    units = _batches(examples)
    ref = reference.state_dict() if isinstance(reference, torch.nn.Module) else dict(reference)
    radius2 = 0.0
    for name, p in params:
        if name not in ref:
            raise _flatmin.Error(f"flatmin.geometry.pac_bayes: reference has no parameter {name!r}")
        if tuple(ref[name].shape) != tuple(p.shape):
            raise _flatmin.Error(f"flatmin.geometry.pac_bayes: reference's {name!r} has shape "
                                 f"{tuple(ref[name].shape)}, the model's {tuple(p.shape)}")
        radius2 += float((p.detach().double() - ref[name].detach().to(p.device).double()).pow(2).sum())
    refine_probes = 10 * probes if refine_probes is None else refine_probes

    def trace_of(i, count, key):
        return _flatmin.hessian_trace(params, lambda b: loss_fn(model, units[i]), [1.0], 0.0, int(count), int(count),
                                      "se", int(key))

    with _measuring(model, mode):
        estimates = [trace_of(i, probes, seed + i) for i in range(len(units))]
        for i in sorted(range(len(units)), key=lambda j: estimates[j]["value"], reverse=True)[:refine_top]:
            estimates[i] = trace_of(i, refine_probes, seed + len(units) + i)
        with torch.no_grad():
            losses = [float(loss_fn(model, u)) for u in units]
    values = [e["value"] for e in estimates]
    top = max(range(len(values)), key=values.__getitem__)
    mean = sum(values) / len(values)
    mean_se = (sum(e["stderr"] ** 2 for e in estimates) ** 0.5) / len(values)
    c = max(losses) if loss_bound is None else float(loss_bound)
    radius = radius2 ** 0.5
    out = {"alpha_max": values[top], "alpha_max_stderr": estimates[top]["stderr"], "alpha_mean": mean,
           "alpha_mean_stderr": mean_se, "examples": len(units), "radius": radius, "n": int(n), "loss_bound": c,
           "train_loss": float(train_loss), "test_loss": float(test_loss)}
    for name, alpha in (("alpha_max", values[top]), ("alpha_mean", mean)):
        b = _flatmin.pac_bayes_bound(float(train_loss), float(test_loss), max(0.0, alpha), radius, int(n), c)
        out["complexity_" + name], out["bound_" + name] = b["complexity"], b["bound"]
        out["observed_gap"] = b["observed_gap"]
    return Result(out)

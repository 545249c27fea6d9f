"""flatmin's methods as torch.optim optimizers over any base optimizer.

Each class wraps a base optimizer built from the remaining keyword arguments (``torch.optim.SGD``,
``torch.optim.AdamW``, any ``torch.optim.Optimizer`` class) and shares its parameter groups, so learning-rate
schedulers, ``zero_grad`` and the groups' options act on the flatmin optimizer itself. ``step(closure)`` runs
the closure once per point the method evaluates (W + U and W − U for NSO, W and the ascent point for SAM):
the closure computes the loss and calls ``backward()``. flatmin moves the parameters, draws the noise,
combines the gradients and restores W exactly in C++, then calls the base optimizer's step.

BatchNorm: pass ``model=`` (or call ``track_buffers(model)``) and the running statistics follow the
method's policy, as in the CLI: NSO and WP-SGD average the passes' updates, so the statistics move once per
step; the SAM family keeps the first pass's (at W). Without it every pass updates them.
"""
import torch

from . import _flatmin

__all__ = ["WPSGD", "NSO", "SAM", "USAM", "ASAM", "RSAM", "CRSAM", "BSAM"]


def _load_own_state(opt, state_dict):
    """Loads the "flatmin" entry of `state_dict` into `opt`'s engine; returns the rest (the torch.optim part)."""
    state = dict(state_dict)
    own = state.pop("flatmin", None)
    if not isinstance(own, dict) or "engine" not in own:
        raise _flatmin.Error(f"flatmin.optim.{type(opt).__name__}.load_state_dict: not a flatmin optimizer's "
                             "state_dict (no 'flatmin' entry): a plain torch.optim state_dict lacks the method's "
                             "step count")
    if own.get("method") != opt._name:
        raise _flatmin.Error(f"flatmin.optim.{type(opt).__name__}.load_state_dict: the state_dict is "
                             f"{own.get('method')!r}'s, not {opt._name!r}'s")
    opt._engine.load_state(own["engine"])
    return state


class _Method(torch.optim.Optimizer):
    _name = None
    _size = None  # the option a parameter group may set for its own tensors: "sigma" or "rho"

    def __init__(self, params, base_optimizer, method_options, *, seed=0, max_grad_norm=0.0, model=None,
                 loss_scale=1.0, **base_kwargs):
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)):
            raise TypeError(f"flatmin.optim.{type(self).__name__}: base_optimizer must be a torch.optim.Optimizer "
                            f"class such as torch.optim.SGD, got {base_optimizer!r}")
        super().__init__(params, dict(base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # One set of groups: schedulers and zero_grad act on the base's, whichever object they are given.
        self.param_groups = self.base_optimizer.param_groups
        self.defaults = self.base_optimizer.defaults
        self.state = self.base_optimizer.state
        tensors = [p for group in self.param_groups for p in group["params"] if p.requires_grad]
        self._engine = _flatmin.Engine(tensors, self._name, {k: v for k, v in method_options.items() if v is not None},
                                       int(seed), float(max_grad_norm), float(loss_scale), self.base_optimizer.step)
        self._size_default = method_options.get(self._size) if self._size else None
        if model is not None:
            self.track_buffers(model)

    @property
    def loss_scale(self):
        """Mixed-precision loss scaling: the closure returns (and backpropagates) ``loss_scale`` × the true loss;
        flatmin divides each pass's gradient by it as it folds the pass in, so the method's moves, clipping
        (``max_grad_norm``) and the base step all see the true gradient, unscaled exactly once. Given at
        construction (≠ 1) it also turns on the overflow check: a step whose losses or gradient are not finite
        is skipped (``skipped`` is then True; lower the scale, as GradScaler does). Settable between steps."""
        return self._engine.loss_scale

    @loss_scale.setter
    def loss_scale(self, value):
        self._engine.loss_scale = float(value)

    @property
    def skipped(self):
        """Whether the last step was skipped for a non-finite loss or gradient (only checked with a loss scale)."""
        return self._engine.skipped

    def track_buffers(self, model):
        """Lets the method decide which passes update ``model``'s buffers (BatchNorm's running statistics)."""
        buffers = model.buffers() if isinstance(model, torch.nn.Module) else model
        self._engine.track_buffers(list(buffers))

    @torch.no_grad()
    def step(self, closure=None):
        """One step of the method; returns the mean of the closure's losses over the points it evaluated."""
        if closure is None:
            raise _flatmin.Error(f"flatmin.optim.{type(self).__name__}.step needs a closure: it evaluates the "
                                 f"gradient at {self._engine.evaluations} point(s)")
        self._push_group_sizes()
        return self._engine.step(torch.enable_grad()(closure))

    def _push_group_sizes(self):
        # A group's own σ or ρ (set at construction, by add_param_group or by hand between steps) as a factor on
        # the method's for each of its tensors.
        if self._size is None or all(self._size not in g for g in self.param_groups):
            return
        default = float(self._size_default)
        scales = []
        for group in self.param_groups:
            value = float(group.get(self._size, default))
            if default == 0 and value != 0:
                raise _flatmin.Error(f"flatmin.optim.{type(self).__name__}: a group's {self._size} needs a nonzero "
                                     f"{self._size} for the optimizer")
            scales += [value / default if default else 1.0] * sum(1 for p in group["params"] if p.requires_grad)
        self._engine.set_scales(scales)

    def state_dict(self):
        """The base optimizer's state_dict, plus under "flatmin" the method's: its step count (so a resumed run
        draws the noise an uninterrupted one would) and any state of its own."""
        state = self.base_optimizer.state_dict()
        state["flatmin"] = {"method": self._name, "engine": self._engine.state()}
        return state

    def load_state_dict(self, state_dict):
        state = _load_own_state(self, state_dict)
        self.base_optimizer.load_state_dict(state)
        # The base's load builds new groups and state: share them again.
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    def set_epoch(self, epoch, total_epochs):
        """Tells the method a new epoch starts (for σ schedules)."""
        self._engine.set_epoch(int(epoch), int(total_epochs))

    @property
    def evaluations(self):
        """Gradient evaluations (forward + backward passes) per step."""
        return self._engine.evaluations

    @property
    def current_pass(self):
        """Which evaluation the closure is running (0 … evaluations − 1; −1 outside a step). Under DDP, a SAM
        closure may skip the gradient sync of its ascent pass (each replica ascends along its own gradient, as
        the CLI's --sam-ascent per-replica): ``with model.no_sync() if opt.current_pass == 0 else nullcontext():``.
        """
        return self._engine.current_pass

    def __repr__(self):
        # One line: the method, then the base optimizer's class and its first group's settings.
        base = getattr(self, "base_optimizer", None)
        if base is None:
            return f"{type(self).__name__}({self._engine.describe()}, lr={self.param_groups[0]['lr']:g})"
        group = {k: v for k, v in base.param_groups[0].items() if k != "params" and isinstance(v, (int, float))}
        settings = ", ".join(f"{k}={v:g}" for k, v in group.items() if not isinstance(v, bool))
        return f"{type(self).__name__}({self._engine.describe()}, base={type(base).__name__}({settings}))"


class WPSGD(_Method):
    """Weight-perturbed SGD: the gradient at W + U, U of std ``sigma`` (one evaluation per step)."""
    _name = "wp-sgd"
    _size = "sigma"

    def __init__(self, params, base_optimizer, sigma=0.01, noise="gaussian", **kwargs):
        super().__init__(params, base_optimizer, {"sigma": sigma, "noise": noise}, **kwargs)


class NSO(_Method):
    """Noise Stability Optimization: 1/(2k)·Σ_j [g(W+U_j) + g(W−U_j)], U_j of std ``sigma`` (2k evaluations).

    ``no_negative=True`` is the one-sided ablation (2k independent draws); ``noise`` is gaussian, laplace,
    uniform, rademacher or binomial4.
    """
    _name = "nso"
    _size = "sigma"

    def __init__(self, params, base_optimizer, sigma=0.01, k=1, no_negative=False, noise="gaussian", **kwargs):
        super().__init__(params, base_optimizer, {"sigma": sigma, "k": k, "no_negative": no_negative, "noise": noise},
                         **kwargs)


class SAM(_Method):
    """Sharpness-aware minimisation: the gradient at W + ρ·g/‖g‖ (2 evaluations)."""
    _name = "sam"
    _size = "rho"

    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        super().__init__(params, base_optimizer, {"rho": rho}, **kwargs)


class USAM(_Method):
    """Unnormalised SAM: the gradient at W + ρ·g (2 evaluations)."""
    _name = "usam"
    _size = "rho"

    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        super().__init__(params, base_optimizer, {"rho": rho}, **kwargs)


class ASAM(_Method):
    """Adaptive SAM: the ascent scaled by |W| + ``eta`` per weight (2 evaluations)."""
    _name = "asam"
    _size = "rho"

    def __init__(self, params, base_optimizer, rho=0.5, eta=0.01, **kwargs):
        super().__init__(params, base_optimizer, {"rho": rho, "eta": eta}, **kwargs)


class RSAM(_Method):
    """Random SAM: the ascent from a gradient at W + noise of std ``noise_sigma`` (2 evaluations)."""
    _name = "rsam"
    _size = "rho"  # refused by the method (its ρ and noise are one size), not ignored

    def __init__(self, params, base_optimizer, rho=0.05, noise_sigma=0.01, lam=2.0, **kwargs):
        super().__init__(params, base_optimizer, {"rho": rho, "rsam_sigma": noise_sigma, "rsam_lambda": lam}, **kwargs)


class CRSAM(_Method):
    """Curvature-regularised SAM: SAM plus α and β finite-difference curvature terms (3 evaluations)."""
    _name = "crsam"
    _size = "rho"

    def __init__(self, params, base_optimizer, rho=0.1, alpha=0.1, beta=0.01, **kwargs):
        super().__init__(params, base_optimizer, {"rho": rho, "alpha": alpha, "beta": beta}, **kwargs)


class BSAM(torch.optim.Optimizer):
    """Bayesian SAM (Möllenhoff & Khan): SAM's ascent on a variational posterior, with its own update rule
    (momentum β1, a per-weight precision estimate with β2, the prior precision as weight decay), so no base
    optimizer. ``lr`` is its α; ``train_size`` is N, the number of training examples, which sets its noise
    (std 1/√(N·s)); ``noise_std`` sets the initial noise directly instead (s₀ = 1/(N·noise_std²));
    ``prior_mean="init"`` centres the prior on the initial (pretrained) weights; ``bn_statistics="ascent"``
    takes BatchNorm's statistics from the pass at the mean weights only. Two evaluations per step. A
    scheduler acts on ``lr`` as on any optimizer.
    """

    def __init__(self, params, lr=0.5, *, train_size, rho=0.01, prior_precision=25.0, damping=0.1,
                 init_precision=1.0, beta1=0.9, beta2=0.999, noise_std=0.0, prior_mean="zero", bn_statistics="both",
                 seed=0, max_grad_norm=0.0, model=None, loss_scale=1.0):
        super().__init__(params, dict(lr=lr))
        if len(self.param_groups) != 1:
            raise _flatmin.Error("flatmin.optim.BSAM: one parameter group (its options are global)")
        tensors = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        options = dict(train_size=train_size, rho=rho, prior_precision=prior_precision, damping=damping,
                       init_precision=init_precision, beta1=beta1, beta2=beta2, noise_std=noise_std,
                       prior_mean=prior_mean, bn_statistics=bn_statistics)
        self._engine = _flatmin.Engine(tensors, options, int(seed), float(max_grad_norm), float(loss_scale), float(lr))
        if model is not None:
            self.track_buffers(model)

    track_buffers = _Method.track_buffers
    loss_scale = _Method.loss_scale
    skipped = _Method.skipped
    set_epoch = _Method.set_epoch
    evaluations = _Method.evaluations
    current_pass = _Method.current_pass
    __repr__ = _Method.__repr__
    _name = "bsam"

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise _flatmin.Error("flatmin.optim.BSAM.step needs a closure: it evaluates the gradient at 2 points")
        self._engine.set_lr(float(self.param_groups[0]["lr"]))
        return self._engine.step(torch.enable_grad()(closure))

    def state_dict(self):
        state = super().state_dict()
        state["flatmin"] = {"method": self._name, "engine": self._engine.state()}
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(_load_own_state(self, state_dict))

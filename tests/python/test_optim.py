"""flatmin.optim from Python: each method's step against its rule on analytic functions (the noise
regenerated with flatmin.noise, as the methods draw it), the base optimizer and its scheduler shared, BatchNorm
statistics moved once per step, and every bad input a one-line exception that leaves the model as it was."""
import math

import pytest
import torch

import flatmin
from flatmin import optim

TOL = dict(rtol=1e-5, atol=1e-6)


def quartic(ws):
    """f = Σ w⁴/4 + sin w over every tensor: not quadratic, so every point a method picks changes the step."""
    return sum((w.pow(4) / 4 + w.sin()).sum() for w in ws)


def quartic_grad(w):
    return w.pow(3) + w.cos()


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=g).requires_grad_(), torch.randn(4, generator=g).requires_grad_()]


def one_step(opt, params):
    seen = []

    def closure():
        opt.zero_grad()
        seen.append([p.detach().clone() for p in params])
        loss = quartic(params)
        loss.backward()
        return loss

    loss = opt.step(closure)
    return loss, seen


def global_norm(ts):
    return math.sqrt(sum(float(t.pow(2).sum()) for t in ts))


@pytest.mark.parametrize("k,no_negative", [(1, False), (2, False), (2, True)])
def test_nso_step_is_the_average_gradient_over_its_noisy_points(k, no_negative):
    params = make_params()
    w0 = [p.detach().clone() for p in params]
    lr, sigma, seed = 0.1, 0.2, 7
    opt = optim.NSO(params, torch.optim.SGD, sigma=sigma, k=k, no_negative=no_negative, seed=seed, lr=lr)
    _, seen = one_step(opt, params)
    assert len(seen) == 2 * k
    points = []
    for j in range(k):
        if no_negative:
            draws = [2 * j, 2 * j + 1]
            points += [[w + flatmin.noise(list(w.shape), "gaussian", sigma, seed, 0, d, i) for i, w in enumerate(w0)]
                       for d in draws]
        else:
            u = [flatmin.noise(list(w.shape), "gaussian", sigma, seed, 0, j, i) for i, w in enumerate(w0)]
            points += [[w + ui for w, ui in zip(w0, u)], [w - ui for w, ui in zip(w0, u)]]
    for got, want in zip(seen, points):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL)
    for i, p in enumerate(params):
        expected = w0[i] - lr / (2 * k) * sum(quartic_grad(pt[i]) for pt in points)
        torch.testing.assert_close(p.detach(), expected, **TOL)


def test_wpsgd_step_is_the_gradient_at_one_noisy_point_and_the_seed_decides_it():
    params = make_params()
    w0 = [p.detach().clone() for p in params]
    opt = optim.WPSGD(params, torch.optim.SGD, sigma=0.1, noise="laplace", seed=3, lr=0.05)
    one_step(opt, params)
    for i, p in enumerate(params):
        u = flatmin.noise(list(w0[i].shape), "laplace", 0.1, 3, 0, 0, i)
        torch.testing.assert_close(p.detach(), w0[i] - 0.05 * quartic_grad(w0[i] + u), **TOL)
    # The second step draws anew (its step counter is 1), and another seed draws another point.
    other = make_params()
    one_step(optim.WPSGD(other, torch.optim.SGD, sigma=0.1, noise="laplace", seed=4, lr=0.05), other)
    assert not torch.equal(other[0], params[0])


@pytest.mark.parametrize("name", ["SAM", "USAM", "ASAM", "CRSAM"])
def test_sam_family_steps_follow_their_rules(name):
    params = make_params()
    w0 = [p.detach().clone() for p in params]
    g0 = [quartic_grad(w) for w in w0]
    lr, rho = 0.05, 0.1
    if name == "SAM":
        opt = optim.SAM(params, torch.optim.SGD, rho=rho, lr=lr)
        scale = rho / (global_norm(g0) + 1e-12)
        expected = [w - lr * quartic_grad(w + scale * g) for w, g in zip(w0, g0)]
    elif name == "USAM":
        opt = optim.USAM(params, torch.optim.SGD, rho=rho, lr=lr)
        expected = [w - lr * quartic_grad(w + rho * g) for w, g in zip(w0, g0)]
    elif name == "ASAM":
        eta = 0.01
        opt = optim.ASAM(params, torch.optim.SGD, rho=rho, eta=eta, lr=lr)
        t = [w.abs() + eta for w in w0]
        scale = rho / (global_norm([ti * g for ti, g in zip(t, g0)]) + 1e-12)
        expected = [w - lr * quartic_grad(w + scale * ti * ti * g) for w, ti, g in zip(w0, t, g0)]
    else:
        alpha, beta = 0.1, 0.01
        opt = optim.CRSAM(params, torch.optim.SGD, rho=rho, alpha=alpha, beta=beta, lr=lr)
        scale = rho / (global_norm(g0) + 1e-12)
        expected = []
        for w, g in zip(w0, g0):
            gw, gb = quartic_grad(w + scale * g), quartic_grad(w - scale * g)
            expected.append(w - lr * ((1 + alpha + beta) * gw + (alpha - beta) * gb - 2 * alpha * g))
    _, seen = one_step(opt, params)
    assert len(seen) == opt.evaluations
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, **TOL)


def test_the_scheduler_and_the_base_optimizer_share_one_set_of_groups():
    params = make_params()
    opt = optim.NSO(params, torch.optim.SGD, sigma=0.0, lr=0.2, momentum=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    one_step(opt, params)
    sched.step()
    assert opt.param_groups is opt.base_optimizer.param_groups
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    # With σ = 0 NSO is plain gradient descent: the second step uses the scheduled rate.
    w1 = [p.detach().clone() for p in params]
    one_step(opt, params)
    for p, w in zip(params, w1):
        torch.testing.assert_close(p.detach(), w - 0.1 * quartic_grad(w), **TOL)


def test_momentum_lives_in_the_base_optimizers_state():
    params = make_params()
    opt = optim.SAM(params, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    one_step(opt, params)
    assert "momentum_buffer" in opt.state[params[0]]
    assert "momentum_buffer" in opt.state_dict()["state"][0]


def test_batchnorm_statistics_move_once_per_step_when_tracked():
    torch.manual_seed(0)
    x = torch.randn(32, 3) * 2 + 1
    for tracked in (True, False):
        model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
        model.train()
        opt = optim.NSO(model.parameters(), torch.optim.SGD, sigma=0.01, k=2, lr=0.1,
                        model=model if tracked else None)

        def closure():
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            return loss

        opt.step(closure)
        bn = model[0]
        # The input's batch mean is the same in every pass (the BatchNorm comes first): once per step it
        # moves the running mean 0.1 of the way; four passes untracked move it four times.
        passes = 1 if tracked else 4
        torch.testing.assert_close(bn.running_mean, (1 - 0.9 ** passes) * x.mean(0), **TOL)
        assert int(bn.num_batches_tracked) == passes


def test_bad_inputs_are_one_line_errors_that_leave_the_model_as_it_was():
    params = make_params()
    w0 = [p.detach().clone() for p in params]
    opt = optim.NSO(params, torch.optim.SGD, sigma=0.1, lr=0.1)

    def check(closure, message, error=flatmin.Error):
        with pytest.raises(error, match=message):
            opt.step(closure)
        for p, w in zip(params, w0):
            assert torch.equal(p.detach(), w)

    check(lambda: None, "returned None")
    check(lambda: 3.0, "returned float, not the loss tensor")
    check(lambda: quartic(params), "must call loss.backward")

    def vector_loss():
        loss = torch.stack([(w.pow(2)).sum() for w in params])
        loss.sum().backward()
        return loss

    check(vector_loss, r"shape \[2\]: it must be a scalar")

    def raises():
        raise RuntimeError("my data loader broke")

    check(raises, "my data loader broke", RuntimeError)
    with pytest.raises(flatmin.Error, match="needs a closure"):
        opt.step()
    assert issubclass(flatmin.Error, ValueError)
    with pytest.raises(TypeError, match="torch.optim.Optimizer class"):
        optim.SAM(params, torch.optim.SGD(params, lr=0.1), rho=0.05)
    with pytest.raises(flatmin.Error, match="unknown noise law"):
        optim.NSO(params, torch.optim.SGD, noise="cauchy", lr=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        optim.SAM(params, torch.optim.SGD, rho=0.05, lr=0.1, bogus=1)
    # After all that, a step works and matches a fresh optimizer's first step.
    fresh = [w.clone().requires_grad_() for w in w0]
    one_step(opt, params)
    one_step(optim.NSO(fresh, torch.optim.SGD, sigma=0.1, lr=0.1), fresh)
    for p, q in zip(params, fresh):
        assert torch.equal(p.detach(), q.detach())


def run_steps(opt, sched, params, steps, start=0):
    for s in range(start, start + steps):
        target = torch.full((1,), 0.1 * s)

        def closure():
            opt.zero_grad()
            loss = quartic(params) + (params[1].sum() - target).pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        sched.step()


@pytest.mark.parametrize("name", ["NSO", "SAM", "RSAM", "WPSGD", "BSAM"])
def test_a_resumed_run_is_bitwise_the_uninterrupted_one(name, tmp_path):
    def build(params):
        kwargs = dict(lr=0.02, momentum=0.9, seed=11)
        opt = {"BSAM": lambda: optim.BSAM(params, lr=0.02, train_size=100, seed=11),
               "NSO": lambda: optim.NSO(params, torch.optim.SGD, sigma=0.05, k=2, **kwargs),
               "SAM": lambda: optim.SAM(params, torch.optim.SGD, rho=0.05, **kwargs),
               "RSAM": lambda: optim.RSAM(params, torch.optim.SGD, rho=0.05, **kwargs),
               "WPSGD": lambda: optim.WPSGD(params, torch.optim.SGD, sigma=0.05, **kwargs)}[name]()
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)

    straight = make_params()
    opt, sched = build(straight)
    run_steps(opt, sched, straight, 6)

    first = make_params()
    opt, sched = build(first)
    run_steps(opt, sched, first, 3)
    torch.save({"params": [p.detach() for p in first], "opt": opt.state_dict(), "sched": sched.state_dict()},
               tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt")
    resumed = [w.clone().requires_grad_() for w in saved["params"]]
    opt, sched = build(resumed)
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    run_steps(opt, sched, resumed, 3, start=3)
    for a, b in zip(resumed, straight):
        assert torch.equal(a.detach(), b.detach())
    # A foreign state_dict is refused with the reason.
    with pytest.raises(flatmin.Error, match="'sgd'|not a flatmin optimizer's state_dict"):
        opt.load_state_dict(torch.optim.SGD(resumed, lr=0.1).state_dict())
    other = optim.USAM(resumed, torch.optim.SGD, lr=0.1) if name != "USAM" else None
    with pytest.raises(flatmin.Error, match="state_dict is 'usam'"):
        opt.load_state_dict(other.state_dict())


@pytest.mark.parametrize("name", ["NSO", "SAM"])
def test_a_closure_accumulating_two_micro_batches_takes_the_whole_batchs_step(name):
    torch.manual_seed(0)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))

    def build():
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        cls = optim.NSO if name == "NSO" else optim.SAM
        extra = dict(sigma=0.05, k=2) if name == "NSO" else dict(rho=0.05)
        return model, cls(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, seed=2, **extra)

    whole, opt_whole = build()
    parts, opt_parts = build()
    for _ in range(3):
        def closure_whole():
            opt_whole.zero_grad()
            loss = torch.nn.functional.cross_entropy(whole(x), y)
            loss.backward()
            return loss

        def closure_parts():
            opt_parts.zero_grad()
            total = 0
            for xs, ys in ((x[:16], y[:16]), (x[16:], y[16:])):
                loss = torch.nn.functional.cross_entropy(parts(xs), ys) / 2
                loss.backward()
                total = total + loss.detach()
            return total

        opt_whole.step(closure_whole)
        opt_parts.step(closure_parts)
    for a, b in zip(whole.parameters(), parts.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bsam_steps_follow_its_rule_with_the_learning_rate_from_the_group():
    # bSAM's rule (ALGORITHMS.md; tests/optim/test_sam.cpp's BsamReference): θ = w + z/√(N·s); g = ∇f(θ);
    # ŵ = w + ρ·g/s; m ← β1·m + (1−β1)·(∇f(ŵ) + δ·w); w ← w − α·m/s; s ← β2·s + (1−β2)·(√s·|g| + γ + δ).
    torch.manual_seed(3)
    w = torch.randn(7).requires_grad_()
    N, rho, prior, gamma, s0, b1, b2, seed = 50, 0.05, 10.0, 0.1, 2.0, 0.8, 0.9, 3
    opt = optim.BSAM([w], lr=0.3, train_size=N, rho=rho, prior_precision=prior, damping=gamma, init_precision=s0,
                     beta1=b1, beta2=b2, seed=seed)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    ref_w, s, m, delta = w.detach().clone(), torch.full((7,), s0), torch.zeros(7), prior / N
    for t in range(3):
        lr = opt.param_groups[0]["lr"]
        seen = []

        def closure():
            opt.zero_grad()
            seen.append(w.detach().clone())
            loss = quartic([w])
            loss.backward()
            return loss

        opt.step(closure)
        sched.step()
        z = flatmin.noise([7], "gaussian", 1.0, seed, t, 0, 0)
        theta = ref_w + z / (N * s).sqrt()
        g = quartic_grad(theta)
        point = ref_w + rho * g / s
        m = b1 * m + (1 - b1) * (quartic_grad(point) + delta * ref_w)
        ref_w = ref_w - lr * m / s
        s = b2 * s + (1 - b2) * (s.sqrt() * g.abs() + gamma + delta)
        torch.testing.assert_close(seen[0], theta, **TOL)
        torch.testing.assert_close(seen[1], point, **TOL)
        torch.testing.assert_close(w.detach(), ref_w, **TOL)
    with pytest.raises(TypeError, match="train_size"):
        optim.BSAM([w], lr=0.1)
    with pytest.raises(flatmin.Error, match="prior mean 'pretrained'"):
        optim.BSAM([w], lr=0.1, train_size=10, prior_mean="pretrained")


def test_a_parameter_group_may_set_its_own_sigma_or_rho():
    params = make_params()
    w0 = [p.detach().clone() for p in params]
    # NSO: the first tensor's noise has std 0.3, the second the optimizer's 0.1.
    opt = optim.NSO([{"params": [params[0]], "sigma": 0.3}, {"params": [params[1]]}], torch.optim.SGD, sigma=0.1,
                    seed=5, lr=0.1)
    _, seen = one_step(opt, params)
    for i, sigma in enumerate((0.3, 0.1)):
        u = flatmin.noise(list(w0[i].shape), "gaussian", sigma, 5, 0, 0, i)
        torch.testing.assert_close(seen[0][i], w0[i] + u, **TOL)
    # SAM: ε_j = ρ_j·g_j/‖g‖ with the norm over every tensor; a group's ρ changed between steps counts.
    params = make_params()
    w0 = [p.detach().clone() for p in params]
    opt = optim.SAM([{"params": [params[0]]}, {"params": [params[1]], "rho": 0.0}], torch.optim.SGD, rho=0.1, lr=0.1)
    _, seen = one_step(opt, params)
    g0 = [quartic_grad(w) for w in w0]
    scale = 0.1 / (global_norm(g0) + 1e-12)
    torch.testing.assert_close(seen[1][0], w0[0] + scale * g0[0], **TOL)
    torch.testing.assert_close(seen[1][1], w0[1], **TOL)  # ρ = 0 for this group: not moved
    opt.param_groups[1]["rho"] = 0.2
    w1 = [p.detach().clone() for p in params]
    _, seen = one_step(opt, params)
    g1 = [quartic_grad(w) for w in w1]
    scale = 0.1 / (global_norm(g1) + 1e-12)
    torch.testing.assert_close(seen[1][1], w1[1] + 2 * scale * g1[1], **TOL)
    with pytest.raises(flatmin.Error, match="'rsam' has one size for all parameters"):
        one_step(optim.RSAM([{"params": [params[0]], "rho": 0.2}, {"params": [params[1]]}], torch.optim.SGD, lr=0.1),
                 params)


# ---------------------------------------------------------------- mixed precision

def _net_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


def _train(name, steps=3, loss_scale=1.0, scale_in_closure=1.0, autocast=False, **options):
    model, x, y = _net_and_data()
    params = list(model.parameters())
    if name == "bsam":
        opt = optim.BSAM(params, lr=0.1, train_size=100, seed=4, loss_scale=loss_scale, **options)
    else:
        cls = {"nso": optim.NSO, "sam": optim.SAM, "usam": optim.USAM, "crsam": optim.CRSAM}[name]
        opt = cls(params, torch.optim.SGD, lr=0.1, momentum=0.9, seed=4, loss_scale=loss_scale, **options)
    losses = []
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            (loss * scale_in_closure).backward()
            return loss * scale_in_closure
        losses.append(float(opt.step(closure)))
    return [p.detach().clone() for p in params], losses, opt


@pytest.mark.parametrize("name", ["nso", "sam", "usam", "crsam", "bsam"])
def test_a_power_of_two_loss_scale_gives_the_unscaled_step_bitwise(name):
    # USAM's ascent ρ·g and bSAM's ε = ρ·g/s read the gradient's size: they see the true one, unscaled once.
    plain, plain_losses, _ = _train(name, max_grad_norm=0.5)
    scaled, scaled_losses, opt = _train(name, loss_scale=1024.0, scale_in_closure=1024.0, max_grad_norm=0.5)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert scaled_losses == plain_losses  # the true losses are returned
    assert opt.loss_scale == 1024.0 and not opt.skipped


def test_an_overflowed_scaled_step_is_skipped_and_the_scale_can_be_lowered():
    model, x, y = _net_and_data()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    opt = optim.SAM(params, torch.optim.SGD, lr=0.1, loss_scale=2.0 ** 20)

    def overflowing():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) * float("inf")
        loss.backward()
        return loss

    opt.step(overflowing)
    assert opt.skipped
    for a, b in zip(before, params):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    opt.loss_scale = 2.0 ** 10
    assert opt.loss_scale == 2.0 ** 10
    with pytest.raises(flatmin.Error, match="loss_scale must be a positive number"):
        opt.loss_scale = 0


@pytest.mark.parametrize("name", ["nso", "sam"])
def test_bf16_autocast_inside_the_closure_takes_the_fp32_step_to_bf16_precision(name):
    fp32, _, _ = _train(name, steps=1)
    bf16, _, _ = _train(name, steps=1, autocast=True)
    start, _, _ = _train(name, steps=0)
    for w0, a, b in zip(start, fp32, bf16):
        assert b.dtype == torch.float32  # weights, gradients and the combination stay fp32
        # bf16 keeps 8 bits of mantissa: the update agrees to a few percent of its size
        assert float((b - a).norm()) <= 0.05 * float((a - w0).norm()) + 1e-6

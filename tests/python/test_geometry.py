"""flatmin.geometry on any PyTorch model: the Hutchinson trace and Lanczos eigenvalues against the exact
Hessian from torch.autograd.functional.hessian, batches weighted by their size, parameter selection, and the
model's modes and buffers left as found."""
import pytest
import torch
import torch.nn.functional as F

import flatmin
from flatmin import geometry


def tiny_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    return model, x, y


def loss_fn(m, batch):
    return F.cross_entropy(m(batch[0]), batch[1])


def exact_hessian(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = flat[i:i + s.numel()].view(s)
            i += s.numel()
        return F.cross_entropy(torch.nn.utils.stateless.functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(f, flat0)


def test_trace_and_eigenvalues_match_the_exact_hessian():
    model, x, y = tiny_problem()
    h = exact_hessian(model, x, y)
    t = geometry.hessian_trace(model, loss_fn, (x, y), tol=0.01, max_probes=20000, seed=1)
    exact = float(torch.trace(h))
    assert abs(t.value - exact) <= 2 * t.stderr, (t, exact)
    assert t.converged and t.hvps == t.probes
    assert sum(v for v, _ in t.per_layer.values()) == pytest.approx(t.value, rel=1e-12)
    e = geometry.top_eigenvalues(model, loss_fn, (x, y), k=3, tol=1e-8)
    want = torch.linalg.eigvalsh(h).flip(0)[:3]
    for got, w in zip(e.values, want.tolist()):
        assert got == pytest.approx(w, rel=1e-4)


def test_batches_are_weighted_by_their_size():
    model, x, y = tiny_problem()
    whole = geometry.hessian_trace(model, loss_fn, (x, y), tol=0.05, seed=3)
    split = geometry.hessian_trace(model, loss_fn, [(x[:7], y[:7]), (x[7:], y[7:])], tol=0.05, seed=3)
    # The same function and the same probes: the same estimate up to summation order.
    assert split.value == pytest.approx(whole.value, rel=1e-10)
    assert split.probes == whole.probes


def test_a_parameter_selection_measures_its_diagonal_block():
    model, x, y = tiny_problem()
    h = exact_hessian(model, x, y)
    t = geometry.hessian_trace(model, loss_fn, (x, y), tol=0.01, max_probes=20000, seed=2, parameters="2.*")
    first_layer = sum(p.numel() for p in model[0].parameters())
    block = float(torch.diagonal(h)[first_layer:].sum())
    assert set(t.per_layer) == {"2.weight", "2.bias"}
    assert abs(t.value - block) <= 2 * t.stderr
    with pytest.raises(flatmin.Error, match="no trainable parameter selected"):
        geometry.hessian_trace(model, loss_fn, (x, y), parameters="nothing.*")


def test_modes_and_buffers_are_left_as_found():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    model.train()
    model[1].eval()  # a mixed state, as a user might leave it
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    before = [b.clone() for b in model.buffers()]
    for mode in ("eval", "train"):
        geometry.hessian_trace(model, loss_fn, (x, y), tol=0.2, max_probes=20, mode=mode)
        geometry.top_eigenvalues(model, loss_fn, (x, y), k=1, max_iterations=10, mode=mode)
    assert model.training and not model[1].training and model[0].training
    for a, b in zip(before, model.buffers()):
        assert torch.equal(a, b)
    # Train mode measures another function (batch statistics): another trace.
    ev = geometry.hessian_trace(model, loss_fn, (x, y), tol=0.02, max_probes=2000, seed=0)
    tr = geometry.hessian_trace(model, loss_fn, (x, y), tol=0.02, max_probes=2000, seed=0, mode="train")
    assert ev.value != tr.value


def test_bad_losses_and_inputs_are_one_line_errors():
    model, x, y = tiny_problem()
    with pytest.raises(flatmin.Error, match="must be a scalar"):
        geometry.hessian_trace(model, lambda m, b: F.cross_entropy(m(b[0]), b[1], reduction="none"), (x, y))
    with pytest.raises(flatmin.Error, match="returned float, not a loss tensor"):
        geometry.hessian_trace(model, lambda m, b: 1.0, (x, y))
    with pytest.raises(flatmin.Error, match="mode 'test'"):
        geometry.hessian_trace(model, loss_fn, (x, y), mode="test")
    with pytest.raises(flatmin.Error, match="no batches"):
        geometry.hessian_trace(model, loss_fn, [])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        geometry.hessian_trace(lambda v: v, loss_fn, (x, y))
    with pytest.raises(ZeroDivisionError):  # the loss function's own exception, as it was
        geometry.hessian_trace(model, lambda m, b: 1 / 0, (x, y))


def test_density_gap_and_normalized_trace_against_exact_values():
    model, x, y = tiny_problem()
    h = exact_hessian(model, x, y)
    eig = torch.linalg.eigvalsh(h)
    d = geometry.spectral_density(model, loss_fn, (x, y), runs=4, iterations=43, seed=0)
    assert d.mass == pytest.approx(1.0, abs=1e-3)
    for run in d.nodes:  # Ritz values lie inside the spectrum
        assert min(run) >= float(eig[0]) - 1e-8 and max(run) <= float(eig[-1]) + 1e-8
    assert d.trace_estimate == pytest.approx(float(eig.sum()), rel=0.3)  # 4 Gaussian starts: a rough estimate

    # On a quadratic f(w) = ½wᵀAw the antithetic gap of one draw is exactly ½UᵀAU: its mean is σ²/2·Tr A.
    torch.manual_seed(4)
    m = torch.randn(6, 6, dtype=torch.float64)
    a = m @ m.T + torch.eye(6, dtype=torch.float64)
    quad = torch.nn.Linear(6, 1, bias=False).double()
    qloss = lambda mod, batch: 0.5 * (mod.weight @ a @ mod.weight.T).squeeze()
    g = geometry.noise_stability_gap(quad, qloss, (torch.zeros(1),), sigmas=[0.01, 0.1], draws=2000,
                                     trace=float(torch.trace(a)))
    for row in g.rows:
        assert row.predicted == pytest.approx(row.sigma ** 2 / 2 * float(torch.trace(a)))
        assert abs(row.gap - row.predicted) <= 4 * row.gap_stderr

    c = geometry.normalized_trace(model, loss_fn, (x, y), tol=0.02, seed=1)
    model.zero_grad()
    loss_fn(model, (x, y)).backward()
    grad_norm = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm().item()
    assert c.grad_norm == pytest.approx(grad_norm, rel=1e-10)
    assert c.value == pytest.approx(c.trace / grad_norm ** 2, rel=1e-12)


def test_pac_bayes_from_exact_per_example_traces():
    model, x, y = tiny_problem()
    examples = [(x[i:i + 1], y[i:i + 1]) for i in range(8)]
    exact = [float(torch.trace(exact_hessian(model, ex[0], ex[1]))) for ex in examples]
    torch.manual_seed(1)
    reference = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    radius = float(torch.cat([(p - q).reshape(-1) for p, q in zip(model.parameters(), reference.parameters())]).norm())
    r = geometry.pac_bayes(model, loss_fn, examples, reference=reference, n=1000, train_loss=0.5, test_loss=0.7,
                           probes=40, refine_top=8, refine_probes=400, seed=3)
    # Every example refined: the max estimate is the exact max within 3 of its standard errors.
    assert abs(r.alpha_max - max(exact)) <= 3 * r.alpha_max_stderr + 1e-12
    assert abs(r.alpha_mean - sum(exact) / len(exact)) <= 3 * r.alpha_mean_stderr + 1e-12
    assert r.radius == pytest.approx(radius, rel=1e-12)
    with torch.no_grad():
        c = max(float(loss_fn(model, ex)) for ex in examples)
    assert r.loss_bound == pytest.approx(c)
    assert r.bound_alpha_max == pytest.approx(0.5 + (c * r.alpha_max * radius ** 2 / 1000) ** 0.5, rel=1e-12)
    assert r.observed_gap == pytest.approx(0.2)
    with pytest.raises(flatmin.Error, match="reference has no parameter '0.weight'"):
        geometry.pac_bayes(model, loss_fn, examples, reference={}, n=10, train_loss=0.1)

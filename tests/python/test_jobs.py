"""flatmin.train is `flatmin train`: the same options and checks, the same files and weights; a stopped run
resumes bitwise. And a Python loop driving flatmin.optim with a CLI run's seed, data order and options ends at
the CLI run's weights."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import flatmin

CLI = os.environ.get("FLATMIN_CLI", "")
SMALL = dict(epochs=2, per_class=20, classes=[0, 1, 2], val_size=30, test_size=60, train_eval_size=30, width=16,
             progress="quiet")


def _cli_args(options):
    args = []
    for key, value in options.items():
        args += ["--" + key.replace("_", "-"), ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return args


def _weights(run):
    return {name: p.detach().clone() for name, p in flatmin.load(run).network.named_parameters()}


def _assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


@pytest.fixture(scope="module")
def python_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs") / "py"
    return flatmin.train(method="sam", seed=3, out=out, **SMALL)


def test_train_writes_the_clis_run_with_the_clis_weights(python_run, tmp_path):
    if not CLI:
        pytest.skip("FLATMIN_CLI (the flatmin executable) not set")
    cli_out = tmp_path / "cli"
    subprocess.run([CLI, "train", "--method", "sam", "--seed", "3", "--out", str(cli_out)] + _cli_args(SMALL),
                   check=True)
    _assert_same_weights(_weights(python_run.out), _weights(cli_out))
    cli_summary = json.loads((cli_out / "summary.json").read_text())
    for key in ("final_test_loss", "final_train_loss", "steps", "gradient_evaluations"):
        assert python_run.summary[key] == cli_summary[key], key
    for name in ("config.json", "metrics.csv", "metrics.jsonl", "summary.json", "model.ckpt"):
        assert (python_run.out and os.path.isfile(os.path.join(python_run.out, name))), name
    assert python_run.metrics()["epoch"] == [1, 2]
    assert python_run.model().config["method"]["name"] == "sam"


def test_train_restores_the_callers_threads(python_run):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        flatmin.train(method="sgd", epochs=1, per_class=5, classes=[0, 1], val_size=10, test_size=20, width=8,
                      progress="quiet", no_save_model=True, no_checkpoints=True, out=os.path.join(python_run.out, "t"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_stopped_train_resumes_to_the_uninterrupted_weights(python_run, tmp_path):
    out = tmp_path / "stopped"
    script = ("import flatmin, sys\n"
              "try:\n"
              f"    flatmin.train(method='sam', seed=3, out={str(out)!r}, **{SMALL!r})\n"
              "except KeyboardInterrupt as e:\n"
              "    print(e); sys.exit(7)\n")
    env = dict(os.environ, FLATMIN_STOP_AT="step@1")  # SIGTERM after the first of its two steps
    stopped = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert stopped.returncode == 7, stopped.stdout + stopped.stderr
    assert "interrupted (SIGTERM)" in stopped.stdout and f"flatmin.train(resume={str(out)!r})" in stopped.stdout
    resumed = flatmin.train(resume=out, progress="quiet")
    assert resumed.summary["resumed"] is True
    _assert_same_weights(_weights(out), _weights(python_run.out))


def test_train_rejects_bad_options_with_one_line(tmp_path):
    with pytest.raises(TypeError, match="unexpected option 'sigmaa'"):
        flatmin.train(sigmaa=0.1)
    with pytest.raises(TypeError, match="augment is a flag"):
        flatmin.train(augment=1)
    with pytest.raises(flatmin.Error, match="--sigma: must be >= 0, got -1"):
        flatmin.train(sigma=-1)
    with pytest.raises(flatmin.Error, match="--method: .*not in"):
        flatmin.train(method="adam-sam")
    with pytest.raises(flatmin.Error, match="--reset-head needs --init"):
        flatmin.train(reset_head=True)
    with pytest.raises(flatmin.Error, match="cannot be combined with --resume"):
        flatmin.train(resume=tmp_path, sigma=0.1)
    with pytest.raises(flatmin.Error, match="no checkpoints/ directory"):
        flatmin.train(resume=tmp_path)


# ---------------------------------------------------------------- a Python loop at a CLI run's weights

N, CLASSES, SIZE, BATCH, EPOCHS, SEED = 48, 3, 6, 16, 2, 5


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(SIZE * SIZE, 12)
        self.fc2 = torch.nn.Linear(12, CLASSES)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture(scope="module")
def tensor_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tensors")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", N), ("test", 24)):
        torch.save({"x": torch.rand(n, 1, SIZE, SIZE, generator=g), "y": torch.randint(0, CLASSES, (n,), generator=g)},
                   str(d / f"{split}.pt"))
    torch.manual_seed(0)
    model = Mlp()
    torch.jit.script(model).save(str(d / "mlp.pt"))
    return d


def _python_optimizer(method, params):
    seed = flatmin.run_seeds(SEED)["noise"]
    sgd = dict(lr=0.05, momentum=0.9)
    if method == "nso":
        return flatmin.optim.NSO(params, torch.optim.SGD, sigma=0.01, k=2, seed=seed, **sgd)
    if method == "sam":
        return flatmin.optim.SAM(params, torch.optim.SGD, rho=0.05, seed=seed, **sgd)
    if method == "crsam":
        return flatmin.optim.CRSAM(params, torch.optim.SGD, rho=0.1, alpha=0.1, beta=0.01, seed=seed, **sgd)
    return flatmin.optim.BSAM(params, lr=0.5, train_size=N, seed=seed)


@pytest.mark.parametrize("method", ["nso", "sam", "crsam", "bsam"])
def test_a_python_loop_ends_at_the_cli_runs_weights(method, tensor_data, tmp_path):
    if not CLI:
        pytest.skip("FLATMIN_CLI (the flatmin executable) not set")
    out = tmp_path / "cli"
    options = ["--model-file", str(tensor_data / "mlp.pt"), "--dataset", "tensors", "--data-dir", str(tensor_data),
               "--val-size", "0", "--no-normalize", "--lr-schedule", "constant", "--batch-size", str(BATCH),
               "--epochs", str(EPOCHS), "--seed", str(SEED), "--method", method, "--threads", "1",
               "--progress", "quiet", "--out", str(out)]
    options += ["--k", "2"] if method == "nso" else []
    subprocess.run([CLI, "train"] + options, check=True)

    # The same start (the script's weights), data order (the shuffle seed's permutations), noise and rule.
    model = torch.jit.load(str(tensor_data / "mlp.pt"))
    data = torch.load(str(tensor_data / "train.pt"))
    x, y = data["x"], data["y"]
    opt = _python_optimizer(method, list(model.parameters()))
    order_generator = torch.Generator().manual_seed(flatmin.run_seeds(SEED)["shuffle"])
    for _ in range(EPOCHS):
        order = torch.randperm(N, generator=order_generator)
        for begin in range(0, N, BATCH):
            idx = order[begin:begin + BATCH]

            def closure(xb=x[idx], yb=y[idx]):
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                return loss

            opt.step(closure)
    ours = {name: p.detach() for name, p in model.named_parameters()}
    _assert_same_weights(ours, _weights(out))


# ---------------------------------------------------------------- flatmin.measure is flatmin geometry

def test_measure_gives_the_clis_geometry(python_run, tmp_path):
    options = dict(measures=["grad", "trace", "eigen", "pac-bayes"], examples=40, trace_tol=0.05, top_k=2,
                   pac_examples=10, pac_probes=4, seed=1, progress="quiet")
    ours = flatmin.measure(python_run.out, out=tmp_path / "py.json", **options)
    assert json.loads((tmp_path / "py.json").read_text()) == ours
    assert ours["trace"]["probes"] >= 10 and ours["pac_bayes"]["n"] == 60
    if not CLI:
        pytest.skip("FLATMIN_CLI (the flatmin executable) not set")
    subprocess.run([CLI, "geometry", "--checkpoint", python_run.out, "--out", str(tmp_path / "cli.json")] +
                   _cli_args(options), check=True)
    cli = json.loads((tmp_path / "cli.json").read_text())
    assert ours["trace"]["estimate"] == cli["trace"]["estimate"]
    assert ours["eigenvalues"]["values"] == cli["eigenvalues"]["values"]
    assert ours["pac_bayes"]["bound_alpha_max"] == cli["pac_bayes"]["bound_alpha_max"]


def test_measure_rejects_bad_options_with_one_line(python_run, tmp_path):
    with pytest.raises(TypeError, match="unexpected option 'tracetol'"):
        flatmin.measure(python_run.out, tracetol=0.1)
    with pytest.raises(flatmin.Error, match="--measures: .*not in"):
        flatmin.measure(python_run.out, measures=["curvature"])
    with pytest.raises(flatmin.Error, match="nothing-here"):
        flatmin.measure(tmp_path / "nothing-here")


def test_sensing_and_landscape_are_the_clis(python_run, tmp_path):
    r = flatmin.sensing(method="nso", sigma=0.01, dimension=6, rank=2, measurements=40, test_measurements=20,
                        steps=30, log_every=10, lr=1e-3, float64=True, progress="quiet", out=tmp_path / "s")
    assert r.summary["steps"] == 30 and r.summary["extra"]["kappa"] > 0
    out = flatmin.landscape([python_run.out], points=5, examples=20, formats=["svg"], progress="quiet",
                            out=tmp_path / "l")
    with open(os.path.join(out, "landscape.csv")) as f:
        assert len(f.read().splitlines()) == 1 + 5
    if CLI:
        cli = tmp_path / "s-cli"
        subprocess.run([CLI, "sensing", "--method", "nso", "--sigma", "0.01", "--dimension", "6", "--rank", "2",
                        "--measurements", "40", "--test-measurements", "20", "--steps", "30", "--log-every", "10",
                        "--lr", "1e-3", "--float64", "--progress", "quiet", "--out", str(cli)], check=True)
        assert json.loads((cli / "summary.json").read_text())["final_train_loss"] == r.summary["final_train_loss"]
    with pytest.raises(flatmin.Error, match="--dims: .*not in"):
        flatmin.landscape(python_run.out, dims=3)


def test_report_refuses_a_root_that_is_not_a_sweep(tmp_path):
    # (The report's files and figures are tested on a hand-built sweep in tests/reports/test_report.cpp.)
    with pytest.raises(flatmin.Error, match="manifest.json"):
        flatmin.report(tmp_path)

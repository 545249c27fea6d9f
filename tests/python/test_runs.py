"""flatmin.load and flatmin.read_metrics on a run the CLI trained: the loaded module computes the exported
network's logits on standardised inputs, and the metrics are the run's own."""
import json
import os
import subprocess

import pytest
import torch

import flatmin

CLI = os.environ.get("FLATMIN_CLI", "")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not CLI:
        pytest.skip("FLATMIN_CLI (the flatmin executable) not set")
    out = tmp_path_factory.mktemp("run") / "cnn"
    subprocess.run([CLI, "train", "--model", "cnn", "--width", "4", "--method", "sam", "--epochs", "2", "--per-class",
                    "10", "--val-size", "20", "--test-size", "50", "--train-eval-size", "20", "--progress", "quiet",
                    "--out", str(out)], check=True)
    return out


def test_load_gives_the_exported_network_behind_the_runs_standardisation(run, tmp_path):
    model = flatmin.load(run)
    assert model.name == "cnn" and model.epoch == 2 and model.input_shape == (1, 28, 28)
    assert model.config["method"]["name"] == "sam"
    subprocess.run([CLI, "export", str(run), "--torchscript", str(tmp_path / "m.pt")], check=True,
                   stdout=subprocess.DEVNULL)
    exported = torch.jit.load(str(tmp_path / "m.pt"))
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    x = torch.rand(6, 1, 28, 28)
    mean = torch.tensor(meta["normalize"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(meta["normalize"]["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), exported((x - mean) / std), rtol=0, atol=0)
    assert flatmin.load(run / "model.ckpt").checksum == model.checksum
    with pytest.raises(flatmin.Error, match="nothing-here"):
        flatmin.load(tmp_path / "nothing-here")


def test_read_metrics_gives_the_runs_columns(run):
    m = flatmin.read_metrics(run)
    summary = json.loads((run / "summary.json").read_text())
    assert m["epoch"] == [1, 2]
    assert m["test_acc"][-1] == pytest.approx(summary["final_test_acc"])
    with pytest.raises(flatmin.Error, match="no metrics.csv"):
        flatmin.read_metrics(run / "checkpoints")

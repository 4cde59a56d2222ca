"""On a CUDA machine: training, precision, channels_last, compile, resume, eval, predict and export run on the GPU,
and a GPU checkpoint works on the CPU. Skipped where there is no GPU (CI has none); run them on one with
`pytest tests/test_cuda.py`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from tests.helpers import run_dirs, write_idx_folder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def train(cli, write_config, tmp_path, name, *overrides, **changes):
    path = write_config(f"{name}.yaml", device="cuda", **changes)
    result = cli("train", path, *overrides, "--runs-dir", tmp_path / name)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / name)
    return run, json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("precision, expected", [("auto", "bf16"), ("fp16", "fp16"), ("fp32", "fp32")])
def test_mlp_trains_on_cuda_in_each_precision_and_its_checkpoint_evaluates_on_cuda_and_cpu(
        cli, write_config, tmp_path, precision, expected):
    run, summary = train(cli, write_config, tmp_path, precision, epochs=30, precision=precision,
                         optimizer={"type": "adam", "lr": 0.01})
    assert summary["speed"]["precision"] == expected
    assert summary["test"]["accuracy"] > 0.8  # learned: chance is 0.33
    best = run / "checkpoints" / "best.pth"
    for device in ("cuda", "cpu"):
        result = cli("eval", best, "--json", "--device", device)
        assert result.exit_code == 0, result.output
        # the same precision is used again, so the GPU's own result comes back; the CPU's within bf16 rounding
        accuracy = json.loads(result.stdout)["metrics"]["accuracy"]
        tolerance = 0.0 if device == "cuda" else 0.05
        assert abs(accuracy - summary["test"]["accuracy"]) <= tolerance


def test_cnn_on_cuda_uses_channels_last_and_bf16_and_predicts(cli, write_config, tmp_path):
    write_idx_folder(tmp_path / "digits", n_train=300, n_test=100)
    run, summary = train(cli, write_config, tmp_path, "cnn", "--data-dir", tmp_path, epochs=6,
                         data={"type": "idx", "path": "digits"}, model={"type": "cnn"},
                         optimizer={"type": "adam", "lr": 0.003}, batch_size=32)
    assert summary["speed"] == {**summary["speed"], "precision": "bf16", "channels_last": True}
    assert summary["test"]["accuracy"] > 0.8
    out = tmp_path / "p.csv"
    result = cli("predict", run / "checkpoints" / "best.pth", tmp_path / "digits" / "t10k-images-idx3-ubyte.gz",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert (pd.read_csv(out)["prediction"].astype(str) ==
            pd.read_csv(run / "predictions.csv")["prediction"].astype(str)).mean() >= 0.98


def test_resume_on_cuda_continues_the_run(cli, write_config, tmp_path):
    run, _ = train(cli, write_config, tmp_path, "resumed", "epochs=4", precision="fp32")
    assert cli("train", "--resume", run, "epochs=8").exit_code == 0
    straight, _ = train(cli, write_config, tmp_path, "straight", "epochs=8", precision="fp32")
    a, b = pd.read_csv(run / "metrics.csv"), pd.read_csv(straight / "metrics.csv")
    for column in ("train_loss", "val_loss", "val_accuracy"):
        assert a[column].tolist() == pytest.approx(b[column].tolist(), rel=1e-5, abs=1e-6)


def test_compile_and_fp16_loss_scaling_on_cuda(cli, write_config, tmp_path):
    run, summary = train(cli, write_config, tmp_path, "compiled", epochs=20, compile=True, precision="fp16",
                         optimizer={"type": "adam", "lr": 0.01})
    assert summary["speed"]["compile"] is True and summary["seconds"]["compile"] > 0
    assert summary["test"]["accuracy"] > 0.8
    result = cli("export", run / "checkpoints" / "best.pth", "--format", "exported_program")
    assert result.exit_code == 0, result.output

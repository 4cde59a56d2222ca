"""Opt-in speed: what compile and precision resolve to, a real compiled run, its fallback, and the record."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from nnrun.checkpoints import load_checkpoint
from nnrun.evaluation import evaluate
from nnrun.inference import restore
from nnrun.speed import Speed, compile_problem
from tests.helpers import ROOT, experiment, run_dirs

CPU = torch.device("cpu")


def test_the_cpu_computes_in_fp32_and_says_so_when_asked_for_less():
    assert Speed.resolve(compile=False, precision="auto", device=CPU, images=True) == (Speed(), [])
    speed, notes = Speed.resolve(compile=False, precision="bf16", device=CPU, images=False)
    assert speed.precision == "fp32" and notes == ["precision bf16 applies on CUDA only, so this cpu run trains in fp32"]


def test_cuda_keeps_an_explicit_precision_and_puts_images_channels_last():
    speed, notes = Speed.resolve(compile=False, precision="fp16", device=torch.device("cuda"), images=True)
    assert speed == Speed(compile=False, precision="fp16", channels_last=True) and notes == []
    assert Speed.resolve(compile=False, precision="fp32", device=torch.device("cuda"), images=False)[0].channels_last \
        is False


def test_compile_without_a_cpp_compiler_falls_back_before_training(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert "C++ compiler" in compile_problem(CPU)
    speed, notes = Speed.resolve(compile=True, precision="auto", device=CPU, images=False)
    assert speed.compile is False and notes[0].startswith("compile: true falls back to eager mode")


def test_evaluation_returns_float32_outputs():
    exp = experiment()
    loss, output = evaluate(exp.model, exp.data.val, loss_fn=exp.loss_fn)
    assert output.dtype == torch.float32 and output.shape == (len(exp.data.val), 3) and loss > 0


def test_a_compiled_run_trains_like_eager_and_reports_its_compile_time(cli, write_config, tmp_path):
    changes = {"epochs": 3, "threads": 1, "optimizer": {"type": "adam", "lr": 0.01}}
    for mode in ("eager", "compiled"):
        config = write_config(f"{mode}.yaml", **changes, compile=mode == "compiled")
        result = cli("train", config, "--runs-dir", tmp_path / mode)
        assert result.exit_code == 0, result.output
    eager, compiled = (run_dirs(tmp_path / mode)[0] for mode in ("eager", "compiled"))
    a, b = (pd.read_csv(run / "metrics.csv") for run in (eager, compiled))
    assert "compile_seconds" in b.columns and "compile_seconds" not in a.columns
    assert b["compile_seconds"][0] > 0 and b["compile_seconds"][0] <= b["epoch_seconds"][0]
    assert a["val_loss"].to_numpy() == pytest.approx(b["val_loss"].to_numpy(), rel=1e-4)
    summary = json.loads((compiled / "summary.json").read_text())
    assert summary["speed"] == {"compile": True, "precision": "fp32", "channels_last": False}
    assert summary["seconds"]["compile"] == pytest.approx(b["compile_seconds"].sum())
    assert load_checkpoint(compiled / "checkpoints" / "best.pth")["speed"]["compile"] is True


def test_a_compiler_that_fails_falls_back_to_eager_with_one_line(write_config, tmp_path):
    config = write_config(epochs=2, threads=1, compile=True)
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "nnrun", "train", str(config), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "compile: true failed" in line]
    assert "so this run trains in eager mode" in line and "Traceback" not in done.stdout + done.stderr
    (run,) = run_dirs(tmp_path / "runs")
    assert len(pd.read_csv(run / "metrics.csv")) == 2


def test_eval_computes_as_the_checkpoint_recorded(cli, write_config, tmp_path):
    assert cli("train", write_config(epochs=2), "--runs-dir", tmp_path / "runs").exit_code == 0
    (run,) = run_dirs(tmp_path / "runs")
    checkpoint = load_checkpoint(run / "checkpoints" / "best.pth")
    assert checkpoint["speed"] == {"compile": False, "precision": "fp32", "channels_last": False}
    restored = restore(run / "checkpoints" / "best.pth", device="cpu")
    assert restored.speed == Speed() and restored.notes == []
    assert Speed.from_dict(None) == Speed()  # a checkpoint from before speed was recorded

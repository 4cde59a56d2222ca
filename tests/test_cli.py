import json
import subprocess
import sys

import pytest
import torch
import yaml

from nnrun.runs import Run
from tests.helpers import CONFIGS, ROOT, run_dirs


def test_train_writes_the_whole_run_folder(cli, write_config, tmp_path):
    result = cli("train", write_config(epochs=3), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    assert run.name.startswith("tiny-") and len(run.name) == len("tiny-YYYYmmdd-HHMMSS")
    for name in ("config.yaml", "metrics.csv", "summary.json", "train.log", "checkpoints/best.pth",
                 "checkpoints/last.pth", "plots/loss.png"):
        assert (run / name).is_file(), name
    assert (run / "plots/loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((run / "summary.json").read_text())
    assert {"best_epoch", "stop_reason", "val", "test", "parameters", "device", "seconds", "versions"} <= set(summary)
    assert summary["parameters"] == 83 and summary["device"] == "cpu"
    assert 0 <= summary["test"]["accuracy"] <= 1
    log = (run / "train.log").read_text()
    assert "epoch 3/3" in log and "test (23 rows)" in log
    # Not a terminal: plain epoch lines on the console too, rate-limited (first and last always); all in train.log.
    shown = [line.split("  ")[0] for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert shown[0] == "epoch 1/3" and shown[-1] == "epoch 3/3"
    assert sum(line.startswith("epoch ") for line in log.splitlines()) == 3


def test_resolved_config_reruns_as_is_with_the_same_metrics(cli, write_config, tmp_path):
    cli("train", write_config(epochs=3), "optimizer.momentum=0.5", "--runs-dir", tmp_path / "a")
    (first,) = run_dirs(tmp_path / "a")
    resolved = yaml.safe_load((first / "config.yaml").read_text())
    assert resolved["optimizer"]["momentum"] == 0.5 and resolved["optimizer"]["weight_decay"] == 0.0
    result = cli("train", first / "config.yaml", "--runs-dir", tmp_path / "b")
    assert result.exit_code == 0, result.output
    (second,) = run_dirs(tmp_path / "b")
    a = json.loads((first / "summary.json").read_text())
    b = json.loads((second / "summary.json").read_text())
    assert a["test"] == b["test"] and a["val"] == b["val"]


def test_name_and_device_options(cli, write_config, tmp_path):
    result = cli("train", write_config(epochs=1), "--runs-dir", tmp_path / "runs", "--name", "custom",
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    assert run.name.startswith("custom-")
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "custom"


def test_runs_never_overwrite_each_other(tmp_path):
    folders = {Run.create(tmp_path, "same").root for _ in range(5)}
    assert len(folders) == 5


def test_check_prints_the_summary_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("check", CONFIGS / "iris_mlp.yaml")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "fc1" in out and "out" in out and "│ total" in out
    assert "83" in out.split("total")[-1]
    assert "(90, 4)" in out  # data shapes: 60% of 150 rows, 4 features
    assert "gradients finite" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["datasets", "models", "losses", "optimizers", "schedulers"])
def test_list_shows_every_entry_with_its_parameters(cli, kind):
    from nnrun.config import REGISTRIES

    result = cli("list", kind)
    assert result.exit_code == 0
    for entry in REGISTRIES[kind]:
        assert entry.name in result.stdout
    if kind == "models":
        assert "hidden: list[int >= 1] = [64]" in result.stdout and "linear" in result.stdout


def test_list_unknown_kind_is_a_usage_error(cli):
    result = cli("list", "modles")
    assert result.exit_code == 2


@pytest.mark.parametrize("yaml_changes, overrides, expected", [
    ({}, ["optimizer.lrr=0.1"], "unknown key 'optimizer.lrr' for optimizer 'sgd' (did you mean 'optimizer.lr'?"),
    ({"optimizer": {"type": "adamm"}}, [], "unknown optimizer 'adamm' (did you mean 'adam'?"),
    ({"model": {"hidden": "ten"}}, [], "model.hidden must be a list of integers, each >= 1, got 'ten' (for example"),
    ({}, ["model.hidden=ten"], "model.hidden must be a list of integers, each >= 1, got 'ten' (for example"),
    ({}, ["epochs5"], "override 'epochs5' must look like key=value"),
    ({"model": {"output_activation": "softmax"}}, [], "applies softmax twice"),
    ({"device": "cuda:7"}, [], "device 'cuda:7'"),
    # issue 11: values that used to pass validation and fail later, or train silently wrong
    ({}, ["model.hidden=[0]"], "model.hidden must be a list of integers, each >= 1, got [0]"),
    ({}, ["optimizer.lr=.nan"], "optimizer.lr must be a number > 0, got nan"),
    ({}, ["optimizer.lr=-1"], "optimizer.lr must be a number > 0, got -1"),
    ({}, ["seed=-1"], "seed must be an integer from 0 to 2**32 - 1, got -1"),
    ({}, ["data.split={train: 0.9, val: 0.9}"], ("data.split fractions add up to 1.8, more than 1, so nothing is "
                                                  "left for test")),
])
def test_user_errors_exit_2_with_one_line_and_no_run_folder(cli, write_config, tmp_path, yaml_changes, overrides,
                                                            expected):
    if yaml_changes.get("device") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    for command in ("train", "check"):
        result = cli(command, write_config(**yaml_changes), *overrides, *(
            ["--runs-dir", tmp_path / "runs"] if command == "train" else []))
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and expected in line
        assert "Traceback" not in result.output
        assert not (tmp_path / "runs").exists()


def test_missing_config_file(cli, tmp_path):
    result = cli("train", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: config file '{tmp_path / 'nope.yaml'}' not found (check the path; configs/ holds examples)"


def test_malformed_yaml(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {type: mlp\nepochs: 3\n")
    result = cli("check", path)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "invalid YAML" in result.stderr


def test_several_problems_give_one_line_each(cli, write_config):
    result = cli("check", write_config(), "epoch=5", "optimizer.type=adamm")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)


def test_help_answers_without_importing_torch():
    code = ("import sys; from typer.testing import CliRunner; from nnrun.cli import app\n"
            "for args in ([], ['--help'], *[[c, '--help'] for c in ('train', 'check', 'list', 'eval', 'predict', 'export', 'plot', 'sweep')]):\n"
            "    r = CliRunner().invoke(app, args); assert r.exit_code in (0, 2), r.output\n"
            "    assert 'Usage' in r.output, r.output\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'optuna' not in sys.modules, 'optuna was imported'\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.stdout.strip() == "ok", result.stderr


def test_a_softmax_hidden_activation_is_warned_about_in_check_and_train(cli, write_config, tmp_path):
    config = write_config(epochs=1, model={"hidden": [8], "activation": "softmax"})
    for result in (cli("check", config), cli("train", config, "--runs-dir", tmp_path / "runs")):
        assert result.exit_code == 0, result.output
        assert "model.activation 'softmax' squashes every hidden layer" in result.stdout

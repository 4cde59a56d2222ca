"""Trials trained together (nnrun.vectorized): each trial's run folder against the same trial trained alone."""

from __future__ import annotations

import csv
import json
import math
import warnings

import pytest
import torch
from typer.testing import CliRunner

from nnrun.checkpoints import load_checkpoint
from nnrun.cli import app
from nnrun.config import validate
from nnrun.console import RunLog
from nnrun.errors import UserError
from nnrun.experiment import build_experiment
from nnrun.optimizers import OPTIMIZERS
from nnrun.runs import Run
from nnrun.threads import ThreadPolicy
from nnrun.training import fit, train_one_epoch
from nnrun.vectorized import _Stack, fit_together, stack_problem, train_together
from tests.helpers import merged, run_dirs

TIME_COLUMNS = {"train_seconds", "epoch_seconds"}
# The product MLP (2-16-8-1) on 1,000 rows: 7 batches an epoch. Early stopping with patience 1 stops the faster
# learning rates at different epochs, and reduce_on_plateau gives each trial an lr that follows its own val_loss.
PRODUCT = {
    "name": "trial", "seed": 0, "device": "cpu", "threads": 1, "epochs": 8, "batch_size": 100,
    "data": {"type": "product", "n_samples": 1000, "split": {"train": 0.7, "val": 0.15, "test": 0.15},
             "scale": "standard", "target_scale": "standard"},
    "model": {"type": "mlp", "hidden": [16, 8]}, "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01},
    "scheduler": {"type": "reduce_on_plateau", "patience": 0, "factor": 0.5},
    "early_stopping": {"monitor": "val_loss", "patience": 1},
}
# Eight learning rates; the last makes the loss infinite in the first epoch. One trial also has weight decay.
LRS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.03, 0.05, 1e6]
WEIGHT_DECAY = {2: 0.01}
DIVERGED = 7


def trial_config(i: int, **changes):
    optimizer = {"type": "adam", "lr": LRS[i], "weight_decay": WEIGHT_DECAY.get(i, 0.0)}
    return validate(merged(PRODUCT, {"name": f"trial{i}", "optimizer": optimizer, **changes}))


def quiet_log(run: Run) -> RunLog:
    return RunLog(run.log_path, quiet_console=True)


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """The eight trials trained together by fit_together, and each trained alone by fit(), as nnrun train does."""
    root = tmp_path_factory.mktemp("vectorized")
    configs = [trial_config(i) for i in range(len(LRS))]
    together = [Run.create(root / "together", cfg.name) for cfg in configs]
    results = fit_together([build_experiment(cfg, data_dir=root) for cfg in configs], together,
                           [quiet_log(run) for run in together])
    alone = []
    for cfg in configs:
        run = Run.create(root / "alone", cfg.name)
        fit(build_experiment(cfg, data_dir=root), run, quiet_log(run))
        alone.append(run)
    return results, together, alone


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """train_together's run folders for two trials (the second diverges), and nnrun train's for the first."""
    root = tmp_path_factory.mktemp("folders")
    configs = [trial_config(5), trial_config(DIVERGED)]
    runs = [Run.create(root / "together", cfg.name) for cfg in configs]
    results = train_together(configs, runs, data_dir=root, log=quiet_log)
    config_file = root / "trial.yaml"
    config_file.write_text(configs[0].to_yaml())
    assert CliRunner().invoke(app, ["train", str(config_file), "--runs-dir", str(root / "alone")]).exit_code == 0
    return results, runs, Run(run_dirs(root / "alone")[0])


def read_rows(run: Run) -> list[dict[str, str]]:
    with open(run.metrics_path, newline="") as f:
        return list(csv.DictReader(f))


def assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert torch.allclose(value, b[name], rtol=1e-5, atol=1e-6), name


def test_every_trial_writes_what_it_writes_alone_within_1e_5(trials):
    results, together, alone = trials
    worst = 0.0
    for i, (run, reference) in enumerate(zip(together, alone, strict=True)):
        rows, expected = read_rows(run), read_rows(reference)
        assert len(rows) == len(expected), f"trial {i}"
        for row, want in zip(rows, expected, strict=True):
            assert row.keys() == want.keys()
            for column in row.keys() - TIME_COLUMNS:
                got, value = float(row[column]), float(want[column])
                worst = max(worst, abs(got - value) / max(abs(value), 1e-8))
                assert math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-8), (i, row["epoch"], column, got, value)
        summary = json.loads(run.summary_path.read_text())
        wanted = json.loads(reference.summary_path.read_text())
        for key in ("stop_reason", "epochs_run", "best_epoch", "rows", "parameters"):
            assert summary[key] == wanted[key], (i, key)
        assert results[i] == summary
        if i == DIVERGED:
            continue
        for name in ("best.pth", "last.pth"):
            got, want = (load_checkpoint(r.root / "checkpoints" / name) for r in (run, reference))
            assert got.keys() == want.keys() and got["epoch"] == want["epoch"]
            assert_weights_close(got["model"], want["model"])
        got, want = (load_checkpoint(r.last_path) for r in (run, reference))
        assert got["optimizer"]["param_groups"] == want["optimizer"]["param_groups"]  # its own lr and weight decay
        assert got["scheduler"].pop("best") == pytest.approx(want["scheduler"].pop("best"), rel=1e-5)
        assert got["scheduler"] == want["scheduler"]  # reduce_on_plateau: its lr followed its own val_loss
        assert got["loop"]["best_epoch"] == want["loop"]["best_epoch"]
        for index, state in want["optimizer"]["state"].items():
            assert_weights_close(got["optimizer"]["state"][index], state)
        assert torch.equal(got["rng"]["shuffle"], want["rng"]["shuffle"])  # the batch order resumes where it was
    print(f"largest relative difference in metrics.csv: {worst:.2e}")


def test_each_trial_stops_at_its_own_epoch(trials):
    results, together, _ = trials
    ran = [json.loads(run.summary_path.read_text())["epochs_run"] for run in together[:DIVERGED]]
    assert len(set(ran)) >= 3 and max(ran) == PRODUCT["epochs"] and min(ran) < PRODUCT["epochs"], ran
    assert {results[i]["stop_reason"] for i in range(DIVERGED)} == {"completed", "early_stopping"}
    lrs = {float(read_rows(run)[-1]["lr"]) for run in together[:DIVERGED]}
    assert len(lrs) == DIVERGED  # reduce_on_plateau followed each trial's own val_loss


def test_a_diverging_trial_stops_alone_and_the_others_train_on(trials):
    results, together, _ = trials
    summary = json.loads(together[DIVERGED].summary_path.read_text())
    assert summary["stop_reason"] == "non_finite_loss" and summary["epochs_run"] == 0
    assert results[DIVERGED] == summary and "train loss became" in summary["stop_detail"]
    assert all(isinstance(result, dict) for result in results)  # the others are equal to alone (test above)


def test_each_folder_ends_as_nnrun_train_leaves_it(folders):
    results, (run, _), alone = folders
    files = {str(p.relative_to(run.root)) for p in run.root.rglob("*")}
    assert files == {str(p.relative_to(alone.root)) for p in alone.root.rglob("*")}
    assert "plots/loss.png" in files and "report.html" in files and "checkpoints/best.pth" in files
    assert run.config_path.read_text() == alone.config_path.read_text()
    assert [row["epoch"] for row in read_rows(run)] == [row["epoch"] for row in read_rows(alone)]
    log = run.log_path.read_text()
    assert log.startswith(f"nnrun train trial5 -> {run.root}") and "epoch 1/8" in log
    assert f"{results[0]['stop_reason']}: {results[0]['stop_detail']}" in log
    assert results[0] == json.loads(run.summary_path.read_text())


def test_a_diverged_trial_fails_with_nnrun_trains_error(folders):
    results, (_, failed), _ = folders
    assert isinstance(results[1], UserError)
    assert str(results[1]) == json.loads(failed.summary_path.read_text())["stop_detail"]
    assert "lower optimizer.lr" in str(results[1]) and "non_finite_loss" in failed.log_path.read_text()


def test_eval_reads_a_stacked_trials_best_checkpoint(folders, cli):
    results, (run, _), _ = folders
    out = run.root / "eval.json"
    result = cli("eval", run.best_path, "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert math.isclose(metrics["rmse"], results[0]["test"]["rmse"], rel_tol=1e-6)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"model": {"hidden": [32, 8]}}, "the trials differ in model.hidden ("),
    ({"model": {"dropout": 0.1}}, "the trials differ in model.dropout ("),
    ({"seed": 1}, "the trials differ in seed, which also sets the data split and the batch order"),
    ({"optimizer": {"type": "adam", "lr": 0.01, "betas": [0.8, 0.999]}}, "the trials differ in optimizer.betas ("),
    ({"epochs": 3, "batch_size": 50}, "the trials differ in batch_size, epochs ("),
])
def test_trials_that_differ_in_more_than_lr_and_weight_decay_are_not_stacked(changes, reason):
    problem = stack_problem([trial_config(0), trial_config(1, **changes)])
    assert problem.startswith(reason), problem
    assert problem.endswith("(stacked trials may differ only in optimizer.lr and optimizer.weight_decay)")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"model": {"batchnorm": True}}, "the model has batch norm, whose running statistics are not stacked"),
    ({"compile": True}, "compile: true, and a stacked model is not compiled"),
])
def test_what_a_stacked_model_cannot_do_is_said(changes, reason):
    assert stack_problem([trial_config(0, **changes), trial_config(1, **changes)]).startswith(reason)


def test_trials_that_differ_in_lr_and_weight_decay_stack():
    assert stack_problem([trial_config(0), trial_config(2), trial_config(5)]) is None
    assert stack_problem([trial_config(0)]) == "a single trial has nothing to be stacked with"


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
@pytest.mark.parametrize("model", [{"hidden": [8]}, {"hidden": [8], "dropout": 0.2}], ids=["matmul", "vmap"])
def test_a_stacked_epoch_is_each_trials_epoch(optimizer, model, tmp_path):
    """Every registered optimizer, per-trial lr and weight decay; with dropout the model runs under vmap, and its
    masks are the ones each trial draws alone."""
    settings = [{"lr": 0.01, "weight_decay": 0.0}, {"lr": 0.03, "weight_decay": 0.1}]
    extra = {"momentum": 0.9, "nesterov": True} if optimizer == "sgd" else {}
    assert_stacked_epochs_match([trial_config(0, model=model, scheduler=None,
                                              optimizer={"type": optimizer, **s, **extra}) for s in settings], tmp_path)


def test_a_classifier_with_log_softmax_output_stacks(tmp_path):
    """NLL: the log-softmax output layer runs on every trial's rows at once, and the loss under vmap."""
    assert_stacked_epochs_match([trial_config(0, data={"type": "iris"}, loss="nll", scheduler=None,
                                              optimizer={"type": "adam", "lr": lr}) for lr in (0.01, 0.05)], tmp_path)


def assert_stacked_epochs_match(configs, tmp_path, epochs: int = 2) -> None:
    """Two epochs of _Stack against train_one_epoch on each trial alone: losses, accuracy, weights, optimizer."""
    assert stack_problem(configs) is None
    exps = [build_experiment(cfg, data_dir=tmp_path) for cfg in configs]
    for exp in exps[1:]:
        exp.train_batches = exps[0].train_batches
    stack = _Stack(exps)
    threads = ThreadPolicy(1, device=torch.device("cpu"), say=lambda _: None)
    stacked = [stack.train_one_epoch(threads=threads) for _ in range(epochs)]
    for i, cfg in enumerate(configs):
        stack.share_state(i, exps[i])
        alone = build_experiment(cfg, data_dir=tmp_path)
        for (losses, accuracies), (loss, accuracy) in zip(stacked, [train_one_epoch(alone) for _ in range(epochs)],
                                                          strict=True):
            assert math.isclose(losses[i], loss, rel_tol=1e-5) and accuracies[i] == accuracy
        assert_weights_close(exps[i].model.state_dict(), alone.model.state_dict())
        got, want = exps[i].optimizer.state_dict(), alone.optimizer.state_dict()
        for index, state in want["state"].items():
            assert_weights_close(got["state"][index], state)


def test_a_trials_training_does_not_depend_on_the_trials_beside_it(tmp_path):
    """Bit for bit, even beside a trial whose weights become NaN: nothing crosses from one trial to another."""
    weights = []
    for beside in ([0.002, 0.004], [0.05, 1e6]):
        configs = [trial_config(0, scheduler=None), *(trial_config(0, scheduler=None, optimizer={"lr": lr})
                                                      for lr in beside)]
        exps = [build_experiment(cfg, data_dir=tmp_path) for cfg in configs]
        for exp in exps[1:]:
            exp.train_batches = exps[0].train_batches
        stack = _Stack(exps)
        losses = [stack.train_one_epoch(threads=ThreadPolicy(1, device=torch.device("cpu"), say=lambda _: None))[0]
                  for _ in range(2)]
        weights.append(stack.weights[0].detach().clone())
    assert not all(math.isfinite(loss) for loss in losses[-1])  # the second stack held a diverged trial
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("scheduler", [{"type": "step", "step_size": 1}, {"type": "onecycle"}], ids=["epoch", "batch"])
def test_stacked_schedulers_step_without_torchs_order_warning(scheduler, tmp_path):
    """Each trial's own optimizer never steps (the stack's does): torch must not warn that its scheduler steps first."""
    configs = [trial_config(i, scheduler=scheduler, epochs=2, early_stopping={"patience": None}) for i in (0, 1)]
    runs = [Run.create(tmp_path, cfg.name) for cfg in configs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = train_together(configs, runs, data_dir=tmp_path, log=quiet_log)
    assert all(isinstance(result, dict) for result in results)
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]

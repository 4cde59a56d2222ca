import csv
import json
import math

import numpy as np
import pytest
import torch

from nnrun.checkpoints import load_checkpoint
from nnrun.data.context import DataContext
from nnrun.data.datasets import DATASETS
from nnrun.metrics import epoch_columns
from nnrun.models import build_model
from tests.helpers import run_dirs

TIME_COLUMNS = {"train_seconds", "epoch_seconds"}


def read_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def train(cli, write_config, tmp_path, *overrides, **changes):
    """Train through the CLI; returns (result, run folder)."""
    runs = tmp_path / "runs"
    before = set(run_dirs(runs)) if runs.exists() else set()
    result = cli("train", write_config(**changes), *overrides, "--runs-dir", runs)
    (new,) = set(run_dirs(runs)) - before
    return result, new


def test_metrics_csv_has_one_flushed_row_per_epoch(cli, write_config, tmp_path):
    result, run = train(cli, write_config, tmp_path, epochs=4)
    assert result.exit_code == 0, result.output
    rows = read_rows(run)
    assert list(rows[0]) == epoch_columns("classification") == [
        "epoch", "lr", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "train_seconds", "epoch_seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(v)) for r in rows for v in r.values())


def test_regression_columns_and_metrics_in_original_units(cli, write_config, tmp_path):
    result, run = train(cli, write_config, tmp_path, epochs=5, data={"type": "diabetes"}, loss="mse",
                        optimizer={"type": "adam", "lr": 0.01})
    assert result.exit_code == 0, result.output
    rows = read_rows(run)
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "val_loss", "val_rmse", "val_mae", "val_r2",
                             "train_seconds", "epoch_seconds"]
    summary = json.loads((run / "summary.json").read_text())

    # Recompute the best epoch's val RMSE and the test RMSE by hand, in the target's own units.
    best = load_checkpoint(run / "checkpoints" / "best.pth")
    model = build_model("mlp", {"hidden": [10]}, in_shape=(10,), out_features=1)
    model.load_state_dict(best["model"])
    model.eval()
    table = DATASETS.build("diabetes", DataContext())
    pre = best["data"]["preprocessing"]
    center, spread = np.array(pre["features"]["center"]), np.array(pre["features"]["spread"])
    mean, std = pre["target"]["mean"][0], pre["target"]["std"][0]
    for split, expected in (("val", float(rows[summary["best_epoch"] - 1]["val_rmse"])),
                            ("test", summary["test"]["rmse"])):
        rows_of = _split_rows(table, split, seed=0)
        x = (table.features.iloc[rows_of].to_numpy() - center) / spread
        with torch.no_grad():
            pred = model(torch.tensor(x, dtype=torch.float32)).numpy()[:, 0] * std + mean
        rmse = float(np.sqrt(np.mean((pred - table.target[rows_of]) ** 2)))
        assert rmse == pytest.approx(expected, rel=1e-4)
        assert rmse > 20  # diabetes scores are in the hundreds: a standardized RMSE would be about 1


def _split_rows(table, split, seed):
    from nnrun.data.splits import split_indices

    return split_indices(len(table.target), val=0.15, test=0.15, seed=seed)[0][split]


def test_test_false_trains_and_validates_only(cli, write_config, tmp_path):
    result, run = train(cli, write_config, tmp_path, "test=false", epochs=2)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"] is None and summary["rows"]["test"] == 23 and summary["best_epoch"]
    assert not (run / "predictions.csv").exists()
    note = f"test: false, so the 23 test rows were not evaluated (test the best weights with: nnrun eval {run}"
    assert note in summary["notes"][-1] and note in " ".join(result.stdout.split())
    assert {p.name for p in (run / "plots").iterdir()} == {"loss.png", "metrics.png", "lr.png"}
    assert "test split not evaluated" in (run / "report.html").read_text()
    assert "test: false" in (run / "config.yaml").read_text()


def test_same_seed_same_metrics_other_seed_other_metrics(cli, write_config, tmp_path):
    runs = [train(cli, write_config, tmp_path, f"seed={seed}", epochs=5,
                  model={"dropout": 0.2, "hidden": [10]})[1] for seed in (3, 3, 4)]
    first, again, other = ([{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in read_rows(run)]
                           for run in runs)
    assert first == again
    assert first != other


@pytest.mark.parametrize("threads", [1, 2])
def test_the_same_config_and_thread_count_give_bit_identical_weights(cli, write_config, tmp_path, threads):
    """The README's determinism promise: a fixed thread count reruns bit for bit, on wide layers too."""
    runs = [train(cli, write_config, tmp_path, f"threads={threads}", epochs=3, data={"type": "digits"},
                  model={"hidden": [256, 128], "dropout": 0.1})[1] for _ in range(2)]
    weights = [load_checkpoint(run / "checkpoints" / "last.pth")["model"] for run in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    rows = [[{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in read_rows(run)] for run in runs]
    assert rows[0] == rows[1]


def test_best_checkpoint_is_the_best_monitored_epoch(cli, write_config, tmp_path):
    _, run = train(cli, write_config, tmp_path, epochs=8)
    summary = json.loads((run / "summary.json").read_text())
    rows = read_rows(run)
    losses = [float(r["val_loss"]) for r in rows]
    assert summary["best_epoch"] == int(np.argmin(losses)) + 1
    assert summary["best_value"] == pytest.approx(min(losses))
    best = load_checkpoint(run / "checkpoints" / "best.pth")
    last = load_checkpoint(run / "checkpoints" / "last.pth")
    assert best["epoch"] == summary["best_epoch"] and last["epoch"] == 8
    assert best["data"]["class_names"] == ["setosa", "versicolor", "virginica"]
    assert best["config"]["model"]["hidden"] == [10]
    assert "optimizer" in last and "rng" in last


def test_early_stopping_stops_after_patience(cli, write_config, tmp_path):
    # lr 1e-9 never improves by min_delta after epoch 1, so patience 2 stops at epoch 3.
    _, run = train(cli, write_config, tmp_path, epochs=50, optimizer={"lr": 1e-9},
                        early_stopping={"patience": 2, "min_delta": 0.01})
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "early_stopping" and summary["epochs_run"] == 3
    assert summary["best_epoch"] == 1 and len(read_rows(run)) == 3


def test_stop_at_threshold(cli, write_config, tmp_path):
    _, run = train(cli, write_config, tmp_path, epochs=200,
                        early_stopping={"monitor": "train_loss", "stop_at": 0.5})
    summary = json.loads((run / "summary.json").read_text())
    losses = [float(r["train_loss"]) for r in read_rows(run)]
    assert summary["stop_reason"] == "stop_at"
    assert losses[-1] <= 0.5 < min(losses[:-1])  # stopped at the first epoch that reached it
    assert "train_loss" in summary["stop_detail"] and "<= stop_at 0.5" in summary["stop_detail"]


def test_diverging_run_stops_with_exit_2_and_keeps_the_last_good_checkpoint(cli, write_config, tmp_path):
    result, run = train(cli, write_config, tmp_path, epochs=30, batch_size="full", loss="mse",
                        data={"type": "make_regression", "scale": "none", "target_scale": "none"},
                        optimizer={"lr": 1.0, "momentum": 0.9})
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "loss became inf" in line and "lower optimizer.lr" in line
    rows = read_rows(run)
    last = load_checkpoint(run / "checkpoints" / "last.pth")
    assert last["epoch"] == len(rows) >= 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "non_finite_loss" and summary["epochs_run"] == len(rows)


def test_full_batch_gradient_descent_takes_one_step_per_epoch(cli, write_config, tmp_path):
    _, run = train(cli, write_config, tmp_path, epochs=3, batch_size="full",
                        scheduler={"type": "onecycle"})
    last = load_checkpoint(run / "checkpoints" / "last.pth")
    assert last["scheduler"]["last_epoch"] == 3  # onecycle steps once per batch: one batch per epoch


def test_a_run_that_diverges_in_its_first_epoch_does_not_claim_a_checkpoint(cli, write_config, tmp_path):
    result, run = train(cli, write_config, tmp_path, epochs=5, batch_size="full", loss="mse",
                        data={"type": "make_regression", "scale": "none", "target_scale": "none"},
                        optimizer={"lr": 1e30})
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "at epoch 1" in line and "no epoch finished, so no checkpoint was written" in line
    assert "last.pth holds" not in line and not (run / "checkpoints" / "last.pth").exists()

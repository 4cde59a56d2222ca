"""`nnrun train --resume`: continuing a run gives exactly the run that was never stopped."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from nnrun.checkpoints import load_checkpoint
from tests.helpers import people, run_dirs

TIME_COLUMNS = {"train_seconds", "epoch_seconds"}
# Dropout, momentum and a step schedule: every kind of state that resume must carry over.
STATEFUL = dict(model={"hidden": [16], "dropout": 0.3}, optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9},
                scheduler={"type": "step", "step_size": 3, "gamma": 0.5}, early_stopping={"patience": 50})


def rows_of(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def assert_same_run(a, b):
    rows_a, rows_b = rows_of(a), rows_of(b)
    assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b] == list(range(1, len(rows_a) + 1))
    for ra, rb in zip(rows_a, rows_b):
        assert ra == pytest.approx(rb, abs=1e-6, rel=0)
    for name in ("last.pth", "best.pth"):
        wa = load_checkpoint(a / "checkpoints" / name)["model"]
        wb = load_checkpoint(b / "checkpoints" / name)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


def straight_run(cli, config, tmp_path, epochs):
    result = cli("train", config, f"epochs={epochs}", "--runs-dir", tmp_path / "straight")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "straight")
    return run


def test_train_4_then_resume_to_10_equals_training_10(cli, write_config, tmp_path):
    config = write_config(epochs=10, **STATEFUL)
    straight = straight_run(cli, config, tmp_path, 10)

    assert cli("train", config, "epochs=4", "--runs-dir", tmp_path / "resumed").exit_code == 0
    (run,) = run_dirs(tmp_path / "resumed")
    assert len(rows_of(run)) == 4
    result = cli("train", "--resume", run, "epochs=10")
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 4 of 10" in result.stdout
    assert run_dirs(tmp_path / "resumed") == [run]  # the same folder
    assert_same_run(straight, run)
    a = json.loads((straight / "summary.json").read_text())
    b = json.loads((run / "summary.json").read_text())
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    assert "epochs: 10" in (run / "config.yaml").read_text()
    # Durations count both sessions, and the record says where the run was resumed.
    assert b["seconds"]["total"] >= b["seconds"]["train"] > 0
    assert [r["after_epoch"] for r in b["resumed"]] == [4] and a["resumed"] == []
    assert "after epoch 4 (" in (run / "report.html").read_text()


def test_killed_run_resumes_exactly(cli, write_config, tmp_path, signum=signal.SIGTERM):
    """SIGTERM here; SIGINT takes the same handler, and tests/robustness/test_faults.py sends both at random."""
    config = write_config(epochs=1000, batch_size=1, **STATEFUL)  # slow epochs: the signal lands mid-run
    proc = subprocess.Popen([sys.executable, "-m", "nnrun", "train", str(config), "--runs-dir", str(tmp_path / "r")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list((tmp_path / "r").glob("*/metrics.csv"))
        if found and len(found[0].read_text().splitlines()) > 3:
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "continue with: nnrun train --resume" in stderr and "Traceback" not in stderr
    (run,) = run_dirs(tmp_path / "r")
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pth")["epoch"]
    assert 3 <= stopped_at < 12 and len(rows_of(run)) == stopped_at

    result = cli("train", "--resume", run, "epochs=12")
    assert result.exit_code == 0, result.output
    assert_same_run(straight_run(cli, config, tmp_path, 12), run)


def test_rows_written_after_the_last_checkpoint_are_not_duplicated(cli, write_config, tmp_path):
    config = write_config(epochs=3)
    cli("train", config, "--runs-dir", tmp_path / "r")
    (run,) = run_dirs(tmp_path / "r")
    with open(run / "metrics.csv", "a") as f:  # as if the process died after a row but before its checkpoint
        f.write("4,0.1,9,9,0.5,0.5,0.1,0.1\n")
    assert cli("train", "--resume", run / "checkpoints" / "last.pth", "epochs=5").exit_code == 0
    rows = rows_of(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5] and rows[3]["train_loss"] != 9


@pytest.mark.parametrize("args, message", [
    (["optimizer.lr=0.5"], "cannot change 'optimizer.lr' when resuming"),
    (["model.hidden=[5]"], "cannot change 'model.hidden' when resuming"),
    (["epoch=20", "seed=3"], "cannot change 'epoch' (did you mean 'epochs'?), 'seed' when resuming"),
    (["epochs=2"], "has already trained 3 of its 2 epochs"),
    ([], "has already trained 3 of its 3 epochs (ask for more: epochs=13)"),
])
def test_resume_refuses_changes_it_cannot_honour(cli, write_config, tmp_path, args, message):
    cli("train", write_config(epochs=3), "--runs-dir", tmp_path / "r")
    (run,) = run_dirs(tmp_path / "r")
    result = cli("train", "--resume", run, *args)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line


def test_resume_needs_training_state_and_the_same_data(cli, write_config, tmp_path):
    people(100).to_csv(tmp_path / "people.csv", index=False)
    config = write_config(epochs=2, data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"]})
    cli("train", config, "--runs-dir", tmp_path / "r", "--data-dir", tmp_path)
    (run,) = run_dirs(tmp_path / "r")
    result = cli("train", "--resume", run / "checkpoints" / "best.pth", "epochs=4", "--data-dir", tmp_path)
    assert result.exit_code == 2 and "holds weights only" in result.stderr
    people(100, seed=1).to_csv(tmp_path / "people.csv", index=False)
    result = cli("train", "--resume", run, "epochs=4", "--data-dir", tmp_path)
    assert result.exit_code == 2 and "the data changed since this run trained" in result.stderr
    result = cli("train", config, "--resume", run)
    assert result.exit_code == 2 and "give either a CONFIG" in result.stderr


def test_extending_a_schedule_planned_for_the_run_length_is_refused(cli, write_config, tmp_path):
    cli("train", write_config(epochs=3, scheduler={"type": "onecycle"}), "--runs-dir", tmp_path / "r")
    (run,) = run_dirs(tmp_path / "r")
    result = cli("train", "--resume", run, "epochs=6")
    assert result.exit_code == 2 and "onecycle schedule was planned for 3" in result.stderr


def test_an_early_stopped_run_is_refused_with_the_override_that_continues_it(cli, write_config, tmp_path):
    config = write_config(epochs=50, optimizer={"lr": 1e-9}, early_stopping={"patience": 2, "min_delta": 0.01})
    assert cli("train", config, "--runs-dir", tmp_path / "r").exit_code == 0
    (run,) = run_dirs(tmp_path / "r")
    before = (run / "metrics.csv").read_text()
    result = cli("train", "--resume", run)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "the run stopped early at epoch 3" in line and "early_stopping.patience=12" in line
    assert (run / "metrics.csv").read_text() == before  # nothing rewritten
    result = cli("train", "--resume", run, "early_stopping.patience=12")
    assert result.exit_code == 0, result.output
    assert len(rows_of(run)) == 3 + 10  # ten more epochs without improvement, then it stops again


def test_a_run_that_reached_stop_at_is_refused_until_the_threshold_moves(cli, write_config, tmp_path):
    config = write_config(epochs=50, optimizer={"type": "adam", "lr": 0.05}, early_stopping={"stop_at": 0.5})
    assert cli("train", config, "--runs-dir", tmp_path / "r").exit_code == 0
    (run,) = run_dirs(tmp_path / "r")
    stopped_at = len(rows_of(run))
    result = cli("train", "--resume", run)
    assert result.exit_code == 2 and "reached early_stopping.stop_at=0.5" in result.stderr
    assert cli("train", "--resume", run, "early_stopping.stop_at=null", "epochs=" + str(stopped_at + 2)).exit_code == 0
    assert len(rows_of(run)) == stopped_at + 2

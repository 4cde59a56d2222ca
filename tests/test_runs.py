"""The run folder read back: metrics.csv as a killed or damaged run leaves it."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nnrun.errors import UserError
from nnrun.runs import read_metrics
from tests.helpers import BASE_CONFIG, ROOT, merged

HEADER = "epoch,lr,train_loss,val_loss,val_accuracy\n"


def write(tmp_path, text: str):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    return path


def test_complete_rows_read_as_floats(tmp_path):
    metrics, notes = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7\n2,0.1,nan,0.5,0.8\n"))
    assert metrics["epoch"] == [1.0, 2.0] and metrics["val_accuracy"] == [0.7, 0.8] and notes == []


def test_a_torn_last_row_is_left_out_even_when_every_cell_is_there(tmp_path):
    metrics, notes = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7\n2,0.1,0.4,0.5,0.8"))  # no newline
    assert metrics["epoch"] == [1.0] and notes == ["left out 1 incomplete row(s) of metrics.csv"]
    metrics, _ = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7\n2,0.1,0."))
    assert metrics["epoch"] == [1.0]


def test_a_row_with_an_extra_cell_does_not_shift_the_columns(tmp_path):
    metrics, notes = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7,9\n2,0.1,0.4,0.5,0.8\n"))
    assert metrics["epoch"] == [1.0, 2.0] and metrics["lr"] == [0.1, 0.1]
    assert "more cells than its header" in notes[0]


def test_empty_and_unparseable_files(tmp_path):
    assert read_metrics(write(tmp_path, ""))[0] == {}
    with pytest.raises(UserError, match="is damaged"):
        read_metrics(write(tmp_path, HEADER + '1,0.1,"0.5,0.6,0.7\n'))


# --- nnrun runs ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_runs(tmp_path_factory):
    """A runs folder as users leave it: runs that completed, stopped early, were interrupted or diverged, beside
    things that are not runs (MLflow's store, an empty folder, a stray file, a folder with a broken config)."""
    root = tmp_path_factory.mktemp("mixed")
    runs = root / "runs"

    def config(name: str, **changes) -> Path:
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(merged(BASE_CONFIG, {"name": name, "threads": 1, **changes})))
        return path

    def train(path: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "nnrun", "train", str(path), "--runs-dir", str(runs), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    started = [train(config("done", epochs=4, optimizer={"type": "sgd", "lr": 0.3})),
               train(config("early", epochs=50, optimizer={"type": "sgd", "lr": 1e-9},
                            early_stopping={"patience": 2, "min_delta": 0.01})),
               train(config("diverged", epochs=5, optimizer={"type": "sgd", "lr": 1e30})),
               train(config("torn", epochs=2))]
    assert [p.wait(120) for p in started] == [0, 0, 2, 0]
    (torn,) = runs.glob("torn-*")
    (torn / "summary.json").write_text('{"name": "torn", "stop_re')  # as a full disk can leave it
    time.sleep(1.1)  # folder names carry the second a run started: the next one is the newest
    slow = train(config("stopped", epochs=100_000, batch_size=1))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            len(p.read_text().splitlines()) > 2 for p in runs.glob("stopped-*/metrics.csv")):
        time.sleep(0.05)
    slow.send_signal(signal.SIGINT)
    assert slow.wait(120) == 130
    (runs / "empty-folder").mkdir()
    (runs / "notes.txt").write_text("not a run")
    (runs / "broken").mkdir()
    (runs / "broken" / "config.yaml").write_text("{unclosed: [")
    (runs / "mlflow.db").write_bytes(b"SQLite format 3\x00")
    return runs


def test_runs_lists_every_run_with_its_status_and_skips_what_is_not_a_run(cli, mixed_runs):
    result = cli("runs", mixed_runs, "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert listed[0]["name"] == "stopped"  # newest first: the others started together, a second or more before
    assert [r["started"] for r in listed] == sorted((r["started"] for r in listed), reverse=True)
    statuses = {r["name"]: r["status"] for r in listed}
    assert statuses == {"done": "completed", "early": "early-stopped", "diverged": "failed", "stopped": "interrupted",
                        "torn": "unreadable"}
    stopped, early, done = (next(r for r in listed if r["name"] == name) for name in ("stopped", "early", "done"))
    assert done["epochs_run"] == done["epochs"] == 4 and done["test"]["accuracy"] > 0.5
    assert early["epochs_run"] == 3 and early["best_epoch"] == 1 and early["monitor"] == "val_loss"
    assert stopped["epochs_run"] >= 2 and stopped["test"] == {}
    assert all(r["seconds"] > 0 for r in listed if r["name"] != "torn") and all(r["started"] for r in listed)
    assert next(r for r in listed if r["name"] == "torn")["epochs_run"] == 2  # read from metrics.csv instead
    assert (mixed_runs / "latest").resolve() == Path(stopped["folder"]).resolve()  # the newest run


def test_runs_sorts_best_first_and_keeps_the_last_n(cli, mixed_runs):
    by_test = json.loads(cli("runs", mixed_runs, "--sort", "test", "--json").stdout)
    accuracies = [r["test"].get("accuracy") for r in by_test]
    known = [a for a in accuracies if a is not None]
    assert known == sorted(known, reverse=True) and accuracies[len(known):] == [None] * (5 - len(known))
    by_val = json.loads(cli("runs", mixed_runs, "--sort", "val", "--json").stdout)
    values = [r["best_value"] for r in by_val if r["best_value"] is not None]
    assert values == sorted(values)  # val_loss: lowest first
    newest = json.loads(cli("runs", mixed_runs, "--last", "1", "--json").stdout)
    assert [r["name"] for r in newest] == ["stopped"]
    assert len(json.loads(cli("runs", mixed_runs, "--last", "3", "--json").stdout)) == 3
    by_name = cli("runs", mixed_runs, "--sort", "name")
    lines = [line for line in by_name.stdout.splitlines() if "│" in line]
    assert [line.split("│")[1].strip() for line in lines] == ["diverged", "done", "early", "stopped", "torn"]
    table = by_name
    assert "early-stopped" in table.stdout and "test accuracy" in table.stdout


def test_runs_problems_are_one_line(cli, mixed_runs, tmp_path):
    result = cli("runs", mixed_runs, "--sort", "speed")
    assert result.exit_code == 2 and "cannot sort by 'speed' (choose started, name" in result.stderr
    assert "accuracy" in result.stderr  # the test metrics the runs have
    result = cli("runs", tmp_path / "nowhere")
    assert result.exit_code == 2 and "runs folder" in result.stderr and "not found" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("runs", empty).stdout.startswith("no runs in")

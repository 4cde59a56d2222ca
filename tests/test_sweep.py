"""`nnrun sweep`: real Optuna studies, real training on iris (a few epochs), real processes for Ctrl-C, --parallel."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from nnrun.search_space import Choices, Range, grid, parse_assignments
from tests.helpers import BASE_CONFIG, CONFIGS, HOUSE_CONFIG, ROOT, house_prices, merged, run_dirs

optuna = pytest.importorskip("optuna")


def sweep_dir(runs: Path) -> Path:
    (folder,) = [p for p in Path(runs).iterdir() if "-sweep-" in p.name]
    return folder


def results(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


def study(folder: Path):
    if (folder / "study.db").is_file():
        return optuna.load_study(study_name=None, storage=f"sqlite:///{folder / 'study.db'}")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=None, storage=JournalStorage(JournalFileBackend(str(folder / "study.journal"))))


def test_specs_are_lists_distributions_or_fixed_values():
    fixed, params = parse_assignments(["optimizer.lr=0.001,0.01,0.1", "model.hidden=[8],[32],[64,32]", "epochs=30",
                                       "model.hidden2=[64,32]", "batch_size=int(16,256)", "wd=loguniform(1e-4,1e-1)",
                                       "optimizer.type=choice(adam,sgd)", "data.split={train: 0.8, val: 0.1}"])
    assert fixed == {"epochs": "30", "model.hidden2": "[64,32]", "data.split": "{train: 0.8, val: 0.1}"}
    assert params["optimizer.lr"].grid() == [0.001, 0.01, 0.1]
    assert params["model.hidden"].grid() == ["[8]", "[32]", "[64,32]"]  # stored as written: Optuna keeps scalars
    assert params["batch_size"] == Range("batch_size", "int", 16, 256)
    assert params["wd"] == Range("wd", "loguniform", 1e-4, 1e-1)
    assert params["optimizer.type"] == Choices("optimizer.type", ("adam", "sgd"))
    assert len(grid([params["optimizer.lr"], params["model.hidden"]])) == 9 and grid([]) == [{}]


def test_a_grid_sweep_runs_every_combination_and_points_best_at_the_best_val_score(cli, tmp_path):
    result = cli("sweep", CONFIGS / "iris_mlp.yaml", "optimizer.lr=0.001,0.01,0.1", "model.hidden=[8],[32]",
                 "epochs=3", "device=cpu", "threads=1", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    folder = sweep_dir(tmp_path / "runs")
    assert folder.name.startswith("iris_mlp-sweep-")
    trials = run_dirs(folder)
    assert len(trials) == 6 and all((t / "summary.json").is_file() for t in trials)
    rows = results(folder)
    assert {(r["optimizer.lr"], r["model.hidden"]) for r in rows} == {
        (lr, h) for lr in ("0.001", "0.01", "0.1") for h in ("[8]", "[32]")}
    assert all(r["status"] == "complete" for r in rows)
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert rows[0] == best and best["chosen"] == "true" and best["test_accuracy"]  # tested once: the chosen trial
    assert (folder / "best").resolve() == (folder / best["folder"]).resolve()
    summary = json.loads((folder / "best" / "summary.json").read_text())
    assert summary["best_value"] == pytest.approx(float(best["val_loss"]))
    assert summary["test"]["accuracy"] == pytest.approx(float(best["test_accuracy"]))
    assert (folder / "best" / "report.html").is_file()  # the chosen trial's plots are drawn; the others' are not
    assert (folder / "plots" / "val_loss.png").is_file() and (folder / "plots" / "comparison.csv").is_file()
    assert "6 trials, best first by val_loss" in result.stdout and f"best trial {best['trial']}" in result.stdout
    # a trial's config.yaml is an ordinary config without the sweep: it reruns that trial alone, to the same numbers
    config = yaml.safe_load((folder / best["folder"] / "config.yaml").read_text())
    assert "sweep" not in config and config["optimizer"]["lr"] == float(best["optimizer.lr"])
    rerun = cli("train", folder / best["folder"] / "config.yaml", "--runs-dir", tmp_path / "again")
    assert rerun.exit_code == 0, rerun.output
    (again,) = run_dirs(tmp_path / "again")
    assert json.loads((again / "summary.json").read_text())["val"] == summary["val"]


def test_the_sweep_block_says_what_the_command_line_says_and_train_ignores_it(cli, write_config, tmp_path):
    config = write_config(epochs=2, sweep={"params": {"optimizer.lr": "0.05,0.1", "model.hidden": [[4], [8]]},
                                           "sampler": "random", "trials": 3})
    result = cli("train", config, "epochs=1", "--runs-dir", tmp_path / "train")
    assert result.exit_code == 0, result.output
    assert "has a sweep: block, which only nnrun sweep reads" in result.stdout
    # the command line wins: a fixed lr replaces the block's list, and --trials its count
    result = cli("sweep", config, "optimizer.lr=0.2", "--trials", "2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    folder = sweep_dir(tmp_path / "runs")
    trials = study(folder).trials
    assert len(trials) == 2 and all(set(t.params) == {"model.hidden"} for t in trials)
    plan = yaml.safe_load((folder / "sweep.yaml").read_text())["sweep"]
    assert plan["sampler"] == "random" and plan["trials"] == 2 and plan["params"]["optimizer.lr"] == "0.2"
    assert all(yaml.safe_load((t / "config.yaml").read_text())["optimizer"]["lr"] == 0.2 for t in run_dirs(folder))


def test_a_cross_validation_beside_its_csv_reruns_from_sweep_yaml_and_a_runs_config_yaml(cli, tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    house_prices().to_csv(tmp_path / "project" / "house.csv", index=False)
    config = tmp_path / "project" / "house.yaml"
    config.write_text(yaml.safe_dump(merged(BASE_CONFIG, {**HOUSE_CONFIG, "threads": 1})))
    monkeypatch.chdir(tmp_path)  # house.csv is found beside the config only
    result = cli("sweep", config, "--folds", "2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "mean over 2 folds of train + val" in result.stdout  # regression: KFold, not stratified
    folder = sweep_dir(tmp_path / "runs")
    again = cli("sweep", folder / "sweep.yaml", "--runs-dir", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert results(sweep_dir(tmp_path / "again"))[0]["val_loss"] == results(folder)[0]["val_loss"]
    rerun = cli("train", folder / "000" / "fold1" / "config.yaml", "--runs-dir", tmp_path / "fold")
    assert rerun.exit_code == 0, rerun.output
    (run,) = run_dirs(tmp_path / "fold")
    assert json.loads((run / "summary.json").read_text())["val"] == json.loads(
        (folder / "000" / "fold1" / "summary.json").read_text())["val"]


def test_a_tpe_sweep_with_pruning_prunes_trials_that_fall_behind(cli, write_config, tmp_path):
    # lr spans 1e-5 (learns nothing in 10 epochs) to 1 (learns iris in a few): trials behind the median exist
    config = write_config(epochs=10, threads=1)
    result = cli("sweep", config, "optimizer.lr=loguniform(1e-5,1)", "batch_size=int(8,64)", "--trials", "8",
                 "--prune", "--vectorize", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    folder = sweep_dir(tmp_path / "runs")
    loaded = study(folder)
    states = [t.state for t in loaded.trials]
    assert len(states) == 8 and optuna.trial.TrialState.PRUNED in states
    assert loaded.best_trial.state == optuna.trial.TrialState.COMPLETE
    pruned = [r for r in results(folder) if r["status"] == "pruned"]
    for row in pruned:
        summary = json.loads((folder / row["folder"] / "summary.json").read_text())  # it keeps its run folder
        # never in the first tenth of the epochs (1 of 10 here): a trial is judged from its second epoch on
        assert summary["stop_reason"] == "pruned" and 2 <= summary["epochs_run"] < 10
    assert all(isinstance(t.params["batch_size"], int) and 8 <= t.params["batch_size"] <= 64 for t in loaded.trials)
    assert "TPE" in result.stdout and "pruned at epoch" in result.stdout
    # --vectorize cannot stack pruned trials: one line says so, and they train one after another
    assert "trials train one after another: --prune stops each trial on its own curve" in result.stdout


def test_folds_partition_train_and_val_and_test_on_the_plain_splits_test_rows(cli, write_config, tmp_path):
    from nnrun.config import load_yaml, validate
    from nnrun.data.bundle import load_data

    # test is left out: 1 - 0.6 - 0.2 = 0.2 of the rows, as in the plain config (not the default 0.15)
    config = write_config(epochs=3, threads=1, data={"type": "iris", "split": {"train": 0.6, "val": 0.2}})
    plain = validate(load_yaml(config), source=config)
    plain_test = load_data(plain.data, seed=plain.seed, device=torch.device("cpu")).splits["test"].rows.tolist()
    result = cli("sweep", config, "--folds", "5", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    folder = sweep_dir(tmp_path / "runs")
    runs = sorted((folder / "000").iterdir())
    assert [r.name for r in runs] == [f"fold{i}" for i in range(5)]
    splits = []
    for run in runs:
        cfg = validate(yaml.safe_load((run / "config.yaml").read_text()))
        assert cfg.test is False and not (run / "predictions.csv").exists()
        assert json.loads((run / "summary.json").read_text())["test"] is None  # no trial saw the test split
        bundle = load_data(cfg.data, seed=cfg.seed, device=torch.device("cpu"))
        splits.append({name: set(split.rows.tolist()) for name, split in bundle.splits.items()})
    test = splits[0]["test"]
    assert test == set(plain_test) and len(test) == 30 and all(s["test"] == test for s in splits)
    rest = set(range(150)) - test
    vals = [s["val"] for s in splits]
    assert sum(len(v) for v in vals) == len(rest) and set().union(*vals) == rest  # every row in exactly one fold
    assert all(s["train"] == rest - s["val"] for s in splits)
    # the score is the mean ± std of the folds' best val_loss; the chosen trial is then tested once per fold
    scores = [json.loads((run / "summary.json").read_text())["best_value"] for run in runs]
    (row,) = results(folder)
    assert float(row["val_loss"]) == pytest.approx(statistics.fmean(scores))
    assert float(row["val_loss_std"]) == pytest.approx(statistics.stdev(scores))
    tested = json.loads((folder / "test.json").read_text())
    assert len(tested["values"]["accuracy"]) == 5 and float(row["test_accuracy"]) == pytest.approx(
        statistics.fmean(tested["values"]["accuracy"]))
    assert "over 5 runs" in result.stdout and "±" in result.stdout
    assert "mean over 5 stratified folds of train + val" in result.stdout


def test_a_sweep_where_no_trial_completes_writes_its_results_then_exits_2(cli, write_config, tmp_path):
    result = cli("sweep", write_config(threads=1), "optimizer.lr=1e6,1e7", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: no trial completed in ") and "loss became" in line
    rows = results(sweep_dir(tmp_path / "runs"))
    assert sorted(r["optimizer.lr"] for r in rows) == ["1e6", "1e7"]
    assert all(r["status"] == "failed" and "loss became" in r["message"] for r in rows)
    assert "2 trials, best first by val_loss" in result.stdout and "Traceback" not in result.output


def test_a_grid_of_learning_rates_trains_together_and_each_trial_keeps_its_run_folder(cli, write_config, tmp_path):
    pytest.importorskip("nnrun.vectorized")
    result = cli("sweep", write_config(threads=1), "optimizer.lr=0.05,0.1,1e6", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "3 trials train together as one stacked model" in result.stdout  # automatic: a grid that can stack
    folder = sweep_dir(tmp_path / "runs")
    rows = {r["optimizer.lr"]: r for r in results(folder)}
    # the diverging trial fails alone, with its one line; the others complete beside it
    assert rows["1e6"]["status"] == "failed" and "loss became" in rows["1e6"]["message"]
    assert [rows[lr]["status"] for lr in ("0.05", "0.1")] == ["complete", "complete"]
    assert not (folder / "latest").exists()
    for lr in ("0.05", "0.1"):
        trial = folder / rows[lr]["folder"]
        summary = json.loads((trial / "summary.json").read_text())
        assert summary["best_value"] == pytest.approx(float(rows[lr]["val_loss"])) and summary["epochs_run"] == 3
        # as a sequential trial: no plots, except for the chosen trial, drawn at the end
        assert (trial / "report.html").is_file() == (rows[lr]["chosen"] == "true")


def test_resume_after_ctrl_c_runs_only_the_missing_trials(cli, write_config, tmp_path):
    # the second trial trains long enough to be interrupted; the first finishes at once
    config = write_config(threads=1)
    command = [sys.executable, "-m", "nnrun", "sweep", str(config), "optimizer.lr=0.05,0.1", "epochs=3,40",
               "--runs-dir", str(tmp_path / "runs")]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        second = list((tmp_path / "runs").glob("*-sweep-*/001_*/metrics.csv"))
        if second and len(second[0].read_text().splitlines()) > 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    folder = sweep_dir(tmp_path / "runs")
    assert f"nnrun sweep --resume {folder}" in err and "Traceback" not in err
    before = study(folder).trials
    assert [t.user_attrs["status"] for t in before] == ["complete", "interrupted"]

    result = cli("sweep", "--resume", folder)
    assert result.exit_code == 0, result.output
    after = study(folder).trials
    assert len(after) == 5  # 2 before, then the interrupted trial again and the 2 never started
    assert after[0].datetime_complete == before[0].datetime_complete  # the finished trial was kept, not rerun
    complete = [t for t in after if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted((t.params["optimizer.lr"], t.params["epochs"]) for t in complete) == [
        (0.05, 3), (0.05, 40), (0.1, 3), (0.1, 40)]
    assert not (folder / before[1].user_attrs["folder"]).exists()  # the interrupted run's folder made way
    assert len(results(folder)) == 4 and len(run_dirs(folder)) == 4


def test_parallel_trials_share_the_journal_and_split_the_cores(cli, write_config, tmp_path):
    from nnrun.threads import available_cores

    result = cli("sweep", write_config(), "optimizer.lr=0.05,0.1", "--parallel", "2", "--prune",
                 "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    folder = sweep_dir(tmp_path / "runs")
    assert (folder / "study.journal").is_file() and not (folder / "study.db").exists()
    assert all(t.state.is_finished() and t.user_attrs["status"] in ("complete", "pruned") for t in study(folder).trials)
    threads = {yaml.safe_load((t / "config.yaml").read_text())["threads"] for t in run_dirs(folder)}
    assert threads == {max(1, available_cores() // 2)}
    log = (folder / "sweep.log").read_text()
    assert "database is locked" not in log and "Traceback" not in log and len(results(folder)) == 2


def test_parallel_trials_that_the_sweep_kills_after_ctrl_c_are_interrupted_so_resume_reruns_them(cli, write_config,
                                                                                                    tmp_path,
                                                                                                    monkeypatch):
    import nnrun.sweep

    # Ctrl-C as soon as both trial processes run; they get no time to stop (0 s), so the sweep kills them
    monkeypatch.setattr(nnrun.sweep, "WORKER_STOP_SECONDS", 0)
    monkeypatch.setattr(time, "sleep", lambda seconds: (_ for _ in ()).throw(KeyboardInterrupt))
    result = cli("sweep", write_config(threads=1), "optimizer.lr=0.05,0.1", "--parallel", "2",
                 "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 130, result.output
    trials = study(sweep_dir(tmp_path / "runs")).trials
    assert [t.user_attrs["status"] for t in trials] == ["interrupted", "interrupted"]


@pytest.mark.parametrize("args, expected", [
    (["optimizer.lr=loguniform(0,1)"], "optimizer.lr=loguniform(0,1): low must be > 0 for a log scale"),
    (["optimizer.lrr=0.1,0.2"], "unknown key 'optimizer.lrr' for optimizer 'sgd' (did you mean 'optimizer.lr'?"),
    (["optimizer.lr=0.1,0.2", "--trials", "0"], "--trials must be an integer >= 1, got 0"),
    (["optimizer.lr=0.1,0.2", "--parallel", "0"], "--parallel must be an integer >= 1, got 0"),
    (["optimizer.lr=uniform(0.1,1)", "--sampler", "grid"], "--sampler grid needs lists of values"),
    (["optimizer.lr=0.1,0.2", "--parallel", "2", "--vectorize"], "--vectorize trains trials in one process, "
                                                                  "--parallel in several (choose one)"),
    (["optimizer.lr=logunifrom(1e-4,1)"], "unknown distribution 'logunifrom' (did you mean 'loguniform'?"),
    (["optimizer.lr=-1", "model.hidden=[4],[8]"], "optimizer.lr must be a number > 0, got -1"),
    ([], "nothing to sweep"),
])
def test_user_errors_exit_2_with_one_line_and_no_sweep_folder(cli, write_config, tmp_path, args, expected):
    result = cli("sweep", write_config(), *args, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line, line
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_a_missing_data_file_is_one_error_before_the_sweep_folder(cli, write_config, tmp_path):
    config = write_config(data={"type": "csv", "path": "missing.csv", "target": "price"})
    result = cli("sweep", config, "optimizer.lr=0.1,0.2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "missing.csv" in line, line
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_resume_of_a_folder_that_is_not_a_sweep_is_one_line(cli, tmp_path):
    result = cli("sweep", "--resume", tmp_path)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"error: '{tmp_path}' is not a sweep folder (it has no sweep.yaml and study.db; give a folder "
                    f"that nnrun sweep made, such as runs/NAME-sweep-DATE)")


def test_without_optuna_the_error_names_the_pip_command(cli, write_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an environment without the sweep extra looks like
    result = cli("sweep", write_config(), "optimizer.lr=0.1,0.2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.strip() == ('error: nnrun sweep needs the optuna package, which is not installed '
                                     '(pip install "nnrun[sweep]")')

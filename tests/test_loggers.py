"""TensorBoard and MLflow loggers, read back with each tool's own reader from real event files and a real SQLite store."""

import csv
import json

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

import nnrun.config
from nnrun.config import validate
from nnrun.errors import UserError
from tests.helpers import BASE_CONFIG, merged, run_dirs


def rows_of(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def train(cli, write_config, runs, *overrides, **changes):
    result = cli("train", write_config(**changes), *overrides, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    return result, sorted(run_dirs(runs))[-1]


def mlflow_run(store, name="tiny"):
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(name)
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def test_tensorboard_holds_every_metrics_column_for_every_epoch(cli, write_config, tmp_path):
    _, run = train(cli, write_config, tmp_path / "runs", epochs=4, loggers=["tensorboard"])
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = rows_of(run)
    for column in rows[0]:
        if column == "epoch":
            continue
        logged = events.Scalars(column)
        assert [e.step for e in logged] == [int(r["epoch"]) for r in rows], column
        assert [e.value for e in logged] == pytest.approx([r[column] for r in rows], rel=1e-6), column
    summary = json.loads((run / "summary.json").read_text())
    assert events.Scalars("hparam/test_accuracy")[0].value == pytest.approx(summary["test"]["accuracy"])
    hparams = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]  # TensorBoard's HParams tab
    config = HParamsPluginData.FromString(hparams).session_start_info.hparams
    assert config["optimizer.lr"].number_value == 0.1 and config["data.type"].string_value == "iris"
    assert events.Tags()["images"] == ["confusion_matrix"]


def test_mlflow_logs_params_every_epoch_test_metrics_and_artifacts_to_the_runs_dir_store(cli, write_config, tmp_path):
    _, run = train(cli, write_config, tmp_path / "runs", epochs=4, loggers=["mlflow"])
    client, logged = mlflow_run(tmp_path / "runs" / "mlflow.db")
    assert logged.info.status == "FINISHED" and logged.info.run_name == run.name
    assert logged.data.params["optimizer.lr"] == "0.1" and logged.data.params["model.hidden"] == "[10]"
    rows = rows_of(run)
    for column in ("train_loss", "val_loss", "val_accuracy", "lr"):
        history = client.get_metric_history(logged.info.run_id, column)
        logged_values = sorted((m.step, m.value) for m in history)
        assert [step for step, _ in logged_values] == [int(r["epoch"]) for r in rows], column
        assert [value for _, value in logged_values] == pytest.approx([r[column] for r in rows]), column
    summary = json.loads((run / "summary.json").read_text())
    assert logged.data.metrics["test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"plots", "report.html", "summary.json", "checkpoints"} <= artifacts
    assert (tmp_path / "runs" / "mlartifacts").is_dir()  # beside the database, not in the current folder


def test_a_resumed_run_continues_the_same_mlflow_run_without_repeating_epochs(cli, write_config, tmp_path):
    _, run = train(cli, write_config, tmp_path / "runs", epochs=3, loggers=["mlflow"])
    result = cli("train", "--resume", run, "epochs=5")
    assert result.exit_code == 0, result.output
    client, logged = mlflow_run(tmp_path / "runs" / "mlflow.db")  # still one run
    steps = [m.step for m in client.get_metric_history(logged.info.run_id, "train_loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5]
    assert logged.data.params["epochs"] == "3" and logged.data.tags["resumed.epochs"] == "5"
    assert logged.info.status == "FINISHED"


def test_mlflow_tracking_uri_from_the_environment_wins(cli, write_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts the artifacts of a store it did not create in ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'team.db'}")
    train(cli, write_config, tmp_path / "runs", epochs=2, loggers=["mlflow"])
    _, logged = mlflow_run(tmp_path / "team.db")
    assert logged.info.status == "FINISHED"
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def test_a_logger_that_fails_is_one_note_and_training_goes_on(cli, write_config, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'mlflow.db'}")
    result, run = train(cli, write_config, tmp_path / "runs", epochs=2, loggers=["mlflow", "tensorboard"])
    assert "mlflow logging stopped:" in result.stdout and "metrics.csv has every epoch" in result.stdout
    assert len(rows_of(run)) == 2 and (run / "tensorboard").is_dir()


def test_only_rank_0_logs(cli, write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    _, run = train(cli, write_config, tmp_path / "runs", epochs=1, loggers=["tensorboard"])
    assert not (run / "tensorboard").exists()


def test_unknown_or_missing_loggers_are_config_errors_with_the_fix(cli, write_config, tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"unknown logger 'tensorbord' \(did you mean 'tensorboard'\?"):
        validate(merged(BASE_CONFIG, {"loggers": ["tensorbord"]}))
    assert validate(merged(BASE_CONFIG, {"loggers": "tensorboard"})).loggers == ("tensorboard",)
    _, run = train(cli, write_config, tmp_path / "runs", epochs=1, loggers=["mlflow"])
    # Then mlflow goes missing: a package that is really not installed, under the name the check looks up.
    monkeypatch.setitem(nnrun.config.LOGGER_PACKAGES, "mlflow", ("mlflow_not_installed", "nnrun[mlflow]"))
    for args in (("train", write_config(loggers=["mlflow"]), "--runs-dir", tmp_path / "other"),
                 ("check", write_config(loggers=["mlflow"])), ("train", "--resume", run, "epochs=2")):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert 'logger \'mlflow\' needs the mlflow_not_installed package' in result.stderr
        assert '(pip install "nnrun[mlflow]", or leave it out of loggers)' in result.stderr
    assert not (tmp_path / "other").exists()
    # The model it trained still evaluates and predicts: the loggers matter only to training.
    assert cli("eval", run / "checkpoints" / "best.pth").exit_code == 0


def test_a_logger_added_on_resume_gets_the_epochs_before_it_too(cli, write_config, tmp_path):
    _, run = train(cli, write_config, tmp_path / "runs", epochs=3)
    result = cli("train", "--resume", run, "epochs=5", "loggers=[tensorboard,mlflow]")
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_loss")] == [1, 2, 3, 4, 5]
    client, logged = mlflow_run(tmp_path / "runs" / "mlflow.db")
    assert sorted(m.step for m in client.get_metric_history(logged.info.run_id, "val_loss")) == [1, 2, 3, 4, 5]

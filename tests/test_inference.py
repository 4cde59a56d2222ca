"""`nnrun eval` and `nnrun predict`: a checkpoint alone reproduces the run's numbers and scores new rows."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.helpers import people, run_dirs


def train_run(cli, write_config, tmp_path, *overrides, **changes):
    config = write_config(**changes)
    result = cli("train", config, *overrides, "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    return config, run, json.loads((run / "summary.json").read_text())


def test_eval_reproduces_the_test_accuracy_without_any_config(cli, write_config, tmp_path):
    config, run, summary = train_run(cli, write_config, tmp_path, epochs=5)
    config.unlink()
    (run / "config.yaml").unlink()
    train_predictions = pd.read_csv(run / "predictions.csv")
    (run / "predictions.csv").unlink()
    result = cli("eval", run / "checkpoints" / "best.pth", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metrics"]["accuracy"] == summary["test"]["accuracy"]
    assert payload["metrics"] == summary["test"]
    assert payload["rows"] == summary["rows"]["test"] and payload["epoch"] == summary["best_epoch"]
    assert set(payload["metrics"]) >= {"loss", "accuracy", "balanced_accuracy", "precision_macro", "recall_macro",
                                       "f1_macro", "per_class", "confusion_matrix"}
    written = pd.read_csv(run / "predictions.csv")
    pd.testing.assert_frame_equal(written, train_predictions)
    assert list(written.columns) == ["row", "target", "prediction", "prob_setosa", "prob_versicolor",
                                     "prob_virginica"]
    assert np.allclose(written.filter(like="prob_").sum(axis=1), 1.0, atol=1e-5)


def test_eval_tests_a_fold_run_trained_without_test_and_its_config_reruns_the_same_fold(cli, write_config, tmp_path):
    from nnrun.commands import load_config
    from nnrun.data.bundle import load_data

    fold = {"test": 0.2, "folds": 5, "fold": 2, "seed": 7}
    _, run, summary = train_run(cli, write_config, tmp_path, "test=false", epochs=2, seed=1, data={"split": fold})
    assert summary["test"] is None and not (run / "predictions.csv").exists()
    expected = load_data(load_config(write_config(seed=7, data={"split": {"train": 0.6, "val": 0.2, "test": 0.2}}),
                                     []).data, seed=7, device="cpu")  # the plain split with the fold's seed
    result = cli("eval", run / "checkpoints" / "best.pth", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_csv(run / "predictions.csv")["row"]) == expected.test.rows.tolist()

    rerun = load_config(run / "config.yaml", [])
    assert rerun.test is False and rerun.data.split.to_dict() == fold
    val = load_data(rerun.data, seed=rerun.seed, device="cpu").val.rows
    assert cli("eval", run / "checkpoints" / "best.pth", "--split", "val").exit_code == 0
    assert sorted(pd.read_csv(run / "predictions_val.csv")["row"]) == val.tolist() != expected.val.rows.tolist()


def test_eval_of_a_regression_checkpoint_reproduces_rmse_in_original_units(cli, write_config, tmp_path):
    people(300).to_csv(tmp_path / "people.csv", index=False)
    _, run, summary = train_run(cli, write_config, tmp_path, epochs=8, loss="mse",
                                data={"type": "csv", "path": "people.csv", "target": "score", "drop": ["label"]},
                                optimizer={"type": "adam", "lr": 0.01})
    out = tmp_path / "eval" / "metrics.json"
    result = cli("eval", run / "checkpoints" / "best.pth", "--data-dir", tmp_path, "--out", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["metrics"]["rmse"] == summary["test"]["rmse"]
    assert payload["metrics"]["r2"] == summary["test"]["r2"]
    assert set(payload["metrics"]) == {"loss", "mse", "rmse", "mae", "r2", "max_error"}
    assert "rmse" in result.stdout and "max_error" in result.stdout  # the rich table
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")  # beside --out
    raw = pd.read_csv(tmp_path / "people.csv")
    assert np.allclose(predictions["target"], raw.loc[predictions["row"], "score"], rtol=1e-5)
    assert np.sqrt(np.mean((predictions["target"] - predictions["prediction"]) ** 2)) == \
        pytest.approx(summary["test"]["rmse"], rel=1e-5)


def test_eval_other_splits_and_a_labelled_csv(cli, write_config, tmp_path):
    frame = people(300)
    frame.to_csv(tmp_path / "people.csv", index=False)
    _, run, summary = train_run(cli, write_config, tmp_path, epochs=5,
                                data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"]})
    best = run / "checkpoints" / "best.pth"
    result = cli("eval", best, "--split", "val", "--data-dir", tmp_path, "--json")
    payload = json.loads(result.stdout)
    assert payload["metrics"]["accuracy"] == summary["val"]["accuracy"]
    assert (run / "predictions_val.csv").is_file()

    frame.iloc[:50].to_csv(tmp_path / "fresh.csv", index=False)
    result = cli("eval", best, "--data", tmp_path / "fresh.csv", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"] == 50 and payload["split"] == "all rows"
    assert "roc_auc" in payload["metrics"]  # two classes
    assert (run / "predictions_fresh.csv").is_file()

    frame.iloc[:5].assign(label="unknown").to_csv(tmp_path / "odd.csv", index=False)
    result = cli("eval", best, "--data", tmp_path / "odd.csv")
    assert result.exit_code == 2
    assert "row 0 of" in result.stderr and "label 'unknown', which the model was not trained on" in result.stderr


def test_eval_with_another_configs_data(cli, write_config, tmp_path):
    _, run, _ = train_run(cli, write_config, tmp_path, epochs=3)
    other = write_config("other.yaml", seed=5, data={"split": {"train": 0.5, "val": 0.25, "test": 0.25}})
    result = cli("eval", run / "checkpoints" / "best.pth", "--data", other, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 38


def test_eval_without_the_run_folder(cli, write_config, tmp_path):
    _, run, summary = train_run(cli, write_config, tmp_path, epochs=3)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "checkpoints" / "best.pth", alone / "model.pth")
    shutil.rmtree(tmp_path / "runs")
    result = cli("eval", alone / "model.pth", "--json")
    assert json.loads(result.stdout)["metrics"]["accuracy"] == summary["test"]["accuracy"]
    assert (alone / "predictions.csv").is_file()


def test_predict_matches_eval_on_the_same_rows(cli, write_config, tmp_path, monkeypatch):
    frame = people(300)
    frame.loc[7, "city"] = "Atlantis"  # a category train never saw: encoded as all zeros, no crash
    frame.to_csv(tmp_path / "people.csv", index=False)
    _, run, _ = train_run(cli, write_config, tmp_path, epochs=5,
                          data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"]})
    evaluated = pd.read_csv(run / "predictions.csv")
    new_rows = frame.loc[evaluated["row"]].drop(columns=["label", "score"]).reset_index(drop=True)
    new_rows.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "out" / "preds.csv"
    result = cli("predict", run / "checkpoints" / "best.pth", tmp_path / "new.csv", "--out", out)
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["row", "prediction", "prob_poor", "prob_rich"]
    assert predicted["prediction"].tolist() == evaluated["prediction"].tolist()
    assert np.allclose(predicted[["prob_poor", "prob_rich"]], evaluated[["prob_poor", "prob_rich"]], atol=1e-6)

    monkeypatch.chdir(tmp_path)
    assert cli("predict", run / "checkpoints" / "best.pth", tmp_path / "new.csv").exit_code == 0
    assert (tmp_path / "new_predictions.csv").is_file()


def test_predict_regression_in_original_units(cli, write_config, tmp_path):
    _, run, summary = train_run(cli, write_config, tmp_path, epochs=30, loss="mse", batch_size=32,
                                data={"type": "product", "n_samples": 500}, model={"hidden": [32, 16]},
                                optimizer={"type": "adam", "lr": 0.01})
    pd.DataFrame({"x1": [2.0, 5.0, 9.0], "x2": [3.0, 5.0, 9.0]}).to_csv(tmp_path / "xs.csv", index=False)
    out = tmp_path / "p.csv"
    assert cli("predict", run / "checkpoints" / "best.pth", tmp_path / "xs.csv", "--out", out).exit_code == 0
    predicted = pd.read_csv(out)["prediction"].to_numpy()
    assert np.allclose(predicted, [6.0, 25.0, 81.0], atol=4 * summary["test"]["rmse"])


def test_predict_bad_rows_name_the_row_and_column(cli, write_config, tmp_path):
    people(200).to_csv(tmp_path / "people.csv", index=False)
    _, run, _ = train_run(cli, write_config, tmp_path, epochs=2,
                          data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"]})
    best = run / "checkpoints" / "best.pth"
    rows = people(5).drop(columns=["label", "score"])
    rows.loc[3, "age"] = np.nan
    rows.to_csv(tmp_path / "holes.csv", index=False)
    result = cli("predict", best, tmp_path / "holes.csv", "--out", tmp_path / "x.csv")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "row 3, column 'age' has a missing value" in line and "data.missing=error" in line
    rows.drop(columns=["city"]).to_csv(tmp_path / "narrow.csv", index=False)
    result = cli("predict", best, tmp_path / "narrow.csv")
    assert result.exit_code == 2 and "input has no column 'city'" in result.stderr
    result = cli("predict", best, tmp_path / "nope.csv")
    assert result.exit_code == 2 and "not found" in result.stderr


def test_predict_fills_missing_values_with_the_stored_policy(cli, write_config, tmp_path):
    people(200).to_csv(tmp_path / "people.csv", index=False)
    _, run, _ = train_run(cli, write_config, tmp_path, epochs=2,
                          data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"],
                                "missing": "median"})
    rows = people(5).drop(columns=["label", "score"])
    rows.loc[3, "age"] = np.nan
    rows.loc[1, "city"] = np.nan
    rows.to_csv(tmp_path / "holes.csv", index=False)
    result = cli("predict", run / "checkpoints" / "best.pth", tmp_path / "holes.csv", "--out", tmp_path / "x.csv")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "x.csv")) == 5


def test_predict_and_eval_say_how_many_rows_hold_categories_training_never_saw(cli, write_config, tmp_path):
    people(200).to_csv(tmp_path / "people.csv", index=False)
    _, run, _ = train_run(cli, write_config, tmp_path, epochs=2,
                          data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"]})
    rows = people(6).drop(columns=["score"])
    rows.loc[[1, 4], "city"] = "Lille"
    rows.to_csv(tmp_path / "new.csv", index=False)
    note = "column 'city': 2 row(s) hold categories not seen in training ('Lille'), encoded as all zeros"
    result = cli("predict", run / "checkpoints" / "best.pth", tmp_path / "new.csv", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0 and note in result.stdout
    result = cli("eval", run / "checkpoints" / "best.pth", "--data", tmp_path / "new.csv", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["notes"] == [note]
    rows.loc[[1, 4], "city"] = "Paris"
    rows.to_csv(tmp_path / "known.csv", index=False)
    result = cli("predict", run / "checkpoints" / "best.pth", tmp_path / "known.csv", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0 and "not seen in training" not in result.stdout

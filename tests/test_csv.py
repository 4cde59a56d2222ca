"""The `csv` dataset: reading, column selection, task and classes, missing values, splits, and every bad input."""

import gzip
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from nnrun.config import validate
from nnrun.data.bundle import load_data
from nnrun.data.preprocessing import FeaturePreprocessor
from tests.helpers import BASE_CONFIG, merged, people, run_dirs

CPU = torch.device("cpu")


def data_config(**data) -> dict:
    return merged(BASE_CONFIG, {"data": {"type": "csv", **data}})


def load(tmp_path, frame: pd.DataFrame | None = None, name: str = "people.csv", **data):
    if frame is not None:
        frame.to_csv(tmp_path / name, index=False)
    cfg = validate(data_config(path=name, **data))
    return load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path)


def test_text_label_gives_classes_and_text_feature_is_one_hot_encoded(tmp_path):
    data = load(tmp_path, people(), target="label", drop=["score"])
    assert data.task == "classification" and data.class_names == ["poor", "rich"]
    assert data.feature_names == ["age", "income", "city=Lyon", "city=Nice", "city=Paris"]
    one_hot = data.train.x[:, 2:]
    assert torch.all(one_hot.sum(dim=1) == 1)
    assert any("one-hot encoding the text columns city (3 values)" in n for n in data.notes)
    assert any("task: classification, because target 'label' holds text" in n for n in data.notes)


def test_numeric_target_is_regression_and_features_can_be_chosen(tmp_path):
    data = load(tmp_path, people(), target="score", features=["age", "income"])
    assert data.task == "regression" and data.class_names is None
    assert data.feature_names == ["age", "income"]
    assert data.train.y.shape == (len(data.train), 1)


def test_few_integer_values_are_classes_unless_the_table_is_tiny(tmp_path):
    frame = pd.DataFrame({"x": range(40), "y": [0, 1, 2, 3] * 10})
    assert load(tmp_path, frame, target="y").class_names == ["0", "1", "2", "3"]
    tiny = pd.DataFrame({"x": range(6), "y": [200, 230, 245, 247, 259, 262]})
    assert load(tmp_path, tiny, target="y", split="all").task == "regression"


def test_explicit_task_wins(tmp_path):
    frame = pd.DataFrame({"x": range(40), "y": [0, 1, 2, 3] * 10})
    assert load(tmp_path, frame, target="y", task="regression").task == "regression"


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
def test_csv_gz_and_zip(tmp_path, suffix):
    frame = people()
    text = frame.to_csv(index=False)
    path = tmp_path / f"people{suffix}"
    if suffix == ".csv":
        path.write_text(text)
    elif suffix == ".csv.gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("inner/people.csv", text)
    data = load(tmp_path, None, name=path.name, target="score", drop=["label"])
    assert sum(len(s) for s in data.splits.values()) == len(frame)


def test_relative_path_resolves_in_the_data_dir_then_the_current_dir(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    people().to_csv(tmp_path / "d" / "people.csv", index=False)
    cfg = validate(data_config(path="people.csv", target="score", drop=["label"]))
    assert load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path / "d").task == "regression"
    monkeypatch.chdir(tmp_path)
    cfg = validate(data_config(path="d/people.csv", target="score", drop=["label"]))
    assert load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path / "elsewhere").task == "regression"


def test_sample_takes_n_seeded_rows(tmp_path):
    a = load(tmp_path, people(200), target="score", drop=["label"], sample=50, seed=3)
    b = load(tmp_path, None, target="score", drop=["label"], sample=50, seed=3)
    c = load(tmp_path, None, target="score", drop=["label"], sample=50, seed=4)

    def rows(data) -> list[int]:
        return sorted(np.concatenate([s.rows for s in data.splits.values()]).tolist())

    assert len(rows(a)) == 50 and rows(a) == rows(b) != rows(c)
    assert max(rows(a)) < 200


def test_split_column(tmp_path):
    frame = people(30)
    frame["fold"] = ["train"] * 20 + ["val"] * 5 + ["Test"] * 5
    data = load(tmp_path, frame, target="score", drop=["label"], split_column="fold")
    assert data.train.rows.tolist() == list(range(20))
    assert data.val.rows.tolist() == list(range(20, 25)) and data.test.rows.tolist() == list(range(25, 30))
    assert "fold" not in data.feature_names


def test_folds_with_a_split_column_cut_its_train_and_val_rows_and_keep_its_test_rows(tmp_path):
    frame = people(30)
    frame["fold"] = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    frame.to_csv(tmp_path / "people.csv", index=False)
    vals = []
    for fold in range(3):
        data = load(tmp_path, target="score", drop=["label"], split_column="fold",
                    split={"test": 0.0, "folds": 3, "fold": fold})
        assert data.test.rows.tolist() == list(range(25, 30))
        assert sorted([*data.train.rows, *data.val.rows]) == list(range(25))
        vals += data.val.rows.tolist()
    assert sorted(vals) == list(range(25))


@pytest.mark.parametrize("policy", ["mean", "median", "most_frequent"])
def test_missing_values_are_filled_with_train_statistics(tmp_path, policy):
    frame = people(40)
    frame["fold"] = ["train"] * 30 + ["val"] * 5 + ["test"] * 5
    frame.loc[[3, 35], "income"] = np.nan
    frame.loc[[4, 38], "city"] = np.nan
    data = load(tmp_path, frame, target="score", drop=["label"], split_column="fold", missing=policy)
    train_income = frame.loc[:29, "income"]
    expected = {"mean": train_income.mean(), "median": train_income.median(),
                "most_frequent": train_income.mode().iloc[0]}[policy]
    state = data.preprocessing["features"]
    assert state["fill"]["income"] == pytest.approx(expected)
    assert state["fill"]["city"] == frame.loc[:29, "city"].mode().iloc[0]
    assert torch.isfinite(data.test.x).all()


def test_missing_drop_drops_rows_with_a_note(tmp_path):
    frame = people(40)
    frame.loc[[1, 2, 3], "age"] = np.nan
    data = load(tmp_path, frame, target="score", drop=["label"], missing="drop")
    assert sum(len(s) for s in data.splits.values()) == 37
    assert 1 not in np.concatenate([s.rows for s in data.splits.values()])
    assert any("dropped 3 rows" in n for n in data.notes)


def test_statistics_come_from_the_train_split_only(tmp_path):
    """Shifting the test rows far away changes nothing that was fitted: scaler, fills, vocabulary, target."""
    frame = people(60)
    frame["fold"] = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    frame.loc[5, "income"] = np.nan
    shifted = frame.copy()
    test = shifted["fold"] == "test"
    shifted.loc[test, ["age", "income", "score"]] += 1e6
    shifted.loc[test, "city"] = "Atlantis"
    kwargs = {"target": "score", "drop": ["label"], "split_column": "fold", "missing": "mean"}
    a = load(tmp_path, frame, name="a.csv", **kwargs)
    b = load(tmp_path, shifted, name="b.csv", **kwargs)
    assert a.preprocessing == b.preprocessing
    train = frame[frame["fold"] == "train"]
    assert a.preprocessing["features"]["center"][0] == pytest.approx(train["age"].mean())
    assert a.preprocessing["target"]["mean"][0] == pytest.approx(train["score"].mean())
    assert torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.test.x, b.test.x)


def test_unknown_category_becomes_all_zeros_instead_of_crashing():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "city": ["Paris", "Lyon", "Paris"]})
    pre = FeaturePreprocessor("standard", categorical=["city"]).fit(train)
    new = pd.DataFrame({"x": [2.0], "city": ["Atlantis"]})
    assert pre.transform(new)[0, 1:].tolist() == [0.0, 0.0]
    restored = FeaturePreprocessor.from_state(pre.state_dict())
    assert np.array_equal(restored.transform(train), pre.transform(train))


def test_csv_config_trains_end_to_end(cli, write_config, tmp_path):
    people(120).to_csv(tmp_path / "people.csv", index=False)
    config = write_config(data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"]}, epochs=3)
    result = cli("train", config, "--data-dir", tmp_path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["test"]["per_class"]) == {"poor", "rich"}
    assert "one-hot encoding the text columns city" in (run / "train.log").read_text()


def test_data_dir_from_the_environment(cli, write_config, tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    people(120).to_csv(tmp_path / "env" / "people.csv", index=False)
    monkeypatch.setenv("NNRUN_DATA_DIR", str(tmp_path / "env"))
    config = write_config(data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"]}, epochs=1)
    result = cli("check", config)
    assert result.exit_code == 0, result.output


# --- bad input: exit code 2, one line naming the problem and the fix ------------------------------------------

def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)


BAD_INPUTS = {
    "missing file": (None, {"path": "nope.csv", "target": "label"}, "data file 'nope.csv' not found"),
    "missing target column": ("people.csv", {"target": "labl"},
                              ("data.target: column 'labl' not found in 'people.csv' (did you mean 'label'? columns: "
                               "age, income, city, label, score)")),
    "empty file": ("empty.csv", {"target": "label"}, "is empty (it needs a header row and data rows)"),
    "header only": ("header.csv", {"target": "label"}, "has a header but no data rows"),
    "target with NaNs": ("nan_target.csv", {"target": "score"}, "target column 'score' has 2 missing values"),
    "feature with NaNs": ("nan_feature.csv", {"target": "score", "drop": ["label"]},
                          "missing values in column 'age' (2) (set data.missing to drop, mean, median or"),
    "text feature, auto-detection off": ("people.csv", {"target": "score", "drop": ["label"], "categorical": []},
                                         "feature column 'city' holds text (such as"),
    "zip with no CSV": ("none.zip", {"target": "label"}, "must hold exactly one .csv file, found 0"),
    "zip with two CSVs": ("two.zip", {"target": "label"}, "must hold exactly one .csv file, found 2: a.csv, b.csv"),
    "text regression target": ("people.csv", {"target": "label", "task": "regression"},
                               "target column 'label' holds text (such as"),
    "one class": ("one_class.csv", {"target": "label", "drop": ["score"]},
                  "target column 'label' has a single class, 'rich'"),
    "fractional class labels": ("people.csv", {"target": "score", "task": "classification", "drop": ["label"]},
                                "holds fractional numbers"),
    "not a CSV": ("people.xlsx", {"target": "label"}, "must be .csv, .csv.gz or .zip"),
    # issue 11: used to be read as hundreds of classes, then blamed on the loss
    "numbers with a few text cells": ("capped.csv", {"target": "score", "drop": ["label"]},
                                      ("target column 'score' holds numbers except 2 text cell(s), such as '500000+' "
                                       "(row 3), '500000+' (row 7), so it is neither numbers nor class labels")),
    # issue 11: used to be one-hot encoded into hundreds of features with only a note
    "an identifier column": ("ids.csv", {"target": "score", "drop": ["label"]},
                             ("text column 'listing_id' has 40 distinct values in 40 rows, so it looks like an "
                              "identifier")),
}


@pytest.fixture
def bad_files(tmp_path):
    frame = people(40)
    frame.to_csv(tmp_path / "people.csv", index=False)
    (tmp_path / "people.xlsx").write_text("not really")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("age,label\n")
    nan_target = frame.copy()
    nan_target.loc[[1, 2], "score"] = np.nan
    nan_target.to_csv(tmp_path / "nan_target.csv", index=False)
    nan_feature = frame.copy()
    nan_feature.loc[[1, 2], "age"] = np.nan
    nan_feature.to_csv(tmp_path / "nan_feature.csv", index=False)
    capped = frame.copy()
    capped["score"] = capped["score"].round(1).astype(object)
    capped.loc[[3, 7], "score"] = "500000+"
    capped.to_csv(tmp_path / "capped.csv", index=False)
    frame.assign(listing_id=[f"L{i:05d}" for i in range(len(frame))]).to_csv(tmp_path / "ids.csv", index=False)
    one_class = frame.assign(label="rich")
    one_class.to_csv(tmp_path / "one_class.csv", index=False)
    _zip(tmp_path / "none.zip", {"readme.txt": "hello"})
    _zip(tmp_path / "two.zip", {"a.csv": frame.to_csv(index=False), "b.csv": frame.to_csv(index=False)})
    return tmp_path


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_csv_input_exits_2_with_one_line(cli, write_config, bad_files, case):
    file, data, expected = BAD_INPUTS[case]
    data = {"type": "csv", "path": file, **data} if file else {"type": "csv", **data}
    config = write_config(data=data)
    result = cli("train", config, "--data-dir", bad_files, "--runs-dir", bad_files / "runs")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line and line.endswith(")")
    assert "Traceback" not in result.output
    assert not (bad_files / "runs").exists()


def test_an_identifier_listed_in_categorical_is_encoded_on_purpose(tmp_path):
    frame = people(40).assign(listing_id=[f"L{i:05d}" for i in range(40)])
    data = load(tmp_path, frame, target="score", drop=["label"], categorical=["city", "listing_id"])
    assert sum(name.startswith("listing_id=") for name in data.feature_names) > 20

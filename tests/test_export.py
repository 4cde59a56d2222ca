"""`nnrun export`: the exported graph, run by onnxruntime on inputs built from raw files with nothing but its JSON
sidecar and numpy, gives what `nnrun predict` writes; and every bad request is one error line that leaves no file."""

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

import nnrun.export
from nnrun.cli import app
from tests.helpers import BASE_CONFIG, merged, people, run_dirs, write_idx_folder

RTOL = ATOL = 1e-5  # |exported - predict| <= ATOL + RTOL * |predict|
BATCH_SIZES = (1, 7)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def train(folder: Path, **changes) -> Path:
    """Train through the CLI on data in `folder`; the run's best.pth."""
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(merged(BASE_CONFIG, changes)))
    result = invoke("train", config, "--runs-dir", folder / "runs", "--data-dir", folder)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(folder / "runs")
    return run / "checkpoints" / "best.pth"


def predict(checkpoint: Path, rows: Path, out: Path) -> pd.DataFrame:
    result = invoke("predict", checkpoint, rows, "--out", out)
    assert result.exit_code == 0, result.output
    return pd.read_csv(out)


def table_input(contract: dict, path: Path) -> np.ndarray:
    """The graph's input from a raw CSV, as a program in any language would build it: the sidecar and numpy only."""
    given = contract["input"]
    fill = given["missing"]["fill"]
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    x = np.zeros((len(rows), len(given["columns"])), dtype=given["dtype"])
    for i, row in enumerate(rows):
        for entry in given["columns"]:
            text = row[entry["column"]] or str(fill[entry["column"]])  # an empty cell is a missing value
            x[i, entry["position"]] = float(text) if entry["kind"] == "numeric" else float(text == entry["category"])
    return x


def idx_input(contract: dict, path: Path) -> np.ndarray:
    """The graph's input from a raw IDX images file (the MNIST format): the sidecar and numpy only."""
    given = contract["input"]
    raw = gzip.decompress(path.read_bytes())
    count = int.from_bytes(raw[4:8], "big")
    pixels = np.frombuffer(raw, dtype=given["dtype"], offset=16)
    return pixels.reshape(count, *given["shape"][1:])


def run_onnx(path: Path, x: np.ndarray, batch_size: int) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.shape[0] == "batch"  # a dynamic batch dimension, not the example's size
    return np.concatenate([session.run(None, {given.name: x[i:i + batch_size]})[0]
                           for i in range(0, len(x), batch_size)])


def new_people(folder: Path) -> Path:
    """20 unseen rows with a missing number, a missing category and a category training never saw."""
    frame = people(20, seed=7)
    frame.loc[2, "age"] = np.nan
    frame.loc[4, "city"] = np.nan
    frame.loc[6, "city"] = "Atlantis"
    frame.to_csv(folder / "new.csv", index=False)
    return folder / "new.csv"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A CSV classifier with a text column and missing values filled by the train median."""
    folder = tmp_path_factory.mktemp("classifier")
    frame = people(200)
    frame.loc[[3, 40], "age"] = np.nan
    frame.loc[[5, 60], "city"] = np.nan
    frame.to_csv(folder / "people.csv", index=False)
    return train(folder, epochs=3, data={"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"],
                                         "missing": "median"})


@pytest.fixture(scope="module")
def regressor(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("regressor")
    people(300).to_csv(folder / "people.csv", index=False)
    return train(folder, epochs=8, loss="mse", optimizer={"type": "adam", "lr": 0.01},
                 data={"type": "csv", "path": "people.csv", "target": "score", "drop": ["label"]})


def test_onnx_classifier_matches_predict_on_rows_built_from_the_sidecar(classifier, tmp_path):
    result = invoke("export", classifier, "--data-dir", classifier.parents[3])
    assert result.exit_code == 0, result.output
    model, sidecar = classifier.with_suffix(".onnx"), classifier.with_suffix(".json")  # beside the checkpoint
    assert str(model) in result.stdout and str(sidecar) in result.stdout and "max difference" in result.stdout
    contract = json.loads(sidecar.read_text())
    assert contract["input"]["dtype"] == "float64" and contract["input"]["shape"] == ["batch", 5]
    assert [(c["column"], c["kind"], c.get("category")) for c in contract["input"]["columns"]] == [
        ("age", "numeric", None), ("income", "numeric", None),
        ("city", "one_hot", "Lyon"), ("city", "one_hot", "Nice"), ("city", "one_hot", "Paris")]
    assert contract["input"]["vocabularies"] == {"city": ["Lyon", "Nice", "Paris"]}
    assert contract["input"]["missing"]["policy"] == "median" and set(contract["input"]["missing"]["fill"]) == {
        "age", "income", "city"}
    assert contract["output"]["classes"] == ["poor", "rich"] and contract["output"]["name"] == "probabilities"

    rows = new_people(tmp_path)
    expected = predict(classifier, rows, tmp_path / "predictions.csv")
    x = table_input(contract, rows)
    for batch_size in BATCH_SIZES:
        probabilities = run_onnx(model, x, batch_size)
        np.testing.assert_allclose(probabilities, expected[["prob_poor", "prob_rich"]], rtol=RTOL, atol=ATOL)
        classes = np.array(contract["output"]["classes"])[probabilities.argmax(axis=1)]
        assert classes.tolist() == expected["prediction"].tolist()


def test_onnx_regressor_returns_values_in_the_targets_original_units(regressor, tmp_path):
    out = tmp_path / "deploy" / "house.onnx"  # a folder that does not exist yet
    result = invoke("export", regressor, "--out", out, "--data-dir", regressor.parents[3])
    assert result.exit_code == 0, result.output
    contract = json.loads((tmp_path / "deploy" / "house.json").read_text())
    assert contract["output"]["name"] == "values" and contract["output"]["targets"] == ["score"]
    assert "original units" in contract["output"]["meaning"]
    assert contract["input"]["missing"]["policy"] == "error" and contract["input"]["missing"]["fill"] == {}

    rows = new_people(tmp_path)
    frame = pd.read_csv(rows)
    frame.dropna().to_csv(rows, index=False)  # trained with data.missing=error: every value must be given
    expected = predict(regressor, rows, tmp_path / "predictions.csv")["prediction"].to_numpy()
    x = table_input(contract, rows)
    for batch_size in BATCH_SIZES:
        values = run_onnx(out, x, batch_size)[:, 0]
        np.testing.assert_allclose(values, expected, rtol=RTOL, atol=ATOL)
    truth = frame.dropna()["score"].to_numpy()
    assert np.abs(values - truth).mean() < truth.std()  # scores near 150, not standardized values near 0


def test_exported_program_loads_back_with_torch_export_load_and_matches(regressor, tmp_path):
    out = tmp_path / "house.pt2"
    result = invoke("export", regressor, "--format", "exported_program", "--out", out,
                    "--data-dir", regressor.parents[3])
    assert result.exit_code == 0, result.output
    assert "torch.export.load matches nnrun" in result.stdout
    contract = json.loads((tmp_path / "house.json").read_text())
    rows = new_people(tmp_path)
    pd.read_csv(rows).dropna().to_csv(rows, index=False)
    expected = predict(regressor, rows, tmp_path / "predictions.csv")["prediction"].to_numpy()
    program = torch.export.load(out).module()
    x = torch.from_numpy(table_input(contract, rows))
    for batch_size in BATCH_SIZES:
        with torch.no_grad():
            values = torch.cat([program(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        np.testing.assert_allclose(values[:, 0].numpy(), expected, rtol=RTOL, atol=ATOL)


def test_onnx_cnn_takes_uint8_images_and_matches_predict(tmp_path):
    digits = write_idx_folder(tmp_path / "digits", n_train=80, n_test=20, size=12)
    best = train(tmp_path, epochs=2, batch_size=16, optimizer={"type": "adam", "lr": 0.01},
                 data={"type": "idx", "path": "digits"}, model={"type": "cnn", "channels": [4], "convs_per_block": 1})
    result = invoke("export", best, "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    contract = json.loads(best.with_suffix(".json").read_text())
    assert contract["input"]["dtype"] == "uint8" and contract["input"]["shape"] == ["batch", 1, 12, 12]
    assert contract["input"]["layout"] == "NCHW" and len(contract["input"]["normalization"]["mean"]) == 1
    assert contract["output"]["classes"] == [str(i) for i in range(10)]

    images = digits / "t10k-images-idx3-ubyte.gz"
    expected = predict(best, images, tmp_path / "predictions.csv")
    x = idx_input(contract, images)
    for batch_size in BATCH_SIZES:
        probabilities = run_onnx(best.with_suffix(".onnx"), x, batch_size)
        np.testing.assert_allclose(probabilities, expected.filter(like="prob_"), rtol=RTOL, atol=ATOL)


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.output
    return line


@pytest.mark.parametrize("case, expected", [
    ("missing file", "checkpoint '{folder}/nope.pth' not found"),
    ("not a checkpoint", "is not an nnrun checkpoint"),
    ("unknown format", "unknown format 'onx' (did you mean 'onnx'? choices: exported_program, onnx)"),
    ("a file in the way of --out", "a file stands where a folder should be"),
    ("--out names the sidecar", "ends in .json, the name of the sidecar"),
])
def test_bad_requests_are_one_error_line_and_write_nothing(classifier, tmp_path, case, expected):
    args = [classifier, "--data-dir", classifier.parents[3]]
    if case == "missing file":
        args[0] = tmp_path / "nope.pth"
    elif case == "not a checkpoint":
        torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth")
        args[0] = tmp_path / "other.pth"
    elif case == "unknown format":
        args += ["--format", "onx"]
    elif case == "a file in the way of --out":
        (tmp_path / "a_file").write_text("in the way")
        args += ["--out", tmp_path / "a_file" / "model.onnx"]
    else:
        args += ["--out", tmp_path / "model.json"]
    before = sorted(classifier.parent.iterdir()), sorted(tmp_path.iterdir())
    line = one_error_line(invoke("export", *args))
    assert expected.format(folder=tmp_path) in line
    assert (sorted(classifier.parent.iterdir()), sorted(tmp_path.iterdir())) == before


def test_without_the_export_extra_onnx_is_one_line_and_exported_program_still_works(classifier, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed: importing it fails
    line = one_error_line(invoke("export", classifier, "--out", tmp_path / "m.onnx"))
    assert line == 'error: exporting to ONNX needs onnxruntime, which is not installed (pip install "nnrun[export]")'
    assert list(tmp_path.iterdir()) == []
    result = invoke("export", classifier, "--format", "exported_program", "--out", tmp_path / "m.pt2",
                    "--data-dir", classifier.parents[3])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt2"]


def test_an_export_that_does_not_match_nnrun_is_refused_and_removed(classifier, tmp_path, monkeypatch):
    monkeypatch.setattr(nnrun.export, "ATOL", -1.0)  # no difference can pass: the check itself is under test
    line = one_error_line(invoke("export", classifier, "--out", tmp_path / "m.onnx",
                                 "--data-dir", classifier.parents[3]))
    assert "the exported model does not reproduce nnrun's predictions: run by onnxruntime on" in line
    assert "test rows at batch size 1" in line
    assert "nothing was written" in line
    assert list(tmp_path.iterdir()) == []  # neither the model, the sidecar nor a temporary file

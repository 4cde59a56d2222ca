"""CSV fuzzing: tables with mixed types, extreme and missing values, odd headers, encodings and separators,
fed to training (`nnrun check`: data, model, one batch), to `nnrun eval --data` and to `nnrun predict`."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import BASE_CONFIG, merged, people, run_dirs
from tests.robustness.conftest import assert_clean

CELLS = st.one_of(
    st.integers(-5, 5), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([math.inf, -math.inf, 1e39, -1e39, 3.4e38, 1e-320, 0.0]),  # beyond float32, subnormal
    st.sampled_from(["", "NA", "nan", "abc", "Paris", "500000+", "1,5", " 7 ", "é", "🐍", "a\nb", '"q"', "TRUE"]),
)
def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Usual values four times in five: tables get past reading often, and an odd cell is still common."""
    return st.one_of(usual, usual, usual, usual, odd)


HEADERS = st.sampled_from(["a", "b", "c", "target", "label", "", "a", "col x", "é", "Unnamed: 0", "1", "a.b"])


@st.composite
def tables(draw) -> tuple[bytes, str, str]:
    """(file bytes, target column, separator): a small table drawn cell by cell, then encoded oddly."""
    width = draw(st.integers(1, 4))
    header = [draw(mostly(st.sampled_from(["a", "b", "c", "d"]), HEADERS)) for _ in range(width)]  # duplicates too
    rows = [[draw(mostly(st.floats(-100, 100), CELLS)) for _ in range(width)] for _ in range(draw(st.integers(0, 25)))]
    if draw(st.booleans()):  # a clean numeric or class target, so that some tables get past the reading
        column = draw(st.integers(0, width - 1))
        classes = draw(st.sampled_from([["x", "y"], [0, 1, 2], None]))
        for i, row in enumerate(rows):
            row[column] = classes[i % len(classes)] if classes else float(i)
    sep = draw(mostly(st.just(","), st.sampled_from([";", "\t"])))

    def cell(value) -> str:
        text = repr(value) if isinstance(value, float) else str(value)
        return f'"{text}"' if any(ch in text for ch in (sep, "\n", '"')) else text

    text = "\n".join(sep.join(cell(v) for v in line) for line in [header, *rows]) + draw(st.sampled_from(["", "\n"]))
    encoding = draw(mostly(st.just("utf-8"), st.sampled_from(["utf-8-sig", "latin-1", "utf-16"])))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    return data, draw(st.sampled_from(header)) or "target", sep


@given(table=tables(), missing=st.sampled_from(["error", "drop", "median", "most_frequent"]),
       task=st.sampled_from(["auto", "classification", "regression"]))
def test_fuzzed_tables_train_or_are_refused_cleanly(cli, tmp_path, table, missing, task):
    data, target, _ = table
    (tmp_path / "fuzz.csv").write_bytes(data)
    config = merged(BASE_CONFIG, {"data": {"type": "csv", "path": "fuzz.csv", "target": target, "missing": missing,
                                           "task": task}, "loss": "mse" if task == "regression" else "cross_entropy",
                                  "threads": 1})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = cli("check", tmp_path / "c.yaml", "--data-dir", tmp_path)
    assert_clean("csv fuzz: training", result.exit_code, result.stdout, result.stderr)


def test_a_class_seen_only_in_val_or_test_trains(cli, write_config, tmp_path):
    frame = people(60)
    frame.loc[59, "label"] = "royal"  # one row: the split puts it in val or test, never in train and the others
    frame.to_csv(tmp_path / "rare.csv", index=False)
    for seed in range(3):
        config = write_config(data={"type": "csv", "path": "rare.csv", "target": "label", "drop": ["score"]},
                              epochs=1, seed=seed)
        result = cli("train", config, "--data-dir", tmp_path, "--runs-dir", tmp_path / f"runs{seed}")
        assert_clean("csv fuzz: class only in val or test", result.exit_code, result.stdout, result.stderr,
                     allowed=(0,))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """One real checkpoint of a mixed CSV (numbers, a text column, text labels), trained once for the module."""
    from typer.testing import CliRunner

    from nnrun.cli import app

    folder = tmp_path_factory.mktemp("trained")
    people(120).to_csv(folder / "people.csv", index=False)
    config = merged(BASE_CONFIG, {"data": {"type": "csv", "path": "people.csv", "target": "label", "drop": ["score"],
                                           "missing": "median"}, "epochs": 2, "threads": 1})
    (folder / "c.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", str(folder / "c.yaml"), "--data-dir", str(folder), "--runs-dir",
                                      str(folder / "runs")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(folder / "runs")
    return run / "checkpoints" / "best.pth"


USUAL = {"age": st.integers(18, 90), "income": st.floats(1e3, 1e6), "city": st.sampled_from(["Paris", "Lyon", "Nice"]),
         "label": st.sampled_from(["rich", "poor"]), "extra": st.integers()}
ODD = {"age": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                        st.sampled_from(["", "old", "1e999"])),
       "income": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", "lots"])),
       "city": st.one_of(st.sampled_from(["Lille", "", "é"]), st.text(max_size=5)),
       "label": st.sampled_from(["royal", "", "1"]), "extra": st.text(max_size=3)}


@st.composite
def people_rows(draw) -> bytes:
    """Rows with the trained model's columns (one may be missing, one extra), usual values with up to two odd
    cells, so that both the scored and the refused paths are exercised."""
    columns = [c for c in USUAL if c != "extra"]
    if draw(st.integers(0, 9)) == 0:
        columns.remove(draw(st.sampled_from(columns)))
    columns += draw(st.sampled_from([[], ["extra"]]))
    rows = [{c: draw(USUAL[c]) for c in columns} for _ in range(draw(st.integers(0, 8)))]
    for _ in range(draw(st.integers(0, 2)) if rows else 0):
        row, column = draw(st.sampled_from(rows)), draw(st.sampled_from(columns))
        row[column] = draw(ODD[column])
    lines = [",".join(columns)] + [",".join(str(r[c]).replace(",", " ").replace("\n", " ") for c in columns)
                                   for r in rows]
    return ("\n".join(lines) + "\n").encode(draw(st.sampled_from(["utf-8", "latin-1"])), errors="replace")


@given(rows=people_rows())
def test_fuzzed_rows_for_eval_and_predict_are_scored_or_refused_cleanly(cli, tmp_path, checkpoint, rows):
    (tmp_path / "rows.csv").write_bytes(rows)
    result = cli("eval", checkpoint, "--data", tmp_path / "rows.csv", "--out", tmp_path / "e.json")
    assert_clean("csv fuzz: eval --data", result.exit_code, result.stdout, result.stderr)
    result = cli("predict", checkpoint, tmp_path / "rows.csv", "--out", tmp_path / "p.csv")
    assert_clean("csv fuzz: predict", result.exit_code, result.stdout, result.stderr)

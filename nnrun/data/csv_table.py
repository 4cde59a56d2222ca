"""Reading a user's CSV into a `Table`: columns, task, class names, missing values, sampling, split column.

Nothing here fits a statistic: imputation values, one-hot vocabularies and scaling are learned later, from the
train split only, by `FeaturePreprocessor`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from nnrun.data.tables import Table
from nnrun.errors import UserError, hint

MAX_AUTO_CLASSES = 20  # an integer target with at most this many values is read as class labels
MOSTLY = 0.05  # a target column whose text cells are at most this share of it is numbers with typos
IDENTIFIER_SHARE = 0.5  # a text column with distinct values on at least this share of rows looks like an id
SPLIT_NAMES = ("train", "val", "test")


def read_frame(path: Path) -> pd.DataFrame:
    """Read a .csv, .csv.gz, or .zip holding exactly one CSV."""
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist()
                           if m.lower().endswith(".csv") and not m.startswith("__MACOSX/")]
                if len(members) != 1:
                    found = ", ".join(members) if members else "none; it holds " + (
                        ", ".join(archive.namelist()) or "nothing")
                    raise UserError(f"zip file '{path}' must hold exactly one .csv file, found {len(members)}: "
                                    f"{found} (put one CSV in the zip, or unzip it and point data.path at the CSV)")
                with archive.open(members[0]) as file:
                    return _read_csv(file, path)
        if name.endswith(".csv") or name.endswith(".csv.gz"):
            return _read_csv(path, path)
    except zipfile.BadZipFile:
        raise UserError(f"'{path}' is not a valid zip file (re-download it, or give the .csv itself)") from None
    raise UserError(f"data file '{path}' must be .csv, .csv.gz or .zip (convert it to CSV)")


def _read_csv(source, path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(source)
    except pd.errors.EmptyDataError:
        raise UserError(f"CSV file '{path}' is empty (it needs a header row and data rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as exc:
        reason = str(exc).strip().split("\n")[0]
        raise UserError(f"CSV file '{path}' could not be read: {reason} (check that it is a comma-separated "
                        f"text file)") from None
    if frame.empty:
        raise UserError(f"CSV file '{path}' has a header but no data rows (add rows)")
    return frame


def csv_table(frame: pd.DataFrame, *, name: str, target: str, features: list[str] | None, drop: list[str],
              categorical: list[str] | str, missing: str, task: str, sample: int | None, seed: int,
              split_column: str | None) -> Table:
    """Select columns, read the target as classes or values, deal with missing values and sampling."""
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    _require_columns([target], columns, "data.target", name)
    _require_columns(drop, columns, "data.drop", name)
    if split_column is not None:
        _require_columns([split_column], columns, "data.split_column", name)
    if features is not None:
        _require_columns(features, columns, "data.features", name)
        if target in features:
            raise UserError(f"data.features includes the target column '{target}' (remove it from data.features)")
    feature_columns = features if features is not None else [
        c for c in columns if c != target and c != split_column and c not in drop]
    if not feature_columns:
        raise UserError(f"no feature columns are left in '{name}' (check data.features and data.drop)")

    notes: list[str] = []
    if sample is not None and sample < len(frame):
        frame = frame.sample(n=sample, random_state=seed).sort_index()
        notes.append(f"sampled {sample} of the file's rows (seed {seed})")
    frame = _handle_missing(frame, feature_columns, target, missing, notes)

    y, task, class_names = _read_target(frame[target], target, task, notes)
    if categorical == "auto":
        categorical = [c for c in feature_columns if not pd.api.types.is_numeric_dtype(frame[c])]
        _refuse_identifiers(frame, categorical)
        if categorical:
            counts = ", ".join(f"{c} ({frame[c].nunique()} values)" for c in categorical)
            notes.append(f"one-hot encoding the text columns {counts}; set data.categorical to choose them yourself")
    else:
        unknown = [c for c in categorical if c not in feature_columns]
        if unknown:
            raise UserError(f"data.categorical names '{unknown[0]}', which is not a feature column "
                            f"(feature columns: {', '.join(feature_columns)})")
    split = None
    if split_column is not None:
        split = _read_split(frame[split_column], split_column)
        notes.append(f"split taken from column '{split_column}' (data.split fractions are not used)")
    return Table(frame[feature_columns].reset_index(drop=True), y, task, class_names, categorical=list(categorical),
                 missing=missing, split=split, notes=notes, row_ids=frame.index.to_numpy())


def _require_columns(wanted: list[str], columns: list[str], key: str, name: str) -> None:
    for column in wanted:
        if column not in columns:
            raise UserError(f"{key}: column '{column}' not found in '{name}' ({hint(column, columns)}columns: "
                            f"{', '.join(columns)})")


def _handle_missing(frame: pd.DataFrame, features: list[str], target: str, missing: str,
                    notes: list[str]) -> pd.DataFrame:
    used = [*features, target]
    counts = frame[used].isna().sum()
    counts = counts[counts > 0]
    if counts.empty:
        return frame
    if missing == "drop":
        kept = frame.dropna(subset=used)
        if kept.empty:
            raise UserError("every row has a missing value, so data.missing=drop leaves nothing "
                            "(choose mean, median or most_frequent, or drop the emptiest column with data.drop)")
        notes.append(f"dropped {len(frame) - len(kept)} rows with missing values (data.missing=drop)")
        return kept
    if target in counts:
        raise UserError(f"target column '{target}' has {counts[target]} missing values (drop those rows from the "
                        f"file, or set data.missing=drop)")
    if missing == "error":
        listed = ", ".join(f"'{c}' ({n})" for c, n in counts.items())
        raise UserError(f"missing values in column {listed} (set data.missing to drop, mean, median or "
                        f"most_frequent)")
    listed = ", ".join(f"{c} ({n})" for c, n in counts.items())
    notes.append(f"filling missing values with the train split's {missing.replace('_', ' ')}: {listed}")
    return frame


def _read_target(column: pd.Series, name: str, task: str, notes: list[str]) -> tuple[np.ndarray, str, list[str] | None]:
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    values = column.to_numpy()
    if numeric and not np.isfinite(values.astype(np.float64)).all():
        row = column.index[~np.isfinite(values.astype(np.float64))][0]
        raise UserError(f"target column '{name}' holds an infinite value (row {row}) (fix or drop that row)")
    integral = numeric and np.all(np.mod(values.astype(np.float64), 1) == 0)
    if not numeric and task != "classification":
        _refuse_mostly_numbers(column, name, asked=task)
    if task == "auto":
        # Few distinct integers are class labels, unless nearly every row has its own (a tiny regression table).
        few = column.nunique() <= min(MAX_AUTO_CLASSES, len(column) / 2)
        task = "regression" if numeric and not (integral and few) else "classification"
        why = "text" if not numeric else (f"{column.nunique()} integer values" if task == "classification"
                                          else "numbers")
        notes.append(f"task: {task}, because target '{name}' holds {why} (set data.task to change it)")
    if task == "regression":
        if not numeric:
            raise UserError(f"target column '{name}' holds text (such as {str(column.iloc[0])!r}), so it cannot be "
                            f"a regression target (set data.task=classification, or choose a numeric target)")
        return values.astype(np.float64), task, None
    if numeric and not integral:
        example = next(v for v in values if v % 1 != 0)
        raise UserError(f"target column '{name}' holds fractional numbers (such as {example}), which are not class "
                        f"labels (set data.task=regression, or give integer or text labels)")
    labels = column.astype(np.int64) if numeric else column.astype(str)
    classes = np.sort(labels.unique())
    if len(classes) < 2:
        raise UserError(f"target column '{name}' has a single class, {str(classes[0])!r}, so there is nothing to "
                        f"classify (check data.target, or give rows of at least two classes)")
    codes = np.searchsorted(classes, labels.to_numpy())
    return codes.astype(np.int64), task, [str(c) for c in classes]


def _refuse_mostly_numbers(column: pd.Series, name: str, *, asked: str) -> None:
    """A target of numbers with a few text cells ("500000+") is a dirty regression target, not hundreds of classes."""
    present = column.dropna()
    parsed = pd.to_numeric(present, errors="coerce")
    text = present[parsed.isna()]
    if len(present) and not text.empty and len(text) <= MOSTLY * len(present) and parsed.nunique() > MAX_AUTO_CLASSES:
        shown = ", ".join(f"{value!r} (row {row})" for row, value in text.head(3).items())
        raise UserError(f"target column '{name}' holds numbers except {len(text)} text cell(s), such as {shown}, so it "
                        f"is neither numbers nor class labels (fix or drop those rows; or, if the values are labels, "
                        f"set data.task=classification)")


def _refuse_identifiers(frame: pd.DataFrame, columns: list[str]) -> None:
    """A text column with a value on nearly every row (an id) would one-hot into as many features, all noise."""
    for column in columns:
        distinct = frame[column].nunique()
        if distinct > MAX_AUTO_CLASSES and distinct >= IDENTIFIER_SHARE * len(frame):
            raise UserError(f"text column '{column}' has {distinct} distinct values in {len(frame)} rows, so it looks "
                            f"like an identifier: one-hot encoding would add {distinct} features that cannot "
                            f"generalize (leave it out: data.drop=[{column}]; or, to encode it anyway, list it in "
                            f"data.categorical)")


def _read_split(column: pd.Series, name: str) -> np.ndarray:
    labels = column.astype(str).str.strip().str.lower().to_numpy()
    bad = sorted(set(labels) - set(SPLIT_NAMES))
    if bad:
        raise UserError(f"split column '{name}' holds {', '.join(repr(b) for b in bad[:3])}; its values must be "
                        f"train, val or test (fix the column, or use data.split fractions instead)")
    if "train" not in labels:
        raise UserError(f"split column '{name}' has no 'train' rows (mark some rows train)")
    return labels

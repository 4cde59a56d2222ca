"""Preprocessing fitted on the train split only, and stored as plain lists so a checkpoint can replay it.

`FeaturePreprocessor` turns a raw feature frame into a float32 matrix: it fills missing values, one-hot
encodes categorical columns and scales numeric ones. `TargetScaler` standardizes regression targets so that
every reported metric can be turned back into original units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nnrun.errors import UserError

FILLS = ("mean", "median", "most_frequent")
# Feature and target values must stay far below float32's 3.4e38: squares and sums of them are taken in training.
LARGEST = 1e30


class FeaturePreprocessor:
    """Fill, one-hot encode and scale feature columns with statistics of the rows it was fitted on."""

    def __init__(self, scale: str = "standard", *, categorical: list[str] = (), missing: str = "error"):
        self.scale = scale
        self.missing = missing
        self.categorical: list[str] = list(categorical)
        self.numeric: list[str] = []
        self.fill: dict[str, float | str] = {}  # column -> value that replaces a missing one
        self.vocabulary: dict[str, list[str]] = {}  # categorical column -> categories seen in train
        self.center: np.ndarray | None = None  # (numeric columns,)
        self.spread: np.ndarray | None = None

    @property
    def columns(self) -> list[str]:
        """The input columns, in the order the model expects them."""
        return [*self.numeric, *self.categorical]

    @property
    def feature_names(self) -> list[str]:
        """The model's input features: numeric columns, then one `column=category` per category."""
        return [*self.numeric, *[f"{c}={v}" for c in self.categorical for v in self.vocabulary[c]]]

    def fit(self, frame: pd.DataFrame) -> FeaturePreprocessor:
        """Learn fill values, vocabularies and scaling from the train rows."""
        self.numeric = [str(c) for c in frame.columns if c not in self.categorical]
        self._check_numeric(frame)
        if self.missing in FILLS:
            for column in self.numeric:
                self.fill[column] = _statistic(frame[column].astype(np.float64), self.missing)
            for column in self.categorical:  # a text column has no mean: its most frequent value fills it
                mode = frame[column].dropna().astype(str).mode()
                self.fill[column] = str(mode.iloc[0]) if len(mode) else ""
        for column in self.categorical:
            self.vocabulary[column] = sorted(self._text(frame[column]).dropna().unique().tolist())

        values = self._numeric_matrix(frame)
        if self.scale == "standard":
            self.center, self.spread = values.mean(axis=0), values.std(axis=0)
        elif self.scale == "minmax":
            self.center, self.spread = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
        else:
            self.center, self.spread = np.zeros(values.shape[1]), np.ones(values.shape[1])
        self.spread = np.where(self.spread > 0, self.spread, 1.0)  # a constant column stays constant
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, features) C-contiguous float32 matrix; a category not seen in train becomes all zeros."""
        center, spread = self.input_scaling()
        # Row-major: batches gather rows, and a column-major matrix (what pandas hands back) makes every gather strided.
        return ((self.encode(frame) - center) / spread).astype(np.float32, order="C")

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, features) float64 before scaling: numeric columns with missing values filled, then one-hot columns.

        What an exported model takes: it applies `input_scaling` itself.
        """
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise UserError(f"input has no column {', '.join(repr(c) for c in absent)} "
                            f"(the model was trained on the columns {', '.join(self.columns)})")
        self._check_numeric(frame)
        blocks = [self._numeric_matrix(frame)]
        for column in self.categorical:
            text = self._text(frame[column])
            if column in self.fill:
                text = text.fillna(self.fill[column])
            elif text.isna().any():
                self._missing_error(frame, column)
            codes = pd.Index(self.vocabulary[column]).get_indexer(text)  # -1: not seen in train
            one_hot = np.zeros((len(frame), len(self.vocabulary[column])))
            seen = codes >= 0
            one_hot[np.flatnonzero(seen), codes[seen]] = 1.0
            blocks.append(one_hot)
        return np.concatenate(blocks, axis=1)

    def input_scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """(features,) center and spread for `encode`'s columns; one-hot columns get 0 and 1, so they pass unchanged."""
        n_one_hot = len(self.feature_names) - len(self.numeric)
        return (np.concatenate([self.center, np.zeros(n_one_hot)]),
                np.concatenate([self.spread, np.ones(n_one_hot)]))

    def unseen_notes(self, frame: pd.DataFrame) -> list[str]:
        """One note per categorical column of `frame` with values train never saw (they encode as all zeros)."""
        notes = []
        for column in self.categorical:
            text = self._text(frame[column]).dropna()
            new = text[~text.isin(self.vocabulary[column])]
            if len(new):
                examples = ", ".join(repr(v) for v in new.unique()[:3])
                notes.append(f"column '{column}': {len(new)} row(s) hold categories not seen in training ({examples}"
                             f"{', ...' if new.nunique() > 3 else ''}), encoded as all zeros")
        return notes

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "missing": self.missing, "numeric": list(self.numeric),
                "categorical": list(self.categorical), "fill": dict(self.fill),
                "vocabulary": {c: list(v) for c, v in self.vocabulary.items()},
                "center": self.center.tolist(), "spread": self.spread.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeaturePreprocessor:
        pre = cls(state["scale"], categorical=state["categorical"], missing=state["missing"])
        pre.numeric = list(state["numeric"])
        pre.fill = dict(state["fill"])
        pre.vocabulary = {c: list(v) for c, v in state["vocabulary"].items()}
        pre.center, pre.spread = np.asarray(state["center"]), np.asarray(state["spread"])
        return pre

    def _numeric_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[self.numeric].astype(np.float64)
        if self.fill:
            values = values.fillna({c: self.fill[c] for c in self.numeric})
        matrix = values.to_numpy()
        if not np.isfinite(matrix).all():
            bad_column = next(c for i, c in enumerate(self.numeric) if not np.isfinite(matrix[:, i]).all())
            self._missing_error(frame, bad_column, infinite=not values[bad_column].isna().any())
        too_large = np.abs(matrix) > LARGEST
        if too_large.any():
            i, j = np.argwhere(too_large)[0]
            raise UserError(f"row {frame.index[i]}, column '{self.numeric[j]}' holds {matrix[i, j]:.4g}, beyond what "
                            f"float32 training can use (at most {LARGEST:.0e} in size; rescale the column, for "
                            f"example to thousands or millions, or leave it out with data.drop)")
        return matrix

    def _check_numeric(self, frame: pd.DataFrame) -> None:
        text = [c for c in self.numeric if not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            example = frame[text[0]].dropna().iloc[0] if frame[text[0]].notna().any() else ""
            raise UserError(f"feature column '{text[0]}' holds text (such as {str(example)!r}), not numbers "
                            f"(add it to data.categorical to one-hot encode it, or leave it out with data.drop)")

    def _missing_error(self, frame: pd.DataFrame, column: str, *, infinite: bool = False) -> None:
        values = frame[column]
        bad = values.isna() if not infinite else ~np.isfinite(values.astype(np.float64))
        row = frame.index[np.flatnonzero(bad.to_numpy())[0]]
        what = "an infinite" if infinite else "a missing"
        fix = ("replace it with a number" if infinite else
               "fill it in, or train with data.missing set to mean, median or most_frequent")
        raise UserError(f"row {row}, column '{column}' has {what} value and the model was trained with "
                        f"data.missing={self.missing} ({fix})")

    @staticmethod
    def _text(column: pd.Series) -> pd.Series:
        """Categories as text, so 1 and '1' are one category and a checkpoint stores plain strings."""
        return column.astype("string").astype(object).where(column.notna(), None)


def _statistic(values: pd.Series, kind: str) -> float:
    """The train column's mean, median or most frequent value, ignoring missing ones (0.0 if all are missing)."""
    present = values.dropna()
    if present.empty:
        return 0.0
    if kind == "most_frequent":
        return float(present.mode().iloc[0])
    return float(present.mean() if kind == "mean" else present.median())


class TargetScaler:
    """Standardize regression targets (or leave them as they are) and invert it for reporting."""

    def __init__(self, scale: str = "standard"):
        self.scale = scale
        self.mean: np.ndarray | None = None  # (targets,)
        self.std: np.ndarray | None = None

    def fit(self, y: np.ndarray) -> TargetScaler:
        y = y.reshape(len(y), -1)
        if self.scale == "standard":
            self.mean, self.std = y.mean(axis=0), y.std(axis=0)
            self.std = np.where(self.std > 0, self.std, 1.0)
        else:
            self.mean, self.std = np.zeros(y.shape[1]), np.ones(y.shape[1])
        return self

    def transform(self, y: np.ndarray) -> np.ndarray:
        """(rows, targets) float32 targets in training units (no rows, such as a `test: 0` split, included)."""
        return ((y.reshape(len(y), len(self.mean)) - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TargetScaler:
        scaler = cls(state["scale"])
        scaler.mean, scaler.std = np.asarray(state["mean"]), np.asarray(state["std"])
        return scaler

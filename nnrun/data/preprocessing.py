"""Preprocessing fitted on the train split only, and stored as plain lists so a checkpoint can replay it.

`FeaturePreprocessor` turns a raw feature frame into a float32 matrix (feature scaling);
`TargetScaler` standardizes regression targets so that every reported metric can be turned back into
original units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nnrun.errors import UserError


class FeaturePreprocessor:
    """Scale numeric feature columns with statistics of the rows it was fitted on."""

    def __init__(self, scale: str = "standard"):
        self.scale = scale
        self.columns: list[str] = []
        self.center: np.ndarray | None = None  # (features,)
        self.spread: np.ndarray | None = None  # (features,)

    @property
    def feature_names(self) -> list[str]:
        return list(self.columns)

    def fit(self, frame: pd.DataFrame) -> FeaturePreprocessor:
        """Learn the columns and scaling statistics from the train rows."""
        self.columns = [str(c) for c in frame.columns]
        values = self._matrix(frame)
        if self.scale == "standard":
            self.center, self.spread = values.mean(axis=0), values.std(axis=0)
        elif self.scale == "minmax":
            self.center, self.spread = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
        else:
            self.center, self.spread = np.zeros(values.shape[1]), np.ones(values.shape[1])
        self.spread = np.where(self.spread > 0, self.spread, 1.0)  # a constant column stays constant
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, features) float32 matrix, scaled with the fitted statistics."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise UserError(f"input has no column {', '.join(repr(c) for c in missing)} "
                            f"(the model was trained on: {', '.join(self.columns)})")
        values = self._matrix(frame[self.columns])
        return ((values - self.center) / self.spread).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "columns": list(self.columns),
                "center": self.center.tolist(), "spread": self.spread.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeaturePreprocessor:
        pre = cls(state["scale"])
        pre.columns = list(state["columns"])
        pre.center, pre.spread = np.asarray(state["center"]), np.asarray(state["spread"])
        return pre

    @staticmethod
    def _matrix(frame: pd.DataFrame) -> np.ndarray:
        text = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            raise UserError(f"feature column {', '.join(repr(c) for c in text)} is not numeric "
                            f"(declare it categorical, or drop it)")
        values = frame.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            bad = [str(c) for c in frame.columns if not np.isfinite(frame[c].to_numpy(dtype=np.float64)).all()]
            raise UserError(f"feature column {', '.join(repr(c) for c in bad)} has missing or infinite values "
                            f"(clean the data, or choose a missing-value policy)")
        return values


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
        """(rows, targets) float32 targets in training units."""
        return ((y.reshape(len(y), -1) - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TargetScaler:
        scaler = cls(state["scale"])
        scaler.mean, scaler.std = np.asarray(state["mean"]), np.asarray(state["std"])
        return scaler

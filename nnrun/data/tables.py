"""`Table`: what every dataset builder returns, raw features and targets before any split or fitting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

TaskKind = Literal["classification", "regression"]


@dataclass
class Table:
    """Raw tabular data: a feature frame, the target, and what the target means."""

    features: pd.DataFrame
    target: np.ndarray  # classification: int class codes (rows,); regression: float (rows,) or (rows, targets)
    task: TaskKind
    class_names: list[str] | None = None
    categorical: list[str] = field(default_factory=list)  # feature columns to one-hot encode
    missing: str = "error"  # what the preprocessing does with missing feature values
    split: np.ndarray | None = None  # (rows,) "train" | "val" | "test", when the data brings its own split
    notes: list[str] = field(default_factory=list)  # for the run's log
    row_ids: np.ndarray | None = None  # (rows,) each row's number in the source file

    def __post_init__(self) -> None:
        dtype = np.int64 if self.task == "classification" else np.float64
        self.target = np.asarray(self.target, dtype=dtype)
        if self.row_ids is None:
            self.row_ids = np.arange(len(self.features))

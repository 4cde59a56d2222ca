"""Seeded train/val/test splits, stratified by class for classification."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Fractions of rows for train/val/test, or `all`: train, validate and test on every row."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    all: bool = False

    def to_dict(self) -> dict[str, float] | str:
        return "all" if self.all else {"train": self.train, "val": self.val, "test": self.test}


def split_indices(n_rows: int, *, val: float, test: float, seed: int,
                  stratify: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Row indices of each split (sorted), and notes for the log (such as a stratification fallback)."""
    notes: list[str] = []
    rows = np.arange(n_rows)
    try:
        return _split(rows, val, test, seed, stratify), notes
    except ValueError:
        if stratify is None:
            raise
        # Some class has too few rows to appear in every split; a plain split is the honest fallback.
        counts = np.bincount(stratify)
        notes.append(f"split is not stratified: the smallest class has {counts[counts > 0].min()} rows, "
                     f"too few to put some in train, val and test")
        return _split(rows, val, test, seed, None), notes


def _split(rows: np.ndarray, val: float, test: float, seed: int, stratify: np.ndarray | None) -> dict[str, np.ndarray]:
    from sklearn.model_selection import (
        train_test_split,  # loaded when a split is made, not at start-up
    )

    rest, test_rows = (rows, rows[:0]) if test == 0 else train_test_split(
        rows, test_size=test, random_state=seed, stratify=stratify)
    strat_rest = None if stratify is None else stratify[rest]
    train_rows, val_rows = train_test_split(rest, test_size=val / (1 - test), random_state=seed, stratify=strat_rest)
    return {"train": np.sort(train_rows), "val": np.sort(val_rows), "test": np.sort(test_rows)}

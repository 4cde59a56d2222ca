"""Seeded train/val/test splits, stratified by class for classification, and K-fold cross-validation splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnrun.errors import UserError


@dataclass(frozen=True)
class Split:
    """Fractions of rows for train/val/test, or `all`: train, validate and test on every row.

    With `folds`, the rows that are not test are cut into `folds` folds: val is fold `fold` and train the others
    (train and val then hold the fractions that this gives). `seed` decides which rows go where; None is the run's.
    """

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    all: bool = False
    folds: int | None = None
    fold: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any] | str:
        if self.all:
            return "all"
        fractions = {"test": self.test} if self.folds else {"train": self.train, "val": self.val, "test": self.test}
        folds = {"folds": self.folds, "fold": self.fold} if self.folds else {}
        return {**fractions, **folds, **({"seed": self.seed} if self.seed is not None else {})}

    def seed_for(self, run_seed: int) -> int:
        """The seed that splits the rows: `seed` when set, else the run's, so that repeats can vary only training."""
        return run_seed if self.seed is None else self.seed


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
        notes.append(f"split is not stratified: the smallest class has {_smallest(stratify)} rows, "
                     f"too few to put some in train, val and test")
        return _split(rows, val, test, seed, None), notes


def fold_indices(n_rows: int, *, folds: int, seed: int,
                 stratify: np.ndarray | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The `folds` folds of rows 0..n_rows-1 (each sorted; together every row exactly once), and notes for the log.

    Seeded; stratified by class (StratifiedKFold) when every class has at least `folds` rows, else a plain KFold.
    """
    from sklearn.model_selection import (  # loaded when a split is made, not at start-up
        KFold,
        StratifiedKFold,
    )

    if n_rows < folds:
        raise UserError(f"data.split.folds is {folds}, but only {n_rows} rows are left for train and val "
                        f"(lower data.split.folds, or give more rows)")
    notes: list[str] = []
    if stratify is not None and _smallest(stratify) < folds:
        notes.append(f"folds are not stratified: the smallest class has {_smallest(stratify)} train and val rows, "
                     f"fewer than data.split.folds ({folds})")
        stratify = None
    splitter = (KFold if stratify is None else StratifiedKFold)(n_splits=folds, shuffle=True, random_state=seed)
    rows = np.arange(n_rows)
    return [np.sort(val_rows) for _, val_rows in splitter.split(rows, stratify)], notes


def fold_split(n_rows: int, *, test: float, folds: int, fold: int, seed: int,
               stratify: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Row indices of train, val and test (sorted) for one fold, and notes for the log.

    Test is held out as `split_indices` holds it out, so every fold tests on the rows a plain split with the same
    seed tests on (unless a class too small for that split made it fall back to an unstratified one); val is fold
    `fold` of the rest and train the other folds.
    """
    notes: list[str] = []
    rows = np.arange(n_rows)
    try:
        rest, test_rows = _hold_out(rows, test, seed, stratify)
    except ValueError:
        if stratify is None:
            raise
        notes.append(f"test split is not stratified: the smallest class has {_smallest(stratify)} rows, too few to "
                     f"put some in test and the rest")
        rest, test_rows = _hold_out(rows, test, seed, None)
    parts, more_notes = fold_indices(len(rest), folds=folds, seed=seed,
                                     stratify=None if stratify is None else stratify[rest])
    train_rows = np.concatenate([part for i, part in enumerate(parts) if i != fold])
    return {"train": np.sort(rest[train_rows]), "val": np.sort(rest[parts[fold]]), "test": np.sort(test_rows)}, \
        notes + more_notes


def _split(rows: np.ndarray, val: float, test: float, seed: int, stratify: np.ndarray | None) -> dict[str, np.ndarray]:
    from sklearn.model_selection import (
        train_test_split,  # loaded when a split is made, not at start-up
    )

    rest, test_rows = _hold_out(rows, test, seed, stratify)
    strat_rest = None if stratify is None else stratify[rest]
    train_rows, val_rows = train_test_split(rest, test_size=val / (1 - test), random_state=seed, stratify=strat_rest)
    return {"train": np.sort(train_rows), "val": np.sort(val_rows), "test": np.sort(test_rows)}


def _hold_out(rows: np.ndarray, test: float, seed: int, stratify: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rest, test rows): the one place the test split is drawn, for plain and K-fold splits alike."""
    from sklearn.model_selection import (
        train_test_split,  # loaded when a split is made, not at start-up
    )

    if test == 0:
        return rows, rows[:0]
    return tuple(train_test_split(rows, test_size=test, random_state=seed, stratify=stratify))


def _smallest(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    return int(counts[counts > 0].min())

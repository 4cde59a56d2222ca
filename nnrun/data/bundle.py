"""From a data config to tensors on the device: build the table, split it, fit preprocessing on train."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnrun.config import DataConfig
from nnrun.data.datasets import DATASETS, DataContext
from nnrun.data.preprocessing import FeaturePreprocessor, TargetScaler
from nnrun.data.splits import split_indices
from nnrun.data.tables import Table
from nnrun.errors import UserError


@dataclass
class SplitTensors:
    """One split on the device: inputs, targets, and the row numbers they came from."""

    x: torch.Tensor  # (rows, *in_shape) float32
    y: torch.Tensor  # (rows,) int64 class indices, or (rows, targets) float32 scaled targets
    rows: np.ndarray  # (rows,) each row's number in the source (the CSV's data row, counted from 0)

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class DataBundle:
    """Everything the loop and the checkpoint need to know about the data."""

    task: str
    class_names: list[str] | None
    feature_names: list[str]
    in_shape: tuple[int, ...]
    n_targets: int
    splits: dict[str, SplitTensors]
    preprocessing: dict[str, Any]  # plain-typed state: {"features": ..., "target": ... or None}
    fingerprint: dict[str, Any] = field(default_factory=dict)  # {"rows": n, "sha256": ...} of the whole table
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> SplitTensors:
        return self.splits["train"]

    @property
    def val(self) -> SplitTensors:
        return self.splits["val"]

    @property
    def test(self) -> SplitTensors | None:
        return self.splits["test"] if len(self.splits["test"]) else None


def load_data(cfg: DataConfig, *, seed: int, device: torch.device, data_dir: Path = Path("data"),
              preprocessing: dict[str, Any] | None = None) -> DataBundle:
    """Build the dataset, split it with `seed`, fit the preprocessing on train, move the splits to `device`.

    With `preprocessing` (a checkpoint's stored state) nothing is fitted: the stored statistics are applied.
    """
    table = build_table(cfg, data_dir)
    notes = list(table.notes)
    n_rows = len(table.features)
    if table.split is not None:
        index = {name: np.flatnonzero(table.split == name) for name in ("train", "val", "test")}
    elif cfg.split.all:
        every = np.arange(n_rows)
        index = {"train": every, "val": every, "test": every}
        notes.append(f"data.split=all: train, val and test are the same {n_rows} rows, so no metric is held-out")
    else:
        stratify = table.target if table.task == "classification" else None
        index, split_notes = split_indices(n_rows, val=cfg.split.val, test=cfg.split.test, seed=seed,
                                           stratify=stratify)
        notes += split_notes

    if preprocessing is None:
        # Statistics come from the train rows only, then are applied unchanged to val and test.
        features = FeaturePreprocessor(cfg.scale, categorical=table.categorical, missing=table.missing)
        features.fit(table.features.iloc[index["train"]])
        target = TargetScaler(cfg.target_scale).fit(table.target[index["train"]]) if table.task == "regression" \
            else None
    else:
        features = FeaturePreprocessor.from_state(preprocessing["features"])
        target = TargetScaler.from_state(preprocessing["target"]) if preprocessing["target"] else None

    splits = {name: to_tensors(table, rows, features, target, device) for name, rows in index.items()}
    return DataBundle(
        task=table.task,
        class_names=table.class_names,
        feature_names=features.feature_names,
        in_shape=(len(features.feature_names),),
        n_targets=1 if table.target.ndim == 1 else table.target.shape[1],
        splits=splits,
        preprocessing={"features": features.state_dict(), "target": target.state_dict() if target else None},
        fingerprint=fingerprint(table),
        notes=notes,
    )


def build_table(cfg: DataConfig, data_dir: Path) -> Table:
    """Call the dataset's builder; a builder's complaint about its settings is a UserError."""
    try:
        table = DATASETS.build(cfg.type, DataContext(data_dir=Path(data_dir)), **cfg.kwargs)
    except ValueError as exc:
        raise UserError(f"data '{cfg.type}' could not be built: {exc} (fix the data settings)") from None
    _check_table(table, cfg.type)
    return table


def to_tensors(table: Table, rows: np.ndarray, features: FeaturePreprocessor, target: TargetScaler | None,
               device: torch.device) -> SplitTensors:
    """Preprocess some rows of a table into tensors on the device."""
    x = features.transform(table.features.iloc[rows])
    y = table.target[rows] if target is None else target.transform(table.target[rows])
    return SplitTensors(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), table.row_ids[rows])


def fingerprint(table: Table) -> dict[str, Any]:
    """Row count and a hash of the features and target: tells whether a checkpoint's data has changed."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(table.features, index=False).to_numpy().tobytes())
    digest.update(np.ascontiguousarray(table.target).tobytes())
    return {"rows": len(table.features), "sha256": digest.hexdigest()}


def _check_table(table: Table, name: str) -> None:
    if len(table.features) < 3:
        raise UserError(f"data '{name}' has {len(table.features)} rows, too few to train on "
                        f"(give at least 3 rows)")
    if table.task == "classification":
        classes = np.unique(table.target)
        if len(classes) < 2:
            raise UserError(f"data '{name}' has a single class, nothing to classify (give at least two classes)")
    elif not np.isfinite(table.target).all():
        raise UserError(f"data '{name}' has missing or infinite target values (drop those rows)")

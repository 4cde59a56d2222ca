"""From a data config to tensors on the device: build the table, split it, fit preprocessing on train."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import torch

from nnrun.data.batching import Batches
from nnrun.data.context import DataContext
from nnrun.data.datasets import DATASETS
from nnrun.data.images import Augment, ImageTable, channel_stats
from nnrun.data.preprocessing import LARGEST, FeaturePreprocessor, TargetScaler
from nnrun.data.splits import Split, fold_split, split_indices
from nnrun.data.streaming import ImageFileTable, StreamedSplit
from nnrun.data.tables import Table
from nnrun.errors import UserError

STATS_SAMPLE = 2000  # training images decoded to estimate a streamed folder's normalization statistics
Scale = Literal["standard", "minmax", "none"]
TargetScale = Literal["standard", "none"]
SCALES, TARGET_SCALES = list(get_args(Scale)), list(get_args(TargetScale))


@dataclass(frozen=True)
class DataConfig:
    """The validated `data:` section: the dataset to build, and how nnrun splits and scales it."""

    type: str
    kwargs: dict[str, Any]
    split: Split = field(default_factory=Split)
    scale: Scale = "standard"
    target_scale: TargetScale = "standard"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.kwargs, "split": self.split.to_dict(), "scale": self.scale,
                "target_scale": self.target_scale}


@dataclass
class SplitTensors:
    """One split on the device: inputs, targets, and the row numbers they came from."""

    x: torch.Tensor  # (rows, *in_shape): float32 features, or uint8 images (rows, channels, height, width)
    y: torch.Tensor  # (rows,) int64 class indices, or (rows, targets) float32 scaled targets
    rows: np.ndarray  # (rows,) each row's id in its source: a CSV's data row (from 0), an IDX file's index, or
    #                   an image folder's file path (relative to the folder)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape)

    def batches(self, batch_size: int | None, *, shuffle: bool = False, generator: torch.Generator | None = None,
                augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Batches:
        """This split's (x, y) batches; `None` is the whole split as one batch."""
        return Batches(self.x, self.y, batch_size=batch_size, shuffle=shuffle, generator=generator, augment=augment)


@dataclass
class DataBundle:
    """Everything the loop and the checkpoint need to know about the data."""

    task: str
    class_names: list[str] | None
    feature_names: list[str]
    in_shape: tuple[int, ...]
    n_targets: int
    splits: dict[str, SplitTensors | StreamedSplit]
    preprocessing: dict[str, Any]  # plain-typed state: {"features": ..., "target": ... or None}
    fingerprint: dict[str, Any] = field(default_factory=dict)  # {"rows": n, "sha256": ...} of the whole table
    notes: list[str] = field(default_factory=list)
    augment: Augment | None = None  # random crop / flip for training batches of images

    @property
    def input_stats(self) -> dict[str, Any] | None:
        """Per-channel mean and std that the model's first layer applies to uint8 images; None for tables."""
        return self.preprocessing.get("images")

    @property
    def train(self) -> SplitTensors | StreamedSplit:
        return self.splits["train"]

    @property
    def val(self) -> SplitTensors | StreamedSplit:
        return self.splits["val"]

    @property
    def test(self) -> SplitTensors | StreamedSplit | None:
        return self.splits["test"] if len(self.splits["test"]) else None


def load_data(cfg: DataConfig, *, seed: int, device: torch.device, data_dir: Path = Path("data"),
              config_dir: Path | None = None, preprocessing: dict[str, Any] | None = None) -> DataBundle:
    """Build the dataset, split it (with `cfg.split.seed`, else `seed`), fit the preprocessing on train, move the
    splits to `device`.

    With `preprocessing` (a checkpoint's stored state) nothing is fitted: the stored statistics are applied.
    """
    table = build_table(cfg, DataContext(data_dir=Path(data_dir), config_dir=config_dir))
    index, notes = split_rows(table, cfg.split, seed)
    if isinstance(table, (ImageTable, ImageFileTable)):
        return _image_bundle(table, index, notes, device, preprocessing, seed)

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


def split_rows(table: Table | ImageTable, split: Split, seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Row indices of train, val and test, and notes for the log; `split.seed`, when set, replaces the run's `seed`.

    A table that brings its own split (a CSV's split column, a dataset's test files) keeps it; when it has no
    val rows, `split.val` of its train rows become val, seeded and stratified. With `split.folds`, val is fold
    `split.fold` of the rows that are not test, and train the other folds.
    """
    notes = list(table.notes)
    seed = split.seed_for(seed)
    n_rows = len(table.target)
    stratify = table.target if table.task == "classification" else None
    if table.split is not None:
        index = {name: np.flatnonzero(table.split == name) for name in ("train", "val", "test")}
        if split.folds:
            index, more_notes = _own_split_fold(index, split, seed, stratify)
            notes += more_notes
        elif not len(index["val"]):
            held_out, more_notes = split_indices(len(index["train"]), val=split.val, test=0.0, seed=seed,
                                                 stratify=None if stratify is None else stratify[index["train"]])
            notes += more_notes
            index["val"] = index["train"][held_out["val"]]
            index["train"] = index["train"][held_out["train"]]
            notes.append(f"val split: {split.val:.0%} of the {len(held_out['train']) + len(held_out['val'])} train "
                         f"rows (data.split.val); the test split is the data's own")
        return index, notes
    if split.all:
        every = np.arange(n_rows)
        notes.append(f"data.split=all: train, val and test are the same {n_rows} rows, so no metric is held-out")
        return {"train": every, "val": every, "test": every}, notes
    if split.folds:
        index, more_notes = fold_split(n_rows, test=split.test, folds=split.folds, fold=split.fold, seed=seed,
                                       stratify=stratify)
    else:
        index, more_notes = split_indices(n_rows, val=split.val, test=split.test, seed=seed, stratify=stratify)
    return index, notes + more_notes


def _own_split_fold(index: dict[str, np.ndarray], split: Split, seed: int,
                    stratify: np.ndarray | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """One fold of a table that brings its own split: its train and val rows are cut into folds; its test stays."""
    pool = np.sort(np.concatenate([index["train"], index["val"]]))
    held_out, notes = fold_split(len(pool), test=0.0, folds=split.folds, fold=split.fold, seed=seed,
                                 stratify=None if stratify is None else stratify[pool])
    notes.append(f"val split: fold {split.fold} of {split.folds} of the {len(pool)} rows outside the data's own test "
                 f"split (data.split.folds)")
    return {"train": pool[held_out["train"]], "val": pool[held_out["val"]], "test": index["test"]}, notes


def _image_bundle(table: ImageTable | ImageFileTable, index: dict[str, np.ndarray], notes: list[str],
                  device: torch.device, preprocessing: dict[str, Any] | None, seed: int) -> DataBundle:
    """Images stay uint8 (on the device, or on disk when streamed); normalization statistics come from the
    train split, or from the checkpoint."""
    streamed = isinstance(table, ImageFileTable)
    if streamed:
        channels, (height, width) = table.channels, table.size
    else:
        channels, height, width = table.images.shape[1:]
    if preprocessing is not None:
        mean, std = preprocessing["images"]["mean"], preprocessing["images"]["std"]
    elif streamed:
        # Decoding every training image just for two numbers per channel would cost an epoch: a sample will do.
        sample = np.random.default_rng(seed).permutation(index["train"])[:STATS_SAMPLE]
        images = torch.stack([table.files(sample)[i][0] for i in range(len(sample))])
        mean, std = channel_stats(images, table.normalize)
        if table.normalize == "auto" and len(sample) < len(index["train"]):
            notes.append(f"normalization statistics from {len(sample):,} sampled training images")
    else:
        mean, std = channel_stats(table.images[torch.from_numpy(index["train"])], table.normalize)
    splits = {}
    for name, rows in index.items():
        y = torch.from_numpy(table.target[rows]).to(device)
        if streamed:
            splits[name] = StreamedSplit(table.files(rows), y, table.row_ids[rows])
        else:
            splits[name] = SplitTensors(table.images[torch.from_numpy(rows)].to(device), y, table.row_ids[rows])
    augment = Augment(**table.augment) if table.augment else None
    return DataBundle(
        task="classification",
        class_names=table.class_names,
        feature_names=[],
        in_shape=(channels, height, width),
        n_targets=1,
        splits=splits,
        preprocessing={"images": {"channels": channels, "size": [height, width], "mean": mean, "std": std}},
        fingerprint=fingerprint(table),
        notes=notes,
        augment=augment or None,
    )


def build_table(cfg: DataConfig, ctx: DataContext) -> Table | ImageTable:
    """Call the dataset's builder; a builder's complaint about its settings is a UserError."""
    try:
        table = DATASETS.build(cfg.type, ctx, **cfg.kwargs)
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


def fingerprint(table: Table | ImageTable | ImageFileTable) -> dict[str, Any]:
    """Row count and a hash of the features and target: tells whether a checkpoint's data has changed.

    Streamed image folders are too large to hash: their file names and sizes stand in for the pixels.
    """
    if isinstance(table, ImageFileTable):
        digest = hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in table.paths).encode())
    elif isinstance(table, ImageTable):
        digest = hashlib.sha256(table.images.contiguous().numpy().tobytes())
    else:
        digest = hashlib.sha256(pd.util.hash_pandas_object(table.features, index=False).to_numpy().tobytes())
    digest.update(np.ascontiguousarray(table.target).tobytes())
    return {"rows": len(table.target), "sha256": digest.hexdigest()}


def _check_table(table: Table | ImageTable, name: str) -> None:
    if len(table.target) < 3:
        raise UserError(f"data '{name}' has {len(table.target)} rows, too few to train on "
                        f"(give at least 3 rows)")
    if table.task == "classification":
        classes = np.unique(table.target)
        if len(classes) < 2:
            raise UserError(f"data '{name}' has a single class, nothing to classify (give at least two classes)")
    elif not np.isfinite(table.target).all():
        raise UserError(f"data '{name}' has missing or infinite target values (drop those rows)")
    elif np.abs(table.target).max() > LARGEST:
        raise UserError(f"data '{name}' has target values as large as {np.abs(table.target).max():.4g}, beyond what "
                        f"float32 training can use (rescale the target, for example to thousands or millions)")

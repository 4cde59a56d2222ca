"""Image folders too large to decode into memory: files decoded batch by batch by DataLoader workers.

A `StreamedSplit` has the same interface as an in-memory `SplitTensors` (`y`, `rows`, `shape`, `batches()`), so
the training loop, evaluation and checkpoints do not know which one they got.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nnrun.data.batching import BatchPlan
from nnrun.data.image_files import ImageMode, decode_one


class ImageFiles(Dataset):
    """Image files decoded one at a time (in a worker): (uint8 (channels, height, width), position)."""

    def __init__(self, paths: list[Path], *, mode: ImageMode, size: tuple[int, int]):
        self.paths, self.mode, self.size = list(paths), mode, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return decode_one(self.paths[i], mode=self.mode, size=self.size), i


@dataclass
class ImageFileTable:
    """An image folder listed but not decoded: paths, labels, and how every image will be decoded."""

    paths: list[Path]
    target: np.ndarray  # (rows,) int64
    class_names: list[str]
    mode: ImageMode
    size: tuple[int, int]  # (height, width) every image is decoded to
    row_ids: np.ndarray
    normalize: str | dict = "auto"
    augment: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    split: np.ndarray | None = None
    task: str = "classification"

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def files(self, rows: np.ndarray) -> ImageFiles:
        return ImageFiles([self.paths[i] for i in rows], mode=self.mode, size=self.size)


class StreamedBatches(BatchPlan):
    """(x, y) batches of images decoded from disk by DataLoader workers, in the same order as `Batches`."""

    def __init__(self, files: ImageFiles, y: torch.Tensor, *, batch_size: int | None, shuffle: bool = False,
                 generator: torch.Generator | None = None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__(len(files), y, batch_size=batch_size, shuffle=shuffle, generator=generator, augment=augment)
        self.files = files

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The order is drawn here, in the main process, so the generator (and resume) stays exact.
        order = [list(range(self.n_rows)[index]) if isinstance(index, slice) else index.tolist()
                 for index in self.order()]
        workers = min(4, os.cpu_count() or 1)
        loader = DataLoader(self.files, batch_sampler=order, num_workers=workers,
                            pin_memory=self.device.type == "cuda")
        for x, position in loader:
            x = x.to(self.device, non_blocking=True)  # (batch, channels, height, width) uint8
            y = self.y[position.to(self.device)]
            yield (self.augment(x) if self.augment else x), y


@dataclass
class StreamedSplit:
    """One split of an image folder that stays on disk."""

    files: ImageFiles
    y: torch.Tensor  # (rows,) int64 on the device
    rows: np.ndarray  # (rows,) the images' paths, relative to the folder

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), 1 if self.files.mode == "L" else 3, *self.files.size)

    def batches(self, batch_size: int | None, *, shuffle: bool = False, generator: torch.Generator | None = None,
                augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StreamedBatches:
        return StreamedBatches(self.files, self.y, batch_size=batch_size, shuffle=shuffle, generator=generator,
                               augment=augment)

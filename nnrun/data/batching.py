"""Mini-batches sliced from tensors that already live on the device: no DataLoader, no per-sample Python."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class Batches:
    """Iterate (x, y) batches of `batch_size` rows (None: the whole split as one batch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None, *, shuffle: bool = False,
                 generator: torch.Generator | None = None, augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.x, self.y = x, y
        self.batch_size = len(x) if batch_size is None else min(batch_size, len(x))
        self.shuffle = shuffle
        self.generator = generator
        self.augment = augment  # applied to each training batch, on the device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.augment is None:
            yield from self._batches()
        else:
            for x, y in self._batches():
                yield self.augment(x), y

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (rest > (1 if self.shuffle else 0))

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.batch_size >= n:
            yield self.x, self.y
            return
        if not self.shuffle:
            for start in range(0, n, self.batch_size):
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            return
        order = torch.randperm(n, generator=self.generator).to(self.x.device)
        # A last batch of one row is skipped (a different row each epoch): BatchNorm cannot train on it.
        end = n - 1 if n % self.batch_size == 1 else n
        for start in range(0, end, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.x.index_select(0, index), self.y.index_select(0, index)

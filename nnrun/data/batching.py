"""Mini-batches sliced from tensors that already live on the device: no DataLoader, no per-sample Python."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import torch


def batch_order(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None,
                count_only: bool = False, device: torch.device | None = None) -> list[torch.Tensor | slice]:
    """The batches of one epoch over `n` rows: slices in order, or index tensors of a seeded permutation.

    When shuffling, a last batch of one row is left out (a different row each epoch): BatchNorm cannot train
    on it. `count_only` gives batches of the right number without drawing from the generator. The permutation
    is drawn on the CPU (its generator is what last.pth keeps) and moved to `device` once, not once per batch.
    """
    if batch_size >= n:
        return [slice(0, n)]
    if not shuffle:
        return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    end = n - 1 if n % batch_size == 1 else n
    if count_only:
        return [slice(start, start + batch_size) for start in range(0, end, batch_size)]
    order = torch.randperm(n, generator=generator)
    order = order if device is None else order.to(device)
    return [order[start:start + batch_size] for start in range(0, end, batch_size)]


class BatchPlan(ABC):
    """How one split is cut into batches: `batch_size` rows (None: the whole split), shuffled or in order.

    `Batches` (tensors on the device) and `StreamedBatches` (image files decoded by workers) share it, so both
    follow the same order rules and resume the same way.
    """

    def __init__(self, n_rows: int, y: torch.Tensor, *, batch_size: int | None, shuffle: bool = False,
                 generator: torch.Generator | None = None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.n_rows, self.y = n_rows, y
        self.batch_size = n_rows if batch_size is None else min(batch_size, n_rows)
        self.shuffle = shuffle
        self.generator = generator  # its state is part of last.pth, so a resumed run draws the same batches
        self.augment = augment  # applied to each training batch, on the device

    @property
    def device(self) -> torch.device:
        return self.y.device

    def __len__(self) -> int:
        return len(batch_order(self.n_rows, self.batch_size, shuffle=self.shuffle, generator=None, count_only=True))

    def order(self, device: torch.device | None = None) -> list[torch.Tensor | slice]:
        """This epoch's batches of row positions, drawn from the generator (index tensors on `device`, else CPU)."""
        return batch_order(self.n_rows, self.batch_size, shuffle=self.shuffle, generator=self.generator,
                           device=device)

    @abstractmethod
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) batches on the device, in `order()`."""


class Batches(BatchPlan):
    """Iterate (x, y) batches sliced from tensors that live on the device."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int | None, shuffle: bool = False,
                 generator: torch.Generator | None = None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__(len(x), y, batch_size=batch_size, shuffle=shuffle, generator=generator, augment=augment)
        self.x = x

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in self.order(self.x.device):
            if isinstance(index, slice):
                x, y = self.x[index], self.y[index]  # views: no copy
            else:
                x, y = self.x.index_select(0, index), self.y.index_select(0, index)
            yield (self.augment(x) if self.augment else x), y

"""Image data: IDX files, torchvision datasets and image folders, decoded once into uint8 tensors.

An `ImageTable` keeps every image as one uint8 tensor (rows, channels, height, width). Batches are sliced from
it on the device; the model's first layer (`nnrun.models.Standardize`) turns them into normalized floats, so
eval and predict apply exactly the training normalization. Light augmentation (`Augment`) runs on the device
on training batches only.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nnrun.data.image_files import decode_images, image_mode, image_paths
from nnrun.data.streaming import ImageFileTable
from nnrun.errors import UserError

IDX_IMAGES, IDX_LABELS = 2051, 2049  # magic numbers of the two IDX file kinds used by the MNIST family
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IN_MEMORY_LIMIT = 2 * 2**30  # bytes of decoded uint8 pixels above which an image folder is streamed


@dataclass
class ImageTable:
    """Decoded images with class labels, before any split is fitted."""

    images: torch.Tensor  # (rows, channels, height, width) uint8 on the CPU
    target: np.ndarray  # (rows,) int64 class indices
    class_names: list[str]
    split: np.ndarray | None = None  # (rows,) "train" | "test" when the files bring their own test set
    row_ids: np.ndarray | None = None  # (rows,) a row's index in its file, or its path in an image folder
    normalize: str | dict[str, list[float]] = "auto"
    augment: dict[str, Any] = field(default_factory=dict)  # random_crop (padding), horizontal_flip
    notes: list[str] = field(default_factory=list)
    task: str = "classification"

    def __post_init__(self) -> None:
        self.target = np.asarray(self.target, dtype=np.int64)
        if self.row_ids is None:
            self.row_ids = np.arange(len(self.images))
        if len(self.images) != len(self.target):
            raise UserError(f"{len(self.images)} images but {len(self.target)} labels (the files do not belong "
                            f"together)")
        if len(self.target) and (self.target.min() < 0 or self.target.max() >= len(self.class_names)):
            raise UserError(f"labels run from {self.target.min()} to {self.target.max()}, but there are "
                            f"{len(self.class_names)} class names (give one name per class)")


class Augment:
    """Random crop with zero padding and horizontal flip, applied on the device to a uint8 batch."""

    def __init__(self, *, random_crop: int = 0, horizontal_flip: bool = False):
        self.padding = random_crop
        self.flip = horizontal_flip

    def __bool__(self) -> bool:
        return bool(self.padding or self.flip)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, height, width)
        n, _, h, w = x.shape
        if self.flip:
            flip = torch.rand(n, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.padding:
            p = self.padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n, 1), device=x.device)
            dx = torch.randint(0, 2 * p + 1, (n, 1), device=x.device)
            rows = (torch.arange(h, device=x.device) + dy)[:, :, None]  # (batch, height, 1)
            cols = (torch.arange(w, device=x.device) + dx)[:, None, :]  # (batch, 1, width)
            batch = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        return x


def channel_stats(images: torch.Tensor, normalize: str | dict[str, list[float]]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values in [0, 1]: from the images (`auto`), given, or none (0 and 1)."""
    channels = images.shape[1]
    if normalize == "none":
        return [0.0] * channels, [1.0] * channels
    if isinstance(normalize, dict):
        mean, std = normalize.get("mean"), normalize.get("std")
        if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == channels
                and all(s > 0 for s in std)):
            raise UserError(f"data.normalize must be auto, none, or {{mean: [...], std: [...]}} with {channels} "
                            f"value(s) each and std > 0, got {normalize} (for example "
                            f"data.normalize={{mean: {[0.5] * channels}, std: {[0.25] * channels}}})")
        return [float(m) for m in mean], [float(s) for s in std]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), 4096):  # in chunks: a float copy of CIFAR would be 600 MB
        chunk = images[start:start + 4096].to(torch.float64) / 255
        total += chunk.sum(dim=(0, 2, 3))
        squares += (chunk ** 2).sum(dim=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean ** 2).clamp_min(0).sqrt()
    return mean.tolist(), [s if s > 1e-8 else 1.0 for s in std.tolist()]


# --- IDX files -------------------------------------------------------------------------------------------------

def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX file (plain or .gz) as an array, after checking its magic number and that its size fits its header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"IDX file '{path}' is not readable ({exc}; re-download it)") from None
    kind = "images" if expected_magic == IDX_IMAGES else "labels"
    if len(raw) < 8:
        raise UserError(f"IDX file '{path}' is too short to hold a header (re-download it)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise UserError(f"IDX file '{path}' has magic number {magic}, but an IDX {kind} file has {expected_magic} "
                        f"(check that the file is the {kind} file it is named as)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)
    if len(raw) != expected:
        shape = " x ".join(str(d) for d in dims)
        raise UserError(f"IDX file '{path}' is truncated or padded: its header says {shape} ({expected:,} bytes) but "
                        f"the file holds {len(raw):,} bytes (re-download it)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx(folder: Path, stem: str) -> Path:
    """`stem` or `stem.gz` in `folder`."""
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    wanted = ", ".join(f"{a}[.gz], {b}[.gz]" for a, b in IDX_FILES.values())
    raise UserError(f"'{folder}' has no {stem}[.gz] (an IDX folder holds the four standard files: {wanted})")


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An IDX images file and its labels file: (count, rows, columns) uint8 and (count,), checked to match."""
    images = read_idx(images_path, IDX_IMAGES)
    labels = read_idx(labels_path, IDX_LABELS)
    if images.ndim != 3 or labels.ndim != 1:
        raise UserError(f"'{images_path.name}' must hold (count, rows, columns) images and '{labels_path.name}' "
                        f"a list of labels (re-download them)")
    if len(images) != len(labels):
        raise UserError(f"'{images_path.name}' holds {len(images):,} images but '{labels_path.name}' holds "
                        f"{len(labels):,} labels (the files do not belong together)")
    return images, labels


def idx_table(folder: Path, *, class_names: list[str] | None) -> ImageTable:
    """The four standard IDX files of a folder as one table, split into the files' train and test rows."""
    if not folder.is_dir():
        raise UserError(f"IDX folder '{folder}' not found (put the four IDX files in it, or pass --data-dir DIR or "
                        f"set NNRUN_DATA_DIR to the folder that holds it)")
    parts, splits, row_ids = [], [], []
    for split, (image_stem, label_stem) in IDX_FILES.items():
        images, labels = read_idx_pair(find_idx(folder, image_stem), find_idx(folder, label_stem))
        parts.append((images, labels))
        splits += [split] * len(labels)
        row_ids.append(np.arange(len(labels)))
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).unsqueeze(1)  # (rows, 1, height, width)
    target = np.concatenate([p[1] for p in parts]).astype(np.int64)
    names = class_names or [str(i) for i in range(int(target.max()) + 1)]
    return ImageTable(images, target, names, split=np.array(splits), row_ids=np.concatenate(row_ids))


# --- torchvision -----------------------------------------------------------------------------------------------

def torchvision_table(name: str, root: Path, *, download: bool, emnist_split: str) -> ImageTable:
    """A torchvision dataset's train and test sets as one table; offline, a clear message instead of a traceback."""
    import torchvision

    cls = getattr(torchvision.datasets, name)
    _prepare_offline_files(name, root)
    parts = []
    for train in (True, False):
        kwargs: dict[str, Any] = {"download": download}
        if name == "SVHN":
            kwargs["split"] = "train" if train else "test"
        else:
            kwargs["train"] = train
        if name == "EMNIST":
            kwargs["split"] = emnist_split
        chatter = io.StringIO()  # torchvision prints its download attempts; the error below says it all
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                parts.append(cls(str(root), **kwargs))
        except Exception as exc:  # noqa: BLE001 - network, missing or damaged files: all the user's to fix
            reason = str(exc).strip().split("\n")[-1][:160]
            where = expected_files(name, root, emnist_split)
            if download:
                raise UserError(f"could not download {name} ({reason}); without a network, put {where} and set "
                                f"data.download=false") from None
            raise UserError(f"{name} not found in '{root}' ({reason}); put {where}, or set data.download=true "
                            f"where there is a network") from None
    images, targets, splits, row_ids = [], [], [], []
    for split, dataset in zip(("train", "test"), parts):
        data, labels = _arrays(name, dataset)
        images.append(data)
        targets.append(labels)
        splits += [split] * len(labels)
        row_ids.append(np.arange(len(labels)))
    class_names = [str(c) for c in getattr(parts[0], "classes", [])] or [str(i) for i in range(10)]
    return ImageTable(torch.cat(images), np.concatenate(targets), class_names, split=np.array(splits),
                      row_ids=np.concatenate(row_ids))


def expected_files(name: str, root: Path, emnist_split: str = "balanced") -> str:
    """Where torchvision looks for a dataset's files, in words."""
    if name in ("MNIST", "FashionMNIST", "KMNIST"):
        files = ", ".join(f"{a}.gz, {b}.gz" for a, b in IDX_FILES.values())
        return f"{files} in '{root / name / 'raw'}'"
    if name == "EMNIST":
        return (f"the EMNIST files (emnist-{emnist_split}-train-images-idx3-ubyte and the other three, or gzip.zip) in "
                f"'{root / 'EMNIST' / 'raw'}'")
    if name in ("CIFAR10", "CIFAR100"):
        archive = "cifar-10-python.tar.gz" if name == "CIFAR10" else "cifar-100-python.tar.gz"
        return f"{archive} (or its extracted folder) in '{root}'"
    return f"train_32x32.mat and test_32x32.mat in '{root}'"


def _prepare_offline_files(name: str, root: Path) -> None:
    """Unpack what a download would have unpacked, so files copied in by hand work with download: false."""
    if name in ("MNIST", "FashionMNIST", "KMNIST"):
        raw = root / name / "raw"
        for stem in (s for pair in IDX_FILES.values() for s in pair):
            if not (raw / stem).exists() and (raw / f"{stem}.gz").is_file():
                (raw / stem).write_bytes(gzip.decompress((raw / f"{stem}.gz").read_bytes()))
    elif name in ("CIFAR10", "CIFAR100"):
        folder, archive = (("cifar-10-batches-py", "cifar-10-python.tar.gz") if name == "CIFAR10"
                           else ("cifar-100-python", "cifar-100-python.tar.gz"))
        if not (root / folder).exists() and (root / archive).is_file():
            with tarfile.open(root / archive) as tar:
                tar.extractall(root, filter="data")


def _arrays(name: str, dataset: Any) -> tuple[torch.Tensor, np.ndarray]:
    """(rows, channels, height, width) uint8 images and int labels from a torchvision dataset object."""
    if name == "SVHN":
        return torch.from_numpy(np.ascontiguousarray(dataset.data)), np.asarray(dataset.labels) % 10
    data = dataset.data
    if isinstance(data, np.ndarray):  # CIFAR: (rows, height, width, channels)
        return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous(), np.asarray(dataset.targets)
    return data.unsqueeze(1).contiguous(), np.asarray(dataset.targets)  # MNIST family: (rows, height, width)


# --- image folders ---------------------------------------------------------------------------------------------

def folder_table(root: Path, *, resize: list[int] | None, grayscale: bool | None,
                 in_memory: str = "auto") -> ImageTable | ImageFileTable:
    """An image folder (one subfolder per class): decoded into one table when it fits in memory, else listed
    for streaming. Row ids are the files' paths relative to the folder."""
    from PIL import Image

    classes = image_paths(root)
    paths = [p for files in classes.values() for p in files]
    target = np.concatenate([[i] * len(files) for i, files in enumerate(classes.values())])
    row_ids = np.array([str(p.relative_to(root)) for p in paths], dtype=object)
    mode = image_mode(paths, grayscale)
    size = _size(resize)
    with Image.open(paths[0]) as first:
        decoded_size = size or (first.height, first.width)
    channels = 1 if mode == "L" else 3
    nbytes = len(paths) * channels * decoded_size[0] * decoded_size[1]
    if in_memory == "no" or (in_memory == "auto" and nbytes > IN_MEMORY_LIMIT):
        notes = [f"streaming {len(paths):,} images from disk ({nbytes / 2**30:.1f} GiB decoded; data.in_memory=yes "
                 f"decodes them once into memory)"]
        if size is None:
            notes.append(f"every image is decoded at the first one's size, {decoded_size[0]}x{decoded_size[1]} "
                         f"(set data.resize to choose)")
        return ImageFileTable(paths, target, list(classes), mode, decoded_size, row_ids, notes=notes)
    images = decode_images(paths, mode=mode, size=size)
    return ImageTable(images, target, list(classes), row_ids=row_ids)


def _size(resize: list[int] | None) -> tuple[int, int] | None:
    if resize is None:
        return None
    if len(resize) == 1:
        return resize[0], resize[0]
    if len(resize) != 2 or min(resize) < 1:
        raise UserError(f"data.resize must be [height, width] or one size, got {resize} (for example "
                        f"data.resize=[32, 32])")
    return resize[0], resize[1]


def subset_rows(split: np.ndarray, name: str, count: int | None, seed: int | None) -> np.ndarray:
    """Which rows of one split to keep: the first `count`, or `count` drawn with `seed`."""
    rows = np.flatnonzero(split == name)
    if count is None or count >= len(rows):
        return rows
    if seed is None:
        return rows[:count]
    return np.sort(np.random.default_rng(seed).choice(rows, size=count, replace=False))


def take_subset(table: ImageTable, *, train: int | None, test: int | None, seed: int | None) -> ImageTable:
    """The table cut to `train` training and `test` test rows (for example the tutorial's 6,000 / 1,000)."""
    if train is None and test is None:
        return table
    split = table.split if table.split is not None else np.array(["train"] * len(table.target))
    keep = np.concatenate([subset_rows(split, "train", train, seed), subset_rows(split, "test", test, seed)])
    keep.sort()
    how = "the first" if seed is None else f"a random sample (seed {seed}) of"
    note = f"using {how} {train or 'all'} train and {test or 'all'} test images"
    return ImageTable(table.images[torch.from_numpy(keep)], table.target[keep], table.class_names,
                      split=None if table.split is None else table.split[keep], row_ids=table.row_ids[keep],
                      normalize=table.normalize, augment=table.augment, notes=[*table.notes, note])

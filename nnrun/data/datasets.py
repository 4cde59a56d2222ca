"""Datasets: each builder returns a `Table` of raw features and targets, before any splitting or scaling.

A builder gets a `DataContext` from nnrun (where the data directory is) and the user's settings.

The bundled scikit-learn datasets ship inside the package (no download). The synthetic ones take
`n_samples`, `noise` and their own `seed`, so the data stays the same when the training seed changes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd

from nnrun.data import images
from nnrun.data.context import DataContext
from nnrun.data.csv_table import csv_table, read_frame
from nnrun.data.images import ImageTable
from nnrun.data.tables import Table
from nnrun.registry import (
    Bound,
    Count,
    Fraction,
    NonNegative,
    NonNegativeInt,
    Positive,
    Registry,
    Seed,
)

DATASETS = Registry("datasets", singular="dataset")


def _bundled(loader: str, task: str) -> Table:
    from sklearn import (
        datasets as skd,  # loaded when a scikit-learn dataset is built, not at start-up
    )

    bunch = getattr(skd, loader)(as_frame=True)
    class_names = [str(n) for n in bunch.target_names] if task == "classification" else None
    return Table(bunch.data, bunch.target.to_numpy(), task, class_names)


@DATASETS.register("iris", task="classification")
def iris(ctx: DataContext, /) -> Table:
    """Fisher's iris: 150 flowers, 4 measurements, 3 species."""
    return _bundled("load_iris", "classification")


@DATASETS.register("breast_cancer", task="classification")
def breast_cancer(ctx: DataContext, /) -> Table:
    """Wisconsin breast cancer: 569 tumours, 30 features, malignant or benign."""
    return _bundled("load_breast_cancer", "classification")


@DATASETS.register("wine", task="classification")
def wine(ctx: DataContext, /) -> Table:
    """Wine recognition: 178 wines, 13 chemical features, 3 cultivars."""
    return _bundled("load_wine", "classification")


@DATASETS.register("digits", task="classification")
def digits(ctx: DataContext, /) -> Table:
    """Handwritten digits: 1,797 images of 8x8 pixels as 64 features, 10 classes."""
    return _bundled("load_digits", "classification")


@DATASETS.register("diabetes", task="regression")
def diabetes(ctx: DataContext, /) -> Table:
    """Diabetes progression: 442 patients, 10 features, a disease score one year later."""
    return _bundled("load_diabetes", "regression")


@DATASETS.register("make_regression", task="regression")
def make_regression(ctx: DataContext, /, *, n_samples: Count = 100, n_features: Count = 1,
                    n_informative: Count | None = None, noise: NonNegative = 20.0, bias: float = 0.0,
                    seed: Seed = 0) -> Table:
    """Random linear regression problem (sklearn make_regression) with Gaussian noise of std `noise`."""
    from sklearn import datasets as skd

    x, y = skd.make_regression(n_samples=n_samples, n_features=n_features, noise=noise, bias=bias,
                               n_informative=n_informative or n_features, random_state=seed)
    return Table(_frame(x), y, "regression")


@DATASETS.register("make_classification", task="classification")
def make_classification(ctx: DataContext, /, *, n_samples: Count = 200, n_features: Count = 4,
                        n_informative: Count = 2, n_classes: Annotated[int, Bound(ge=2)] = 2,
                        class_sep: Positive = 1.0, noise: Fraction = 0.01, seed: Seed = 0) -> Table:
    """Random classification problem (sklearn make_classification); `noise` is the fraction of flipped labels."""
    from sklearn import datasets as skd

    x, y = skd.make_classification(n_samples=n_samples, n_features=n_features, n_informative=n_informative,
                                   n_redundant=0, n_classes=n_classes, class_sep=class_sep, flip_y=noise,
                                   random_state=seed)
    return Table(_frame(x), y, "classification", [f"class_{i}" for i in range(n_classes)])


@DATASETS.register("moons", task="classification")
def moons(ctx: DataContext, /, *, n_samples: Count = 200, noise: NonNegative = 0.1, seed: Seed = 0) -> Table:
    """Two interleaving half circles in 2-D: a small non-linear binary problem."""
    from sklearn import datasets as skd

    x, y = skd.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return Table(_frame(x), y, "classification", ["moon_0", "moon_1"])


@DATASETS.register("product", task="regression")
def product(ctx: DataContext, /, *, n_samples: Count = 1000, noise: NonNegative = 0.0, low: float = 1.0,
            high: float = 10.0, seed: Seed = 0) -> Table:
    """y = x1 * x2 with x1, x2 uniform in [low, high), plus Gaussian noise of std `noise`."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=(n_samples, 2))
    y = x[:, 0] * x[:, 1] + rng.normal(0.0, noise, size=n_samples)
    return Table(_frame(x), y, "regression")


def _frame(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"x{i + 1}" for i in range(x.shape[1])])


@DATASETS.register("csv")
def csv(
    ctx: DataContext,
    /,
    *,
    path: str,
    target: str,
    features: list[str] | None = None,
    drop: list[str] = [],  # noqa: B006 - read-only default, shown by `nnrun list`
    categorical: Literal["auto"] | list[str] = "auto",
    missing: Literal["error", "drop", "mean", "median", "most_frequent"] = "error",
    task: Literal["auto", "classification", "regression"] = "auto",
    sample: Count | None = None,
    seed: Seed = 0,
    split_column: str | None = None,
) -> Table:
    """Your own .csv, .csv.gz or one-CSV .zip; a relative path is looked up in the data directory."""
    file = ctx.find(path)
    return csv_table(read_frame(file), name=path, target=target, features=features, drop=drop,
                     categorical=categorical, missing=missing, task=task, sample=sample, seed=seed,
                     split_column=split_column)


# Options shared by the image datasets.
Normalize = Literal["auto", "none"] | dict


def _image_options(table: ImageTable, *, train_subset: int | None, test_subset: int | None, subset_seed: int | None,
                   normalize: str | dict, random_crop: int, horizontal_flip: bool) -> ImageTable:
    table = images.take_subset(table, train=train_subset, test=test_subset, seed=subset_seed)
    table.normalize = normalize
    table.augment = {"random_crop": random_crop, "horizontal_flip": horizontal_flip}
    return table


@DATASETS.register("idx", task="classification")
def idx(ctx: DataContext, /, *, path: str, class_names: list[str] | None = None, train_subset: Count | None = None,
        test_subset: Count | None = None, subset_seed: Seed | None = None, normalize: Normalize = "auto",
        random_crop: NonNegativeInt = 0, horizontal_flip: bool = False) -> ImageTable:
    """A folder of the four standard IDX files (train/t10k images and labels, plain or .gz), as MNIST ships."""
    table = images.idx_table(ctx.find(path, folder=True), class_names=class_names)
    return _image_options(table, train_subset=train_subset, test_subset=test_subset, subset_seed=subset_seed,
                          normalize=normalize, random_crop=random_crop, horizontal_flip=horizontal_flip)


@DATASETS.register("torchvision", task="classification")
def torchvision(ctx: DataContext, /, *,
                name: Literal["FashionMNIST", "MNIST", "KMNIST", "EMNIST", "CIFAR10", "CIFAR100", "SVHN"],
                root: str = ".", download: bool = False, emnist_split: str = "balanced",
                train_subset: Count | None = None, test_subset: Count | None = None, subset_seed: Seed | None = None,
                normalize: Normalize = "auto", random_crop: NonNegativeInt = 0,
                horizontal_flip: bool = False) -> ImageTable:
    """A torchvision dataset with its own train/test sets; `root` is under the data directory."""
    # The first place that holds the dataset's folder; else the data directory, where a download would go.
    places = ctx.candidates(root)
    folder = next((p for p in places if (p / name).is_dir() or (p / name.lower()).is_dir()), places[0])
    table = images.torchvision_table(name, folder, download=download, emnist_split=emnist_split)
    return _image_options(table, train_subset=train_subset, test_subset=test_subset, subset_seed=subset_seed,
                          normalize=normalize, random_crop=random_crop, horizontal_flip=horizontal_flip)


@DATASETS.register("image_folder", task="classification")
def image_folder(ctx: DataContext, /, *, path: str, resize: list[Count] | None = None, grayscale: bool | None = None,
                 normalize: Normalize = "auto", random_crop: NonNegativeInt = 0, horizontal_flip: bool = False,
                 in_memory: Literal["auto", "yes", "no"] = "auto") -> ImageTable:
    """Images in one subfolder per class (PNG, JPEG, ...); decoded once into memory, or streamed by
    DataLoader workers when larger than 2 GiB (`in_memory`); `resize` to [height, width]."""
    table = images.folder_table(ctx.find(path, folder=True), resize=resize, grayscale=grayscale,
                                in_memory=in_memory)
    return _image_options(table, train_subset=None, test_subset=None, subset_seed=None, normalize=normalize,
                          random_crop=random_crop, horizontal_flip=horizontal_flip)

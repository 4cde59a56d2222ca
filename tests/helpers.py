"""Shared test helpers: a small iris config, real experiments built from it, one real training step, and small
generated data (a mixed CSV table, fake IDX digits)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from nnrun.config import validate
from nnrun.experiment import Experiment, build_experiment

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Small and fast: a few epochs of the iris MLP.
BASE_CONFIG = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "epochs": 3,
    "batch_size": 16,
    "data": {"type": "iris"},
    "model": {"type": "mlp", "hidden": [10]},
    "loss": "cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.1},
}


def merged(base: dict, changes: dict) -> dict:
    """base with changes merged in; a section whose `type` changes is replaced, not merged."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        same_type = isinstance(out.get(key), dict) and value.get("type", out[key].get("type")) == out[key].get("type") \
            if isinstance(value, dict) else False
        if same_type:
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def run_dirs(runs_dir: Path) -> list[Path]:
    """The run folders in a runs dir: not the `latest` link, MLflow's store or anything else beside them."""
    return sorted(p for p in Path(runs_dir).iterdir()
                  if p.is_dir() and not p.is_symlink() and (p / "config.yaml").is_file())


def people(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small mixed table: numbers, a text column, a text label and a numeric target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    income = rng.normal(50_000, 15_000, n).round(2)
    city = rng.choice(["Paris", "Lyon", "Nice"], n)
    label = np.where(income > 50_000, "rich", "poor")
    return pd.DataFrame({"age": age, "income": income, "city": city, "label": label,
                         "score": 2.0 * age + income / 1000 + rng.normal(0, 1, n)})


def house_prices(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Six-digit regression targets, like California's house values: price from area and rooms."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 250, n).round(1)
    rooms = rng.integers(1, 7, n)
    price = (1_500 * area + 20_000 * rooms + rng.normal(0, 25_000, n)).round(0) + 60_000
    return pd.DataFrame({"area": area, "rooms": rooms, "price": price})


# Trains in about a second: a small MLP on house_prices() written as `path`.
HOUSE_CONFIG = {"epochs": 3, "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01},
                "data": {"type": "csv", "path": "house.csv", "target": "price"}}


# A dataset that fits each kind of loss.
DATA_FOR_LOSS = {"classification": "iris", "binary": "moons", "regression": "diabetes"}


def experiment(**changes) -> Experiment:
    return build_experiment(validate(merged(BASE_CONFIG, changes)))


def one_step(exp: Experiment) -> float:
    """One forward, backward and optimizer step on a real batch; asserts that the weights moved."""
    x, y = next(iter(exp.train_batches))
    before = [p.detach().clone() for p in exp.model.parameters()]
    exp.model.train()
    loss = exp.loss_fn(exp.model(x), y)
    exp.optimizer.zero_grad()
    loss.backward()
    exp.optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, exp.model.parameters())), "no weight changed"
    return loss.item()


def fake_digits(n: int, *, size: int = 28, classes: int = 10, seed: int = 0):
    """(n, size, size) uint8 images whose class is a bright square at a class-specific spot, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    cell = max(size // 4, 2)
    for i, label in enumerate(labels):
        r, c = divmod(int(label) % 16, 4)
        images[i, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = 255
    return images, labels


def write_idx(path, array, *, gz: bool = True, magic: int | None = None):
    """Write an array as an IDX file (the MNIST format): magic number, dimensions, bytes."""
    import gzip

    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def write_idx_folder(folder, *, n_train: int = 200, n_test: int = 50, size: int = 28, gz: bool = True, seed: int = 0):
    """The four standard IDX files of a small fake digit set."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = fake_digits(n, size=size, seed=seed + offset)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz=gz)
    return folder


def train_runs(folder: Path, changes_by_name: dict[str, dict]) -> dict[str, Path]:
    """Train one run per name (BASE_CONFIG with those changes) through the CLI into folder/runs; name -> run folder."""
    from typer.testing import CliRunner

    from nnrun.cli import app

    made = {}
    for name, changes in changes_by_name.items():
        config = folder / f"{name}.yaml"
        config.write_text(yaml.safe_dump(merged(BASE_CONFIG, {"name": name, **changes})))
        result = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(folder / "runs")])
        assert result.exit_code == 0, result.output
        made[name] = next(p for p in run_dirs(folder / "runs") if p.name.startswith(f"{name}-"))
    return made

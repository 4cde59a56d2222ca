"""Shared helpers: a small iris config, and the CLI driven exactly as a user would through Typer's CliRunner."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nnrun.cli import app

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


@pytest.fixture
def write_config(tmp_path):
    """write_config(epochs=5, data={...}) -> path of a YAML file: BASE_CONFIG with those keys changed."""

    def write(name: str = "config.yaml", **changes) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merged(BASE_CONFIG, changes), sort_keys=False))
        return path

    return write


@pytest.fixture
def cli():
    """cli("train", path, "epochs=2") -> click Result; stdout and stderr kept apart."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p for p in Path(runs_dir).iterdir() if p.is_dir())

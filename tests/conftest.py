"""Fixtures: config files written from the small iris config, and the CLI driven as a user would drive it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nnrun.cli import app
from tests.helpers import BASE_CONFIG, merged


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

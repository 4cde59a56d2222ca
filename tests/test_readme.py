"""README.md's Quick start is what CI runs, and the config reference covers every key."""

import re

from nnrun.config import (
    DATA_KEYS,
    EARLY_STOPPING_KEYS,
    MODEL_KEYS,
    REGISTRIES,
    TOP_LEVEL_KEYS,
)
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_quick_start_has_two_commands_and_ci_runs_exactly_them():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "nnrun train configs/iris_mlp.yaml" in commands[0] and "pytest" in commands[1]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert [line for line in ci if line in commands] == commands


def test_every_config_key_and_registered_name_is_documented():
    for key in TOP_LEVEL_KEYS:
        assert re.search(rf"\| `{key}(\.[a-z_]+)?` \|", README), key
    for key in [*DATA_KEYS, *MODEL_KEYS]:
        assert f"`data.{key}`" in README or f"`model.{key}`" in README, key
    for key in EARLY_STOPPING_KEYS:
        assert f"`early_stopping.{key}`" in README, key
    for registry in REGISTRIES.values():
        for entry in registry:
            assert f"`{entry.name}`" in README, f"{registry.kind}: {entry.name}"


def test_every_test_the_readme_names_exists():
    """The Guarantees section names the test behind each promise; a renamed or deleted test breaks the link."""
    named = set(re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", README))
    assert len(named) >= 10
    for path, test in named:
        source = (ROOT / path).read_text()
        assert not test or re.search(rf"^def {test}\(", source, flags=re.M), f"{path}::{test}"

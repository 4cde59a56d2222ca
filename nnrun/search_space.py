"""A sweep's search space: the `KEY=SPEC` pairs of `nnrun sweep`, from the command line or a config's `sweep:` block.

A SPEC is a list of values (`optimizer.lr=0.001,0.01,0.1`, `model.hidden=[8],[32],[64,32]`), a distribution
(`loguniform(1e-4,1e-1)`, `uniform(0,0.5)`, `int(16,256)`, `choice(adam,sgd)`), or a single value, which is then a
fixed override for every trial (`epochs=30`). Values are read as YAML, as `nnrun train` reads overrides.

Optuna stores only scalars, so each parameter has a *stored* value: the value itself for numbers and names, the
text as written for a list or mapping (`[64,32]`). The study, the grid and the trials' folders all use it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import yaml

from nnrun.config import parse_value
from nnrun.errors import UserError, hint

# The distributions a SPEC may name, each with an example of its form.
DISTRIBUTIONS = {"loguniform": "loguniform(1e-4,1e-1)", "uniform": "uniform(0,0.5)", "int": "int(16,256)",
                 "choice": "choice(adam,sgd)"}
_CALL = re.compile(r"([A-Za-z_]\w*)\((.*)\)", re.DOTALL)


@dataclass(frozen=True)
class Choices:
    """Values to try, as written: every one of them in a grid, or one per trial for a sampler."""

    key: str
    texts: tuple[str, ...]

    @property
    def spec(self) -> str:
        return ",".join(self.texts)

    def grid(self) -> list[Any]:
        """The stored value of each choice, in the order written."""
        values = [parse_value(text) for text in self.texts]
        return values if all(_scalar(v) for v in values) else list(self.texts)

    def candidates(self) -> list[Any]:
        return self.grid()

    def suggest(self, trial) -> Any:
        """The stored value Optuna picks for `trial` (an optuna.Trial)."""
        return trial.suggest_categorical(self.key, self.grid())

    def text(self, stored: Any) -> str:
        """The value as the config override writes it."""
        return self.texts[self.grid().index(stored)]

    def describe(self) -> str:
        return f"{len(self.texts)} values"


@dataclass(frozen=True)
class Range:
    """A number drawn from `low` to `high` (both included): `uniform`, `loguniform` (log scale) or `int`."""

    key: str
    kind: str  # uniform | loguniform | int
    low: float
    high: float

    @property
    def spec(self) -> str:
        return f"{self.kind}({self.low},{self.high})"

    def candidates(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")

    def text(self, stored: Any) -> str:
        return repr(stored)  # the exact value: the trial's config.yaml reruns it

    def describe(self) -> str:
        return self.spec


Param = Choices | Range


def parse_spec(key: str, text: str) -> Param | None:
    """The parameter `KEY=text` describes; None when `text` is one value (a fixed override)."""
    text = text.strip()
    call = _CALL.fullmatch(text)
    if call:
        name, args = call.group(1), _split(call.group(2))
        if name not in DISTRIBUTIONS:
            raise UserError(f"{key}={text}: unknown distribution '{name}' ({hint(name, DISTRIBUTIONS)}choices: "
                            f"{', '.join(DISTRIBUTIONS.values())}; or give a list of values such as {key}=A,B,C)")
        if name == "choice":
            return _choices(key, args, text)
        return _range(key, name, args, text)
    parts = _split(text)
    return _choices(key, parts, text) if len(parts) > 1 else None


def parse_assignments(items: list[str]) -> tuple[dict[str, str], dict[str, Param]]:
    """Command-line `KEY=SPEC` pairs: (fixed overrides as key -> text, parameters by key)."""
    fixed: dict[str, str] = {}
    params: dict[str, Param] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"'{item}' must look like KEY=SPEC (for example optimizer.lr=0.001,0.01,0.1, "
                            f"optimizer.lr=loguniform(1e-4,1e-1) or epochs=30)")
        if key in fixed or key in params:
            raise UserError(f"{key} is given twice (give each key once: a list such as {key}=A,B sweeps it)")
        param = parse_spec(key, text)
        if param is None:
            fixed[key] = text
        else:
            params[key] = param
    return fixed, params


def parse_block_params(node: Any) -> tuple[dict[str, str], dict[str, Param]]:
    """A `sweep: {params: {KEY: SPEC}}` mapping: a string is a SPEC as on the command line, a YAML list is a list
    of values, anything else one fixed value."""
    if node is None:
        return {}, {}
    if not isinstance(node, dict):
        raise UserError(f"sweep.params must be a mapping of KEY: SPEC, got {_text(node)} (for example "
                        f"params: {{optimizer.lr: loguniform(1e-4,1e-1), model.hidden: [[8], [32]]}})")
    fixed: dict[str, str] = {}
    params: dict[str, Param] = {}
    for key, spec in node.items():
        key = str(key)
        if isinstance(spec, list):
            param = _choices(key, [_text(v) for v in spec], _text(spec))
        else:
            param = parse_spec(key, spec) if isinstance(spec, str) else None
        if param is None:
            fixed[key] = spec if isinstance(spec, str) else _text(spec)
        else:
            params[key] = param
    return fixed, params


def grid(params: list[Param]) -> list[dict[str, Any]]:
    """Every combination of the parameters' stored values, the first parameter varying slowest; no parameters: one
    empty combination (a single trial)."""
    keys = [p.key for p in params]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(p.grid() for p in params))]


def _choices(key: str, parts: list[str], text: str) -> Choices:
    if any(not part for part in parts):
        raise UserError(f"{key}={text}: an empty value in the list (separate values with single commas, for "
                        f"example {key}=0.001,0.01,0.1)")
    if len(parts) < 2:
        raise UserError(f"{key}={text}: a choice needs at least two values (one value is a fixed override: "
                        f"{key}={parts[0] if parts else 'VALUE'})")
    values = [parse_value(part) for part in parts]
    repeated = next((part for part, value in zip(parts, values) if values.count(value) > 1), None)
    if repeated is not None:
        raise UserError(f"{key}={text}: {repeated} is listed twice (list each value once)")
    return Choices(key, tuple(parts))


def _range(key: str, kind: str, args: list[str], text: str) -> Range:
    example = f"{key}={DISTRIBUTIONS[kind]}"
    values = [parse_value(a) for a in args]
    wanted = int if kind == "int" else (int, float)
    if len(values) != 2 or not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
        what = "two integers" if kind == "int" else "two numbers"
        raise UserError(f"{key}={text}: {kind} takes {what}, LOW and HIGH (for example {example})")
    low, high = values
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{key}={text}: low must be > 0 for a log scale (for example {example}, or uniform for a "
                        f"range that includes 0)")
    if low >= high:
        raise UserError(f"{key}={text}: low must be less than high (for example {example})")
    return Range(key, kind, float(low) if kind != "int" else low, float(high) if kind != "int" else high)


def _split(text: str) -> list[str]:
    """`text` cut at the commas outside brackets, braces, parentheses and quotes; each part stripped."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts if text.strip() else []


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _text(value: Any) -> str:
    """A YAML value written back as one line of YAML: `[64, 32]`, `0.001`, `adam`."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()

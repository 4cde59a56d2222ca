"""The experiment config: YAML loading, key=value overrides, and validation into typed objects.

Four public functions, in the order a command calls them: `load_yaml` reads the file, `apply_overrides`
merges the command line into it, `validate` turns it into a `Config` (reporting every problem at once),
and `Config.to_dict` gives the resolved config back, defaults included, ready to be written and rerun.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from nnrun.data.bundle import SCALES, TARGET_SCALES, DataConfig
from nnrun.data.datasets import DATASETS
from nnrun.data.splits import Split
from nnrun.errors import UserError, hint
from nnrun.losses import LOSSES, output_activation_problem, resolve_output_activation
from nnrun.metrics import MONITORABLE, resolve_mode
from nnrun.models import MODELS, OUTPUT_ACTIVATIONS, uses_batchnorm
from nnrun.optimizers import OPTIMIZERS
from nnrun.registry import Registry, Seed, check_value, format_value, unknown_key
from nnrun.schedulers import SCHEDULERS
from nnrun.speed import PRECISIONS, Precision
from nnrun.threads import Threads


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` as a string; a learning rate written that way should be a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

# The registries a config names components from, by kind (`nnrun list KIND`).
REGISTRIES: dict[str, Registry] = {r.kind: r for r in (DATASETS, MODELS, LOSSES, OPTIMIZERS, SCHEDULERS)}
TOP_LEVEL_KEYS = ["name", "seed", "device", "threads", "compile", "precision", "epochs", "batch_size", "data", "model",
                  "loss", "optimizer", "scheduler", "early_stopping", "test", "loggers", "sweep"]
# `sweep:` is `nnrun sweep`'s search space and settings (nnrun.search_space reads it); every other command ignores it.
SWEEP_KEY = "sweep"
# What `loggers:` may name: the package each needs, and the extra that installs it.
LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "nnrun[tensorboard]"), "mlflow": ("mlflow", "nnrun[mlflow]")}
REQUIRED_KEYS = ["data", "model", "loss", "optimizer", "epochs"]
Mode = Literal["auto", "min", "max"]
MODES = list(get_args(Mode))
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Component:
    """A registered builder's name and its validated keyword arguments."""

    type: str
    kwargs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.kwargs}


@dataclass(frozen=True)
class ModelConfig:
    """The model to build, and the activation applied to its output (`auto` is resolved from the loss)."""

    type: str
    kwargs: dict[str, Any]
    output_activation: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.kwargs, "output_activation": self.output_activation}


@dataclass(frozen=True)
class EarlyStopping:
    """Which metric picks the best checkpoint, and when training stops before `epochs`.

    `mode` is `auto` only as the user's default: the object itself always holds `min` or `max`.
    """

    monitor: str = "val_loss"
    mode: Mode = "auto"
    patience: int | None = None
    min_delta: float = 0.0
    stop_at: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", resolve_mode(self.monitor, self.mode))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _defaults(cls: type, *, skip: tuple[str, ...] = ("type", "kwargs")) -> dict[str, Any]:
    """A config dataclass's user-settable keys and their defaults: the one place each default is written."""
    found = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        value = f.default_factory() if f.default_factory is not MISSING else f.default
        found[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return found


# Keys of `data`, `model` and `early_stopping` that nnrun handles itself, with their defaults; the rest of
# `data` and `model` goes to the dataset or model builder.
DATA_KEYS = _defaults(DataConfig)
MODEL_KEYS = _defaults(ModelConfig)
EARLY_STOPPING_KEYS = _defaults(EarlyStopping)


@dataclass(frozen=True)
class Config:
    """A validated experiment: everything `nnrun train` needs, with defaults filled in."""

    name: str
    seed: int
    device: str
    epochs: int
    batch_size: int | str
    data: DataConfig
    model: ModelConfig
    loss: Component
    optimizer: Component
    scheduler: Component | None
    early_stopping: EarlyStopping
    threads: Threads = "auto"
    compile: bool = False
    precision: Precision = "auto"
    loggers: tuple[str, ...] = ()
    test: bool = True  # false: train and validate only; `nnrun eval` tests the checkpoint later
    # Where the config file was: its relative data paths are also looked up there. Not part of the config itself.
    config_dir: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-ready types, in the README's key order."""
        return {"name": self.name, "seed": self.seed, "device": self.device, "threads": self.threads,
                "compile": self.compile, "precision": self.precision, "epochs": self.epochs,
                "batch_size": self.batch_size, "data": self.data.to_dict(), "model": self.model.to_dict(),
                "loss": self.loss.to_dict(), "optimizer": self.optimizer.to_dict(),
                "scheduler": self.scheduler.to_dict() if self.scheduler else None,
                "early_stopping": self.early_stopping.to_dict(),
                # written only when off, so that the config.yaml of every run that tests stays as it was
                **({} if self.test else {"test": False}), "loggers": list(self.loggers)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


MAX_VALUES = 100_000  # a config holds a few dozen; YAML aliases can nest into billions ("billion laughs")


def _expands_too_far(value: Any) -> bool:
    """Whether a loaded YAML value holds more than MAX_VALUES values once its aliases are expanded.

    Shared (aliased) lists and dicts are counted each time they appear, as every later walk would see them; the
    walk stops at the limit, so a bomb costs at most MAX_VALUES steps here.
    """
    seen, stack = 0, [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a config file into a dict; a missing file or bad YAML is a UserError naming the spot."""
    path = Path(path)
    if not path.is_file():
        hint = "it is a folder; give the .yaml file" if path.is_dir() else "check the path; configs/ holds examples"
        raise UserError(f"config file '{path}' not found ({hint})")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        raise UserError(f"{where}: invalid YAML: {problem} (fix the syntax at that line)") from None
    except UnicodeDecodeError:
        raise UserError(f"config file '{path}' is not UTF-8 text (give a YAML file)") from None
    if _expands_too_far(raw):
        raise UserError(f"config file '{path}' expands to more than {MAX_VALUES:,} values through its YAML aliases "
                        f"(write the values out instead of nesting anchors)")
    if raw is None:
        raise UserError(f"config file '{path}' is empty (start from one of the files in configs/)")
    if not isinstance(raw, dict):
        raise UserError(f"config file '{path}' must be a mapping of keys such as data:, model:, epochs: "
                        f"(got {type(raw).__name__}; start from one of the files in configs/)")
    return raw


def parse_value(text: str) -> Any:
    """A command-line value, read as a YAML scalar or flow list: `0.01`, `[64,32]`, `true`, `adam`."""
    try:
        value = yaml.load(text, Loader=_Loader) if text.strip() else None
    except yaml.YAMLError:
        return text
    if _expands_too_far(value):
        raise UserError(f"the value '{text[:40]}...' expands to more than {MAX_VALUES:,} values through its YAML "
                        f"aliases (write the values out)")
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Merge `a.b=value` overrides into a copy of the raw config. Unknown keys are caught by `validate`."""
    merged = copy.deepcopy(raw)
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"override '{item}' must look like key=value (for example epochs=5 or optimizer.lr=0.01)")
            continue
        *parents, leaf = key.split(".")
        node = merged
        for depth, part in enumerate(parents):
            child = node.get(part)
            if isinstance(child, str) and part in ("data", "model", "loss", "optimizer", "scheduler"):
                child = node[part] = {"type": child}  # `loss: mse` is shorthand for `loss: {type: mse}`
            elif child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                section = ".".join(parents[: depth + 1])
                if section == "data.split" and child == "all":
                    example = "{test: 0.15, folds: 5, fold: 0}" if leaf in ("folds", "fold") else \
                        "{train: 0.7, val: 0.15, test: 0.15}"
                    problems.append(f"override '{item}': data.split is 'all', which has no '{leaf}' (set fractions "
                                    f"instead, for example data.split={example})")
                    break
                problems.append(f"override '{item}': '{section}' is a value, not a section "
                                f"(set it directly: {section}=...)")
                break
            node = child
        else:
            node[leaf] = parse_value(text)
    if problems:
        raise UserError(*problems)
    return merged


def validate(raw: dict[str, Any], *, source: Path | None = None, config_dir: str | Path | None = None) -> Config:
    """Check the whole config against the schema and the registries; every problem in one UserError.

    `source` is the file it came from (it names the run and locates relative data paths); a config restored
    from a checkpoint gives the `config_dir` its run recorded instead.
    """
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"unknown key '{key}' in config ({hint(str(key), TOP_LEVEL_KEYS)}valid keys: "
                            f"{', '.join(TOP_LEVEL_KEYS)})")
    for key in REQUIRED_KEYS:
        if raw.get(key) is None:
            problems.append(f"missing required key '{key}' (see configs/iris_mlp.yaml for a complete example)")

    name = raw.get("name", source.stem if source else "run")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        problems.append(f"name must be letters, digits, '_', '-' or '.', got {format_value(name)} "
                        f"(it names the run folder; for example name=iris_mlp)")
    seed = raw.get("seed", 0)
    if not check_value(seed, Seed)[0]:
        problems.append(f"seed must be an integer from 0 to 2**32 - 1, got {format_value(seed)} (for example seed=0)")
    device = raw.get("device", "auto")
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        problems.append(f"device must be auto, cpu, cuda, cuda:N or mps, got {format_value(device)} (for example device=cpu)")
    epochs = raw.get("epochs")
    if epochs is not None and (not _is_int(epochs) or epochs < 1):
        problems.append(f"epochs must be an integer >= 1, got {format_value(epochs)} (for example epochs=100)")
    threads = raw.get("threads", "auto")
    if threads != "auto" and (not _is_int(threads) or threads < 1):
        problems.append(f"threads must be auto or an integer >= 1, got {format_value(threads)} (for example "
                        f"threads=1 on a busy machine; auto measures which count is faster)")
    compile_ = raw.get("compile", False)
    if not isinstance(compile_, bool):
        problems.append(f"compile must be true or false, got {format_value(compile_)} (for example compile=true)")
    precision = raw.get("precision", "auto")
    if precision not in PRECISIONS:
        problems.append(_choice_problem("precision", precision, PRECISIONS))
    test = raw.get("test", True)
    if not isinstance(test, bool):
        problems.append(f"test must be true or false, got {format_value(test)} (test=false trains and validates "
                        f"only; nnrun eval RUN/checkpoints/best.pth tests the best weights later)")
    batch_size = raw.get("batch_size", 32)
    if batch_size != "full" and (not _is_int(batch_size) or batch_size < 1):
        problems.append(f"batch_size must be an integer >= 1 or 'full', got {format_value(batch_size)} "
                        f"(for example batch_size=32, or batch_size=full for full-batch gradient descent)")

    loggers = _loggers(raw.get("loggers", []), problems)
    data = _data(raw.get("data"), problems)
    loss = _component(raw.get("loss"), "loss", LOSSES, problems)
    model = _model(raw.get("model"), loss, problems)
    optimizer = _component(raw.get("optimizer"), "optimizer", OPTIMIZERS, problems)
    scheduler = _component(raw.get("scheduler"), "scheduler", SCHEDULERS, problems) if raw.get("scheduler") else None
    early_stopping = _early_stopping(raw.get("early_stopping"), problems)
    if model and batch_size == 1 and uses_batchnorm(model.type, model.kwargs):
        problems.append(f"model '{model.type}' has BatchNorm layers, which cannot train on batches of one row "
                        f"(set batch_size=2 or more, or model.batchnorm=false)")
    if data and loss and data.type in DATASETS and "task" in DATASETS.get(data.type).meta:
        problems += task_problems(loss.type, DATASETS.get(data.type).meta["task"], f"dataset '{data.type}'")

    if problems:
        raise UserError(*problems)
    return Config(name=name, seed=seed, device=device, threads=threads, compile=compile_, precision=precision,
                  loggers=loggers, test=test,
                  config_dir=Path(config_dir) if config_dir else Path(source).resolve().parent if source else None,
                  epochs=epochs, batch_size=batch_size,
                  data=data,
                  model=model, loss=loss, optimizer=optimizer, scheduler=scheduler, early_stopping=early_stopping)


def _loggers(node: Any, problems: list[str]) -> tuple[str, ...]:
    """`loggers: [tensorboard, mlflow]`: known names, each with its package installed."""
    names = [node] if isinstance(node, str) else node if node is not None else []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(f"loggers must be a list drawn from {', '.join(LOGGER_PACKAGES)}, got {format_value(node)} "
                        f"(for example loggers=[tensorboard])")
        return ()
    for name in names:
        if name not in LOGGER_PACKAGES:
            problems.append(f"unknown logger '{name}' ({hint(name, list(LOGGER_PACKAGES))}choices: "
                            f"{', '.join(LOGGER_PACKAGES)}; metrics.csv is always written)")
    return tuple(dict.fromkeys(names))


def check_loggers_installed(cfg: Config) -> None:
    """Before training: each logger's package is there. Not part of `validate`, so that a checkpoint trained with
    a logger still evaluates, predicts and exports on a machine without it."""
    problems = [missing_package(f"logger '{name}'", *LOGGER_PACKAGES[name], otherwise="leave it out of loggers")
                for name in cfg.loggers]
    if any(problems):
        raise UserError(*filter(None, problems))


def missing_package(who: str, package: str, extra: str, *, otherwise: str = "") -> str | None:
    """`<who> needs the <package> package, which is not installed (pip install "<extra>")`, or None when it is."""
    if importlib.util.find_spec(package) is not None:
        return None
    return (f"{who} needs the {package} package, which is not installed (pip install \"{extra}\""
            f"{', or ' + otherwise if otherwise else ''})")


def task_problems(loss: str, task: str, what: str) -> list[str]:
    """A loss used on the wrong kind of target: CE on float targets, MSE on class labels."""
    if loss not in LOSSES:
        return []
    wanted = LOSSES.get(loss).meta["task"]
    if wanted == task:
        return []
    if task == "regression":
        return [(f"loss '{loss}' needs class labels, but {what} has float regression targets "
                 f"(use loss mse, l1, smooth_l1 or huber; or, for a CSV, set data.task=classification)")]
    return [(f"loss '{loss}' is for regression, but {what} has class labels "
             f"(use loss cross_entropy, or bce/bce_with_logits for two classes)")]


def _component(node: Any, path: str, registry: Registry, problems: list[str],
               reserved: dict[str, Any] | None = None) -> Component | None:
    """`{type: NAME, ...kwargs}` or just `NAME`, checked against the builder's signature."""
    if node is None:
        return None
    if isinstance(node, str):
        node = {"type": node}
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        problems.append(f"{path} must be a name or a mapping with a 'type' key, got {format_value(node)} "
                        f"(for example {path}: {{type: {registry.names()[0]}}}; `nnrun list {registry.kind}`)")
        return None
    reserved = reserved or {}
    kwargs = {k: v for k, v in node.items() if k != "type" and k not in reserved}
    resolved, found = registry.validate(node["type"], kwargs, path, also_valid=list(reserved))
    problems += found
    return Component(node["type"], resolved)


def _data(node: Any, problems: list[str]) -> DataConfig | None:
    component = _component(node, "data", DATASETS, problems, reserved=DATA_KEYS)
    if component is None:
        return None
    node = node if isinstance(node, dict) else {}
    split = _split(node.get("split", DATA_KEYS["split"]), problems)
    scale = node.get("scale", DATA_KEYS["scale"])
    if scale not in SCALES:
        problems.append(_choice_problem("data.scale", scale, SCALES))
    target_scale = node.get("target_scale", DATA_KEYS["target_scale"])
    if target_scale not in TARGET_SCALES:
        problems.append(_choice_problem("data.target_scale", target_scale, TARGET_SCALES))
    return DataConfig(component.type, component.kwargs, split, scale, target_scale)


SPLIT_KEYS = ["train", "val", "test", "folds", "fold", "seed"]


def _split(node: Any, problems: list[str]) -> Split:
    if node == "all":
        return Split(train=1.0, val=0.0, test=0.0, all=True)
    example = "data.split={train: 0.7, val: 0.15, test: 0.15}, or data.split=all to use every row for all three"
    if not isinstance(node, dict):
        problems.append(f"data.split must be a mapping of fractions or 'all', got {format_value(node)} ({example})")
        return Split()
    unknown = [k for k in node if k not in SPLIT_KEYS]
    if unknown:
        problems.append(f"unknown key 'data.split.{unknown[0]}' (valid keys: {', '.join(SPLIT_KEYS)})")
        return Split()
    seed = node.get("seed")
    if seed is not None and not check_value(seed, Seed)[0]:
        problems.append(f"data.split.seed must be an integer from 0 to 2**32 - 1, got {format_value(seed)} (for "
                        f"example data.split.seed=0; leave it out to split with the run's seed)")
        seed = None
    if node.get("folds") is not None or node.get("fold") is not None:
        return _folds(node, seed, problems)
    fractions = {k: node.get(k) for k in ("train", "val", "test")}
    given = {k: v for k, v in fractions.items() if v is not None}
    for key, value in given.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1 + 1e-9:
            problems.append(f"data.split.{key} must be a fraction between 0 and 1, got {format_value(value)} ({example})")
            return Split()
    missing = [k for k in fractions if k not in given]
    if len(missing) == 1:  # the one left out takes the rest
        rest = round(1.0 - sum(given.values()), 10)
        if rest < 0:
            problems.append(f"data.split fractions add up to {sum(given.values()):g}, more than 1, so nothing is left "
                            f"for {missing[0]} ({example})")
            return Split()
        given[missing[0]] = rest
    elif missing:
        defaults = Split()
        given = {k: given.get(k, getattr(defaults, k)) for k in fractions}
    split = Split(**{k: float(v) for k, v in given.items()}, seed=seed)
    if abs(split.train + split.val + split.test - 1.0) > 1e-6:
        problems.append(f"data.split fractions must add up to 1, got train {split.train} + val {split.val} + "
                        f"test {split.test} ({example})")
    elif split.train <= 0 or split.val <= 0:
        problems.append(f"data.split needs train > 0 and val > 0, got train {split.train}, val {split.val} "
                        f"(val picks the best epoch; {example})")
    return split


def _folds(node: dict[str, Any], seed: int | None, problems: list[str]) -> Split:
    """`data.split: {test: 0.15, folds: K, fold: i}`: K-fold cross-validation on the rows that are not test."""
    folds, fold, test = node.get("folds"), node.get("fold"), node.get("test", Split.test)
    found = len(problems)
    for key in ("train", "val"):
        if node.get(key) is not None:
            problems.append(f"data.split.{key} is set by folds: val is one fold of the rows that are not test, and "
                            f"train the other folds (leave out data.split.{key}, or drop data.split.folds and fold)")
    if folds is None:
        problems.append(f"data.split.fold needs data.split.folds, the number of folds (for example "
                        f"data.split={{folds: 5, fold: {fold if _is_int(fold) else 0}}})")
    elif not _is_int(folds) or folds < 2:
        problems.append(f"data.split.folds must be an integer >= 2, got {format_value(folds)} "
                        f"(for example data.split.folds=5)")
    elif fold is None:
        problems.append(f"data.split.folds needs data.split.fold, the fold that is val: an integer from 0 to "
                        f"{folds - 1} (for example data.split.fold=0)")
    elif not _is_int(fold) or not 0 <= fold < folds:
        problems.append(f"data.split.fold must be an integer from 0 to {folds - 1} (folds: {folds}), got "
                        f"{format_value(fold)} (for example data.split.fold=0)")
    if not _is_number(test) or not 0 <= test < 1:
        problems.append(f"data.split.test must be a fraction from 0 up to (not including) 1, got {format_value(test)} "
                        f"(the other rows are cut into folds; for example data.split.test=0.15)")
    if len(problems) > found:
        return Split()
    rest = 1.0 - test
    return Split(train=round(rest * (folds - 1) / folds, 10), val=round(rest / folds, 10), test=float(test),
                 folds=folds, fold=fold, seed=seed)


def _model(node: Any, loss: Component | None, problems: list[str]) -> ModelConfig | None:
    component = _component(node, "model", MODELS, problems, reserved=MODEL_KEYS)
    if component is None:
        return None
    node = node if isinstance(node, dict) else {}
    activation = node.get("output_activation", MODEL_KEYS["output_activation"])
    activation = "none" if activation is None else activation
    if activation != "auto" and (not isinstance(activation, str) or activation not in OUTPUT_ACTIVATIONS):
        problems.append(_choice_problem("model.output_activation", activation, ["auto", *OUTPUT_ACTIVATIONS]))
        return ModelConfig(component.type, component.kwargs, "none")
    if loss is not None and loss.type in LOSSES:
        if activation == "auto":
            activation = resolve_output_activation(loss.type)
        problem = output_activation_problem(loss.type, activation)
        if problem:
            problems.append(problem)
    return ModelConfig(component.type, component.kwargs, activation)


def _early_stopping(node: Any, problems: list[str]) -> EarlyStopping:
    node = {} if node is None else node
    if not isinstance(node, dict):
        problems.append(f"early_stopping must be a mapping, got {format_value(node)} "
                        f"(for example early_stopping: {{monitor: val_loss, patience: 10}})")
        return EarlyStopping()
    for key in node:
        if key not in EARLY_STOPPING_KEYS:
            problems.append(unknown_key(f"early_stopping.{key}", [f"early_stopping.{k}" for k in EARLY_STOPPING_KEYS],
                                        "early_stopping"))
    values = {**EARLY_STOPPING_KEYS, **{k: v for k, v in node.items() if k in EARLY_STOPPING_KEYS}}
    monitor, mode = values["monitor"], values["mode"]
    if monitor not in MONITORABLE:
        problems.append(_choice_problem("early_stopping.monitor", monitor, MONITORABLE))
        monitor = EARLY_STOPPING_KEYS["monitor"]  # reported above; the mode of a number or null cannot be resolved
    if mode not in MODES:
        problems.append(_choice_problem("early_stopping.mode", mode, MODES))
        mode = "auto"
    patience = values["patience"]
    if patience is not None and (not _is_int(patience) or patience < 1):
        problems.append(f"early_stopping.patience must be an integer >= 1 or null, got {format_value(patience)} "
                        f"(for example early_stopping.patience=10)")
    min_delta = values["min_delta"]
    if not _is_number(min_delta) or min_delta < 0:
        problems.append(f"early_stopping.min_delta must be a number >= 0, got {format_value(min_delta)} "
                        f"(for example early_stopping.min_delta=0.001)")
    stop_at = values["stop_at"]
    if stop_at is not None and not _is_number(stop_at):
        problems.append(f"early_stopping.stop_at must be a number or null, got {format_value(stop_at)} "
                        f"(for example early_stopping.stop_at=0.01)")
    return EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                         min_delta=float(min_delta) if _is_number(min_delta) else 0.0,
                         stop_at=float(stop_at) if _is_number(stop_at) else None)


def _choice_problem(path: str, value: Any, choices: list[str]) -> str:
    return (f"{path} must be one of {', '.join(choices)}, got {format_value(value)} ({hint(str(value), choices)}for "
            f"example {path}={choices[0]})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


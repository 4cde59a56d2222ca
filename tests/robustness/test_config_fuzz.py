"""Config fuzzing: configs generated from the registries' schema, then mutated, and raw YAML text of every kind.

Every case runs `nnrun check` as a user would (it validates, builds the data and the model and runs one batch)
and must end in exit 0 or one `error:` line per problem with exit 2, never a traceback.
"""

from __future__ import annotations

import math
import signal
import typing
from typing import Annotated, Literal

import yaml
from hypothesis import given
from hypothesis import strategies as st

from nnrun.config import REGISTRIES
from nnrun.registry import Bound, Length
from tests.robustness.conftest import assert_clean

SMALL_DATASETS = ["iris", "wine", "moons", "diabetes", "breast_cancer"]  # no files, no size settings
MODELS = ["mlp", "linear"]


def valid_value(annotation) -> st.SearchStrategy:
    """Values that fit a builder parameter's annotation, bounds included."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated and any(isinstance(m, Length) for m in annotation.__metadata__):
        items = next(m.items for m in annotation.__metadata__ if isinstance(m, Length))
        return st.lists(valid_value(typing.get_args(args[0])[0]), min_size=items, max_size=items)
    if origin is Annotated:
        bound = next(b for b in annotation.__metadata__ if isinstance(b, Bound))
        low = bound.ge if bound.ge is not None else bound.gt
        high = bound.le if bound.le is not None else bound.lt
        if args[0] is int:
            return st.integers(min_value=int(low or 0) + (1 if bound.gt is not None else 0),
                               max_value=int(min(high - 1 if high is not None else 64, 64)))
        return st.floats(min_value=low or 0.0, max_value=min(high if high is not None else 10.0, 10.0),
                         exclude_min=bound.gt is not None, exclude_max=bound.lt is not None)
    if origin in (typing.Union, __import__("types").UnionType):
        return st.one_of(*[valid_value(a) for a in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(valid_value(args[0]), min_size=1, max_size=3)
    return {bool: st.booleans(), int: st.integers(0, 64), float: st.floats(0, 10), type(None): st.none(),
            str: st.text(max_size=8), dict: st.just({})}.get(annotation, st.none())


def component(kind: str, names: list[str] | None = None) -> st.SearchStrategy:
    """{type: NAME, ...} with a random subset of the builder's settings, each valid for its annotation."""
    registry = REGISTRIES[kind]

    @st.composite
    def build(draw):
        entry = registry.get(draw(st.sampled_from(names or registry.names())))
        chosen = draw(st.lists(st.sampled_from(list(entry.params) or ["_"]), unique=True, max_size=3))
        kwargs = {k: draw(valid_value(entry.params[k].annotation)) for k in chosen if k in entry.params}
        return {"type": entry.name, **kwargs}

    return build()


NASTY = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([0, -1, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 5e-324]),
    st.text(max_size=12), st.sampled_from(["", "auto", "full", "🐍", "a\tb", "null", "~", "1e-3", "[1, 2"]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
PATHS = ["name", "seed", "device", "epochs", "batch_size", "threads", "compile", "precision", "test", "data",
         "data.split", "data.split.train", "data.split.val", "data.split.folds", "data.split.fold", "data.split.seed",
         "data.scale", "data.target_scale", "model", "model.hidden", "model.dropout", "model.activation", "model.output_activation", "loss", "loss.label_smoothing", "optimizer",
         "optimizer.lr", "optimizer.momentum", "optimizer.betas", "scheduler", "scheduler.gamma", "early_stopping",
         "early_stopping.monitor", "early_stopping.mode", "early_stopping.patience", "early_stopping.stop_at",
         "unknown_key", "model.hiden"]


@st.composite
def configs(draw) -> dict:
    """A config drawn from the schema (it may already be wrong: a loss that does not fit the data)."""
    config = {
        "name": "fuzz", "seed": draw(st.integers(0, 5)), "device": "cpu", "epochs": draw(st.integers(1, 3)),
        "batch_size": draw(st.one_of(st.integers(1, 64), st.just("full"))), "threads": 1,
        "data": {"type": draw(st.sampled_from(SMALL_DATASETS))},
        "model": draw(component("models", MODELS)), "loss": draw(component("losses")),
        "optimizer": draw(component("optimizers")),
    }
    if draw(st.integers(0, 3)) == 0:
        folds = draw(st.integers(2, 6))
        config["data"]["split"] = {"test": draw(st.sampled_from([0.0, 0.15, 0.3])), "folds": folds,
                                   "fold": draw(st.integers(0, folds - 1)), "seed": draw(st.integers(0, 5))}
    if draw(st.booleans()):
        config["scheduler"] = draw(component("schedulers"))
    if draw(st.booleans()):
        config["early_stopping"] = {"monitor": draw(st.sampled_from(["val_loss", "val_accuracy", "val_r2"])),
                                    "patience": draw(st.one_of(st.none(), st.integers(1, 5)))}
    return config


@st.composite
def mutated(draw) -> dict:
    config = draw(configs())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS)).split(".")
        node = config
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if not isinstance(node.get(part), str) else {"type": node[part]}
            node = node[part]
        if draw(st.booleans()) and path[-1] in node:
            del node[path[-1]]
        else:
            node[path[-1]] = draw(NASTY)
    return config


def check(cli, tmp_path, text: str | bytes, kind: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    result = cli("check", path)
    assert_clean(kind, result.exit_code, result.stdout, result.stderr)


@given(config=configs())
def test_configs_from_the_schema_check_cleanly(cli, tmp_path, config):
    check(cli, tmp_path, yaml.safe_dump(config), "config fuzz: from the schema")


@given(config=mutated())
def test_mutated_configs_check_cleanly(cli, tmp_path, config):
    check(cli, tmp_path, yaml.safe_dump(config, allow_unicode=True), "config fuzz: mutated")


BASE = """name: fuzz
device: cpu
epochs: 1
threads: 1
data: {type: iris}
model: {type: mlp, hidden: [4]}
loss: cross_entropy
optimizer: {type: sgd, lr: 0.1}
"""
RAW_TEXTS = [
    "", "   \n", "---\n...\n", "[1, 2, 3]\n", "just a string\n", "42\n", "null\n",
    "data:\n\ttype: iris\n",  # a tab
    "base: &b {type: iris}\ndata: *b\nmodel: mlp\nloss: cross_entropy\noptimizer: sgd\nepochs: 1\n",  # anchor
    "defaults: &d {lr: 0.1}\noptimizer: {<<: *d, type: sgd}\ndata: iris\nmodel: mlp\nloss: mse\nepochs: 1\n",  # merge
    "data: {type: iris\n",  # unclosed flow mapping
    "epochs: 1\nepochs: 2\n" + BASE,  # a duplicated key
    BASE.replace("fuzz", "名前"),  # a name that cannot name a folder here
    BASE + "épochs: 3\n",  # a near-miss unicode key
    BASE.replace("lr: 0.1", "lr: .nan"),
    BASE.replace("lr: 0.1", "lr: 1e999"),
    BASE.replace("hidden: [4]", "hidden: [4, -2]"),
    BASE.replace("epochs: 1", "epochs: 1.5"),
    BASE.replace("epochs: 1", "epochs: 99999999999999999999999"),
    "!!python/object/apply:os.system ['echo pwned']\n",  # code, which safe loading must refuse
    BASE.replace("hidden: [4]", "hidden: &h [4, *h]"),  # a list that holds itself
    "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(  # "billion laughs": 10^12 values through aliases
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 12)) + BASE,
]


def test_raw_yaml_texts_of_every_kind_check_cleanly(cli, tmp_path):
    def too_slow(*_):
        raise TimeoutError("a config took over 30 s to check (an alias bomb expanding?)")

    previous = signal.signal(signal.SIGALRM, too_slow)
    try:
        for text in RAW_TEXTS:
            signal.alarm(30)
            check(cli, tmp_path, text, "config fuzz: raw YAML")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@given(data=st.binary(max_size=200))
def test_binary_content_checks_cleanly(cli, tmp_path, data):
    check(cli, tmp_path, data, "config fuzz: binary")


@given(text=st.text(max_size=200))
def test_arbitrary_text_checks_cleanly(cli, tmp_path, text):
    check(cli, tmp_path, text, "config fuzz: text")

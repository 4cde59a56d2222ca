"""Registry: named builders whose keyword-only arguments are the config's kwargs.

A builder's positional parameters are what nnrun supplies (the input shape, the model's parameters, ...);
its keyword-only parameters are what the user may set in YAML. Their annotations and defaults are the
schema: `validate` checks a config's kwargs against them, and `nnrun list` prints them.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from nnrun.errors import UserError, hint, unknown_name

_MISSING = inspect.Parameter.empty


@dataclass(frozen=True)
class Bound:
    """The range a number must lie in, as `Annotated` metadata: `Annotated[float, Bound(gt=0)]` is > 0."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    @property
    def words(self) -> str:
        """`>= 0 and < 1`"""
        parts = [f"{op} {format_value(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le),
                                                         ("<", self.lt)) if v is not None]
        return " and ".join(parts)


@dataclass(frozen=True)
class Length:
    """How many items a list must hold, as `Annotated` metadata: `Annotated[list[float], Length(2)]`."""

    items: int


# The constrained types builders annotate their settings with; validation checks them before any work starts.
Count = Annotated[int, Bound(ge=1)]  # sizes, epochs, steps
NonNegativeInt = Annotated[int, Bound(ge=0)]
Seed = Annotated[int, Bound(ge=0, lt=2**32)]  # what NumPy and scikit-learn accept
Positive = Annotated[float, Bound(gt=0)]  # learning rates, epsilons, factors
NonNegative = Annotated[float, Bound(ge=0)]  # weight decay, momentum, noise
Fraction = Annotated[float, Bound(ge=0, lt=1)]  # dropout, label smoothing


@dataclass(frozen=True)
class Param:
    """One user-settable argument of a builder."""

    name: str
    annotation: Any
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def describe(self) -> str:
        """`hidden: list[int] = [64]`, as `nnrun list` shows it."""
        text = f"{self.name}: {type_name(self.annotation)}"
        return text if self.required else f"{text} = {format_value(self.default)}"


@dataclass(frozen=True)
class Entry:
    """A registered builder, with its docstring and metadata."""

    name: str
    fn: Callable[..., Any]
    params: dict[str, Param]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        """The first paragraph of the builder's docstring, as one line."""
        return " ".join((inspect.getdoc(self.fn) or "").split("\n\n")[0].split())

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params.values() if not p.required}


class Registry:
    """Builders of one kind (`models`, `losses`, ...), looked up by explicit name."""

    def __init__(self, kind: str, *, singular: str):
        self.kind = kind  # "losses": what `nnrun list` calls the registry
        self.singular = singular  # "loss": what a message calls one entry
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: `@MODELS.register("mlp")`. A duplicate name is a bug and raises at import."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            if not inspect.getdoc(fn):
                raise ValueError(f"{self.kind} '{name}' needs a docstring: `nnrun list` shows it")
            self._entries[name] = Entry(name, fn, _keyword_params(fn), meta)
            return fn

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries[name] for name in self.names())

    def get(self, name: str) -> Entry:
        """The entry called `name`; an unknown name is a UserError listing the choices."""
        if name not in self._entries:
            raise UserError(unknown_name(self.singular, name, self._entries))
        return self._entries[name]

    def validate(self, name: str, kwargs: dict[str, Any], path: str,
                 also_valid: list[str] = ()) -> tuple[dict[str, Any], list[str]]:
        """Check kwargs against the builder's signature: (kwargs with defaults filled in, problems).

        `also_valid` names keys that nnrun itself handles for every builder (such as `data.split`), so
        that an unknown key's message lists them among the valid ones.
        """
        if name not in self._entries:
            return dict(kwargs), [unknown_name(self.singular, name, self._entries)]
        entry = self._entries[name]
        problems = []
        resolved = entry.defaults()
        for key, value in kwargs.items():
            param = entry.params.get(key)
            if param is None:
                known = [f"{path}.{p}" for p in [*entry.params, *also_valid]]
                problems.append(unknown_key(f"{path}.{key}", known, f"{self.singular} '{name}'"))
                continue
            ok, coerced = check_value(value, param.annotation)
            if ok:
                resolved[key] = coerced
            else:
                problems.append(bad_value(f"{path}.{key}", value, param))
        for param in entry.params.values():
            if param.required and param.name not in kwargs:
                problems.append(f"{path}.{param.name} is required by {self.singular} '{name}' "
                                f"(add it: {path}.{param.name}=<{type_name(param.annotation)}>)")
        return resolved, problems

    def build(self, name: str, /, *context: Any, **kwargs: Any) -> Any:
        """Call the builder with nnrun's positional context and the user's validated kwargs."""
        return self.get(name).fn(*context, **kwargs)


def unknown_key(path: str, known: list[str], owner: str) -> str:
    """`unknown key 'optimizer.lrr' for optimizer 'sgd' (did you mean 'optimizer.lr'? ...)`."""
    names = ", ".join(k.rsplit(".", 1)[-1] for k in sorted(known)) or "none"
    return f"unknown key '{path}' for {owner} ({hint(path, known)}valid keys: {names})"


def bad_value(path: str, value: Any, param: Param) -> str:
    """`model.hidden must be a list of integers, got 'ten' (for example model.hidden=[64, 32])`."""
    expected = describe_type(param.annotation)
    choices = _literal_choices(param.annotation)
    if choices:
        names = [str(c) for c in choices]
        return f"{path} must be {expected}, got {format_value(value)} ({hint(str(value), names)}choices: " \
               f"{', '.join(names)})"
    example = param.default if not param.required and param.default is not None else _example(param.annotation)
    return f"{path} must be {expected}, got {format_value(value)} (for example {path}={format_value(example)})"


def check_value(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Does `value` (from YAML) fit `annotation`? Returns (ok, value converted to the annotated type)."""
    if annotation is Any or annotation is _MISSING:
        return True, value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, converted = check_value(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return value in args, value
    if origin is Annotated:
        ok, converted = check_value(value, args[0])
        for rule in annotation.__metadata__:
            if isinstance(rule, Bound):
                ok = ok and rule.holds(converted)
            elif isinstance(rule, Length):
                ok = ok and isinstance(value, (list, tuple)) and len(value) == rule.items
        return ok, converted
    if origin in (list, tuple):
        item_type = args[0] if args else Any
        items = value if isinstance(value, (list, tuple)) else [value]
        converted = []
        for item in items:
            ok, item = check_value(item, item_type)
            if not ok:
                return False, value
            converted.append(item)
        return True, converted
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:  # NaN and infinity are never a setting
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return ok, float(value) if ok else value
    if annotation is str:
        return isinstance(value, str), value
    if annotation is dict or origin is dict:
        return isinstance(value, dict), value
    raise TypeError(f"nnrun cannot check values of type {annotation!r}")


def describe_type(annotation: Any) -> str:
    """Plain words for a type: `a list of integers`, `one of relu, tanh`, `a number or null`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is Annotated:
        length = next((m.items for m in annotation.__metadata__ if isinstance(m, Length)), None)
        if length is not None:  # "a list of 2 numbers, each ..."
            return describe_type(args[0]).replace("a list of", f"a list of {length}", 1)
        return f"{describe_type(args[0])} {_bound_words(annotation)}".strip()
    if origin in (list, tuple):
        item = args[0] if args else Any
        base, bound = (typing.get_args(item)[0], _bound_words(item)) if typing.get_origin(item) is Annotated \
            else (item, "")
        inner = describe_type(base).removeprefix("an ").removeprefix("a ") if base is not Any else "value"
        if inner.startswith("one of"):
            return f"a list, each {inner}"
        return f"a list of {inner}s" + (f", each {bound}" if bound else "")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(annotation, type_name(annotation))


def type_name(annotation: Any) -> str:
    """Compact type text for listings: `list[int]`, `float | None`, `relu|tanh`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return "{" + ", ".join(str(a) for a in args) + "}"
    if origin is Annotated:
        length = next((m.items for m in annotation.__metadata__ if isinstance(m, Length)), None)
        return f"{type_name(args[0])} {_bound_words(annotation)}".strip() + (f" of {length}" if length else "")
    if origin in (list, tuple):
        return f"list[{type_name(args[0])}]" if args else "list"
    return getattr(annotation, "__name__", str(annotation))


def format_value(value: Any) -> str:
    """A value as the user would write it in YAML or on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # control characters shown escaped, so a message stays one line
        return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in value) + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v).strip("'") for v in value) + "]"
    return str(value)


def _bound_words(annotation: Any) -> str:
    return " and ".join(b.words for b in getattr(annotation, "__metadata__", ()) if isinstance(b, Bound))


def _literal_choices(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return [c for a in typing.get_args(annotation) for c in _literal_choices(a)]
    return []


def _example(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)))
    if origin is Annotated and any(isinstance(m, Length) for m in annotation.__metadata__):
        items = next(m.items for m in annotation.__metadata__ if isinstance(m, Length))
        return [_example(typing.get_args(args[0])[0]) for _ in range(items)]
    if origin is Annotated:
        bound = next((b for b in annotation.__metadata__ if isinstance(b, Bound)), Bound())
        low = bound.ge if bound.ge is not None else bound.gt
        base = _example(args[0])
        return base if low is None or base > low else (low + 1 if args[0] is int else low + 0.1)
    if origin in (list, tuple):
        return [_example(args[0]) for _ in range(2)] if args else []
    return {bool: True, int: 10, float: 0.1, str: "name"}.get(annotation, "...")


def _keyword_params(fn: Callable[..., Any]) -> dict[str, Param]:
    hints = typing.get_type_hints(fn, include_extras=True)
    return {
        p.name: Param(p.name, hints.get(p.name, Any), p.default)
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }

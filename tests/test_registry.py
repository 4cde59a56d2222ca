from typing import Literal

import pytest

from nnrun.errors import UserError
from nnrun.registry import Registry, check_value


def make_registry() -> Registry:
    reg = Registry("models", singular="model")

    @reg.register("mlp")
    def mlp(in_shape, out, /, *, hidden: list[int] = [64], act: Literal["relu", "tanh"] = "relu",  # noqa: B006
            dropout: float = 0.0, width: int | None = None):
        """A test model."""
        return (in_shape, out, hidden, act, dropout, width)

    @reg.register("linear")
    def linear(in_shape, out, /, *, size: int):
        """Needs a size."""
        return size

    return reg


def test_duplicate_name_is_an_error():
    reg = make_registry()
    with pytest.raises(ValueError, match="registered twice"):
        @reg.register("mlp")
        def other():
            """Again."""


def test_entry_without_docstring_is_an_error():
    reg = Registry("models", singular="model")
    with pytest.raises(ValueError, match="docstring"):
        @reg.register("bare")
        def bare():
            pass


def test_unknown_name_suggests_and_lists_choices():
    with pytest.raises(UserError) as info:
        make_registry().get("mpl")
    assert info.value.problems == ["unknown model 'mpl' (did you mean 'mlp'? choices: linear, mlp)"]


def test_validate_fills_defaults_and_converts_ints_to_floats():
    kwargs, problems = make_registry().validate("mlp", {"hidden": [32, 16], "dropout": 1}, "model")
    assert problems == []
    assert kwargs == {"hidden": [32, 16], "act": "relu", "dropout": 1.0, "width": None}
    assert isinstance(kwargs["dropout"], float)


def test_validate_reports_every_problem():
    _, problems = make_registry().validate("mlp", {"hiden": [3], "act": "rleu", "dropout": "x"}, "model")
    assert len(problems) == 3
    assert "unknown key 'model.hiden'" in problems[0] and "did you mean 'model.hidden'?" in problems[0]
    assert "model.act must be one of relu, tanh, got 'rleu' (did you mean 'relu'?" in problems[1]
    assert "model.dropout must be a number, got 'x'" in problems[2]


def test_validate_reports_missing_required_argument():
    _, problems = make_registry().validate("linear", {}, "model")
    assert problems == ["model.size is required by model 'linear' (add it: model.size=<int>)"]


def test_build_passes_context_and_kwargs():
    assert make_registry().build("mlp", (4,), 3, hidden=[8]) == ((4,), 3, [8], "relu", 0.0, None)


@pytest.mark.parametrize("value, annotation, ok", [
    (3, int, True), (True, int, False), (3.5, int, False), ("3", int, False),
    (3, float, True), (False, float, False), ("1e-3", float, False),
    (True, bool, True), (1, bool, False),
    ([1, 2], list[int], True), (5, list[int], True), (["a"], list[int], False), ("ten", list[int], False),
    (None, int | None, True), (None, int, False),
    ("relu", Literal["relu", "tanh"], True), ("gelu", Literal["relu", "tanh"], False),
])
def test_check_value(value, annotation, ok):
    assert check_value(value, annotation)[0] is ok


def test_scalar_becomes_a_one_item_list():
    assert check_value(10, list[int]) == (True, [10])

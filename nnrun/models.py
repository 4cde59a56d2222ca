"""Model builders, weight initialization, and the layer-by-layer model summary.

A builder gets the input shape (without the batch dimension) and the number of outputs from the data,
so a config never repeats them. The output activation is added by `build_model`, because which one is
right depends on the loss (see `nnrun.losses`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nnrun.registry import Registry

MODELS = Registry("models")

Activation = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softmax", "identity"]
Init = Literal["default", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform", "normal", "zeros"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1),
    "identity": nn.Identity,
}
OUTPUT_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "none": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1),
    "log_softmax": lambda: nn.LogSoftmax(dim=1),
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


@MODELS.register("linear")
def linear(in_shape: tuple[int, ...], out_features: int, /, *, bias: bool = True, init: Init = "default") -> nn.Module:
    """One linear layer: linear regression, or logistic regression with a sigmoid or softmax loss."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if len(in_shape) > 1:
        layers["flatten"] = nn.Flatten()
    layers["linear"] = nn.Linear(math.prod(in_shape), out_features, bias=bias)
    model = nn.Sequential(layers)
    initialize(model, init, nonlinearity="linear")
    return model


@MODELS.register("mlp")
def mlp(
    in_shape: tuple[int, ...],
    out_features: int,
    /,
    *,
    hidden: list[int] = [64],  # noqa: B006 - read-only default, shown by `nnrun list`
    activation: Activation = "relu",
    dropout: float = 0.0,
    batchnorm: bool = False,
    init: Init = "default",
) -> nn.Module:
    """Multi-layer perceptron: Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer, then Linear."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if len(in_shape) > 1:
        layers["flatten"] = nn.Flatten()
    width = math.prod(in_shape)
    for i, size in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, size)
        if batchnorm:
            layers[f"bn{i}"] = nn.BatchNorm1d(size)
        layers[f"act{i}"] = ACTIVATIONS[activation]()
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        width = size
    layers["out"] = nn.Linear(width, out_features)
    model = nn.Sequential(layers)
    initialize(model, init, nonlinearity=activation)
    return model


def build_model(name: str, kwargs: dict, *, in_shape: tuple[int, ...], out_features: int,
                output_activation: str = "none") -> nn.Module:
    """Build a registered model and append its output activation (resolved from the loss by the config)."""
    model = MODELS.build(name, tuple(in_shape), out_features, **kwargs)
    if output_activation == "none":
        return model
    activation = OUTPUT_ACTIVATIONS[output_activation]()
    if isinstance(model, nn.Sequential):
        model.add_module("output_activation", activation)
        return model
    return nn.Sequential(OrderedDict(net=model, output_activation=activation))


def initialize(model: nn.Module, scheme: str, *, nonlinearity: str = "relu") -> None:
    """Re-initialize every Linear and Conv weight with `scheme`; biases start at zero (except `default`)."""
    if scheme == "default":
        return
    gain_for = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}
    kaiming = gain_for.get(nonlinearity, "linear")
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        weight = module.weight
        if scheme == "xavier_normal":
            nn.init.xavier_normal_(weight, gain=nn.init.calculate_gain(kaiming))
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(weight, gain=nn.init.calculate_gain(kaiming))
        elif scheme == "kaiming_normal":
            nn.init.kaiming_normal_(weight, nonlinearity=kaiming)
        elif scheme == "kaiming_uniform":
            nn.init.kaiming_uniform_(weight, nonlinearity=kaiming)
        elif scheme == "normal":
            nn.init.normal_(weight, mean=0.0, std=0.01)
        elif scheme == "zeros":
            nn.init.zeros_(weight)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class LayerRow:
    """One line of the model summary."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int


@dataclass(frozen=True)
class ModelSummary:
    """Every layer with its output shape and parameter count, and the totals."""

    rows: list[LayerRow]
    total_params: int
    trainable_params: int


def summarize(model: nn.Module, example: torch.Tensor) -> ModelSummary:
    """Run `example` (a batch) through the model and record each leaf layer's output shape and parameters."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if list(module.children()) or not name:
            continue

        def record(mod: nn.Module, _inputs, output, name: str = name) -> None:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            rows.append(LayerRow(name, type(mod).__name__, shape,
                                 sum(p.numel() for p in mod.parameters(recurse=False))))

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return ModelSummary(rows, sum(p.numel() for p in model.parameters()),
                        sum(p.numel() for p in model.parameters() if p.requires_grad))

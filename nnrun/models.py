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

from nnrun.registry import Count, Fraction, Registry

MODELS = Registry("models", singular="model")

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
    hidden: list[Count] = [64],  # noqa: B006 - read-only default, shown by `nnrun list`
    activation: Activation = "relu",
    dropout: Fraction = 0.0,
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


@MODELS.register("cnn")
def cnn(
    in_shape: tuple[int, ...],
    out_features: int,
    /,
    *,
    channels: list[Count] = [32, 64, 128],  # noqa: B006 - read-only default, shown by `nnrun list`
    convs_per_block: Count = 2,
    kernel: Count = 3,
    batchnorm: bool = True,
    pool: Literal["max", "avg", "none"] = "max",
    dropout: Fraction = 0.0,
    activation: Activation = "relu",
    init: Init = "default",
) -> nn.Module:
    """Conv blocks ([Conv -> BatchNorm -> activation] x convs_per_block -> pool) per entry of `channels`,
    then global average pooling, dropout and a linear head."""
    if len(in_shape) != 3:
        raise ValueError(f"cnn needs images (channels, height, width), but the data gives {len(in_shape)}-d rows; "
                         f"use model mlp for tables")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_shape[0]
    for block, size in enumerate(channels, start=1):
        for conv in range(1, convs_per_block + 1):
            name = f"block{block}_conv{conv}"
            layers[name] = nn.Conv2d(width, size, kernel, padding=kernel // 2, bias=not batchnorm)
            if batchnorm:
                layers[f"{name}_bn"] = nn.BatchNorm2d(size)
            layers[f"{name}_act"] = ACTIVATIONS[activation]()
            width = size
        if pool != "none":
            layers[f"block{block}_pool"] = (nn.MaxPool2d if pool == "max" else nn.AvgPool2d)(2, ceil_mode=True)
    layers["global_pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    if dropout > 0:
        layers["dropout"] = nn.Dropout(dropout)
    layers["head"] = nn.Linear(width, out_features)
    model = nn.Sequential(layers)
    initialize(model, init, nonlinearity=activation)
    return model


def _resnet(depth: int, in_shape: tuple[int, ...], out_features: int, small_input: bool) -> nn.Module:
    from torchvision import models

    if len(in_shape) != 3:
        raise ValueError(f"resnet{depth} needs images (channels, height, width); use model mlp for tables")
    model = getattr(models, f"resnet{depth}")(weights=None, num_classes=out_features)
    channels = in_shape[0]
    if small_input:  # 28x28 or 32x32 images: a 3x3 stride-1 stem and no max-pool keep the spatial detail
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


@MODELS.register("resnet18", batchnorm=True)
def resnet18(in_shape: tuple[int, ...], out_features: int, /, *, small_input: bool = True) -> nn.Module:
    """torchvision ResNet-18 from scratch (weights=None), its first conv adapted to small and 1-channel images."""
    return _resnet(18, in_shape, out_features, small_input)


@MODELS.register("resnet34", batchnorm=True)
def resnet34(in_shape: tuple[int, ...], out_features: int, /, *, small_input: bool = True) -> nn.Module:
    """torchvision ResNet-34 from scratch (weights=None), its first conv adapted to small and 1-channel images."""
    return _resnet(34, in_shape, out_features, small_input)


class Standardize(nn.Module):
    """The first layer of an image model: uint8 pixels to floats in [0, 1], then per-channel (x - mean) / std."""

    def __init__(self, mean: list[float], std: list[float], *, channels_last: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.channels_last = channels_last  # hand the convolutions NHWC floats: faster on CUDA tensor cores

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, height, width) uint8
        x = (x.float() / 255 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def uses_batchnorm(name: str, kwargs: dict) -> bool:
    """Does the model have BatchNorm layers (which cannot train on a batch of one row)?"""
    return name in MODELS and bool(MODELS.get(name).meta.get("batchnorm") or kwargs.get("batchnorm"))


def hidden_activation_note(kwargs: dict) -> str | None:
    """A warning for a hidden activation that trains badly but is not wrong enough to refuse."""
    if kwargs.get("activation") == "softmax":
        return ("model.activation 'softmax' squashes every hidden layer into a probability distribution, which slows "
                "or stalls learning (use relu or gelu; a classifier's softmax belongs at the output, and cross_entropy "
                "applies it itself)")
    return None


def build_model(name: str, kwargs: dict, *, in_shape: tuple[int, ...], out_features: int,
                output_activation: str = "none", input_stats: dict | None = None,
                channels_last: bool = False) -> nn.Module:
    """Build a registered model, with `Standardize` in front for images and the output activation at the end;
    `channels_last` (image models on CUDA) stores the weights and activations NHWC."""
    model = MODELS.build(name, tuple(in_shape), out_features, **kwargs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if input_stats is None and output_activation == "none":
        return model
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if input_stats is not None:
        layers["standardize"] = Standardize(input_stats["mean"], input_stats["std"], channels_last=channels_last)
    if isinstance(model, nn.Sequential):
        layers.update(model.named_children())
    else:
        layers["net"] = model
    if output_activation != "none":
        layers["output_activation"] = OUTPUT_ACTIVATIONS[output_activation]()
    return nn.Sequential(layers)


def initialize(model: nn.Module, scheme: str, *, nonlinearity: str = "relu") -> None:
    """Re-initialize every Linear and Conv weight with `scheme`; biases start at zero (except `default`)."""
    if scheme == "default":
        return
    gain_for = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}
    kaiming = gain_for.get(nonlinearity, "linear")
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
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

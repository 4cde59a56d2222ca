"""Optimizers. Each builder takes the model's parameters and the user's settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import torch

from nnrun.registry import Fraction, Length, NonNegative, Positive, Registry

OPTIMIZERS = Registry("optimizers", singular="optimizer")
Betas = Annotated[list[Fraction], Length(2)]  # Adam's two moment decay rates


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable[torch.Tensor], /, *, lr: Positive = 0.01, momentum: NonNegative = 0.0,
        nesterov: bool = False, dampening: NonNegative = 0.0,
        weight_decay: NonNegative = 0.0) -> torch.optim.Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum and weight decay."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
                           weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def adam(params: Iterable[torch.Tensor], /, *, lr: Positive = 0.001,
         betas: Betas = [0.9, 0.999],  # noqa: B006
         eps: Positive = 1e-8, weight_decay: NonNegative = 0.0, amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam: adaptive moments; a good default for most problems."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable[torch.Tensor], /, *, lr: Positive = 0.001,
          betas: Betas = [0.9, 0.999],  # noqa: B006
          eps: Positive = 1e-8, weight_decay: NonNegative = 0.01, amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


@OPTIMIZERS.register("adagrad")
def adagrad(params: Iterable[torch.Tensor], /, *, lr: Positive = 0.01, lr_decay: NonNegative = 0.0,
            weight_decay: NonNegative = 0.0, initial_accumulator_value: NonNegative = 0.0,
            eps: Positive = 1e-10) -> torch.optim.Optimizer:
    """Adagrad: per-parameter learning rates that shrink with the sum of squared gradients."""
    return torch.optim.Adagrad(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                               initial_accumulator_value=initial_accumulator_value, eps=eps)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Iterable[torch.Tensor], /, *, lr: Positive = 0.01, alpha: NonNegative = 0.99,
            eps: Positive = 1e-8, momentum: NonNegative = 0.0, weight_decay: NonNegative = 0.0,
            centered: bool = False) -> torch.optim.Optimizer:
    """RMSprop: divides the gradient by a running average of its magnitude."""
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay,
                               centered=centered)

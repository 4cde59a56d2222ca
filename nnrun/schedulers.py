"""Learning-rate schedulers.

Each builder gets the optimizer and a `Plan` (how long training runs) from nnrun. Its `interval` metadata
says whether the loop steps it once per epoch (most) or once per batch (`onecycle`); `reduce_on_plateau`
is stepped with the monitored metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch.optim import lr_scheduler

from nnrun.registry import Bound, Count, NonNegative, NonNegativeInt, Positive, Registry

SCHEDULERS = Registry("schedulers", singular="scheduler")
Shrink = Annotated[float, Bound(gt=0, lt=1)]  # a factor that makes the lr smaller, or a share of the run


@dataclass(frozen=True)
class Plan:
    """What a scheduler may need to know about the run: its length and the monitored metric's direction."""

    epochs: int
    steps_per_epoch: int
    mode: str = "min"


def step_after_epoch(scheduler: Any, monitored: float) -> None:
    """The end-of-epoch step: ReduceLROnPlateau watches the monitored metric, the others just count epochs."""
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitored)
    else:
        scheduler.step()


@SCHEDULERS.register("step", interval="epoch")
def step(optimizer: torch.optim.Optimizer, plan: Plan, /, *, step_size: Count = 10, gamma: Positive = 0.1):
    """Multiply the learning rate by `gamma` every `step_size` epochs (StepLR)."""
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("multistep", interval="epoch")
def multistep(optimizer: torch.optim.Optimizer, plan: Plan, /, *, milestones: list[Count] = [30, 80],  # noqa: B006
              gamma: Positive = 0.1):
    """Multiply the learning rate by `gamma` at each epoch in `milestones` (MultiStepLR)."""
    return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


@SCHEDULERS.register("exponential", interval="epoch")
def exponential(optimizer: torch.optim.Optimizer, plan: Plan, /, *, gamma: Positive = 0.95):
    """Multiply the learning rate by `gamma` every epoch (ExponentialLR)."""
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@SCHEDULERS.register("cosine", interval="epoch")
def cosine(optimizer: torch.optim.Optimizer, plan: Plan, /, *, t_max: Count | None = None,
           eta_min: NonNegative = 0.0):
    """Cosine annealing from the optimizer's lr to `eta_min` over `t_max` epochs (default: all of them)."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max or plan.epochs, eta_min=eta_min)


@SCHEDULERS.register("reduce_on_plateau", interval="epoch")
def reduce_on_plateau(optimizer: torch.optim.Optimizer, plan: Plan, /, *, factor: Shrink = 0.1,
                      patience: NonNegativeInt = 10, threshold: NonNegative = 1e-4, min_lr: NonNegative = 0.0,
                      cooldown: NonNegativeInt = 0):
    """Multiply the lr by `factor` when the monitored metric (early_stopping.monitor) stops improving."""
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode=plan.mode, factor=factor, patience=patience,
                                          threshold=threshold, min_lr=min_lr, cooldown=cooldown)


@SCHEDULERS.register("onecycle", interval="step")
def onecycle(optimizer: torch.optim.Optimizer, plan: Plan, /, *, max_lr: Positive | None = None,
             pct_start: Shrink = 0.3, div_factor: Positive = 25.0, final_div_factor: Positive = 1e4,
             anneal_strategy: Literal["cos", "linear"] = "cos"):
    """One-cycle policy, stepped every batch: warm up to `max_lr` (default: the optimizer's lr), then anneal."""
    max_lr = max_lr or optimizer.param_groups[0]["lr"]
    return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=plan.epochs * plan.steps_per_epoch,
                                   pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor,
                                   anneal_strategy=anneal_strategy)


@SCHEDULERS.register("linear_warmup", interval="epoch")
def linear_warmup(optimizer: torch.optim.Optimizer, plan: Plan, /, *, warmup_epochs: Count = 5,
                  start_factor: Annotated[float, Bound(gt=0, le=1)] = 0.1):
    """Raise the lr linearly from `start_factor` x lr to lr over `warmup_epochs`, then hold it."""
    return lr_scheduler.LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup_epochs)

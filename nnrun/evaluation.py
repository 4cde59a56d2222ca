"""Scoring a model on a split: the shared evaluation pass of training (val, test) and of eval/predict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnrun.data.bundle import SplitTensors
from nnrun.data.streaming import StreamedSplit
from nnrun.metrics import classification_report, regression_report
from nnrun.speed import Speed
from nnrun.tasks import Task

EVAL_BATCH = 1024  # rows per forward pass when evaluating; results do not depend on it
FP32 = Speed()  # eager, float32: how a checkpoint from before `Speed` was recorded computes


@torch.no_grad()
def evaluate(model: nn.Module, split: SplitTensors | StreamedSplit, *, loss_fn: nn.Module,
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
             speed: Speed = FP32) -> tuple[float, torch.Tensor]:
    """Mean loss over a split, and the model's outputs for every row (rows, outputs), in float32.

    `forward` is the model's compiled call when the run compiles; `speed` sets the autocast dtype.
    """
    model.eval()
    with speed.autocast(split.y.device):
        output = torch.cat([(forward or model)(x) for x, _ in split.batches(EVAL_BATCH)]).float()
    return loss_fn(output, split.y).item(), output


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor, *, speed: Speed = FP32) -> torch.Tensor:
    """The model's outputs for unlabelled rows (rows, outputs), in evaluation mode, in float32."""
    model.eval()
    with speed.autocast(x.device):
        return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]).float()


def split_report(model: nn.Module, split: SplitTensors | StreamedSplit, *, loss_fn: nn.Module, task: Task,
                 speed: Speed = FP32) -> tuple[dict[str, Any], torch.Tensor]:
    """Loss and the full metric report for a split (regression in original units), and the model's outputs."""
    loss, output = evaluate(model, split, loss_fn=loss_fn, speed=speed)
    if task.kind == "classification":
        report = classification_report(split.y.cpu().numpy(), task.probabilities(output).cpu().numpy(),
                                       task.class_names)
    else:
        report = regression_report(task.to_units(split.y).cpu().numpy(), task.to_units(output).cpu().numpy())
    return {"loss": loss, **report}, output

"""Scoring a model on a split: the shared evaluation pass of training (val, test) and of eval/predict."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnrun.data.bundle import SplitTensors
from nnrun.data.streaming import StreamedSplit
from nnrun.metrics import classification_report, regression_report
from nnrun.tasks import Task

EVAL_BATCH = 1024  # rows per forward pass when evaluating; results do not depend on it


@torch.no_grad()
def evaluate(model: nn.Module, split: SplitTensors | StreamedSplit, *, loss_fn: nn.Module) -> tuple[float, torch.Tensor]:
    """Mean loss over a split, and the model's outputs for every row (rows, outputs)."""
    model.eval()
    output = torch.cat([model(x) for x, _ in split.batches(EVAL_BATCH)])
    return loss_fn(output, split.y).item(), output


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's outputs for unlabelled rows (rows, outputs), in evaluation mode."""
    model.eval()
    return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def split_report(model: nn.Module, split: SplitTensors | StreamedSplit, *, loss_fn: nn.Module,
                 task: Task) -> tuple[dict[str, Any], torch.Tensor]:
    """Loss and the full metric report for a split (regression in original units), and the model's outputs."""
    loss, output = evaluate(model, split, loss_fn=loss_fn)
    if task.kind == "classification":
        report = classification_report(split.y.cpu().numpy(), task.probabilities(output).cpu().numpy(),
                                       task.class_names)
    else:
        report = regression_report(task.to_units(split.y).cpu().numpy(), task.to_units(output).cpu().numpy())
    return {"loss": loss, **report}, output

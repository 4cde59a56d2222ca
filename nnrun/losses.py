"""Loss functions, and what each one expects of the model's output.

Every loss takes the model's output and nnrun's targets: class indices (batch,) for classification,
standardized values (batch, targets) for regression. Each entry's metadata says which task it is for and
what it expects the output to be (`logits`, `probabilities`, `log_probabilities` or `values`); from that,
nnrun picks the output activation and refuses the combinations the tutorials get wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnrun.registry import Fraction, NonNegative, Positive, Registry

LOSSES = Registry("losses", singular="loss")

# The output activation each kind of expected output needs.
ACTIVATION_FOR = {"logits": "none", "probabilities": "sigmoid", "log_probabilities": "log_softmax", "values": "none"}


@LOSSES.register("mse", task="regression", expects="values")
def mse() -> nn.Module:
    """Mean squared error, for regression."""
    return nn.MSELoss()


@LOSSES.register("l1", task="regression", expects="values")
def l1() -> nn.Module:
    """Mean absolute error (L1), for regression; robust to outliers."""
    return nn.L1Loss()


@LOSSES.register("smooth_l1", task="regression", expects="values")
def smooth_l1(*, beta: NonNegative = 1.0) -> nn.Module:
    """Smooth L1: squared below `beta`, absolute above it, for regression."""
    return nn.SmoothL1Loss(beta=beta)


@LOSSES.register("huber", task="regression", expects="values")
def huber(*, delta: Positive = 1.0) -> nn.Module:
    """Huber loss: squared below `delta`, linear above it, for regression."""
    return nn.HuberLoss(delta=delta)


@LOSSES.register("cross_entropy", task="classification", expects="logits")
def cross_entropy(*, label_smoothing: Fraction = 0.0, weight: list[NonNegative] | None = None) -> nn.Module:
    """Cross-entropy on raw logits (it applies log-softmax itself); optional class weights and label smoothing."""
    return nn.CrossEntropyLoss(weight=_weights(weight), label_smoothing=label_smoothing)


@LOSSES.register("nll", task="classification", expects="log_probabilities")
def nll(*, weight: list[NonNegative] | None = None) -> nn.Module:
    """Negative log-likelihood on log-probabilities (output_activation: log_softmax)."""
    return nn.NLLLoss(weight=_weights(weight))


@LOSSES.register("kl_div", task="classification", expects="log_probabilities")
def kl_div() -> nn.Module:
    """KL divergence from the one-hot label distribution to the predicted log-probabilities."""
    return _KLDivToOneHot()


@LOSSES.register("bce", task="classification", expects="probabilities", binary=True)
def bce() -> nn.Module:
    """Binary cross-entropy on probabilities (output_activation: sigmoid), for two classes."""
    return _BinaryTargets(nn.BCELoss())


@LOSSES.register("bce_with_logits", task="classification", expects="logits", binary=True)
def bce_with_logits(*, pos_weight: Positive | None = None) -> nn.Module:
    """Binary cross-entropy on one raw logit (sigmoid built in, numerically stable), for two classes."""
    weight = None if pos_weight is None else torch.tensor([pos_weight])
    return _BinaryTargets(nn.BCEWithLogitsLoss(pos_weight=weight))


def resolve_output_activation(loss: str) -> str:
    """The output activation that `loss` needs: what `output_activation: auto` becomes."""
    return ACTIVATION_FOR[LOSSES.get(loss).meta["expects"]]


def output_activation_problem(loss: str, activation: str) -> str | None:
    """Why `activation` on the model's output is wrong for `loss`, or None when it fits."""
    expects = LOSSES.get(loss).meta["expects"]
    if expects == "values":
        if activation in ("softmax", "log_softmax"):
            return (f"model.output_activation '{activation}' makes no sense for regression loss '{loss}' "
                    f"(remove it: model.output_activation=none)")
        return None
    needed = ACTIVATION_FOR[expects]
    if activation == needed:
        return None
    if loss == "cross_entropy" and activation == "softmax":
        return ("model.output_activation 'softmax' with loss 'cross_entropy' applies softmax twice, because "
                "CrossEntropyLoss applies log-softmax itself (remove it: model.output_activation=none)")
    if loss == "bce_with_logits" and activation == "sigmoid":
        return ("model.output_activation 'sigmoid' with loss 'bce_with_logits' applies sigmoid twice, because "
                "BCEWithLogitsLoss applies it itself (remove it: model.output_activation=none, or use loss bce)")
    if expects == "probabilities":
        return (f"loss '{loss}' needs probabilities, so the model must end in a sigmoid, got output_activation "
                f"'{activation}' (set model.output_activation=sigmoid, or use loss bce_with_logits on raw outputs)")
    if expects == "log_probabilities":
        return (f"loss '{loss}' needs log-probabilities, so the model must end in log_softmax, got "
                f"output_activation '{activation}' (set model.output_activation=log_softmax, "
                f"or use loss cross_entropy on raw logits)")
    return (f"loss '{loss}' takes raw logits, got output_activation '{activation}' "
            f"(remove it: model.output_activation=none)")


class _BinaryTargets(nn.Module):
    """Adapts a binary loss on one output column to nnrun's class-index targets."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(output, target.to(output.dtype).unsqueeze(1))  # (batch, 1) vs (batch, 1)


class _KLDivToOneHot(nn.Module):
    def forward(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(target, log_probs.shape[1]).to(log_probs.dtype)  # (batch, classes)
        return F.kl_div(log_probs, one_hot, reduction="batchmean")


def _weights(weight: list[float] | None) -> torch.Tensor | None:
    return None if weight is None else torch.tensor(weight, dtype=torch.float32)

"""What the model's outputs mean: class probabilities or values in original units, and their epoch metrics."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Task:
    """Classification or regression, with what the loss expects of the output and the target scaling."""

    kind: str  # "classification" | "regression"
    expects: str  # "logits" | "probabilities" | "log_probabilities" | "values"
    class_names: list[str] | None = None
    binary_output: bool = False  # one output column (bce, bce_with_logits) instead of one per class
    n_targets: int = 1
    target_mean: torch.Tensor | None = None  # (targets,) on the device; regression only
    target_std: torch.Tensor | None = None

    @property
    def out_features(self) -> int:
        if self.kind == "regression":
            return self.n_targets
        return 1 if self.binary_output else len(self.class_names)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """(batch, classes) class probabilities from the model's output."""
        if self.binary_output:
            p = torch.sigmoid(output) if self.expects == "logits" else output  # (batch, 1)
            return torch.cat([1 - p, p], dim=1)
        if self.expects == "logits":
            return torch.softmax(output, dim=1)
        if self.expects == "log_probabilities":
            return output.exp()
        return output

    def predict_classes(self, output: torch.Tensor) -> torch.Tensor:
        """(batch,) predicted class indices."""
        if self.binary_output:
            threshold = 0.0 if self.expects == "logits" else 0.5
            return (output[:, 0] > threshold).long()
        return output.argmax(dim=1)  # argmax of logits, probabilities or log-probabilities agree

    def to_units(self, values: torch.Tensor) -> torch.Tensor:
        """Regression outputs or targets back in the target's original units."""
        if self.target_mean is None:
            return values
        return values * self.target_std + self.target_mean

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Number of right predictions in a batch, as a tensor (no host sync)."""
        return (self.predict_classes(output) == target).sum()

    def epoch_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Validation metrics for metrics.csv, without the `val_` prefix; regression in original units."""
        if self.kind == "classification":
            return {"accuracy": self.correct(output, target).item() / max(len(target), 1)}
        pred, true = self.to_units(output).double(), self.to_units(target).double()  # (n, targets)
        mse = ((pred - true) ** 2).mean()
        ss_res = ((pred - true) ** 2).sum(dim=0)
        ss_tot = ((true - true.mean(dim=0)) ** 2).sum(dim=0)
        values = torch.stack([mse.sqrt(), (pred - true).abs().mean(), (1 - ss_res / ss_tot).mean()]).tolist()
        return dict(zip(["rmse", "mae", "r2"], values))

"""What the model's outputs mean: class probabilities or values in original units, and their epoch metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from nnrun.data.tables import TaskKind
from nnrun.losses import LOSSES
from nnrun.metrics import regression_report


@dataclass
class Task:
    """Classification or regression, with what the loss expects of the output and the target scaling."""

    kind: TaskKind
    expects: Literal["logits", "probabilities", "log_probabilities", "values"]
    class_names: list[str] | None = None
    binary_output: bool = False  # one output column (bce, bce_with_logits) instead of one per class
    n_targets: int = 1
    target_mean: torch.Tensor | None = None  # (targets,) on the device; regression only
    target_std: torch.Tensor | None = None

    @classmethod
    def for_loss(cls, loss: str, *, kind: TaskKind, class_names: list[str] | None, n_targets: int,
                 target_scaling: dict[str, Any] | None, device: torch.device | str = "cpu") -> Task:
        """The task of data of `kind` trained with `loss`; `target_scaling` is a TargetScaler's state."""
        meta = LOSSES.get(loss).meta

        def tensor(key: str) -> torch.Tensor | None:
            return torch.tensor(target_scaling[key], dtype=torch.float32, device=device) if target_scaling else None

        return cls(kind=kind, expects=meta["expects"], class_names=class_names, binary_output=bool(meta.get("binary")),
                   n_targets=n_targets, target_mean=tensor("mean"), target_std=tensor("std"))

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
        report = regression_report(self.to_units(target).cpu().numpy(), self.to_units(output).cpu().numpy())
        return {name: report[name] for name in ("rmse", "mae", "r2")}

    def predictions(self, output: torch.Tensor, target: torch.Tensor | None, rows: np.ndarray) -> pd.DataFrame:
        """One row per input: its row id, the target (if known) and the prediction, in the data's own terms.

        Classification gives class names and one `prob_<class>` column per class; regression gives values in
        original units (`target_1`, `prediction_1`, ... when there are several targets).
        """
        frame = pd.DataFrame({"row": rows})
        if self.kind == "classification":
            names = np.array(self.class_names, dtype=object)
            if target is not None:
                frame["target"] = names[target.cpu().numpy()]
            frame["prediction"] = names[self.predict_classes(output).cpu().numpy()]
            probs = self.probabilities(output).cpu().numpy()
            for i, name in enumerate(self.class_names):
                frame[f"prob_{name}"] = probs[:, i]
            return frame
        suffixes = [""] if self.n_targets == 1 else [f"_{i + 1}" for i in range(self.n_targets)]
        values = self.to_units(output).cpu().numpy()
        truth = self.to_units(target).cpu().numpy() if target is not None else None
        for i, suffix in enumerate(suffixes):
            if truth is not None:
                frame[f"target{suffix}"] = truth[:, i]
            frame[f"prediction{suffix}"] = values[:, i]
        return frame

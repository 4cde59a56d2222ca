"""Metric names and reports: the per-epoch columns of metrics.csv, and the full test/eval reports."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

# Per-epoch metrics by task; regression metrics are in the target's original units.
EPOCH_METRICS = {"classification": ["train_accuracy", "val_accuracy"],
                 "regression": ["val_rmse", "val_mae", "val_r2"]}
MONITORABLE = ["val_loss", "train_loss", *EPOCH_METRICS["classification"], *EPOCH_METRICS["regression"]]
HIGHER_IS_BETTER = {"train_accuracy", "val_accuracy", "val_r2"}


def epoch_columns(task: str) -> list[str]:
    """The columns of metrics.csv for a task, in order."""
    return ["epoch", "lr", "train_loss", "val_loss", *EPOCH_METRICS[task], "train_seconds", "epoch_seconds"]


def classification_report(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro and per-class precision/recall/F1, confusion matrix (+ ROC AUC if binary)."""
    labels = list(range(len(class_names)))
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    report = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(_balanced_accuracy(y_true, y_pred, labels)),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
    }
    if len(class_names) == 2:
        both_present = len(np.unique(y_true)) == 2
        report["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1])) if both_present else None
    report["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    }
    report["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return report


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MSE, RMSE, MAE, R² and max error, in the units of the arrays given (nnrun passes original units)."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    mse = float(np.mean((y_true - y_pred) ** 2))
    r2 = float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(y_true - y_pred))),
        "r2": r2,
        "max_error": float(np.max(np.abs(y_true - y_pred))),
    }


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> float:
    # Mean recall over the classes present in y_true (sklearn warns and misbehaves on absent classes).
    recalls = [np.mean(y_pred[y_true == c] == c) for c in labels if np.any(y_true == c)]
    return float(np.mean(recalls)) if recalls else float("nan")

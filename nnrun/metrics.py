"""Metric names and reports: the per-epoch columns of metrics.csv, and the full test/eval reports."""

from __future__ import annotations

import math
import warnings

import numpy as np

# Per-epoch metrics by task; regression metrics are in the target's original units.
EPOCH_METRICS = {"classification": ["train_accuracy", "val_accuracy"],
                 "regression": ["val_rmse", "val_mae", "val_r2"]}
MONITORABLE = ["val_loss", "train_loss", *EPOCH_METRICS["classification"], *EPOCH_METRICS["regression"]]
# Metrics where larger is better (with or without a train_/val_/test_ prefix); for every other one, smaller is.
HIGHER_IS_BETTER = {"accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "r2"}
HEADLINE = {"classification": "accuracy", "regression": "r2"}  # the test result people ask for first


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` (val_accuracy, test rmse, ...) is the better one."""
    return metric.removeprefix("train_").removeprefix("val_").removeprefix("test_") in HIGHER_IS_BETTER


def resolve_mode(monitor: str, mode: str) -> str:
    """`min` or `max` for a monitored metric: `auto` is `max` for accuracy and R², else `min`."""
    if mode != "auto":
        return mode
    return "max" if higher_is_better(monitor) else "min"


def epoch_columns(task: str, *, compile: bool = False) -> list[str]:
    """The columns of metrics.csv for a task, in order; a compiled run adds the seconds spent compiling."""
    timings = ["train_seconds", "epoch_seconds", *(["compile_seconds"] if compile else [])]
    return ["epoch", "lr", "train_loss", "val_loss", *EPOCH_METRICS[task], *timings]


def classification_report(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro and per-class precision/recall/F1, confusion matrix (+ ROC AUC if binary)."""
    from sklearn import metrics as skm  # here, not at the top: few commands need its start-up cost

    labels = list(range(len(class_names)))
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    report = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
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


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE, R² and max error, in the units of the arrays given (nnrun passes original units).

    The one definition of the regression metrics: metrics.csv's val columns are taken from it too, every
    epoch, which is why it is plain NumPy (35 µs) rather than scikit-learn's checked functions (900 µs for the
    three); tests/test_metrics.py holds it equal to them. R² follows `r2_score`: the mean over targets, 1.0 or
    0.0 for a constant target (perfect or not), NaN for fewer than two rows.
    """
    if not len(y_true):
        return dict.fromkeys(("mse", "rmse", "mae", "r2", "max_error"), math.nan)
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)  # (rows, targets)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    error = y_pred - y_true
    mse = float(np.mean(error ** 2))
    ss_res = (error ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_target = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    r2 = float(np.mean(per_target)) if len(y_true) > 1 else math.nan
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(error))), "r2": r2,
            "max_error": float(np.max(np.abs(error)))}


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in y_true; scikit-learn warns about predicted classes absent from
    y_true and leaves them out, which is what a small test split needs."""
    from sklearn import metrics as skm

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")  # a one-class split is no problem
        return float(skm.balanced_accuracy_score(y_true, y_pred))

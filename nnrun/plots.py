"""Plots drawn from a run's metrics.csv, so they can be redrawn at any time. Headless: no window ever opens."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def read_metrics(path: Path) -> dict[str, list[float]]:
    """metrics.csv as columns of floats (empty cells become NaN)."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    columns = rows[0].keys() if rows else []
    return {c: [_float(row[c]) for row in rows] for c in columns}


def plot_run(run_dir: Path) -> list[Path]:
    """Draw a run's plots into `run_dir/plots/`; returns the files written."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.csv")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    written = []
    if metrics.get("epoch"):
        path = out / "loss.png"
        plot_loss(metrics, path, title=summary.get("name", run_dir.name), best_epoch=summary.get("best_epoch"))
        written.append(path)
    return written


def plot_loss(metrics: dict[str, list[float]], path: Path, *, title: str, best_epoch: int | None = None) -> Figure:
    """Train and val loss by epoch, best epoch marked; log scale when the loss spans more than two decades."""
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    epochs = metrics["epoch"]
    for column, label in (("train_loss", "train"), ("val_loss", "val")):
        if column in metrics:
            ax.plot(epochs, metrics[column], label=label, marker="o" if len(epochs) < 30 else None, markersize=3)
    if best_epoch is not None and best_epoch in epochs:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
    values = [v for c in ("train_loss", "val_loss") for v in metrics.get(c, []) if math.isfinite(v) and v > 0]
    if values and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    _save(fig, path)
    return fig


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path)


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan

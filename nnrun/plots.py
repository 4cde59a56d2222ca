"""Plots drawn from a run's files (metrics.csv, predictions.csv), so they can be redrawn at any time.

Figures are built with matplotlib's object API on the Agg canvas: headless, no window ever opens. Each
`*_figure` function returns its Figure, so tests can read back exactly what was drawn. Numbers on axes and in
titles use the CLI's one number format (`console.format_number`): 250,000 and 0.275, never 2.5e+05.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter, MaxNLocator

from nnrun.console import format_number
from nnrun.errors import UserError, writing
from nnrun.metrics import regression_report
from nnrun.runs import Run, RunFiles

SIZE = (8.0, 5.0)  # inches at DPI: every PNG is 800 x 500 pixels (the confusion matrix is square-ish, below)
DPI = 100
TRAIN_COLOR, VAL_COLOR, BEST_COLOR = "#1f77b4", "#ff7f0e", "#555555"
STEPS = [1, 2, 2.5, 5, 10]  # the tick spacings matplotlib picks from (times a power of ten)


def plot_run(run: RunFiles, *, metrics: list[str] | None = None) -> tuple[list[Path], list[str]]:
    """Draw a run's plots into its `plots/` folder: (files written, notes on what could not be drawn)."""
    notes = list(run.notes)
    if not run.epochs:
        return [], [*notes, f"'{run.root}' has no finished epoch in metrics.csv yet, so there is nothing to plot"]
    out = Run(run.root).plots_dir
    out.mkdir(exist_ok=True)
    figures: list[tuple[str, Callable[[], Figure]]] = [("loss.png", lambda: loss_figure(run))]
    panels = metric_panels(run, metrics)
    if panels:
        figures.append(("metrics.png", lambda: metrics_figure(run, panels)))
    figures.append(("lr.png", lambda: lr_figure(run)))
    if run.predictions is None:
        notes.append("no predictions.csv (written when training ends, or by nnrun eval), so no "
                      + ("confusion matrix" if run.task == "classification" else "predictions plot"))
    elif run.task == "classification":
        figures.append(("confusion_matrix.png", lambda: confusion_figure(run)))
    else:
        figures.append(("predictions.png", lambda: predictions_figure(run)))
    for name, figure in figures:
        save(figure(), out / name)
    return [out / name for name, _ in figures], notes


# --- figures ---------------------------------------------------------------------------------------------------

def loss_figure(run: RunFiles) -> Figure:
    """Train and val loss by epoch, the best epoch marked; log scale when the loss spans more than two decades."""
    fig, ax = _figure()
    for column, label, color in (("train_loss", "train", TRAIN_COLOR), ("val_loss", "val", VAL_COLOR)):
        if column in run.metrics:
            ax.plot(run.epochs, run.metrics[column], label=label, color=color, **_markers(run))
    _mark_best(ax, run)
    values = [v for c in ("train_loss", "val_loss") for v in run.metrics.get(c, []) if math.isfinite(v) and v > 0]
    if values and max(values) / min(values) > 100:
        ax.set_yscale("log")
    loss_name = (run.config.get("loss") or {}).get("type", "")
    unit = " (standardized target)" if run.task == "regression" and _target_scaled(run) else ""
    _finish(ax, run, "loss", "epoch", f"{loss_name} loss{unit}".strip())
    _number_ticks(ax, integer_x=True)
    return fig


def lr_figure(run: RunFiles) -> Figure:
    """The learning rate each epoch trained with."""
    fig, ax = _figure()
    ax.plot(run.epochs, run.metrics.get("lr", []), color=TRAIN_COLOR, label="learning rate", drawstyle="steps-post",
            **_markers(run))
    lrs = [v for v in run.metrics.get("lr", []) if v > 0]
    if lrs and max(lrs) / min(lrs) > 100:
        ax.set_yscale("log")
    scheduler = run.config.get("scheduler") or {}
    kind = scheduler.get("type") if isinstance(scheduler, dict) else scheduler
    _finish(ax, run, f"learning rate ({kind or 'no scheduler'})", "epoch", "learning rate")
    _number_ticks(ax, integer_x=True)
    return fig


def metric_panels(run: RunFiles, chosen: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """(panel title, columns) for metrics.png: accuracy for classification; errors and R² for regression."""
    if run.task == "classification":
        panels = [("accuracy", ["train_accuracy", "val_accuracy"])]
    else:
        panels = [(f"error ({run.target_name})", ["val_rmse", "val_mae"]), ("R²", ["val_r2"])]
    if chosen:
        wanted = set(choose_columns([c for _, cols in panels for c in cols], chosen))
        panels = [(title, [c for c in cols if c in wanted]) for title, cols in panels]
    return [(title, [c for c in cols if c in run.metrics]) for title, cols in panels
            if any(c in run.metrics for c in cols)]


def metrics_figure(run: RunFiles, panels: list[tuple[str, list[str]]]) -> Figure:
    """The task's metrics by epoch (validation, and train accuracy), one panel per kind of number."""
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = {"train_accuracy": TRAIN_COLOR, "val_accuracy": VAL_COLOR, "val_rmse": VAL_COLOR, "val_mae": "#2ca02c",
              "val_r2": VAL_COLOR}
    for ax, (title, columns) in zip(axes, panels):
        for column in columns:
            ax.plot(run.epochs, run.metrics[column], label=column.replace("_", " "), color=colors.get(column),
                    **_markers(run))
        _mark_best(ax, run)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, frameon=False)
        _number_ticks(ax, integer_x=True)
    splits = {column.split("_", 1)[0] for _, columns in panels for column in columns}
    drawn = " and ".join(name for prefix, name in (("train", "train"), ("val", "validation")) if prefix in splits)
    fig.suptitle(f"{run.name}: {drawn} metrics")
    return fig


def confusion_figure(run: RunFiles) -> Figure:
    """Test-split confusion matrix: colour is the share of each true class, text is count and share."""
    predictions = run.predictions
    classes = [c.removeprefix("prob_") for c in predictions.columns if c.startswith("prob_")]
    index = {name: i for i, name in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (predictions["target"].astype(str).map(index), predictions["prediction"].astype(str).map(index)),
              1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(max(5.0, 0.6 * len(classes) + 3), 12.0)
    fig = Figure(figsize=(side + 1, side), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                color = "white" if shares[i, j] > 0.6 else "black"
                label = f"{counts[i, j]}\n{shares[i, j]:.0%}" if counts[i, j] else "0"
                ax.text(j, i, label, ha="center", va="center", color=color if counts[i, j] else "#999999",
                        fontsize=9 if len(classes) <= 12 else 6)
    ax.set_xticks(range(len(classes)), classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right"
                  if max(map(len, classes)) > 3 else "center")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{run.name}: confusion matrix, {format_number(int(counts.sum()))} test rows, "
                 f"accuracy {format_number(float(accuracy))}")
    return fig


def predictions_figure(run: RunFiles) -> Figure:
    """Regression on the test split: predicted against actual with the y = x line, and the residuals."""
    predictions = run.predictions
    target = next(c for c in predictions.columns if c.startswith("target"))
    predicted = next(c for c in predictions.columns if c.startswith("prediction"))
    actual, guess = predictions[target].to_numpy(), predictions[predicted].to_numpy()
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    scatter_ax, residual_ax = fig.subplots(1, 2)
    scatter_ax.scatter(actual, guess, s=10, alpha=0.5, color=TRAIN_COLOR, label="test rows")
    low, high = float(min(actual.min(), guess.min())), float(max(actual.max(), guess.max()))
    scatter_ax.plot([low, high], [low, high], color=BEST_COLOR, linestyle="--", linewidth=1, label="y = x")
    unit = run.target_name
    scatter_ax.set_xlabel(f"actual {unit}")
    scatter_ax.set_ylabel(f"predicted {unit}")
    scatter_ax.set_title("predicted vs actual")
    scatter_ax.grid(alpha=0.3)
    scatter_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, frameon=False)
    _number_ticks(scatter_ax)
    residuals = guess - actual
    residual_ax.hist(residuals, bins=min(40, max(5, len(residuals) // 5)), color=VAL_COLOR, alpha=0.8)
    residual_ax.axvline(0, color=BEST_COLOR, linestyle="--", linewidth=1)
    residual_ax.set_xlabel(f"predicted - actual ({unit})")
    residual_ax.set_ylabel("test rows")
    rmse = regression_report(actual, guess)["rmse"]
    residual_ax.set_title(f"residuals (RMSE {format_number(rmse)})")
    residual_ax.grid(alpha=0.3)
    _number_ticks(residual_ax, integer_y=True)  # counts of rows: 0, 5, 10, never 2.5
    fig.suptitle(f"{run.name}: test predictions ({format_number(len(actual))} rows)")
    return fig


def comparison_figure(runs: list[RunFiles], labels: list[str], column: str) -> Figure:
    """One metric by epoch: a line per run, all in one style, each run's best epoch marked; lr as steps."""
    fig, ax = _figure()
    style = _markers(max(runs, key=lambda run: len(run.epochs)))  # the same for every run
    marked = False
    for i, (run, label) in enumerate(zip(runs, labels)):
        if column not in run.metrics:
            continue
        color = f"C{i % 10}"
        ys = run.metrics[column]
        # The lr is held for a whole epoch and then changes: a step, not a slope.
        ax.plot(run.epochs, ys, label=label, color=color, drawstyle="steps-post" if column == "lr" else "default",
                **style)
        best = run.best_epoch
        if column != "lr" and best in run.epochs:
            ax.scatter([best], [ys[run.epochs.index(best)]], marker="D", s=60, facecolor="white",
                       edgecolor=color, linewidth=1.8, zorder=3)
            marked = True
    values = [v for run in runs for v in run.metrics.get(column, []) if math.isfinite(v) and v > 0]
    if values and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_label(column, runs))
    ax.set_title(f"{'learning rate' if column == 'lr' else column.replace('_', ' ')} by epoch: {len(runs)} runs")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    if marked:
        handles.append(Line2D([], [], marker="D", linestyle="none", markerfacecolor="white",
                              markeredgecolor=BEST_COLOR, label="best epoch"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="run")
    _number_ticks(ax, integer_x=True)
    return fig


def metric_label(column: str, runs: list[RunFiles]) -> str:
    """An axis label with its unit: `val RMSE (median_house_value)`, `val accuracy (share of rows)`, ..."""
    if column == "lr":
        return "learning rate"
    split, _, name = column.partition("_")
    if name == "loss":
        kinds = sorted({str((run.config.get("loss") or {}).get("type", "")) for run in runs} - {""})
        scaled = any(run.task == "regression" and _target_scaled(run) for run in runs)
        unit = ", ".join(kinds) + ("; standardized target" if scaled else "")
        return f"{split} loss ({unit})" if unit else f"{split} loss"
    if name == "accuracy":
        return f"{split} accuracy (share of rows)"
    if name == "r2":
        return f"{split} R² (1 is perfect)"
    if name in ("rmse", "mae"):
        return f"{split} {name.upper()} ({', '.join(sorted({run.target_name for run in runs}))})"
    return column.replace("_", " ")


def save(fig: Figure, path: Path) -> None:
    """Write a figure as PNG through the Agg canvas (no display needed)."""
    FigureCanvasAgg(fig)
    with writing(path):
        fig.savefig(path)


# --- helpers ---------------------------------------------------------------------------------------------------

def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _finish(ax, run: RunFiles, what: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(f"{run.name}: {what}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    # Beside the axes, never on top of a curve.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


class _TickLabels(Formatter):
    """Tick labels in nnrun's number format: thousands separators, the decimals the tick spacing needs."""

    def format_ticks(self, values) -> list[str]:
        step = _step(values)
        return [format_number(float(v), step=step) if step else format_number(float(v)) for v in values]

    def __call__(self, x: float, pos: int | None = None) -> str:
        return format_number(float(x))


class _RoomyLocator(MaxNLocator):
    """As many x ticks as fit their labels. matplotlib's own locator allows about three characters a tick, so
    six-digit values ran together ("100000200000300000")."""

    def __call__(self) -> Any:
        vmin, vmax = sorted(self.axis.get_view_interval())
        axes = self.axis.axes
        size = FontProperties(size=rcParams["xtick.labelsize"]).get_size_in_points()
        room = axes.bbox.width * 72 / axes.figure.dpi / size  # the axis length in font sizes
        for nbins in range(9, 0, -1):
            self.set_params(nbins=nbins)
            ticks = [t for t in super().__call__() if vmin <= t <= vmax]
            step = _step(ticks)
            if not step or vmax <= vmin:
                break
            chars = max(len(format_number(float(t), step=step)) for t in ticks)
            # A digit is about 0.6 of a font size wide; keep one font size between neighbouring labels.
            if room * step / (vmax - vmin) >= 0.6 * chars + 1:
                break
        return super().__call__()


def _step(ticks) -> float | None:
    ticks = sorted({float(t) for t in ticks})
    return min(b - a for a, b in pairwise(ticks)) if len(ticks) > 1 else None


def _number_ticks(ax, *, integer_x: bool = False, integer_y: bool = False) -> None:
    """nnrun's number format on the linear axes; x ticks with room for their labels; integers for counts."""
    if ax.get_xscale() == "linear":
        ax.xaxis.set_major_locator(_RoomyLocator(integer=integer_x, steps=STEPS))
        ax.xaxis.set_major_formatter(_TickLabels())
    if ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(MaxNLocator("auto", integer=integer_y, steps=STEPS))
        ax.yaxis.set_major_formatter(_TickLabels())


def _mark_best(ax, run: RunFiles) -> None:
    best = run.best_epoch
    if best is not None and best in run.epochs:
        ax.axvline(best, color=BEST_COLOR, linestyle="--", linewidth=1, label=f"best epoch ({best})")


def _markers(run: RunFiles) -> dict[str, Any]:
    return {"marker": "o", "markersize": 3} if len(run.epochs) < 30 else {}


def _target_scaled(run: RunFiles) -> bool:
    data = run.config.get("data") or {}
    return data.get("target_scale", "standard") == "standard"


def run_labels(runs: list[RunFiles]) -> list[str]:
    """Run names, or folder names where two runs share a name."""
    names = [run.name for run in runs]
    return names if len(set(names)) == len(names) else [run.root.name for run in runs]


def choose_columns(columns: list[str], wanted: list[str] | None) -> list[str]:
    """Columns named by `--metrics` (`loss` means train and val loss, `accuracy` both accuracies, ...)."""
    if not wanted:
        return columns
    chosen = [c for c in columns if any(c == w or c.endswith(f"_{w}") for w in wanted)]
    unknown = [w for w in wanted if not any(c == w or c.endswith(f"_{w}") for c in columns)]
    if unknown:
        short = sorted({c.split("_", 1)[-1] for c in columns})
        raise UserError(f"--metrics names '{unknown[0]}', which these runs did not record "
                        f"(choose from: {', '.join(short)})")
    return chosen

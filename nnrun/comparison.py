"""Comparing runs (`nnrun plot A B ...`): one plot per metric, and each run's final and best metrics in
comparison.csv, the table the command prints."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrun.errors import UserError, writing
from nnrun.metrics import MONITORABLE, resolve_mode
from nnrun.plots import choose_columns, comparison_figure, run_labels, save
from nnrun.runs import RunFiles, create_comparison_dir, read_run

CSV_NAME = "comparison.csv"


@dataclass
class Comparison:
    """What a comparison wrote, and the table it prints: one row per run, `modes` says which way is better."""

    folder: Path
    written: list[Path]
    notes: list[str]
    rows: list[dict[str, Any]]
    modes: dict[str, str]


def compare_runs(run_dirs: list[Path], out: Path | None = None, *, metrics: list[str] | None = None,
                 labels: list[str] | None = None) -> Comparison:
    """One PNG per metric with a line per run, and comparison.csv, in `out` or a new comparisons/ folder.

    `labels` name the runs in the legends and the CSV (one per run folder); by default their run names."""
    runs = [read_run(d) for d in run_dirs]
    given = dict(zip(run_dirs, labels)) if labels else {}
    notes = [f"{run.root.name}: {note}" for run in runs for note in run.notes]
    runs_with_epochs = [run for run in runs if run.epochs]
    notes += [f"{run.root.name} has no finished epoch, so it is left out" for run in runs if not run.epochs]
    if not runs_with_epochs:
        raise UserError("none of these runs has a finished epoch to compare (train them first)")
    labels = [given[d] for d, run in zip(run_dirs, runs) if run.epochs] if given else run_labels(runs_with_epochs)
    columns = [c for c in (*MONITORABLE, "lr") if any(c in run.metrics for run in runs_with_epochs)]
    chosen = choose_columns(columns, metrics)  # before any folder is made: a bad --metrics leaves nothing behind
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = create_comparison_dir(run_dirs, labels)
    written = []
    for column in chosen:
        missing = [labels[i] for i, run in enumerate(runs_with_epochs) if column not in run.metrics]
        if missing:
            notes.append(f"{column}: not recorded by {', '.join(missing)}")
        save(comparison_figure(runs_with_epochs, labels, column), out / f"{column}.png")
        written.append(out / f"{column}.png")
    modes = {c: resolve_mode(c, "auto") for c in columns if c != "lr"}
    rows = comparison_rows(runs_with_epochs, labels, modes)
    write_csv(out / CSV_NAME, rows, modes)
    written.append(out / CSV_NAME)
    return Comparison(out, written, notes, rows, modes)


def comparison_rows(runs: list[RunFiles], labels: list[str], modes: dict[str, str]) -> list[dict[str, Any]]:
    """Per run: name, folder, epochs, best epoch, and `final_<metric>` (last epoch) and `best_<metric>` (its best
    epoch, by `modes`: min or max) for each metric; None where a run did not record one."""
    rows = []
    for run, label in zip(runs, labels):
        row: dict[str, Any] = {"name": label, "folder": str(run.root.absolute()), "epochs": int(run.epochs[-1]),
                               "best_epoch": run.best_epoch}
        for metric, mode in modes.items():
            values = [v for v in run.metrics.get(metric, []) if math.isfinite(v)]
            final = run.metrics.get(metric, [math.nan])[-1]
            row[f"final_{metric}"] = final if math.isfinite(final) else None
            row[f"best_{metric}"] = (max if mode == "max" else min)(values) if values else None
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]], modes: dict[str, str]) -> None:
    """comparison.csv: the rows at full precision; an empty cell where a run did not record a metric."""
    columns = ["name", "folder", "epochs", "best_epoch",
               *(f"{which}_{metric}" for metric in modes for which in ("final", "best"))]
    with writing(path), open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row[k] for k in columns} for row in rows)

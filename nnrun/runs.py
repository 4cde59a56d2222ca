"""The run folder: where every output of a run goes, and the metrics.csv writer."""

from __future__ import annotations

import csv
import math
import os
from datetime import datetime
from pathlib import Path


class Run:
    """One run's folder, `<runs-dir>/<name>-<YYYYmmdd-HHMMSS>/`, and the path of everything in it."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def create(cls, runs_dir: Path, name: str) -> Run:
        """Make a new, never reused folder: a second run in the same second gets a `-2` suffix."""
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for attempt in range(1, 1000):
            root = runs_dir / (f"{name}-{stamp}" if attempt == 1 else f"{name}-{stamp}-{attempt}")
            try:
                root.mkdir()  # atomic: two processes can't both create the same folder
            except FileExistsError:
                continue
            (root / "checkpoints").mkdir()
            return cls(root)
        raise RuntimeError(f"could not create a new run folder in {runs_dir}")

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def log_path(self) -> Path:
        return self.root / "train.log"

    @property
    def best_path(self) -> Path:
        return self.root / "checkpoints" / "best.pth"

    @property
    def last_path(self) -> Path:
        return self.root / "checkpoints" / "last.pth"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def report_path(self) -> Path:
        return self.root / "report.html"

    @property
    def predictions_path(self) -> Path:
        """The best weights' predictions on the test split (train and eval write it; plots read it)."""
        return self.root / "predictions.csv"


class MetricsWriter:
    """Appends one row per epoch to metrics.csv and flushes it, so the file is current at all times.

    Given `rows` (a resumed run's history), it first rewrites the file to exactly those rows.
    """

    def __init__(self, path: Path, columns: list[str], *, rows: list[dict[str, float]] | None = None):
        self.columns = columns
        if rows is not None or not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", newline="", encoding="utf-8") as file:
                writer = csv.DictWriter(file, fieldnames=columns)
                writer.writeheader()
                writer.writerows({k: _cell(row.get(k)) for k in columns} for row in rows or [])
            os.replace(tmp, path)
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._file, fieldnames=columns)

    def write(self, row: dict[str, float]) -> None:
        self._writer.writerow({k: _cell(row.get(k)) for k in self.columns})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # full precision: a rerun must be comparable value for value
    return str(value)

"""The run folder: where every output of a run goes, the metrics.csv writer, and reading a run back."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from nnrun.errors import UserError, write_problem, writing
from nnrun.metrics import HEADLINE, higher_is_better


class Run:
    """One run's folder, `<runs-dir>/<name>-<YYYYmmdd-HHMMSS>/`, and the path of everything in it."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def create(cls, runs_dir: Path, name: str) -> Run:
        """Make a new, never reused folder: a second run in the same second gets a `-2` suffix."""
        check_runs_dir(runs_dir)
        root = new_folder(runs_dir, name)
        try:
            (root / "checkpoints").mkdir()
        except OSError as exc:
            root.rmdir()
            raise write_problem(exc) or exc from None
        return cls(root)

    @classmethod
    def create_at(cls, root: Path) -> Run:
        """A new run folder at exactly this path, which must not exist yet (a sweep names its trials' folders)."""
        try:
            (Path(root) / "checkpoints").mkdir(parents=True)
        except OSError as exc:
            raise write_problem(exc) or exc from None
        return cls(root)

    def remove_stale_temp_files(self) -> list[Path]:
        """Temp files a killed writer left (a SIGKILL mid-save cannot clean up); the checkpoints beside them are whole."""
        stale = list((self.root / "checkpoints").glob(".*.tmp")) + list(self.root.glob(".*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def resume_hint(self) -> str:
        """What to run once a failure's cause is fixed: resume, when a last.pth exists."""
        if self.last_path.is_file():
            return f"continue with: nnrun train --resume {self.root}"
        return "start the run again"

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


def create_comparison_dir(run_dirs: list[Path], names: list[str]) -> Path:
    """A new folder for `nnrun plot A B`: `<folder holding the runs folder>/comparisons/<A>-vs-<B>-<time>/`.

    Beside the runs folder, never in it, where it would look like one more run. The first run decides; a second
    comparison in the same second gets a `-2` suffix.
    """
    parent = Path(run_dirs[0]).absolute().parent.parent / "comparisons"
    shown = "-vs-".join(names[:3]) + (f"-and-{len(names) - 3}-more" if len(names) > 3 else "")
    return new_folder(parent, shown[:80])


def new_folder(parent: Path, stem: str) -> Path:
    """Make `<parent>/<stem>-<YYYYmmdd-HHMMSS>/`, never reused: another one in the same second gets a `-2` suffix."""
    parent = Path(parent)
    stem = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            folder = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
            try:
                folder.mkdir()  # atomic: two processes can't both create the same folder
            except FileExistsError:
                continue
            return folder
    except OSError as exc:
        raise write_problem(exc) or exc from None
    raise RuntimeError(f"could not create a new folder in {parent}")


def check_runs_dir(runs_dir: Path) -> None:
    """Refuse, before any work, a runs folder that cannot be created or written: a file in the way, no access."""
    existing = Path(runs_dir)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot create the runs folder '{runs_dir}': '{existing}' is a file, not a folder "
                        f"(choose another --runs-dir)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot create the runs folder '{runs_dir}': '{existing}' is not writable "
                        f"(choose another --runs-dir, or make it writable)")


class MetricsWriter:
    """Appends one row per epoch to metrics.csv and flushes it, so the file is current at all times.

    Given `rows` (a resumed run's history), it first rewrites the file to exactly those rows.
    """

    def __init__(self, path: Path, columns: list[str], *, rows: list[dict[str, float]] | None = None):
        self.columns, self.path = columns, path
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
        with writing(self.path):
            self._writer.writerow({k: _cell(row.get(k)) for k in self.columns})
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # full precision: a rerun must be comparable value for value
    return str(value)


@dataclass
class RunFiles:
    """What a run folder holds for plotting: its metrics by column, and what the summary and config say."""

    root: Path
    metrics: dict[str, list[float]]
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.summary.get("name") or self.config.get("name") or self.root.name

    @property
    def epochs(self) -> list[float]:
        return self.metrics.get("epoch", [])

    @property
    def task(self) -> str:
        return "classification" if "val_accuracy" in self.metrics else "regression"

    @property
    def target_name(self) -> str:
        """What the target is called, for axis labels: a CSV's column, else the dataset's name."""
        data = self.config.get("data") or {}
        return data.get("target") or "target"

    @property
    def best_epoch(self) -> int | None:
        """The summary's best epoch; for an unfinished run, the best by the config's monitor so far."""
        if self.summary.get("best_epoch"):
            return int(self.summary["best_epoch"])
        stopping = self.config.get("early_stopping") or {}  # config.yaml holds the resolved monitor and mode
        monitor = stopping.get("monitor")
        values = [v for v in self.metrics.get(monitor, []) if math.isfinite(v)]
        if not values or stopping.get("mode") not in ("min", "max"):
            return None
        best = max(values) if stopping["mode"] == "max" else min(values)
        return int(self.epochs[self.metrics[monitor].index(best)])


def read_run(run_dir: Path) -> RunFiles:
    """Read a run folder's metrics.csv (required), summary.json, config.yaml and predictions.csv (optional)."""
    folder = Run(run_dir)
    if not folder.root.is_dir():
        raise UserError(f"run folder '{folder.root}' not found (give a folder made by nnrun train, such as "
                        f"runs/NAME-DATE)")
    if not folder.metrics_path.is_file():
        raise UserError(f"'{folder.root}' has no metrics.csv (give a run folder made by nnrun train)")
    metrics, notes = read_metrics(folder.metrics_path)
    run = RunFiles(folder.root, metrics, notes=notes)
    if folder.summary_path.is_file():
        try:
            run.summary = json.loads(folder.summary_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            run.notes.append("summary.json is unreadable, so the plots leave out what it adds")
    else:
        run.notes.append("no summary.json: the run did not finish, so these plots show the epochs it completed")
    if folder.config_path.is_file():
        run.config = yaml.safe_load(folder.config_path.read_text(encoding="utf-8")) or {}
    if folder.predictions_path.is_file():
        run.predictions = pd.read_csv(folder.predictions_path)
    return run


def read_metrics(path: Path) -> tuple[dict[str, list[float]], list[str]]:
    """metrics.csv as columns of floats, and notes; a torn last line (a killed run) is left out."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}, ["metrics.csv is empty: the run stopped before writing its header"]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.ParserError as exc:
        raise UserError(f"'{path}' is damaged ({str(exc).strip()}; delete the bad lines, or retrain)") from None
    # A row is complete when its epoch, lr and losses are there, and (for the last) when its newline was written.
    complete = (frame.iloc[:, :4] != "").all(axis=1).to_numpy(copy=True)
    if len(frame) and not text.endswith("\n"):
        complete[-1] = False
    notes = [f"left out {int((~complete).sum())} incomplete row(s) of metrics.csv"] if not complete.all() else []
    if caught:
        notes.append("metrics.csv has rows with more cells than its header; the extra cells were ignored")
    return {str(name): pd.to_numeric(frame[name][complete], errors="coerce").astype(float).tolist()
            for name in frame.columns}, notes


# --- the list of past runs: `nnrun runs` ------------------------------------------------------------------------

STATUSES = {"completed": "completed", "early_stopping": "early-stopped", "stop_at": "early-stopped",
            "interrupted": "interrupted", "non_finite_loss": "failed", "pruned": "pruned"}
# --sort KEY besides a test metric's name (cli.py's --sort help says what each means); each sorts best first.
SORT_KEYS = ("started", "name", "status", "epochs", "duration", "val", "test")


@dataclass
class RunRecord:
    """One line of `nnrun runs`: what a run folder's summary.json and config.yaml say about it."""

    folder: Path
    name: str
    started: datetime | None
    status: str  # a STATUSES value; unfinished: running, or killed before its summary; unreadable: summary damaged
    epochs_run: int | None
    epochs: int | None
    best_epoch: int | None
    monitor: str | None
    best_value: float | None
    lower_is_better: bool  # for the monitored value
    test: dict[str, Any]
    seconds: float | None

    @property
    def headline(self) -> tuple[str, float] | None:
        """The test result people ask for first: accuracy, or R² for regression."""
        for key in HEADLINE.values():
            if isinstance(self.test.get(key), (int, float)):
                return key, float(self.test[key])
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a NaN or infinite number (R² of one test row) is null, as JSON has no NaN."""
        return {"name": self.name, "folder": str(self.folder),
                "started": self.started.isoformat(timespec="seconds") if self.started else None,
                "status": self.status, "epochs_run": self.epochs_run, "epochs": self.epochs,
                "best_epoch": self.best_epoch, "monitor": self.monitor, "best_value": _finite(self.best_value),
                "test": {k: _finite(v) for k, v in self.test.items() if isinstance(v, (int, float))},
                "seconds": _finite(self.seconds)}


def list_runs(runs_dir: Path) -> list[RunRecord]:
    """Every run folder in `runs_dir`, newest first; anything that is not a run (or the `latest` link) is skipped."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"runs folder '{runs_dir}' not found (give the folder nnrun train wrote to, such as runs)")
    records = [record for folder in runs_dir.iterdir() if (record := _record(folder)) is not None]
    return sorted(records, key=lambda r: (r.started or datetime.min, r.folder.name), reverse=True)


def sort_runs(records: list[RunRecord], key: str) -> list[RunRecord]:
    """Sorted by a SORT_KEYS key or a test metric name (accuracy, r2, rmse, ...), best first; runs without it last."""
    if key not in SORT_KEYS and not any(key in r.test for r in records):
        metrics = sorted({k for r in records for k, v in r.test.items() if isinstance(v, (int, float))})
        raise UserError(f"cannot sort by '{key}' (choose {', '.join(SORT_KEYS)}"
                        f"{', or a test metric: ' + ', '.join(metrics) if metrics else ''})")

    def value(record: RunRecord) -> tuple[bool, Any]:
        found: Any
        if key == "started":
            found = -record.started.timestamp() if record.started else None
        elif key in ("name", "status"):
            found = getattr(record, key)
        elif key == "epochs":
            found = -record.epochs_run if record.epochs_run is not None else None
        elif key == "duration":
            found = -record.seconds if record.seconds is not None else None
        elif key == "val":
            found = record.best_value if record.lower_is_better else _negated(record.best_value)
        elif key == "test":
            found = _negated(record.headline[1]) if record.headline else None
        else:
            metric = record.test.get(key)
            found = _negated(metric) if higher_is_better(key) else metric
        missing = found is None or (isinstance(found, float) and math.isnan(found))
        return missing, found if not missing else 0

    return sorted(records, key=value)


def mark_latest(run: Run) -> None:
    """Point `<runs-dir>/latest` at this run, atomically; where links are not allowed, there is no link."""
    point_link(run.root.parent / "latest", run.root)


def point_link(link: Path, target: Path) -> None:
    """Point `link` at `target`, a folder beside it, atomically; where links are not allowed, there is no link."""
    link, target = Path(link), Path(target)
    temp = link.parent / f".{link.name}-{os.getpid()}.tmp"
    try:
        temp.unlink(missing_ok=True)
        temp.symlink_to(target.name, target_is_directory=True)
        if link.exists() and not link.is_symlink():
            temp.unlink()  # a real folder called `latest` is the user's: leave it
            return
        os.replace(temp, link)
    except OSError:
        temp.unlink(missing_ok=True)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _negated(value: float | None) -> float | None:
    return -value if isinstance(value, (int, float)) else None


def _record(folder: Path) -> RunRecord | None:
    run = Run(folder)
    if folder.is_symlink() or not folder.is_dir() or not run.config_path.is_file():
        return None
    try:
        config = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(config, dict) or "data" not in config:
        return None  # a config.yaml, but not one nnrun train wrote
    status, summary = "unfinished", {}
    if run.summary_path.is_file():
        try:
            summary = json.loads(run.summary_path.read_text(encoding="utf-8"))
            status = STATUSES.get(summary.get("stop_reason"), "failed")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            status, summary = "unreadable", {}  # a run whose summary.json is damaged: still a run
    stopping = config.get("early_stopping") if isinstance(config.get("early_stopping"), dict) else {}
    epochs_run = summary.get("epochs_run")
    if epochs_run is None and run.metrics_path.is_file():
        try:
            epochs_run = len(read_metrics(run.metrics_path)[0].get("epoch", []))  # a torn last row is left out
        except (OSError, UnicodeDecodeError, UserError):
            epochs_run = None
    return RunRecord(
        folder=folder, name=str(summary.get("name") or config.get("name") or folder.name),
        started=_started(folder), status=status,
        epochs_run=epochs_run, epochs=summary.get("epochs", config.get("epochs")),
        best_epoch=summary.get("best_epoch"), monitor=summary.get("monitor", stopping.get("monitor")),
        best_value=summary.get("best_value"), lower_is_better=stopping.get("mode", "min") != "max",
        test=summary.get("test") or {}, seconds=(summary.get("seconds") or {}).get("total"))


def _started(folder: Path) -> datetime | None:
    """When a run started: the stamp in its folder name (`NAME-20261125-134501`), else when config.yaml was written."""
    parts = folder.name.split("-")
    for i in range(len(parts) - 1):
        try:
            return datetime.strptime(f"{parts[i]}-{parts[i + 1]}", "%Y%m%d-%H%M%S")
        except ValueError:
            continue
    try:
        return datetime.fromtimestamp((folder / "config.yaml").stat().st_mtime)
    except OSError:
        return None

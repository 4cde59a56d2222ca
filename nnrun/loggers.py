"""Send a run to the trackers people already use: TensorBoard event files and MLflow runs.

metrics.csv is always written and stays the source of truth; a logger is a copy for another tool. So a logger
that fails (a tracking server that is down, a full disk) says so in one note and stops, and training goes on.
Only the process of rank 0 logs, so that a multi-process run appears once.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from typing import Any

from nnrun.config import Config
from nnrun.runs import Run

MLFLOW_FLUSH_SECONDS = 1.0  # MLflow gets each epoch's row in batches: a write per epoch would slow tiny models


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """The resolved config as `optimizer.lr: 0.01` pairs: what TensorBoard's hparams and MLflow's params take."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (str, int, float, bool)):
            flat[f"{prefix}{key}"] = value
        else:  # lists and None: TensorBoard and MLflow take only scalars
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


def final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers a run ends with: `test_accuracy`, `best_val_loss`, ... (scalars only)."""
    found = {f"test_{k}": v for k, v in (summary.get("test") or {}).items() if isinstance(v, (int, float))}
    found.update({f"best_val_{k}": v for k, v in (summary.get("val") or {}).items() if isinstance(v, (int, float))})
    return {k: float(v) for k, v in found.items() if not isinstance(v, bool)}


def rank() -> int:
    """This process's rank in a multi-process run (torchrun sets RANK); 0 when it runs alone."""
    value = os.environ.get("RANK", "0")
    return int(value) if value.isdigit() else 0


class TensorBoard:
    """Event files in `<run>/tensorboard/`: every metrics.csv column per epoch, hparams, and the answer plot."""

    def __init__(self, run: Run, config: Config, *, history: list[dict[str, float]]):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = run.root / "tensorboard"
        self.config = config
        # A resumed run retrains the epochs after its checkpoint, and an earlier session may have logged some of
        # them (or none, when the logger is new): purge_step hides everything logged before, and the epochs the
        # checkpoint holds are logged again, so each epoch shows exactly once.
        self.writer = SummaryWriter(str(self.folder), purge_step=1 if history else None, flush_secs=5)
        for row in history:
            self.epoch(row)

    def epoch(self, row: dict[str, float]) -> None:
        step = int(row["epoch"])
        for column, value in row.items():
            if column != "epoch":
                self.writer.add_scalar(column, value, step)

    def finish(self, run: Run, summary: dict[str, Any], status: str) -> None:
        try:
            metrics = {f"hparam/{k}": v for k, v in final_metrics(summary).items()}
            self.writer.add_hparams(flatten(self.config.to_dict()), metrics, run_name=".")
            for name in ("confusion_matrix", "predictions"):
                path = run.plots_dir / f"{name}.png"
                if path.is_file():
                    from matplotlib.image import imread

                    self.writer.add_image(name, imread(path)[..., :3], dataformats="HWC")
        finally:
            self.close()

    def close(self) -> None:
        self.writer.close()


class MLflow:
    """One MLflow run per nnrun run, in MLFLOW_TRACKING_URI or else `<runs-dir>/mlflow.db`; resuming continues it."""

    def __init__(self, run: Run, config: Config, *, history: list[dict[str, float]]):
        for name in ("mlflow", "alembic", "sqlalchemy"):  # their INFO lines would interleave with the epochs
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run.root.parent / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.record = run.root / "mlflow.json"  # which MLflow run this folder logs to, for a resume
        self.pending: list[dict[str, float]] = []
        self.last_flush = time.monotonic()
        self.logged_up_to = 0  # epochs an earlier session of this run already logged
        previous = json.loads(self.record.read_text()) if history and self.record.is_file() else None
        if previous and previous.get("tracking_uri") == self.uri:
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            steps = [m.step for m in self.client.get_metric_history(self.run_id, "train_loss")]
            self.logged_up_to = max(steps, default=0)
            # Params cannot change in MLflow; a resume may change `epochs` and early stopping, kept as tags.
            logged = self.client.get_run(self.run_id).data.params
            for key, value in flatten(config.to_dict()).items():
                if key in logged and logged[key] != str(value):
                    self.client.set_tag(self.run_id, f"resumed.{key}", str(value))
        else:
            self._create(run, config)
        for row in history:  # the epochs the checkpoint holds and this MLflow run lacks
            self.epoch(row)

    def _create(self, run: Run, config: Config) -> None:
        from mlflow.entities import Param

        experiment = self.client.get_experiment_by_name(config.name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        elif os.environ.get("MLFLOW_TRACKING_URI"):
            experiment_id = self.client.create_experiment(config.name)
        else:  # keep the artifacts beside the database, not in whatever folder nnrun was started from
            experiment_id = self.client.create_experiment(
                config.name, artifact_location=(run.root.parent / "mlartifacts").resolve().as_uri())
        created = self.client.create_run(experiment_id, run_name=run.root.name, tags={"nnrun.run_dir": str(run.root)})
        self.run_id = created.info.run_id
        params = [Param(k, str(v)) for k, v in flatten(config.to_dict()).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        self.record.write_text(json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}) + "\n")

    def epoch(self, row: dict[str, float]) -> None:
        if row["epoch"] > self.logged_up_to:  # a resumed run retrains epochs already logged, to the same values
            self.pending.append(row)
        if time.monotonic() - self.last_flush >= MLFLOW_FLUSH_SECONDS:
            self._flush()

    def finish(self, run: Run, summary: dict[str, Any], status: str) -> None:
        from mlflow.entities import Metric

        self._flush()
        now = int(time.time() * 1000)
        best = summary.get("best_epoch") or 0
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, best) for k, v in final_metrics(summary).items()])
        for path, folder in ((run.plots_dir, "plots"), (run.report_path, None), (run.summary_path, None),
                             (run.best_path, "checkpoints")):
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), folder)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), folder)
        self.client.set_terminated(self.run_id, status={"interrupted": "KILLED", "failed": "FAILED"}.get(status,
                                                                                                     "FINISHED"))

    def close(self) -> None:
        pass

    def _flush(self) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(column, float(value), now, int(row["epoch"]))
                   for row in self.pending for column, value in row.items() if column != "epoch"]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])
        self.pending.clear()
        self.last_flush = time.monotonic()


LOGGERS = {"tensorboard": TensorBoard, "mlflow": MLflow}


class Loggers:
    """The run's loggers, called like one: `epoch(row)` after each metrics.csv row, `finish(...)` at the end.

    `history` holds the rows metrics.csv already has (a resumed run's), which a logger may lack. A logger that
    raises is reported once through `say` and dropped: it never stops training.
    """

    def __init__(self, run: Run, config: Config, *, history: list[dict[str, float]] = (), say=print):
        self.say = say
        self.active: dict[str, Any] = {}
        if rank() != 0:
            return
        for name in config.loggers:
            self._call(name, lambda cls=LOGGERS[name]: self.active.__setitem__(
                name, cls(run, config, history=list(history))))

    def epoch(self, row: dict[str, float]) -> None:
        for name, logger in list(self.active.items()):
            self._call(name, lambda: logger.epoch(row))

    def finish(self, run: Run, status: str) -> bool:
        """Log the end of the run from its summary.json; `status` is one of runs.STATUSES' values. Returns False
        when Ctrl-C cut it short (the run's folder is complete either way)."""
        try:
            summary = json.loads(run.summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not written (the run failed before it), or torn by a full disk
            summary = {}
        try:
            for name, logger in list(self.active.items()):
                self._call(name, lambda: logger.finish(run, summary, status))
                self.active.pop(name, None)
        except KeyboardInterrupt:
            for name, logger in self.active.items():
                self.say(f"[yellow]note[/]   {name} logging was cut short by Ctrl-C (metrics.csv has every epoch)")
                logger.close()
            self.active.clear()
            return False
        return True

    def _call(self, name: str, action) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the trackers' deprecation warnings are not the user's business
                action()
        except Exception as exc:  # noqa: BLE001 - any failure of a copy must not stop the run
            logger = self.active.pop(name, None)
            if logger is not None:
                try:
                    logger.close()
                except Exception:  # noqa: BLE001 - already reporting the first failure
                    pass
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            self.say(f"[yellow]note[/]   {name} logging stopped: {reason} (metrics.csv has every epoch)")

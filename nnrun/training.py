"""The training loop: train_one_epoch -> evaluate -> metrics row -> scheduler.step() -> checkpoint.

The checkpoint comes after the scheduler step so that it holds the state the next epoch starts from, which is
what makes a resumed run identical to one that never stopped.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import random
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

import nnrun
from nnrun.checkpoints import save_checkpoint
from nnrun.console import RunLog, console
from nnrun.data.batching import Batches
from nnrun.data.bundle import SplitTensors
from nnrun.errors import Interrupted
from nnrun.experiment import Experiment
from nnrun.metrics import EPOCH_METRICS, classification_report, epoch_columns, regression_report
from nnrun.runs import MetricsWriter, Run
from nnrun.schedulers import step_after_epoch
from nnrun.tasks import Task

EVAL_BATCH = 1024  # rows per forward pass when evaluating; results do not depend on it
CHECKPOINT_INTERVAL = 10.0  # seconds between checkpoint writes; a run's end and an interrupt always write


@dataclass
class LoopState:
    """Where training stands after an epoch: enough to pick the best epoch, stop early, and resume."""

    epoch: int = 0  # last finished epoch
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def improved(self, value: float, mode: str, min_delta: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value - min_delta if mode == "min" else value > self.best_value + min_delta


def train_one_epoch(model: nn.Module, batches: Batches, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    *, task: Task, step_scheduler: Any = None) -> tuple[float, float | None]:
    """One pass over the training batches: (mean loss, accuracy for classification or None)."""
    model.train()
    device = batches.device
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for x, y in batches:
        output = model(x)  # (batch, outputs)
        loss = loss_fn(output, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        # Accumulate on the device: one host sync per epoch, not per batch.
        total_loss += loss.detach() * len(x)
        if task.kind == "classification":
            correct += task.correct(output.detach(), y)
        seen += len(x)
    accuracy = correct.item() / seen if task.kind == "classification" else None
    return (total_loss / seen).item(), accuracy


@torch.no_grad()
def evaluate(model: nn.Module, split: SplitTensors, loss_fn: nn.Module) -> tuple[float, torch.Tensor]:
    """Mean loss over a split, and the model's outputs for every row (rows, outputs)."""
    model.eval()
    output = torch.cat([model(x) for x, _ in split.batches(EVAL_BATCH)])
    return loss_fn(output, split.y).item(), output


def split_report(model: nn.Module, split: SplitTensors, loss_fn: nn.Module,
                 task: Task) -> tuple[dict[str, Any], torch.Tensor]:
    """Loss and the full metric report for a split (regression in original units), and the model's outputs."""
    loss, output = evaluate(model, split, loss_fn)
    if task.kind == "classification":
        report = classification_report(split.y.cpu().numpy(), task.probabilities(output).cpu().numpy(),
                                       task.class_names)
    else:
        report = regression_report(task.to_units(split.y).cpu().numpy(), task.to_units(output).cpu().numpy())
    return {"loss": loss, **report}, output


def fit(exp: Experiment, run: Run, log: RunLog, *, resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train for `epochs`, keeping the best and last checkpoints; returns the summary written to summary.json.

    `resume` is a last.pth checkpoint of this run: training continues exactly where it stopped.
    """
    cfg, task = exp.config, exp.task
    stopping = cfg.early_stopping
    state, best_weights = restore_training_state(exp, resume) if resume else (LoopState(), None)
    # On resume, metrics.csv is rewritten from the checkpoint, so no epoch is missing or repeated.
    metrics = MetricsWriter(run.metrics_path, epoch_columns(task.kind), rows=state.history if resume else None)
    step_scheduler = exp.scheduler if exp.scheduler_interval == "step" else None
    saver = _CheckpointSaver(run, state.history)
    stop_reason, stop_detail = "completed", f"ran all {cfg.epochs} epochs"
    started = time.perf_counter()

    with _progress(cfg.epochs, state.epoch, enabled=log.quiet_console) as bar, _InterruptGuard() as guard:
        try:
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                epoch_start = time.perf_counter()
                lr = exp.optimizer.param_groups[0]["lr"]
                train_loss, train_accuracy = train_one_epoch(exp.model, exp.train_batches, exp.loss_fn,
                                                             exp.optimizer, task=task, step_scheduler=step_scheduler)
                train_seconds = time.perf_counter() - epoch_start
                val_loss, val_output = evaluate(exp.model, exp.data.val, exp.loss_fn)
                if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                    # The weights have diverged: record nothing from this epoch, keep the checkpoints of the last one.
                    which, value = ("train", train_loss) if not math.isfinite(train_loss) else ("val", val_loss)
                    stop_reason = "non_finite_loss"
                    stop_detail = (f"{which} loss became {value} at epoch {epoch}, so training stopped; last.pth "
                                   f"holds epoch {state.epoch} (lower optimizer.lr, or check the data for "
                                   f"extreme values)")
                    break
                row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss}
                if task.kind == "classification":
                    row["train_accuracy"] = train_accuracy
                row.update({f"val_{k}": v for k, v in task.epoch_metrics(val_output, exp.data.val.y).items()})
                row["train_seconds"] = train_seconds
                row["epoch_seconds"] = time.perf_counter() - epoch_start
                monitored = row[stopping.monitor]

                # An interrupt waits for this block, so metrics.csv, the loop state and last.pth always agree.
                with guard.deferred():
                    metrics.write(row)
                    state.history.append(row)
                    state.epoch = epoch
                    if state.improved(monitored, stopping.mode, stopping.min_delta):
                        state.best_value, state.best_epoch, state.bad_epochs = monitored, epoch, 0
                        best_weights = _clone(exp.model.state_dict())
                    else:
                        state.bad_epochs += 1
                    if exp.scheduler is not None and exp.scheduler_interval == "epoch":
                        step_after_epoch(exp.scheduler, monitored)
                    # checkpoint after the scheduler step, so that resuming continues with the next epoch's lr
                    best = _checkpoint(exp, state, weights=best_weights) if state.best_epoch == epoch else None
                    saver.update(best=best, last=_checkpoint(exp, state, best_weights=best_weights))

                log.epoch(_epoch_line(row, cfg.epochs, task.kind))
                bar(epoch, row, task.kind)

                # stop early?
                if stopping.stop_at is not None and _reached(monitored, stopping.stop_at, stopping.mode):
                    sign = "<=" if stopping.mode == "min" else ">="
                    stop_reason = "stop_at"
                    stop_detail = f"{stopping.monitor} {monitored:.6g} {sign} stop_at {stopping.stop_at} at epoch {epoch}"
                    break
                if stopping.patience is not None and state.bad_epochs >= stopping.patience:
                    stop_reason = "early_stopping"
                    stop_detail = (f"{stopping.monitor} did not improve by more than {stopping.min_delta} for "
                                   f"{stopping.patience} epochs (best at epoch {state.best_epoch})")
                    break
        except (KeyboardInterrupt, Interrupted):
            # A partly trained epoch is dropped: the checkpoints keep the last finished one.
            stop_reason, stop_detail = "interrupted", f"interrupted after epoch {state.epoch}"
        finally:
            saver.flush()
            metrics.close()

    # test the best weights, and keep their predictions for the plots
    test = None
    if best_weights is not None and stop_reason != "interrupted" and exp.data.test is not None:
        exp.model.load_state_dict(best_weights)
        test, output = split_report(exp.model, exp.data.test, exp.loss_fn, task)
        task.predictions(output, exp.data.test.y, exp.data.test.rows).to_csv(run.predictions_path, index=False)
    summary = _summary(exp, run, state, stop_reason, stop_detail, test, time.perf_counter() - started)
    run.summary_path.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    if stop_reason == "interrupted":
        raise Interrupted(stop_detail)
    return summary


class _CheckpointSaver:
    """Writes best.pth and last.pth, at most every CHECKPOINT_INTERVAL seconds; `flush` writes what is pending.

    Tiny models train thousands of epochs a second, where a write each epoch would dominate the run; the
    pending snapshot keeps an interrupt exact, because it is always the state of the last finished epoch.
    """

    def __init__(self, run: Run, history: list[dict[str, float]]):
        self.paths = {"best": run.best_path, "last": run.last_path}
        self.history = history  # append-only: a snapshot keeps how many rows it had
        self.pending: dict[str, tuple[dict[str, Any], int]] = {}
        self.last_write = -math.inf

    def update(self, *, best: dict[str, Any] | None, last: dict[str, Any]) -> None:
        if best is not None:
            self.pending["best"] = (best, len(self.history))
        self.pending["last"] = (last, len(self.history))
        if time.monotonic() - self.last_write >= CHECKPOINT_INTERVAL:
            self.flush()

    def flush(self) -> None:
        for name in ("best", "last"):
            if name in self.pending:
                checkpoint, rows = self.pending.pop(name)
                save_checkpoint(self.paths[name], {**checkpoint, "metrics": self.history[:rows]})
        self.last_write = time.monotonic()


def _checkpoint(exp: Experiment, state: LoopState, *, weights: dict[str, torch.Tensor] | None = None,
                best_weights: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """A best.pth (given its `weights`) or last.pth (the live model, plus everything resume needs).

    Both hold everything eval needs: weights, config, preprocessing, class names, the data's fingerprint.
    The saver adds `metrics`, the rows of metrics.csv up to this epoch.
    """
    data = exp.data
    checkpoint = {
        "config": exp.config.to_dict(),
        "model": weights if weights is not None else _clone(exp.model.state_dict()),
        "data": {"task": data.task, "class_names": data.class_names, "feature_names": data.feature_names,
                 "in_shape": list(data.in_shape), "n_targets": data.n_targets, "preprocessing": data.preprocessing,
                 "fingerprint": data.fingerprint},
        "epoch": state.best_epoch if weights is not None else state.epoch,
        "versions": _versions(),
    }
    if weights is None:
        legacy_numpy = np.random.get_state()
        checkpoint.update({
            "best_model": best_weights,  # so that last.pth alone resumes exactly, best epoch included
            "optimizer": copy.deepcopy(exp.optimizer.state_dict()),
            "scheduler": copy.deepcopy(exp.scheduler.state_dict()) if exp.scheduler else None,
            "loop": {"epoch": state.epoch, "best_value": state.best_value, "best_epoch": state.best_epoch,
                     "bad_epochs": state.bad_epochs},
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": exp.train_batches.generator.get_state(),
                "python": random.getstate(),
                # np.random's legacy state holds an array, which weights_only refuses: store it as a tensor.
                "numpy": [legacy_numpy[0], torch.from_numpy(legacy_numpy[1].astype(np.int64)), *legacy_numpy[2:]],
                "cuda": torch.cuda.get_rng_state_all() if exp.device.type == "cuda" else None,
            },
        })
    return checkpoint


def restore_training_state(exp: Experiment, checkpoint: dict[str, Any]) -> tuple[LoopState, dict | None]:
    """Load a last.pth into the live experiment: weights, optimizer, scheduler, RNGs; returns the loop state."""
    exp.model.load_state_dict(checkpoint["model"])
    exp.optimizer.load_state_dict(checkpoint["optimizer"])
    if exp.scheduler is not None and checkpoint["scheduler"] is not None:
        exp.scheduler.load_state_dict(checkpoint["scheduler"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    exp.train_batches.generator.set_state(rng["shuffle"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if rng["cuda"] is not None and exp.device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])
    state = LoopState(**checkpoint["loop"], history=list(checkpoint["metrics"]))
    return state, checkpoint.get("best_model")


def _summary(exp: Experiment, run: Run, state: LoopState, stop_reason: str, stop_detail: str,
             test: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    cfg = exp.config
    by_epoch = {row["epoch"]: row for row in state.history}
    metric_names = ["loss", *[m.removeprefix("val_") for m in EPOCH_METRICS[exp.task.kind] if m.startswith("val_")]]

    def val_of(row: dict[str, float] | None) -> dict[str, float] | None:
        return {name: row[f"val_{name}"] for name in metric_names} if row else None

    return {
        "name": cfg.name,
        "run_dir": str(run.root),
        "task": exp.task.kind,
        "stop_reason": stop_reason,
        "stop_detail": stop_detail,
        "epochs_run": state.epoch,
        "epochs": cfg.epochs,
        "monitor": cfg.early_stopping.monitor,
        "best_epoch": state.best_epoch or None,
        "best_value": state.best_value,
        "val": val_of(by_epoch.get(state.best_epoch)),
        "final_val": val_of(state.history[-1] if state.history else None),
        "test": test,
        "rows": {name: len(split) for name, split in exp.data.splits.items()},
        "parameters": sum(p.numel() for p in exp.model.parameters()),
        "device": str(exp.device),
        "seconds": {"total": seconds, "train": sum(r["train_seconds"] for r in state.history)},
        "notes": exp.data.notes,
        "versions": _versions(),
    }


def _epoch_line(row: dict[str, float], epochs: int, task: str) -> str:
    width = len(str(epochs))
    parts = [f"epoch {row['epoch']:>{width}}/{epochs}", f"lr {row['lr']:.3g}"]
    parts += [f"{name} {_number(row[name])}" for name in ("train_loss", "val_loss", *EPOCH_METRICS[task])
              if name in row]
    parts.append(f"{row['epoch_seconds']:.2f}s")
    return "  ".join(parts)


def _number(value: float) -> str:
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.4g}"


def _reached(value: float, threshold: float, mode: str) -> bool:
    return value <= threshold if mode == "min" else value >= threshold


def _clone(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state_dict.items()}


def _versions() -> dict[str, str]:
    return {"nnrun": nnrun.__version__, "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}


class _InterruptGuard:
    """Ctrl-C and SIGTERM raise Interrupted at once, except inside `deferred()`, where they wait for its end."""

    def __init__(self):
        self.deferring = False
        self.pending = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _InterruptGuard:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    @contextmanager
    def deferred(self):
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            raise Interrupted("interrupted")

    def _handle(self, signum, frame) -> None:
        if self.deferring:
            self.pending = True
        else:
            raise Interrupted(signal.Signals(signum).name)


class _Bar:
    """A rich progress bar over epochs, showing the latest metrics; a no-op when disabled."""

    def __init__(self, progress: Progress | None, task_id: int | None):
        self.progress, self.task_id = progress, task_id

    def __call__(self, epoch: int, row: dict[str, float], task: str) -> None:
        if self.progress is None:
            return
        metric = next((f"{m} {row[m]:.4f}" for m in EPOCH_METRICS[task] if m.startswith("val_")), "")
        self.progress.update(self.task_id, completed=epoch,
                             description=f"train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  {metric}")


@contextmanager
def _progress(epochs: int, done: int, *, enabled: bool):
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(TextColumn("[bold]epochs"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.description}"), console=console)
    with progress:
        yield _Bar(progress, progress.add_task("", total=epochs, completed=done))


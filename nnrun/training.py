"""The training loop: train_one_epoch -> evaluate -> metrics row -> scheduler.step() -> checkpoint.

The checkpoint comes after the scheduler step so that it holds the state the next epoch starts from, which is
what makes a resumed run identical to one that never stopped.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Self

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from nnrun.checkpoints import save_checkpoint, versions
from nnrun.config import EarlyStopping
from nnrun.console import RunLog, console, format_number
from nnrun.errors import Interrupted, writing
from nnrun.evaluation import evaluate, split_report
from nnrun.experiment import Experiment
from nnrun.loggers import Loggers
from nnrun.metrics import EPOCH_METRICS, epoch_columns
from nnrun.runs import MetricsWriter, Run
from nnrun.schedulers import step_after_epoch
from nnrun.speed import CompileClock, Steps, is_compile_failure
from nnrun.threads import ThreadPolicy
from nnrun.training_state import (
    LoopState,
    StateDict,
    best_checkpoint,
    last_checkpoint,
    restore_training_state,
    snapshot,
)

CHECKPOINT_INTERVAL = 10.0  # seconds between checkpoint writes; a run's end and an interrupt always write


class Stop(NamedTuple):
    """Why training ended: summary.json's `stop_reason` and `stop_detail`."""

    reason: Literal["completed", "early_stopping", "stop_at", "non_finite_loss", "interrupted", "pruned"]
    detail: str


def train_one_epoch(exp: Experiment, *, threads: ThreadPolicy | None = None,
                    log: RunLog | None = None) -> tuple[float, float | None]:
    """One pass over the training batches: (mean loss, accuracy for classification or None)."""
    task = exp.task
    step_scheduler = exp.scheduler if exp.scheduler_interval == "step" else None
    exp.model.train()
    losses, sizes, outputs, targets = [], [], [], []
    # threads: auto times each step to compare thread counts
    for x, y in threads.timed(exp.train_batches) if threads else exp.train_batches:
        output, loss = train_step(exp, x, y, log=log)
        if step_scheduler is not None:
            step_scheduler.step()
        # Keep each batch's results on the device and reduce them once: no host sync and no extra ops per batch.
        losses.append(loss.detach())
        sizes.append(len(x))
        if task.kind == "classification":
            outputs.append(output.detach())
            targets.append(y)
    weights = torch.tensor(sizes, dtype=torch.float32, device=exp.device)
    mean_loss = (torch.stack(losses).float() @ weights / weights.sum()).item()
    if task.kind == "classification":
        return mean_loss, task.correct(torch.cat(outputs), torch.cat(targets)).item() / sum(sizes)
    return mean_loss, None


def train_step(exp: Experiment, x: torch.Tensor, y: torch.Tensor, *, log: RunLog | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and one optimizer step on a batch: (outputs, loss).

    With `compile: true`, a compiler failure switches the run to eager mode, with one line, and retries the
    batch; nothing has been updated yet when compiling fails.
    """
    try:
        return _step(exp, x, y)
    except Exception as exc:
        if not (exp.steps.compiled and is_compile_failure(exc)):
            raise
        exp.steps = Steps.build(exp.model, exp.loss_fn, exp.optimizer, compile=False)
        reason = str(exc).strip().split("\n")[0][:160] or type(exc).__name__
        if log is not None:
            log.print(f"[yellow]note[/]   compile: true failed ({reason}), so this run trains in eager mode")
        return _step(exp, x, y)


def _step(exp: Experiment, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with exp.speed.autocast(exp.device):
        output, loss = exp.steps.forward_loss(x, y)  # (batch, outputs), ()
    exp.optimizer.zero_grad(set_to_none=True)
    if exp.scaler is None:
        loss.backward()
        exp.steps.optimizer_step()
    else:  # fp16: scale the loss so that small gradients do not underflow
        exp.scaler.scale(loss).backward()
        exp.scaler.step(exp.optimizer)
        exp.scaler.update()
    return output, loss


def fit(exp: Experiment, run: Run, log: RunLog, *, resume: dict[str, Any] | None = None,
        loggers: Loggers | None = None, prune: Callable[[dict[str, float]], str | None] | None = None
        ) -> dict[str, Any]:
    """Train for `epochs`, keeping the best and last checkpoints; returns the summary written to summary.json.

    `resume` is a last.pth checkpoint of this run: training continues exactly where it stopped. `prune` (a sweep's
    pruner) sees each epoch's metrics row and returns why to stop now, or None to go on.
    """
    cfg, task, stopping = exp.config, exp.task, exp.config.early_stopping
    book = Bookkeeping.start(exp, run, resume=resume, loggers=loggers)
    state = book.state
    threads = ThreadPolicy(cfg.threads, device=exp.device, say=log.print)
    compiling = CompileClock(exp.speed.compile)
    stop = Stop("completed", f"ran all {cfg.epochs} epochs")
    started = time.perf_counter() - state.seconds  # a resumed run counts the sessions before it

    with _progress(cfg.epochs, state.epoch, enabled=log.quiet_console) as bar, InterruptGuard() as guard, compiling:
        try:
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                epoch_start = time.perf_counter()
                lr = exp.optimizer.param_groups[0]["lr"]
                train_loss, train_accuracy = train_one_epoch(exp, threads=threads, log=log)
                train_seconds = time.perf_counter() - epoch_start
                val_loss, val_output = evaluate(exp.model, exp.data.val, loss_fn=exp.loss_fn,
                                                forward=exp.steps.eval_forward, speed=exp.speed)
                if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                    # The weights have diverged: record nothing from this epoch, keep the checkpoints of the last one.
                    stop = diverged(train_loss, val_loss, epoch=epoch, last_good=state.epoch)
                    break
                row = metrics_row(exp, val_output, epoch=epoch, lr=lr, train_loss=train_loss,
                                  train_accuracy=train_accuracy, val_loss=val_loss)
                row.update(train_seconds=train_seconds, epoch_seconds=time.perf_counter() - epoch_start)
                row.update({"compile_seconds": compiling.take()} if exp.speed.compile else {})  # within epoch_seconds

                # metrics.csv, the loop state, the scheduler's step and the checkpoints; an interrupt waits for this
                # block, so that they always agree
                with guard.deferred():
                    book.keep(exp, row, seconds=time.perf_counter() - started)

                log.epoch(epoch_line(row, cfg.epochs, task.kind))
                bar(epoch, row, task.kind)
                if early := early_stop(state, row[stopping.monitor], stopping):
                    stop = early
                    break
                if prune is not None and (reason := prune(row)):
                    stop = Stop("pruned", reason)
                    break
        except (KeyboardInterrupt, Interrupted):
            # A partly trained epoch is dropped: the checkpoints keep the last finished one.
            stop = Stop("interrupted", f"interrupted after epoch {state.epoch}")
        finally:
            book.close()

    summary = finish(exp, run, book, stop=stop, threads=threads, log=log,
                     seconds={"total": time.perf_counter() - started, "compile": compiling.total})
    if stop.reason == "interrupted":
        raise Interrupted(stop.detail)
    return summary


@dataclass
class Bookkeeping:
    """What a run keeps of its epochs: metrics.csv, the loop state, the best weights and the two checkpoints."""

    state: LoopState
    best_weights: StateDict | None
    metrics: MetricsWriter
    saver: _CheckpointSaver
    loggers: Loggers | None = None

    @classmethod
    def start(cls, exp: Experiment, run: Run, *, resume: dict[str, Any] | None = None,
              loggers: Loggers | None = None) -> Bookkeeping:
        """A new run's, or, given its last.pth, a resumed run's: the live experiment then continues from it."""
        state, best_weights = restore_training_state(exp, resume) if resume else (LoopState(), None)
        # On resume, metrics.csv is rewritten from the checkpoint, so no epoch is missing or repeated.
        metrics = MetricsWriter(run.metrics_path, epoch_columns(exp.task.kind, compile=exp.speed.compile),
                                rows=state.history if resume else None)
        return cls(state, best_weights, metrics, _CheckpointSaver(run, state.history), loggers)

    def keep(self, exp: Experiment, row: dict[str, float], *, seconds: float) -> None:
        """Keep a finished epoch: its metrics.csv row, the loop state (`seconds` trained so far), the best weights,
        the scheduler's end-of-epoch step, and the checkpoints."""
        stopping, state = exp.config.early_stopping, self.state
        self.metrics.write(row)
        state.seconds = seconds
        if state.record(row, stopping):
            self.best_weights = snapshot(exp.model.state_dict())
        if exp.scheduler is not None and exp.scheduler_interval == "epoch":
            step_after_epoch(exp.scheduler, row[stopping.monitor])
        # checkpoint after the scheduler step, so that resuming continues with the next epoch's lr
        best = best_checkpoint(exp, state, weights=self.best_weights) if state.best_epoch == state.epoch else None
        self.saver.update(best=best, last=last_checkpoint(exp, state, best_weights=self.best_weights))
        if self.loggers is not None:
            self.loggers.epoch(row)  # TensorBoard, MLflow: copies of the metrics.csv row

    def close(self) -> None:
        try:
            self.saver.flush()  # a full disk can fail this too: the previous checkpoints stay as they were
        finally:
            self.metrics.close()


def finish(exp: Experiment, run: Run, book: Bookkeeping, *, stop: Stop, threads: ThreadPolicy,
           seconds: dict[str, float], log: RunLog | None = None) -> dict[str, Any]:
    """The end of training: test the best weights (unless `test: false`), write their predictions, and write
    summary.json; returns it. `log` is the run's train.log, for the note that the test split was left alone."""
    test, notes = None, list(exp.data.notes)
    if not exp.config.test and exp.data.test is not None:
        # a cross-validation trial must not see the test split: it is tested once, after the choice
        notes.append(f"test: false, so the {len(exp.data.test)} test rows were not evaluated (test the best "
                     f"weights with: nnrun eval {run.best_path})")
        if log is not None:
            log.print(f"[yellow]note[/]   {notes[-1]}")
    elif book.best_weights is not None and stop.reason != "interrupted" and exp.data.test is not None:
        exp.model.load_state_dict(book.best_weights)
        test, output = split_report(exp.model, exp.data.test, loss_fn=exp.loss_fn, task=exp.task, speed=exp.speed)
        with writing(run.predictions_path):
            exp.task.predictions(output, exp.data.test.y, exp.data.test.rows).to_csv(run.predictions_path,
                                                                                     index=False)
    summary = _summary(exp, run, book.state, stop=stop, test=test, notes=notes, threads=threads, seconds=seconds)
    with writing(run.summary_path):
        run.summary_path.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return summary


def metrics_row(exp: Experiment, val_output: torch.Tensor, *, epoch: int, lr: float, train_loss: float,
                 train_accuracy: float | None, val_loss: float) -> dict[str, float]:
    """One metrics.csv row, without the timings: losses, train accuracy, and the val metrics in original units."""
    row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss}
    if exp.task.kind == "classification":
        row["train_accuracy"] = train_accuracy
    row.update({f"val_{k}": v for k, v in exp.task.epoch_metrics(val_output, exp.data.val.y).items()})
    return row


def diverged(train_loss: float, val_loss: float, *, epoch: int, last_good: int) -> Stop:
    """The stop of a run whose loss became NaN or infinite at `epoch`; `last_good` is its last finished epoch."""
    which, value = ("train", train_loss) if not math.isfinite(train_loss) else ("val", val_loss)
    kept = f"last.pth holds epoch {last_good}" if last_good else "no epoch finished, so no checkpoint was written"
    return Stop("non_finite_loss", f"{which} loss became {value} at epoch {epoch}, so training stopped; {kept} "
                                   f"(lower optimizer.lr, or check the data for extreme values)")


def early_stop(state: LoopState, monitored: float, stopping: EarlyStopping) -> Stop | None:
    """Why to stop now: `stop_at` is reached, or patience has run out; else None."""
    if stopping.stop_at is not None and _reached(monitored, stopping.stop_at, stopping.mode):
        sign = "<=" if stopping.mode == "min" else ">="
        return Stop("stop_at", f"{stopping.monitor} {format_number(monitored)} {sign} stop_at {stopping.stop_at} "
                               f"at epoch {state.epoch}")
    if stopping.patience is not None and state.bad_epochs >= stopping.patience:
        return Stop("early_stopping", f"{stopping.monitor} did not improve by more than {stopping.min_delta} for "
                                      f"{stopping.patience} epochs (best at epoch {state.best_epoch})")
    return None


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


def _summary(exp: Experiment, run: Run, state: LoopState, *, stop: Stop, test: dict[str, Any] | None,
             notes: list[str], threads: ThreadPolicy, seconds: dict[str, float]) -> dict[str, Any]:
    cfg = exp.config
    by_epoch = {row["epoch"]: row for row in state.history}
    metric_names = ["loss", *[m.removeprefix("val_") for m in EPOCH_METRICS[exp.task.kind] if m.startswith("val_")]]

    def val_of(row: dict[str, float] | None) -> dict[str, float] | None:
        return {name: row[f"val_{name}"] for name in metric_names} if row else None

    return {
        "name": cfg.name,
        "run_dir": str(run.root),
        "task": exp.task.kind,
        "stop_reason": stop.reason,
        "stop_detail": stop.detail,
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
        "speed": exp.speed.to_dict(),
        "seconds": {**seconds, "train": sum(r["train_seconds"] for r in state.history)},
        "resumed": state.resumed,
        "threads": threads.summary(),
        "notes": notes,
        "versions": versions(),
    }


def epoch_line(row: dict[str, float], epochs: int, task: str) -> str:
    """An epoch's line in train.log: `epoch  3/20  lr 0.001  train_loss ...  0.05s`."""
    width = len(str(epochs))
    parts = [f"epoch {row['epoch']:>{width}}/{epochs}", f"lr {format_number(row['lr'], digits=3)}"]
    parts += [f"{name} {format_number(row[name])}" for name in ("train_loss", "val_loss", *EPOCH_METRICS[task])
              if name in row]
    parts.append(f"{row['epoch_seconds']:.2f}s")
    return "  ".join(parts)


def _reached(value: float, threshold: float, mode: str) -> bool:
    return value <= threshold if mode == "min" else value >= threshold


class InterruptGuard:
    """Ctrl-C and SIGTERM raise Interrupted at once, except inside `deferred()`, where they wait for its end."""

    def __init__(self):
        self.deferring = False
        self.pending = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
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
        metric = next((f"{m} {format_number(row[m])}" for m in EPOCH_METRICS[task] if m.startswith("val_")), "")
        self.progress.update(self.task_id, completed=epoch,
                             description=f"train_loss {format_number(row['train_loss'])}  "
                                         f"val_loss {format_number(row['val_loss'])}  {metric}")


@contextmanager
def _progress(epochs: int, done: int, *, enabled: bool):
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(TextColumn("[bold]epochs"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.description}"), console=console)
    with progress:
        yield _Bar(progress, progress.add_task("", total=epochs, completed=done))


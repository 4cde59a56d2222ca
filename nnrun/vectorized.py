"""Trials trained together: a sweep's trials that differ only in learning rate or weight decay train as one
stacked model, and each still ends with its own run folder, exactly as `nnrun train` leaves it.

The trials' weights are stacked into one (trials, parameters) tensor; each step runs the model's own forward with
every trial's weights (`functional_call` under `vmap`) on the same batch. Each trial's loss is the mean over the
batch, as in sequential training, and the sum of the trials' losses gives each trial its own gradient.

The per-trial learning rate: for SGD, Adam, AdamW, Adagrad and RMSprop the step is linear in lr, and the optimizer's
state (moments, momentum buffers, sums) does not depend on lr. So one torch optimizer steps all trials at lr 1, and
each trial's change is scaled by its own lr, which its own scheduler sets. Weight decay is applied per trial, as torch
applies it: added to the gradient (L2), or, for AdamW, shrinking the weights by lr x weight_decay.

A trial that stops (early stopping, stop_at, a non-finite loss) leaves the stack, and the others go on. The timing
columns of metrics.csv hold the stacked epoch's wall time, which every trial shared.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from nnrun.config import Config
from nnrun.console import RunLog
from nnrun.data.bundle import SplitTensors
from nnrun.data.streaming import StreamedSplit
from nnrun.errors import Interrupted
from nnrun.evaluation import EVAL_BATCH
from nnrun.experiment import Experiment, build_experiment, resolve_device
from nnrun.loggers import Loggers, flatten
from nnrun.models import uses_batchnorm
from nnrun.optimizers import OPTIMIZERS
from nnrun.runs import Run
from nnrun.session import Session, close_session, open_session
from nnrun.speed import Speed
from nnrun.threads import ThreadPolicy
from nnrun.training import (
    Bookkeeping,
    InterruptGuard,
    Stop,
    diverged,
    early_stop,
    epoch_line,
    finish,
    metrics_row,
)

# torch's warning when a scheduler steps before its optimizer ever did (a regular expression, from the start).
SCHEDULER_FIRST = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"
# What stacked trials may differ in; everything else in their configs must be equal.
VARYING = ("name", "optimizer.lr", "optimizer.weight_decay")
# Optimizers whose step is linear in lr, with a state that does not depend on lr.
LINEAR_IN_LR = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
# Layers without weights or randomness that act on each value alone, and on each row alone (over its features).
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Identity)
ROW_WISE = (nn.Softmax, nn.LogSoftmax)
# Losses that are the mean of a loss per value.
PER_VALUE_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
# What a scheduler may change besides lr (one-cycle cycles the momentum): the same in every trial, so copied over.
SHARED_HYPERPARAMETERS = ("momentum", "betas")


def stack_problem(configs: Sequence[Config]) -> str | None:
    """None when these trial configs can train as one stacked model; otherwise one line saying why not."""
    if len(configs) < 2:
        return "a single trial has nothing to be stacked with"
    may_differ = f"stacked trials may differ only in {' and '.join(VARYING[1:])}"
    first = flatten(configs[0].to_dict())
    differ = sorted({key for cfg in configs[1:] for key, value in flatten(cfg.to_dict()).items()
                     if key not in VARYING and first.get(key) != value} |
                    {key for cfg in configs[1:] for key in first.keys() - flatten(cfg.to_dict()).keys()})
    if "seed" in differ:
        return (f"the trials differ in seed, which also sets the data split and the batch order that stacked trials "
                f"share ({may_differ})")
    if differ:
        return f"the trials differ in {', '.join(differ)} ({may_differ})"
    cfg = configs[0]
    if cfg.optimizer.type not in LINEAR_IN_LR:
        return (f"optimizer {cfg.optimizer.type} is not one whose step is known to be linear in lr "
                f"({', '.join(LINEAR_IN_LR)} are)")
    if uses_batchnorm(cfg.model.type, cfg.model.kwargs):
        return "the model has batch norm, whose running statistics are not stacked"
    if cfg.compile:
        return "compile: true, and a stacked model is not compiled, so it would not compute as the compiled trials do"
    device = resolve_device(cfg.device)
    speed, _ = Speed.resolve(compile=False, precision=cfg.precision, device=device, images=False)
    if speed.precision != "fp32":
        return f"precision {speed.precision} on {device.type}: stacked trials train in fp32 only"
    return None


def train_together(configs: Sequence[Config], runs: Sequence[Run], *, data_dir: Path,
                   log: Callable[[Run], RunLog], plots: bool = True) -> list[dict[str, Any] | Exception]:
    """Train the trials as one stacked model, each in its own run folder, which ends exactly as `nnrun train` would
    leave it (without plots and report when `plots=False`, as a sweep's sequential trials). `log` opens a trial's
    train.log (session.run_log is nnrun train's).

    Returns, per trial, its summary (what summary.json holds) or the exception that failed it: a diverged trial
    (non-finite loss) gets the UserError `nnrun train` raises, once its folder is complete, and the others go on.
    A problem every trial has (the config, the data) raises before any training; Ctrl-C or SIGTERM stops every trial,
    completes their folders, and raises Interrupted.
    """
    if problem := stack_problem(configs):
        raise ValueError(f"these trials cannot be stacked: {problem}")
    exps = [build_experiment(cfg, data_dir=data_dir) for cfg in configs]
    results: list[dict[str, Any] | Exception | None] = [None] * len(exps)
    sessions: dict[int, Session] = {}
    for k, (exp, run) in enumerate(zip(exps, runs, strict=True)):
        try:
            sessions[k] = open_session(exp, run, open_log=log, latest=False)
        except Exception as exc:  # noqa: BLE001 - this trial's folder could not be started; the others go on
            results[k] = exc
    opened = list(sessions.values())
    outcomes = fit_together([exps[k] for k in sessions], [s.run for s in opened], [s.log for s in opened],
                            loggers=[s.loggers for s in opened]) if opened else []
    interrupted = None
    for (k, session), outcome in zip(sessions.items(), outcomes, strict=True):
        try:
            results[k] = close_session(session, lambda outcome=outcome: _returned(outcome), plots=plots)
        except Interrupted as exc:
            interrupted = exc
        except Exception as exc:  # noqa: BLE001 - it failed this trial only
            results[k] = exc
    if interrupted is not None:
        raise Interrupted(f"{interrupted} (and so are the other trials trained with it)")
    return results


def _returned(outcome: dict[str, Any] | BaseException) -> dict[str, Any]:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def fit_together(exps: Sequence[Experiment], runs: Sequence[Run], logs: Sequence[RunLog], *,
                 loggers: Sequence[Loggers | None] | None = None) -> list[dict[str, Any] | BaseException]:
    """fit() for trials that stack_problem accepts: each trial's metrics.csv, checkpoints and summary.json are the
    ones fit() writes. Returns, per trial, its summary, or what fit() would raise: Interrupted, or the OSError of a
    write that failed.
    """
    for exp in exps[1:]:  # the same data and batches in every trial: keep one copy, and one batch order
        exp.data, exp.train_batches = exps[0].data, exps[0].train_batches
    trials = [_Trial(exp, run, log, logger)
              for exp, run, log, logger in zip(exps, runs, logs, loggers or [None] * len(exps), strict=True)]
    _train_stacked(trials)
    return [trial.failure if trial.failure is not None else
            Interrupted(trial.stop.detail) if trial.stop.reason == "interrupted" else trial.summary
            for trial in trials]


@dataclass
class _Trial:
    """One stacked trial: its experiment and run folder, its bookkeeping, and how it ended."""

    exp: Experiment
    run: Run
    log: RunLog
    loggers: Loggers | None
    book: Bookkeeping | None = None
    stop: Stop | None = None  # while None, it trains on
    failure: BaseException | None = None  # a write that failed (a full disk): this trial stops, unfinished
    summary: dict[str, Any] | None = None

    @property
    def training(self) -> bool:
        return self.stop is None and self.failure is None


def _train_stacked(trials: list[_Trial]) -> None:
    """fit()'s loop for all trials at once: one stacked training pass and evaluation, then each trial's epoch."""
    exp = trials[0].exp
    cfg, task, stopping = exp.config, exp.task, exp.config.early_stopping
    threads = ThreadPolicy(cfg.threads, device=exp.device, say=lambda text: _say(trials, text))
    started = time.perf_counter()
    for trial in trials:
        try:
            trial.book = Bookkeeping.start(trial.exp, trial.run, loggers=trial.loggers)
        except OSError as exc:
            trial.failure = exc
    live = [trial for trial in trials if trial.training]
    stack = _Stack([trial.exp for trial in live]) if live else None

    with InterruptGuard() as guard, warnings.catch_warnings():
        # each trial's scheduler sets the lr of its own optimizer, which never steps (the stack's does): torch would
        # take that for a scheduler stepped before its optimizer, and say so once per trial
        warnings.filterwarnings("ignore", message=SCHEDULER_FIRST, category=UserWarning)
        try:
            for epoch in range(1, cfg.epochs + 1):
                if not live:
                    break
                epoch_start = time.perf_counter()
                lrs = [trial.exp.optimizer.param_groups[0]["lr"] for trial in live]
                train_losses, train_accuracies = stack.train_one_epoch(threads=threads)
                train_seconds = time.perf_counter() - epoch_start
                val_losses, val_outputs = stack.evaluate(exp.data.val)
                for i, trial in enumerate(live):
                    train_loss, val_loss = train_losses[i], val_losses[i]
                    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                        # The weights have diverged: record nothing from this epoch, keep the last one's checkpoints.
                        trial.stop = diverged(train_loss, val_loss, epoch=epoch, last_good=trial.book.state.epoch)
                        continue
                    stack.share_state(i, trial.exp)  # for last.pth
                    row = metrics_row(trial.exp, val_outputs[i], epoch=epoch, lr=lrs[i], train_loss=train_loss,
                                      train_accuracy=train_accuracies[i], val_loss=val_loss)
                    row.update(train_seconds=train_seconds, epoch_seconds=time.perf_counter() - epoch_start)
                    with guard.deferred():
                        try:
                            trial.book.keep(trial.exp, row, seconds=time.perf_counter() - started)
                        except OSError as exc:
                            trial.failure = exc
                            continue
                    trial.log.epoch(epoch_line(row, cfg.epochs, task.kind))
                    trial.stop = early_stop(trial.book.state, row[stopping.monitor], stopping)
                if not all(trial.training for trial in live):
                    rows = [i for i, trial in enumerate(live) if trial.training]
                    live = [live[i] for i in rows]
                    if live:
                        stack.keep(rows)
        except (KeyboardInterrupt, Interrupted):
            for trial in live:
                if trial.training:  # a partly trained epoch is dropped: the checkpoints keep the last finished one
                    trial.stop = Stop("interrupted", f"interrupted after epoch {trial.book.state.epoch}")
        finally:
            for trial in trials:
                if trial.book is not None:
                    try:
                        trial.book.close()
                    except OSError as exc:
                        trial.failure = trial.failure or exc

    for trial in trials:
        if trial.failure is None:
            trial.stop = trial.stop or Stop("completed", f"ran all {cfg.epochs} epochs")
            try:
                trial.summary = finish(trial.exp, trial.run, trial.book, stop=trial.stop, threads=threads,
                                       seconds={"total": time.perf_counter() - started, "compile": 0.0})
            except OSError as exc:
                trial.failure = exc


def _matmul_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The layers of a model made only of Linear layers and row-wise activations (an MLP without dropout or batch
    norm, a linear model), which `_Stack` computes as batched matmuls; None for any other model (vmap runs it)."""
    if not isinstance(model, nn.Sequential) or any(True for _ in model.buffers()):
        return None
    layers = list(model.named_children())
    if all(isinstance(layer, (nn.Linear, *ELEMENTWISE)) or (isinstance(layer, ROW_WISE) and layer.dim in (1, -1))
           for _, layer in layers):
        return layers
    return None


def _per_value(loss_fn: nn.Module) -> nn.Module | None:
    """For a loss that is the mean of a loss per value (MSE, L1, Huber), that loss per value; else None."""
    if isinstance(loss_fn, PER_VALUE_LOSSES) and loss_fn.reduction == "mean":
        per_value = copy.copy(loss_fn)
        per_value.reduction = "none"
        return per_value
    return None


def _say(trials: list[_Trial], text: str) -> None:
    """A line for every trial's train.log, shown once on the console."""
    for i, trial in enumerate(trials):
        trial.log.print(text, console_too=i == 0)


class _Stack:
    """The training trials' weights as one (trials, parameters) tensor, and one optimizer that steps it at lr 1.

    The model of the first trial runs the forward pass for all (functional_call swaps in each trial's weights);
    each trial's own model holds views of its weights, and its optimizer its state for the checkpoints.
    """

    def __init__(self, exps: list[Experiment]):
        self.exps = exps
        self.model, self.loss_fn, self.task = exps[0].model, exps[0].loss_fn, exps[0].task
        named = dict(self.model.named_parameters())
        self.names = list(named)
        self.shapes = [p.shape for p in named.values()]
        self.sizes = [p.numel() for p in named.values()]
        self.buffers = dict(self.model.named_buffers())  # no batch norm: buffers are constants, equal in every trial
        self.layers = _matmul_layers(self.model)
        self.per_value_loss = _per_value(self.loss_fn)
        self.weights = torch.stack([torch.cat([p.detach().reshape(-1) for p in exp.model.parameters()])
                                    for exp in exps]).requires_grad_()  # (trials, parameters)
        self.optimizer = self._optimizer(self.weights)
        self.decoupled = isinstance(self.optimizer, torch.optim.AdamW)
        self._share_weights()

    def _optimizer(self, weights: torch.Tensor) -> torch.optim.Optimizer:
        settings = self.exps[0].config.optimizer
        return OPTIMIZERS.build(settings.type, [weights], **{**settings.kwargs, "lr": 1.0, "weight_decay": 0.0})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every trial's outputs for one batch: (trials, batch, outputs)."""
        weights = self._weights_by_name()
        if self.layers is not None and x.dim() == 2:
            return self._matmul_forward(weights, x)
        return vmap(self._forward, in_dims=(0, None), randomness="same")(weights, x)

    def _forward(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One trial's outputs (batch, outputs): the model's own forward with that trial's weights."""
        return functional_call(self.model, (weights, self.buffers), (x,))

    def _matmul_forward(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """What vmap computes for a stack of Linear layers and row-wise activations, as batched matmuls: vmap's
        Linear costs 2x more per training step on the 2-16-8-1 MLP."""
        trials = len(self.exps)
        h, stacked = x, False  # (batch, features): the same for every trial until the first Linear layer
        for name, layer in self.layers:
            if isinstance(layer, nn.Linear):
                h = h if stacked else h.expand(trials, *h.shape)  # (trials, batch, features)
                weight, bias = weights[f"{name}.weight"].transpose(1, 2), weights.get(f"{name}.bias")
                h = torch.bmm(h, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, weight)
                stacked = True
            elif not stacked or isinstance(layer, ELEMENTWISE):
                h = layer(h)
            else:  # a row-wise layer (softmax over features) sees every trial's rows as one batch
                h = layer(h.flatten(0, 1)).unflatten(0, (trials, -1))
        return h

    def _weights_by_name(self) -> dict[str, torch.Tensor]:
        rows = len(self.exps)
        return {name: w.view(rows, *shape)
                for name, w, shape in zip(self.names, self.weights.split(self.sizes, dim=1), self.shapes, strict=True)}

    def train_one_epoch(self, *, threads: ThreadPolicy) -> tuple[list[float], list[float | None]]:
        """One pass over the shared training batches: each trial's mean loss, and accuracy for classification."""
        exps, task = self.exps, self.task
        step_schedulers = [exp.scheduler for exp in exps if exp.scheduler is not None
                           and exp.scheduler_interval == "step"]
        self.model.train()
        losses, sizes, outputs, targets = [], [], [], []
        for x, y in threads.timed(exps[0].train_batches):
            output, loss = self.step(x, y)  # (trials, batch, outputs), (trials,)
            for scheduler in step_schedulers:
                scheduler.step()
            losses.append(loss.detach())
            sizes.append(len(x))
            if task.kind == "classification":
                outputs.append(output.detach())
                targets.append(y)
        weights = torch.tensor(sizes, dtype=torch.float32, device=self.weights.device)
        mean_losses = (weights @ torch.stack(losses).float() / weights.sum()).tolist()  # (batches,) @ (batches, trials)
        if task.kind != "classification":
            return mean_losses, [None] * len(exps)
        output, target = torch.cat(outputs, dim=1), torch.cat(targets)
        return mean_losses, [task.correct(output[i], target).item() / sum(sizes) for i in range(len(exps))]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and one optimizer step for every trial on one batch: (outputs, losses)."""
        output = self.forward(x)  # (trials, batch, outputs)
        losses = self.losses(output, y)  # (trials,)
        self.weights.grad = None
        losses.sum().backward()  # a trial's loss depends on its own weights only: each gets its own gradient
        lr, decay = self._per_trial("lr"), self._per_trial("weight_decay")  # (trials, 1)
        self._share_hyperparameters()
        with torch.no_grad():
            before = self.weights.detach().clone()
            if not self.decoupled and any(exp.optimizer.param_groups[0]["weight_decay"] for exp in self.exps):
                self.weights.grad.add_(before * decay)  # L2 weight decay, as torch adds it: grad + wd * weight
            self.optimizer.step()
            # each trial's change at lr 1, scaled by its lr; AdamW first shrinks the weights by lr * weight_decay
            kept = before * (1 - lr * decay) if self.decoupled else before
            self.weights.sub_(before).mul_(lr).add_(kept)
        return output, losses

    def _per_trial(self, key: str) -> torch.Tensor:
        values = [exp.optimizer.param_groups[0][key] for exp in self.exps]
        return torch.tensor(values, dtype=self.weights.dtype, device=self.weights.device).unsqueeze(1)

    def _share_hyperparameters(self) -> None:
        group, leader = self.optimizer.param_groups[0], self.exps[0].optimizer.param_groups[0]
        for key in SHARED_HYPERPARAMETERS:
            if key in group:
                group[key] = leader[key]

    @torch.no_grad()
    def evaluate(self, split: SplitTensors | StreamedSplit) -> tuple[list[float], torch.Tensor]:
        """Each trial's mean loss over a split, and its outputs for every row: (trials, rows, outputs), in float32."""
        self.model.eval()
        output = torch.cat([self.forward(x) for x, _ in split.batches(EVAL_BATCH)], dim=1).float()
        return self.losses(output, split.y).tolist(), output

    def losses(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each trial's loss on the same targets, as the loss function gives it for that trial alone: (trials,)."""
        if self.per_value_loss is not None and y.shape == output.shape[1:]:  # 2x faster than vmap, with backward
            return self.per_value_loss(output, y.expand_as(output)).flatten(1).mean(1)
        return vmap(self.loss_fn, in_dims=(0, None))(output, y)

    def share_state(self, row: int, exp: Experiment) -> None:
        """Point one trial's optimizer at its part of the stacked optimizer state, as fit() would hold it (its
        model's weights are views of its row of the stack already)."""
        state, start = self.optimizer.state[self.weights], 0
        for p, size in zip(exp.model.parameters(), self.sizes, strict=True):
            exp.optimizer.state[p] = {key: value[row, start:start + size].view_as(p) if self._per_weight(value)
                                      else value for key, value in state.items()}
            start += size

    def keep(self, rows: list[int]) -> None:
        """Go on with these trials only (positions in the stack): the others have stopped.

        The stack's tensors are copied, so a stopped trial's model and optimizer keep the state it stopped with.
        """
        state = {key: value[rows] if self._per_weight(value) else copy.deepcopy(value)
                 for key, value in self.optimizer.state[self.weights].items()}
        self.exps = [self.exps[i] for i in rows]
        self.weights = self.weights.detach()[rows].requires_grad_()
        self.optimizer = self._optimizer(self.weights)
        self.optimizer.state[self.weights] = state
        self._share_weights()

    def _share_weights(self) -> None:
        """Make each trial's model parameters views of its row of the stack: its model is always current."""
        for row, exp in enumerate(self.exps):
            for p, view in zip(exp.model.parameters(), self.weights.detach()[row].split(self.sizes), strict=True):
                p.data = view.view_as(p)

    def _per_weight(self, value: Any) -> bool:
        """Is this optimizer state one value per weight (moments, buffers), rather than shared (the step count)?"""
        return isinstance(value, torch.Tensor) and value.shape == self.weights.shape

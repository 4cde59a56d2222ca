"""Assemble a validated config into live parts: device, data, task, model, loss, optimizer, scheduler."""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from nnrun.config import Config, task_problems
from nnrun.data.batching import BatchPlan
from nnrun.data.bundle import DataBundle, load_data
from nnrun.errors import UserError
from nnrun.losses import LOSSES
from nnrun.metrics import EPOCH_METRICS
from nnrun.models import build_model, hidden_activation_note
from nnrun.optimizers import OPTIMIZERS
from nnrun.schedulers import SCHEDULERS, Plan
from nnrun.speed import Speed, Steps
from nnrun.tasks import Task


@dataclass
class Experiment:
    """The parts `fit` runs, built from one config."""

    config: Config
    device: torch.device
    data: DataBundle
    task: Task
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None
    scheduler_interval: Literal["epoch", "step"]
    train_batches: BatchPlan
    speed: Speed = field(default_factory=Speed)
    steps: Steps | None = None  # the calls the loop makes, compiled when `compile: true`
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling
    notes: list[str] = field(default_factory=list)  # for the run's log: settings that could not be honoured

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = Steps.build(self.model, self.loss_fn, self.optimizer, compile=self.speed.compile)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable device is a UserError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device '{name}' was asked for, but CUDA is not available here "
                            f"(use device=auto or device=cpu)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} "
                            f"CUDA device(s) (use cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' was asked for, but MPS is not available here (use device=auto or device=cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return the generator that shuffles the training batches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def build_experiment(cfg: Config, *, data_dir: Path = Path("data")) -> Experiment:
    """Load the data (relative paths under `data_dir`), then build the model, loss, optimizer and scheduler."""
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed)
    data = load_data(cfg.data, seed=cfg.seed, device=device, data_dir=data_dir, config_dir=cfg.config_dir)
    task = _task(cfg, data, device)
    speed, notes = Speed.resolve(compile=cfg.compile, precision=cfg.precision, device=device,
                                 images=data.input_stats is not None)
    notes += [note] if (note := hidden_activation_note(cfg.model.kwargs)) else []

    with _user_settings("model"):
        model = build_model(cfg.model.type, cfg.model.kwargs, in_shape=data.in_shape, out_features=task.out_features,
                            output_activation=cfg.model.output_activation, input_stats=data.input_stats,
                            channels_last=speed.channels_last)
    model = model.to(device)
    with _user_settings("loss"):
        loss_fn = LOSSES.build(cfg.loss.type, **cfg.loss.kwargs).to(device)
    with _user_settings("optimizer"):
        optimizer = OPTIMIZERS.build(cfg.optimizer.type, model.parameters(), **cfg.optimizer.kwargs)

    batch_size = None if cfg.batch_size == "full" else cfg.batch_size
    train_batches = data.train.batches(batch_size, shuffle=True, generator=generator, augment=data.augment)
    scheduler, interval = None, "epoch"
    if cfg.scheduler is not None:
        entry = SCHEDULERS.get(cfg.scheduler.type)
        plan = Plan(epochs=cfg.epochs, steps_per_epoch=len(train_batches), mode=cfg.early_stopping.mode)
        with _user_settings("scheduler"):
            scheduler = entry.fn(optimizer, plan, **cfg.scheduler.kwargs)
        interval = entry.meta["interval"]
    return Experiment(cfg, device, data, task, model, loss_fn, optimizer, scheduler, interval, train_batches,
                      speed=speed, scaler=speed.grad_scaler(device), notes=notes)


def _task(cfg: Config, data: DataBundle, device: torch.device) -> Task:
    """What the outputs mean, checked against the data now that its task and classes are known."""
    loss = LOSSES.get(cfg.loss.type)
    problems = task_problems(cfg.loss.type, data.task, f"data '{cfg.data.type}'")
    monitor = cfg.early_stopping.monitor
    other = "regression" if data.task == "classification" else "classification"
    if monitor in EPOCH_METRICS[other]:
        choices = ", ".join(["val_loss", "train_loss", *EPOCH_METRICS[data.task]])
        problems.append(f"early_stopping.monitor '{monitor}' is a {other} metric, but data '{cfg.data.type}' is "
                        f"{data.task} (choose one of {choices})")
    n_classes = len(data.class_names) if data.class_names else 0
    if loss.meta.get("binary") and n_classes != 2:
        problems.append(f"loss '{cfg.loss.type}' is for two classes, but data '{cfg.data.type}' has {n_classes} "
                        f"(use loss cross_entropy)")
    weight = cfg.loss.kwargs.get("weight")
    if weight is not None and len(weight) != n_classes:
        problems.append(f"loss.weight has {len(weight)} values, but data '{cfg.data.type}' has {n_classes} classes "
                        f"(give one weight per class, in the order {', '.join(data.class_names or [])})")
    if problems:
        raise UserError(*problems)
    return Task.for_loss(cfg.loss.type, kind=data.task, class_names=data.class_names, n_targets=data.n_targets,
                         target_scaling=data.preprocessing.get("target"), device=device)


@contextmanager
def _user_settings(section: str):
    """torch validates some settings itself (a negative lr, nesterov without momentum): report them as ours."""
    try:
        yield
    except ValueError as exc:
        raise UserError(f"{section} settings are invalid: {exc} (fix {section} in the config)") from None

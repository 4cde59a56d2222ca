"""What each CLI command does, once Typer has parsed its arguments: config in, work done, results printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from rich.text import Text

from nnrun.config import DATA_KEYS, Config, apply_overrides, load_yaml, validate
from nnrun.console import RunLog, console, metrics_table, model_table
from nnrun.data.datasets import DATASETS
from nnrun.errors import Interrupted, UserError
from nnrun.experiment import Experiment, build_experiment
from nnrun.losses import LOSSES
from nnrun.models import MODELS, OUTPUT_ACTIVATIONS, summarize
from nnrun.optimizers import OPTIMIZERS
from nnrun.plots import plot_run
from nnrun.registry import Registry
from nnrun.runs import Run
from nnrun.schedulers import SCHEDULERS
from nnrun.training import fit

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (DATASETS, MODELS, LOSSES, OPTIMIZERS, SCHEDULERS)}
# Keys nnrun handles itself for every entry of a registry.
SHARED_KEYS = {
    "datasets": f"every dataset also takes: {', '.join(DATA_KEYS)}",
    "models": f"every model also takes: output_activation: {{auto, {', '.join(OUTPUT_ACTIVATIONS)}}} "
              f"(auto: what the loss needs)",
}


def load_config(path: Path, overrides: list[str], *, name: str | None = None, device: str | None = None) -> Config:
    """Read the YAML, apply key=value overrides (then --name and --device), and validate it all."""
    extra = [f"name={name}"] if name else []
    extra += [f"device={device}"] if device else []
    raw = apply_overrides(load_yaml(path), [*overrides, *extra])
    return validate(raw, source=Path(path))


def train(config_path: Path, overrides: list[str], *, runs_dir: Path, data_dir: Path = Path("data"),
          name: str | None = None, device: str | None = None) -> dict[str, Any]:
    """`nnrun train`: validate, build, create the run folder, fit, test, plot; returns the summary."""
    cfg = load_config(config_path, overrides, name=name, device=device)
    exp = build_experiment(cfg, data_dir=data_dir)  # every config and data problem surfaces here, before a folder exists
    run = Run.create(runs_dir, cfg.name)
    run.config_path.write_text(cfg.to_yaml(), encoding="utf-8")
    log = RunLog(run.log_path, quiet_console=console.is_terminal)
    try:
        _print_header(exp, run, log)
        try:
            summary = fit(exp, run, log)
        except Interrupted as exc:
            plot_run(run.root)
            message = f"{exc}; checkpoints/last.pth, metrics.csv and plots are saved in {run.root}"
            log.print(f"interrupted: {message}", console_too=False)
            raise Interrupted(message) from None
        plot_run(run.root)
        _print_result(summary, log)
    finally:
        log.close()
    if summary["stop_reason"] == "non_finite_loss":
        raise UserError(summary["stop_detail"])
    return summary


def check(config_path: Path, overrides: list[str], *, data_dir: Path = Path("data"),
          device: str | None = None) -> None:
    """`nnrun check`: validate, build data and model, run one batch forward and backward; write nothing."""
    cfg = load_config(config_path, overrides, device=device)
    exp = build_experiment(cfg, data_dir=data_dir)
    console.print(f"[green]config ok[/]: {config_path}")
    console.print(_data_table(exp))
    for note in exp.data.notes:
        console.print(f"[yellow]note[/]   {note}", soft_wrap=True)
    x, y = next(iter(exp.train_batches))
    console.print(model_table(summarize(exp.model, x)))
    exp.model.train()
    loss = exp.loss_fn(exp.model(x), y)
    loss.backward()
    grads = [p.grad for p in exp.model.parameters() if p.requires_grad]
    if not torch.isfinite(loss) or any(g is None or not torch.isfinite(g).all() for g in grads):
        raise UserError(f"one training batch gave loss {loss.item()} or non-finite gradients "
                        f"(check the data for extreme values, or lower optimizer.lr)")
    console.print(f"one batch of {len(x)} rows: loss {loss.item():.4f}, gradients finite; "
                  f"device {exp.device}; nothing was written")


def list_components(kind: str | None) -> None:
    """`nnrun list`: registered names with their parameters, defaults and descriptions."""
    kinds = [kind] if kind else list(REGISTRIES)
    for name in kinds:
        table = Table(title=name, title_justify="left", caption=SHARED_KEYS.get(name), caption_justify="left")
        table.add_column("name", style="bold")
        table.add_column("parameters", overflow="fold")
        table.add_column("description")
        for entry in REGISTRIES[name]:
            params = "\n".join(p.describe() for p in entry.params.values()) or "-"
            table.add_row(entry.name, Text(params), Text(entry.doc))
        console.print(table)


def _data_table(exp: Experiment) -> Table:
    data = exp.data
    table = Table(title=f"data: {exp.config.data.type} ({data.task})", title_justify="left")
    for column in ("split", "rows", "x shape", "y shape"):
        table.add_column(column)
    for split_name, split in data.splits.items():
        table.add_row(split_name, str(len(split)), str(tuple(split.x.shape)), str(tuple(split.y.shape)))
    return table


def _print_header(exp: Experiment, run: Run, log: RunLog) -> None:
    data, cfg = exp.data, exp.config
    rows = " / ".join(f"{name} {len(split)}" for name, split in data.splits.items())
    target = f"{len(data.class_names)} classes" if data.class_names else f"{data.n_targets} target(s)"
    params = sum(p.numel() for p in exp.model.parameters())
    log.print(f"[bold]nnrun train[/] {cfg.name} -> {run.root}")
    log.print(f"data   {cfg.data.type}: {data.task}, {target}, {len(data.feature_names)} features; rows {rows}")
    for note in data.notes:
        log.print(f"[yellow]note[/]   {note}")
    log.print(f"model  {cfg.model.type}: {params:,} parameters; loss {cfg.loss.type}; "
              f"optimizer {cfg.optimizer.type}; device {exp.device}")


def _print_result(summary: dict[str, Any], log: RunLog) -> None:
    failed = summary["stop_reason"] == "non_finite_loss"  # the CLI shows it as the error line
    style = "red" if failed else "green"
    log.print(f"[{style}]{summary['stop_reason']}[/]: {summary['stop_detail']}", console_too=not failed)
    if summary["best_epoch"]:
        log.print(f"best epoch {summary['best_epoch']} ({summary['monitor']} {summary['best_value']:.6g})")
    if summary["test"]:
        log.print(metrics_table(f"test ({summary['rows']['test']} rows)", summary["test"]))
    log.print(f"run folder: {summary['run_dir']}")

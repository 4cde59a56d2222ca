"""What each CLI command does, once Typer has parsed its arguments: config in, work done, results printed.

Plotting (matplotlib) and inference are imported by the commands that use them, so that no command pays for
another's libraries at start-up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from nnrun.checkpoints import load_checkpoint
from nnrun.config import (
    DATA_KEYS,
    REGISTRIES,
    SWEEP_KEY,
    Config,
    apply_overrides,
    check_loggers_installed,
    load_yaml,
    validate,
)
from nnrun.console import (
    comparison_table,
    confusion_table,
    console,
    format_number,
    metrics_table,
    model_table,
    per_class_table,
)
from nnrun.errors import UserError, unknown_name
from nnrun.experiment import Experiment, build_experiment
from nnrun.models import OUTPUT_ACTIVATIONS, summarize
from nnrun.runs import Run, check_runs_dir, read_run
from nnrun.session import close_session, open_session, quiet_log, run_log
from nnrun.training import fit
from nnrun.training_state import check_resumable, check_resume_overrides

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
    raw = load_yaml(path)
    if SWEEP_KEY in raw:
        console.print(f"[yellow]note[/] {path} has a sweep: block, which only nnrun sweep reads; this runs the config "
                      f"once, as written", soft_wrap=True)
    return validate(apply_overrides(raw, [*overrides, *extra]), source=Path(path))


def train(config_path: Path, overrides: list[str], *, runs_dir: Path, data_dir: Path = Path("data"),
          name: str | None = None, device: str | None = None) -> dict[str, Any]:
    """`nnrun train`: validate, build, create the run folder, fit, test, plot; returns the summary."""
    cfg = load_config(config_path, overrides, name=name, device=device)
    check_loggers_installed(cfg)
    check_runs_dir(runs_dir)
    exp = build_experiment(cfg, data_dir=data_dir)  # every config and data problem surfaces here, before a run folder
    run = Run.create(runs_dir, cfg.name)
    return train_run(exp, run)


def resume(target: Path, overrides: list[str], *, runs_dir: Path, data_dir: Path = Path("data"),
           device: str | None = None) -> dict[str, Any]:
    """`nnrun train --resume`: continue a run from its last.pth, in its own folder, exactly where it stopped."""
    path = Path(target) / "checkpoints" / "last.pth" if Path(target).is_dir() else Path(target)
    if Path(target).is_dir() and not path.is_file():
        raise UserError(f"'{target}' has no checkpoints/last.pth (give a run folder made by nnrun train, or a last.pth)")
    checkpoint = load_checkpoint(path)
    if "optimizer" not in checkpoint:
        raise UserError(f"'{path}' holds weights only, not the training state (resume from the run folder or its "
                        f"checkpoints/last.pth)")
    check_resume_overrides(overrides)
    raw = apply_overrides(checkpoint["config"], [*overrides, *([f"device={device}"] if device else [])])
    cfg = validate(raw, config_dir=checkpoint["data"].get("config_dir"))
    check_loggers_installed(cfg)
    check_resumable(checkpoint, cfg)
    exp = build_experiment(cfg, data_dir=data_dir)
    trained_on = checkpoint["data"].get("fingerprint")
    if exp.data.fingerprint != trained_on:
        raise UserError(f"the data changed since this run trained ({trained_on['rows']} rows then, "
                        f"{exp.data.fingerprint['rows']} now, or different values), so it cannot resume exactly "
                        f"(restore the data, or start a new run)")
    folder = path.resolve().parent
    if folder.name == "checkpoints":
        run = Run(folder.parent)
        run.remove_stale_temp_files()
    else:
        run = Run.create(runs_dir, cfg.name)
        console.print(f"[yellow]note[/] '{path}' is not inside a run folder: continuing in {run.root}")
    return train_run(exp, run, resume=checkpoint)


def train_run(exp: Experiment, run: Run, *, resume: dict[str, Any] | None = None, echo: bool = True,
              plots: bool = True, prune: Callable[[dict[str, float]], str | None] | None = None) -> dict[str, Any]:
    """Train into a run folder: config.yaml, train.log, checkpoints, metrics, summary, plots and report.

    A sweep's trial gives `echo=False` (train.log only, `latest` left alone), `plots=False` (`nnrun plot RUN` draws
    them later) and `prune`, its pruner, asked after every epoch (see `fit`). A NaN or inf loss is a UserError.
    """
    session = open_session(exp, run, resume=resume, open_log=run_log if echo else quiet_log, latest=echo)
    return close_session(session, lambda: fit(exp, run, session.log, resume=resume, loggers=session.loggers,
                                              prune=prune), plots=plots)


def evaluate(checkpoint: Path, *, split: str = "test", data: Path | None = None, data_dir: Path = Path("data"),
             as_json: bool = False, out: Path | None = None, device: str = "auto") -> dict[str, Any]:
    """`nnrun eval`: metrics of a checkpoint on its own split or other data, with predictions written to CSV."""
    from nnrun.inference import evaluate_checkpoint, restore

    restored = restore(checkpoint, device=device)
    result = evaluate_checkpoint(restored, split=split, data=data, data_dir=data_dir)
    folder = Path(out).parent if out else restored.run_dir or restored.path.parent
    name = "predictions.csv" if data is None and split == "test" else \
        f"predictions_{Path(data).stem if data else split}.csv"
    predictions_path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    result.predictions.to_csv(predictions_path, index=False)
    payload = {"checkpoint": str(checkpoint), "epoch": restored.epoch, "data": result.source, "split": result.split,
               "rows": len(result.predictions), "task": restored.task.kind, "metrics": result.report,
               "predictions": str(predictions_path), "notes": result.notes}
    if out:
        Path(out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if as_json:
        console.print(json.dumps(payload, indent=2), soft_wrap=True, markup=False, highlight=False)
        return payload
    for note in result.notes:
        console.print(f"[yellow]note[/] {note}", soft_wrap=True)
    console.print(f"[bold]{checkpoint}[/] (epoch {restored.epoch}) on {result.source}, {result.split}: "
                  f"{len(result.predictions)} rows", soft_wrap=True)
    console.print(metrics_table("metrics", result.report))
    if restored.task.kind == "classification":
        console.print(per_class_table(result.report))
        console.print(confusion_table(result.report))
    console.print(f"predictions: {predictions_path}" + (f"; metrics: {out}" if out else ""), soft_wrap=True)
    return payload


def predict(checkpoint: Path, input_path: Path, *, out: Path | None = None, device: str = "auto") -> Path:
    """`nnrun predict`: apply the checkpoint's preprocessing and model to new rows; write them to CSV."""
    from nnrun.inference import predict_file, restore

    restored = restore(checkpoint, device=device)
    for note in restored.notes:
        console.print(f"[yellow]note[/] {note}", soft_wrap=True)
    predictions, notes = predict_file(restored, Path(input_path))
    for note in notes:
        console.print(f"[yellow]note[/] {note}", soft_wrap=True)
    out = Path(out) if out else Path(f"{_stem(Path(input_path))}_predictions.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out, index=False)
    preview = Table(title=f"first rows of {out}", title_justify="left")
    probabilities = predictions.filter(like="prob_")
    shown = predictions[[c for c in predictions.columns if not c.startswith("prob_")]].head(5).copy()
    if not probabilities.empty:  # one column, not one per class: the predicted class's probability
        shown["probability"] = probabilities.max(axis=1).head(5)
    for column in shown.columns:
        preview.add_column(column, justify="right", overflow="fold")
    for _, row in shown.iterrows():
        preview.add_row(*[format_number(v) if isinstance(v, float) else str(v) for v in row])
    console.print(preview)
    console.print(f"{len(predictions)} predictions written to {out}", soft_wrap=True)
    return out


def export(checkpoint: Path, *, format: str = "onnx", out: Path | None = None,
           data_dir: Path = Path("data")) -> Path:
    """`nnrun export`: the checkpoint as ONNX or a torch.export program with a JSON sidecar, checked against nnrun."""
    from nnrun.export import ATOL, CHECK_BATCH_SIZES, RTOL, RUNNERS, export_checkpoint

    result = export_checkpoint(checkpoint, format=format, out=out, data_dir=data_dir)
    for note in result.notes:
        console.print(f"[yellow]note[/] {note}", soft_wrap=True)
    given, answer = result.contract["input"], result.contract["output"]
    shape = ", ".join(str(d) for d in given["shape"])
    console.print(f"wrote {result.model_path} (input {given['name']}: {given['dtype']} ({shape}); output "
                  f"{answer['name']}) and {result.sidecar_path} (how to build the input, what the output means)",
                  soft_wrap=True)
    sizes = " and ".join(str(b) for b in CHECK_BATCH_SIZES)
    console.print(f"checked: {RUNNERS[format]} matches nnrun on {result.rows} {result.split} rows at batch sizes "
                  f"{sizes}: max difference {format_number(result.max_difference)}, {result.tolerance_used:.0%} of "
                  f"the tolerance ({ATOL:g} + {RTOL:g} x |value|)", soft_wrap=True)
    return result.model_path


def plot(run_dirs: list[Path], *, out: Path | None = None, metrics: list[str] | None = None) -> list[Path]:
    """`nnrun plot`: redraw one run's plots and report, or compare several runs metric by metric."""
    from nnrun.plots import plot_run
    from nnrun.report import write_report

    table = None
    if len(run_dirs) == 1:
        run = read_run(run_dirs[0])
        written, notes = plot_run(run, metrics=metrics)
        if not written:
            raise UserError(notes[-1] + " (let it train at least one epoch)")
        if out:
            out.mkdir(parents=True, exist_ok=True)
            written = [Path(shutil.copy(path, out / path.name)) for path in written]
        written.append(write_report(run, written))
    else:
        from nnrun.comparison import compare_runs

        comparison = compare_runs(run_dirs, out, metrics=metrics)
        written, notes = comparison.written, comparison.notes
        table = comparison_table(comparison.rows, comparison.modes)
    for note in notes:
        console.print(f"[yellow]note[/] {note}", soft_wrap=True)
    if table is not None:
        console.print(table)
    for path in written:
        console.print(f"wrote {path}", soft_wrap=True)
    return written


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def check(config_path: Path, overrides: list[str], *, data_dir: Path = Path("data"),
          device: str | None = None) -> None:
    """`nnrun check`: validate, build data and model, run one batch forward and backward; write nothing."""
    cfg = load_config(config_path, overrides, device=device)
    check_loggers_installed(cfg)
    exp = build_experiment(cfg, data_dir=data_dir)
    console.print(f"[green]config ok[/]: {config_path}")
    console.print(_data_table(exp))
    for note in [*exp.data.notes, *exp.notes]:
        console.print(f"[yellow]note[/]   {note}", soft_wrap=True)
    x, y = next(iter(exp.train_batches))
    console.print(model_table(summarize(exp.model, x)))
    exp.model.train()
    loss = exp.loss_fn(exp.model(x), y)
    loss.backward()
    grads = [p.grad for p in exp.model.parameters() if p.requires_grad]
    if not loss.isfinite() or any(g is None or not g.isfinite().all() for g in grads):
        raise UserError(f"one training batch gave loss {loss.item()} or non-finite gradients "
                        f"(check the data for extreme values, or lower optimizer.lr)")
    console.print(f"one batch of {len(x)} rows: loss {format_number(loss.item())}, gradients finite; "
                  f"device {exp.device}; nothing was written")


def list_components(kind: str | None) -> None:
    """`nnrun list`: registered names with their parameters, defaults and descriptions."""
    singular = {registry.singular: name for name, registry in REGISTRIES.items()}
    kind = singular.get(kind, kind)  # `nnrun list model` means models
    if kind is not None and kind not in REGISTRIES:
        raise UserError(unknown_name("kind", kind, REGISTRIES))
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
        table.add_row(split_name, str(len(split)), str(split.shape), str(tuple(split.y.shape)))
    return table

"""The `nnrun` command line. Commands are thin: parse arguments, call `nnrun.commands`, map errors to exit codes.

Nothing here imports torch at module level, so `nnrun --help` answers at once.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from nnrun.errors import Interrupted, UserError, write_problem

app = typer.Typer(
    name="nnrun",
    help="Train PyTorch models from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a bug keeps its plain traceback; user errors never show one
    context_settings={"help_option_names": ["-h", "--help"]},
)

Overrides = Annotated[list[str] | None, typer.Argument(
    help="Overrides as dotted key=value pairs, read as YAML: optimizer.lr=0.01 model.hidden=[64,32] epochs=5",
    show_default=False)]
ConfigPath = Annotated[Path, typer.Argument(help="The experiment's YAML file, for example configs/iris_mlp.yaml.")]
DataDirOption = Annotated[Path, typer.Option(
    "--data-dir", envvar="NNRUN_DATA_DIR",
    help="Where relative data paths resolve (else $NNRUN_DATA_DIR, else ./data).")]
DeviceOption = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N or mps (overrides the config's device).")]
ThreadsOption = Annotated[str | None, typer.Option(
    "--threads", help="CPU threads per op: auto (measured while training) or a number (overrides the config).",
    show_default=False)]


@contextmanager
def _exit_codes():
    """User errors (a failed write included): one red line each, exit 2. Ctrl-C or SIGTERM: a calm note, exit 130.
    Bugs keep their traceback."""
    from nnrun.console import print_error, print_note

    try:
        yield
    except UserError as exc:
        for problem in exc.problems:
            print_error(problem)
        raise typer.Exit(2) from None
    except OSError as exc:
        problem = write_problem(exc)
        if problem is None:
            raise
        print_error(problem.problems[0])
        raise typer.Exit(2) from None
    except Interrupted as exc:
        print_note(str(exc))
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        print_note("interrupted before training started (nothing was written)")
        raise typer.Exit(130) from None


@app.command()
def train(
    config: Annotated[str | None, typer.Argument(
        help="The experiment's YAML file, for example configs/iris_mlp.yaml (left out with --resume).",
        show_default=False)] = None,
    overrides: Overrides = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue a run: its folder or a last.pth. Overrides may only extend or steer it, "
                         "such as epochs=N.", show_default=False)] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run folders are created.")] = Path("runs"),
    data_dir: DataDirOption = Path("data"),
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the config's name).")] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Train a model: writes a run folder with config, metrics.csv, checkpoints, summary.json and plots."""
    with _exit_codes():
        from nnrun import commands

        overrides = [*(overrides or []), *([f"threads={threads}"] if threads else [])]
        if resume is not None:
            if config is not None and "=" not in config:
                raise UserError(f"give either a CONFIG ('{config}') or --resume, not both (resume continues the "
                                f"run with its own config)")
            commands.resume(resume, [config, *overrides] if config else overrides, runs_dir=runs_dir,
                            data_dir=data_dir, device=device)
        elif config is None:
            raise UserError("missing CONFIG (for example: nnrun train configs/iris_mlp.yaml)")
        else:
            commands.train(Path(config), overrides, runs_dir=runs_dir, data_dir=data_dir, name=name, device=device)


@app.command()
def sweep(
    config: Annotated[str | None, typer.Argument(
        metavar="CONFIG", help="The experiment's YAML file (left out with --resume).", show_default=False)] = None,
    specs: Annotated[list[str] | None, typer.Argument(
        metavar="KEY=SPEC",
        help="What to try: a list (optimizer.lr=0.001,0.01,0.1; model.hidden=[8],[32],[64,32]) or a distribution "
             "(loguniform(1e-4,1e-1), uniform(0,0.5), int(16,256), choice(adam,sgd)); one value (epochs=30) is a "
             "fixed override for every trial.", show_default=False)] = None,
    trials: Annotated[int | None, typer.Option(
        "--trials", help="How many trials: random and tpe 20 by default; grid: every combination, at most this many.",
        show_default=False)] = None,
    sampler: Annotated[str | None, typer.Option(
        "--sampler", help="grid, random or tpe (default: grid when every spec is a list, else tpe).",
        show_default=False)] = None,
    prune: Annotated[bool | None, typer.Option(
        "--prune/--no-prune", help="Stop trials whose monitored value falls behind the median (Optuna's MedianPruner).",
        show_default=False)] = None,
    parallel: Annotated[int | None, typer.Option(
        "--parallel", help="Trials trained at once, each in its own process with cores / K threads.",
        show_default=False)] = None,
    folds: Annotated[int | None, typer.Option(
        "--folds", help="Score each trial by K-fold cross-validation of train + val (stratified for "
                        "classification); test is held out until the best trial is chosen.",
        show_default=False)] = None,
    repeats: Annotated[int | None, typer.Option(
        "--repeats", help="Train each trial with R seeds and score it by their mean.", show_default=False)] = None,
    vectorize: Annotated[bool | None, typer.Option(
        "--vectorize/--no-vectorize", help="Train a batch of trials together as one stacked model (automatic for "
                                           "grids where it applies).", show_default=False)] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue a sweep: its folder. Finished trials are kept; an interrupted one runs again.",
        show_default=False)] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where the sweep's folder is created.")] = Path("runs"),
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Try values of a config's settings (Optuna); score each trial on validation; test the best. One folder."""
    with _exit_codes():
        from nnrun.sweep import (
            run_sweep,  # Optuna loads with the command, never at start-up
        )

        given = {"trials": trials, "sampler": sampler, "prune": prune, "parallel": parallel, "folds": folds,
                 "repeats": repeats, "vectorize": vectorize}
        run_sweep(Path(config) if config else None, specs or [], given=given, runs_dir=runs_dir, data_dir=data_dir,
                  resume=resume)


@app.command()
def check(config: ConfigPath, overrides: Overrides = None, data_dir: DataDirOption = Path("data"),
          device: DeviceOption = None) -> None:
    """Validate a config, build data and model, run one batch forward and backward. Writes nothing."""
    with _exit_codes():
        from nnrun import commands

        commands.check(config, overrides or [], data_dir=data_dir, device=device)


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="A .pth file, such as runs/NAME/checkpoints/best.pth.")],
    split: Annotated[str, typer.Option("--split", help="test, val or train: the checkpoint's own split.")] = "test",
    data: Annotated[Path | None, typer.Option(
        "--data", help="Evaluate elsewhere: a labelled CSV with the same columns, or a config whose data to use.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON only.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the metrics JSON here (predictions go beside it).", show_default=False)] = None,
    data_dir: DataDirOption = Path("data"),
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Evaluate a checkpoint without its config: metrics, per-class table, and predictions.csv."""
    with _exit_codes():
        from nnrun import commands

        commands.evaluate(checkpoint, split=split, data=data, data_dir=data_dir, as_json=as_json, out=out,
                          device=device)


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="A .pth file, such as runs/NAME/checkpoints/best.pth.")],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A CSV of new rows (no target needed).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the predictions (default: INPUT_predictions.csv here).",
        show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Predict new rows with a checkpoint: class names with probabilities, or values in original units."""
    with _exit_codes():
        from nnrun import commands

        commands.predict(checkpoint, input_path, out=out, device=device)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A .pth file, such as runs/NAME/checkpoints/best.pth.")],
    format: Annotated[str, typer.Option(
        "--format", help="onnx (needs the export extra: onnx, onnxscript, onnxruntime) or exported_program (.pt2).",
    )] = "onnx",
    out: Annotated[Path | None, typer.Option(
        "--out", help="The model file (default: beside the checkpoint, CHECKPOINT.onnx or .pt2); its JSON sidecar "
                      "goes beside it.", show_default=False)] = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Export a checkpoint with its scaling inside: raw features or uint8 images in, probabilities or values out."""
    with _exit_codes():
        from nnrun import commands

        commands.export(checkpoint, format=format, out=out, data_dir=data_dir)


@app.command()
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...",
                                                   help="One run folder, or several to compare.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write (one run: a copy of its plots; several: default comparisons/<names>-<time>/ "
                 "beside the runs folder).",
        show_default=False)] = None,
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Comma-separated metrics to draw, such as loss,accuracy or val_rmse,r2.",
        show_default=False)] = None,
) -> None:
    """Draw a run's curves, confusion matrix or predictions, and report.html; or compare runs (plots, a table)."""
    with _exit_codes():
        from nnrun import commands

        chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
        commands.plot(run_dirs, out=out, metrics=chosen)


@app.command("list")
def list_(kind: Annotated[str | None, typer.Argument(
        help="Which registry to list: datasets, models, losses, optimizers or schedulers (default: all).",
        show_default=False)] = None) -> None:
    """List registered datasets, models, losses, optimizers and schedulers with their parameters."""
    with _exit_codes():
        from nnrun import commands

        commands.list_components(kind)


@app.command()
def runs(
    runs_dir: Annotated[Path, typer.Argument(help="The folder nnrun train wrote runs to.")] = Path("runs"),
    sort: Annotated[str, typer.Option(
        "--sort", help="started, name, status, epochs, duration, val (the monitored value), test (accuracy or R²), "
                       "or a test metric such as rmse; best first.")] = "started",
    last: Annotated[int | None, typer.Option("--last", min=1, help="Only the N newest runs.",
                                             show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON only.")] = False,
) -> None:
    """List past runs: status, epochs, best epoch, monitored val value, test result, duration and folder."""
    with _exit_codes():
        import json

        from nnrun.console import console, runs_table
        from nnrun.runs import list_runs, sort_runs

        records = list_runs(runs_dir)
        records = sort_runs(records[:last] if last else records, sort)
        if as_json:
            print(json.dumps([r.to_dict() for r in records], indent=2, allow_nan=False))
        elif not records:
            console.print(f"no runs in {runs_dir} (nnrun train writes them there)")
        else:
            if not console.is_terminal:
                console.width = 200  # a pipe or a file: whole rows, for grep
            console.print(runs_table(records))


def main() -> None:
    # SIGTERM (kill, a scheduler's timeout) is handled like Ctrl-C from the first line on, so that it never ends
    # a command silently; during training, the loop's own handler takes over and saves the last finished epoch.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(prog_name="nnrun", standalone_mode=False)
    except typer.Abort:
        from nnrun.console import print_note

        print_note("interrupted before training started (nothing was written)")
        code = 130
    except typer.TyperException as exc:  # a usage error: say it as Typer does, unless it is a setting typed as --option
        code = _setting_as_option(getattr(exc, "option_name", None) or "")
        if code is None:
            exc.show()
            code = exc.exit_code
    sys.exit(code or 0)


def _setting_as_option(option: str) -> int | None:
    """`--epochs 5`: point to `epochs=5` when an unknown option names a config key; else None."""
    key = option.lstrip("-").split("=")[0].replace("-", "_")
    if not option.startswith("--") or not key:
        return None
    from nnrun.config import TOP_LEVEL_KEYS  # only on this error path: it loads torch
    from nnrun.console import print_error

    if key.split(".")[0] not in TOP_LEVEL_KEYS:
        return None
    given = next((arg.split("=", 1)[1] for arg in sys.argv if arg.startswith(f"{option}=")), None)
    if given is None and option in sys.argv[:-1]:
        following = sys.argv[sys.argv.index(option) + 1]
        given = None if following.startswith("-") else following
    example = f"{key}={given if given is not None else 'VALUE'}"
    print_error(f"no such option: {option.split('=')[0]} (settings are key=value overrides, not options: write "
                f"{example})")
    return 2


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt

"""The `nnrun` command line. Commands are thin: parse arguments, call `nnrun.commands`, map errors to exit codes.

Nothing here imports torch at module level, so `nnrun --help` answers at once.
"""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nnrun.errors import Interrupted, UserError

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
    "--data-dir", envvar="NNRUN_DATA_DIR", help="Where relative data paths resolve (else $NNRUN_DATA_DIR, else ./data).")]
DeviceOption = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N or mps (overrides the config's device).")]


class Kind(str, Enum):
    datasets = "datasets"
    models = "models"
    losses = "losses"
    optimizers = "optimizers"
    schedulers = "schedulers"


@contextmanager
def _exit_codes():
    """User errors: one red line each, exit 2. Ctrl-C or SIGTERM: exit 130. Bugs keep their traceback."""
    from nnrun.console import print_error

    try:
        yield
    except UserError as exc:
        for problem in exc.problems:
            print_error(problem)
        raise typer.Exit(2) from None
    except Interrupted as exc:
        print_error(str(exc))
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        print_error("interrupted before training started (nothing was written)")
        raise typer.Exit(130) from None


@app.command()
def train(
    config: ConfigPath,
    overrides: Overrides = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run folders are created.")] = Path("runs"),
    data_dir: DataDirOption = Path("data"),
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the config's name).")] = None,
    device: DeviceOption = None,
) -> None:
    """Train a model: writes a run folder with config, metrics.csv, checkpoints, summary.json and plots."""
    with _exit_codes():
        from nnrun import commands

        commands.train(config, overrides or [], runs_dir=runs_dir, data_dir=data_dir, name=name, device=device)


@app.command()
def check(config: ConfigPath, overrides: Overrides = None, data_dir: DataDirOption = Path("data"),
          device: DeviceOption = None) -> None:
    """Validate a config, build data and model, run one batch forward and backward. Writes nothing."""
    with _exit_codes():
        from nnrun import commands

        commands.check(config, overrides or [], data_dir=data_dir, device=device)


@app.command("list")
def list_(kind: Annotated[Kind | None, typer.Argument(help="Which registry to list (default: all).")] = None) -> None:
    """List registered datasets, models, losses, optimizers and schedulers with their parameters."""
    with _exit_codes():
        from nnrun import commands

        commands.list_components(kind.value if kind else None)


def main() -> None:
    app(prog_name="nnrun")

"""What `nnrun train` does around training a run folder: before, config.yaml, train.log, the header lines, the
loggers and the `latest` link; after, the plots, the report, the loggers' end and the result lines.

`nnrun train` opens a session, runs fit() and closes it. A sweep's trials trained together as one stacked model
(nnrun.vectorized) open one session per trial and close each with that trial's result, so that every run folder
ends the same way.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrun.console import RunLog, console, format_duration, format_number, metrics_table
from nnrun.errors import Interrupted, UserError, write_problem
from nnrun.experiment import Experiment
from nnrun.loggers import Loggers
from nnrun.runs import STATUSES, Run, mark_latest, read_run


def run_log(run: Run) -> RunLog:
    """A run's train.log, echoed to the console; on a terminal, a progress bar shows the epochs instead."""
    return RunLog(run.log_path, quiet_console=console.is_terminal)


def quiet_log(run: Run) -> RunLog:
    """A run's train.log alone, nothing on the console: a sweep's trial, which the sweep reports in one line."""
    return RunLog(run.log_path, echo=False)


@dataclass
class Session:
    """A run folder being trained: the folder, its train.log and its loggers."""

    run: Run
    log: RunLog
    loggers: Loggers


def open_session(exp: Experiment, run: Run, *, resume: dict[str, Any] | None = None,
                 open_log: Callable[[Run], RunLog] = run_log, latest: bool = True) -> Session:
    """Start training a run folder: write config.yaml, open train.log, print the header, start the loggers, and
    point the runs folder's `latest` at it (unless `latest=False`: a sweep's trial)."""
    try:
        run.config_path.write_text(exp.config.to_yaml(), encoding="utf-8")
        log = open_log(run)
    except OSError as exc:
        raise write_problem(exc, then="start the run again") or exc from None
    try:
        _print_header(exp, run, log)
        if resume:
            log.print(f"resuming after epoch {resume['epoch']} of {exp.config.epochs}")
        loggers = Loggers(run, exp.config, history=resume["metrics"] if resume else [], say=log.print)
        if latest and not resume:
            mark_latest(run)
    except BaseException as exc:
        log.close()
        if isinstance(exc, KeyboardInterrupt) and not resume:  # a new folder holding only its config: no trace
            shutil.rmtree(run.root, ignore_errors=True)
        raise
    return Session(run, log, loggers)


def close_session(session: Session, train: Callable[[], dict[str, Any]], *, plots: bool = True) -> dict[str, Any]:
    """Train (`train` returns the summary: it runs fit, or hands over a stacked trial's result), then draw the
    plots and report (unless `plots=False`), finish the loggers, print the result and close train.log; returns the
    summary.

    A run whose loss diverged raises UserError with the reason, once its folder is complete.
    """
    run, log, loggers = session.run, session.log, session.loggers
    try:
        status = "failed"  # what the loggers are told, unless the run gets further
        try:
            summary = _train_and_draw(run, log, train, plots=plots)
            status = STATUSES[summary["stop_reason"]]
        except (Interrupted, KeyboardInterrupt):
            status = "interrupted"
            raise
        finally:
            logged = loggers.finish(run, status)
        _print_result(summary, log)
        if not logged:
            raise Interrupted(f"interrupted while logging; the run finished and its folder is complete: {run.root}")
    finally:
        try:
            log.close()
        except OSError:
            pass  # train.log could not be flushed (the disk is full); the error above says what to do
    if summary["stop_reason"] == "non_finite_loss":
        raise UserError(summary["stop_detail"])
    return summary


def _train_and_draw(run: Run, log: RunLog, train: Callable[[], dict[str, Any]], *, plots: bool = True
                    ) -> dict[str, Any]:
    """Train, then draw the plots and report; every way this can stop becomes one line for the user."""
    try:
        summary = train()
    except Interrupted as exc:
        if plots:
            draw(run.root)
        message = (f"{exc}; checkpoints, metrics.csv and plots are saved in {run.root} "
                   f"(continue with: nnrun train --resume {run.root})")
        log.print(f"interrupted: {message}", console_too=False)
        raise Interrupted(message) from None
    except OSError as exc:  # a full disk or a folder gone read-only: the checkpoints before it stay good
        raise write_problem(exc, then=run.resume_hint()) or exc from None
    if not plots:
        return summary
    try:
        for note in draw(run.root):
            log.print(f"[yellow]note[/]   {note}")
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while drawing the plots; training finished and its results are saved in "
                          f"{run.root} (redraw the plots with: nnrun plot {run.root})") from None
    except OSError as exc:
        then = f"redraw them with: nnrun plot {run.root}"
        problem = write_problem(exc, then=then)
        raise UserError(f"training finished ({summary['stop_reason']}) and its results are saved, but the plots "
                        f"and report could not be written: {problem.problems[0]}" if problem else exc) from None
    return summary


def draw(run_dir: Path) -> list[str]:
    """The end of every training run: plots and report.html from the run's files; returns notes."""
    from nnrun.plots import (
        plot_run,  # matplotlib loads here, at the end of a run, not at start-up
    )
    from nnrun.report import write_report

    run = read_run(run_dir)
    written, notes = plot_run(run)
    if written:
        write_report(run, written)
    return notes


def _print_header(exp: Experiment, run: Run, log: RunLog) -> None:
    data, cfg = exp.data, exp.config
    rows = " / ".join(f"{name} {len(split)}" for name, split in data.splits.items())
    target = f"{len(data.class_names)} classes" if data.class_names else f"{data.n_targets} target(s)"
    params = sum(p.numel() for p in exp.model.parameters())
    log.print(f"[bold]nnrun train[/] {cfg.name} -> {run.root}")
    inputs = ("x".join(str(d) for d in data.in_shape) + " images") if data.input_stats else \
        f"{len(data.feature_names)} features"
    log.print(f"data   {cfg.data.type}: {data.task}, {target}, {inputs}; rows {rows}")
    for note in data.notes:
        log.print(f"[yellow]note[/]   {note}")
    log.print(f"model  {cfg.model.type}: {params:,} parameters; loss {cfg.loss.type}; "
              f"optimizer {cfg.optimizer.type}; device {exp.device}")
    for note in exp.notes:
        log.print(f"[yellow]note[/]   {note}")


def _print_result(summary: dict[str, Any], log: RunLog) -> None:
    failed = summary["stop_reason"] == "non_finite_loss"  # the CLI shows it as the error line
    style = "red" if failed else "green"
    log.print(f"[{style}]{summary['stop_reason']}[/]: {summary['stop_detail']}", console_too=not failed)
    if summary["best_epoch"]:
        log.print(f"best epoch {summary['best_epoch']} ({summary['monitor']} {format_number(summary['best_value'])})")
    if summary["test"]:
        log.print(metrics_table(f"test ({summary['rows']['test']} rows)", summary["test"]))
    report = Path(summary["run_dir"]) / "report.html"
    log.print(f"done in {format_duration(summary['seconds']['total'])}; run folder {summary['run_dir']}" +
              (f"; open {report} for the plots and the summary" if report.is_file() else ""))

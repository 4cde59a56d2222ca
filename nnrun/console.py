"""The terminal: one rich Console for output, one for errors, and the run's train.log mirror."""

from __future__ import annotations

import math
import time
from pathlib import Path

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

EPOCH_LINES_PER_SECOND = 5
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def format_number(value: float | None, *, digits: int = 4, step: float | None = None) -> str:
    """The one number format of tables, logs, plots and the report: `digits` significant digits with thousands
    separators (122,300; 83,379; 0.9825; 0.00003162), never scientific notation beside plain decimals.

    `step` is the spacing of a plot's axis ticks: the label then has just the decimals that spacing needs, so
    the labels of one axis line up (0.25, 0.50, 0.75; 100,000, 200,000).
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if step is not None:
        decimals = _decimals(step)
        return f"{value + 0.0 if round(value, decimals) else 0.0:,.{decimals}f}"  # no "-0.00"
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value) or value == 0:
        return "0" if value == 0 else str(value)
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -9:  # below a nanounit only an exponent is readable
        return f"{value:.{digits - 1}e}"
    return f"{value:,.{max(digits - 1 - magnitude, 0)}f}"


def _decimals(step: float) -> int:
    """The fewest decimals that write multiples of `step` exactly (0.025 -> 3, 50,000 -> 0)."""
    step = float(f"{abs(step):.10g}")  # a difference of ticks: 0.09999999999999998 is 0.1
    for decimals in range(13):
        scaled = step * 10 ** decimals
        if scaled >= 1 and abs(scaled - round(scaled)) < 1e-6 * scaled:
            return decimals
    return 12


def format_duration(seconds: float) -> str:
    """A duration as people say it: 0.8 s, 42.1 s, 3 min 05 s, 2 h 07 min."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def print_error(message: str) -> None:
    """`error: <what> (<how to fix>)` as one red line on stderr (line breaks in names it quotes are escaped)."""
    one_line = message.replace("\r", "\\r").replace("\n", "\\n")
    err_console.print(Text(f"error: {one_line}", style="bold red"), soft_wrap=True)


def print_note(message: str) -> None:
    """Something the user did that is not an error (an interrupt): calm, on stderr; on a terminal wrapped
    between words, elsewhere one line (a log keeps commands and paths whole)."""
    err_console.print(Text(message, style="yellow"), soft_wrap=not err_console.is_terminal)


class RunLog:
    """Prints to the console and the same text, without colours, to the run's train.log.

    Epoch lines are plain text written straight to train.log, every one of them. On the console they are
    rate-limited (at most EPOCH_LINES_PER_SECOND; the last one always shows), so that thousands of tiny epochs
    do not spend more time printing than training; a live progress bar replaces them on a terminal.
    """

    def __init__(self, path: Path | None = None, *, quiet_console: bool = False, echo: bool = True):
        self.quiet_console = quiet_console  # a live progress bar shows epochs instead of one line each
        self.echo = echo  # False: train.log only (a sweep's trials, which the sweep reports in one line each)
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - closed in close()
        self._log = Console(file=self._file, width=120, highlight=False, color_system=None) if path else None
        self._shown_at = -math.inf  # when the console last showed an epoch line
        self._held: str | None = None  # the newest epoch line the console has not shown

    def print(self, renderable: RenderableType = "", *, console_too: bool = True) -> None:
        """Show a line (rich markup allowed) or a table, and record it in train.log."""
        self._release()
        if console_too and self.echo:
            console.print(renderable, soft_wrap=isinstance(renderable, str))
        if self._log:
            self._log.print(renderable, soft_wrap=isinstance(renderable, str))
            self._file.flush()

    def epoch(self, text: str) -> None:
        """A per-epoch line of plain text: always in train.log; on the console when the rate allows."""
        if self._file:
            self._file.write(text + "\n")
            self._file.flush()
        if self.quiet_console or not self.echo:
            return
        self._held = text
        if time.monotonic() - self._shown_at >= 1 / EPOCH_LINES_PER_SECOND:
            self._release()

    def close(self) -> None:
        self._release()
        if self._file:
            self._file.close()
            self._file = self._log = None

    def _release(self) -> None:
        if self._held is not None:
            console.print(self._held, markup=False, highlight=False, soft_wrap=True)
            self._held, self._shown_at = None, time.monotonic()


def model_table(summary) -> Table:
    """The model summary (a `nnrun.models.ModelSummary`) as a rich table."""
    table = Table(title="model", title_justify="left", show_footer=True)
    table.add_column("layer", footer="total")
    table.add_column("type")
    table.add_column("output shape")
    table.add_column("parameters", justify="right", footer=f"{summary.total_params:,}")
    for row in summary.rows:
        shape = "(batch, " + ", ".join(str(d) for d in row.output_shape[1:]) + ")"
        table.add_row(row.name, row.kind, shape, f"{row.params:,}")
    return table


def metrics_table(title: str, metrics: dict[str, float | None]) -> Table:
    """A two-column table of named numbers (the scalar entries of a test report)."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, (int, float)) or value is None:
            table.add_row(name, format_number(value))
    return table


def per_class_table(report: dict) -> Table:
    """Per-class precision, recall, F1 and support."""
    table = Table(title="per class", title_justify="left")
    table.add_column("class", overflow="fold")
    for column in ("precision", "recall", "f1", "support"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, stats in report["per_class"].items():
        table.add_row(Text(name), *(format_number(stats[k]) for k in ("precision", "recall", "f1")),
                      str(stats["support"]))
    return table


def confusion_table(report: dict) -> Table:
    """The confusion matrix: a row per true class, a column per predicted class (numbered as the rows)."""
    names = list(report["per_class"])
    table = Table(title="confusion matrix (row: true, column: predicted)", title_justify="left")
    table.add_column("true class", overflow="fold")
    for i in range(len(names)):
        table.add_column(str(i), justify="right", no_wrap=True)
    for i, (name, row) in enumerate(zip(names, report["confusion_matrix"])):
        table.add_row(Text(f"{i} {name}"), *[f"[bold]{n}[/]" if i == j else str(n) for j, n in enumerate(row)])
    return table


def runs_table(records: list) -> Table:
    """`nnrun runs`: one row per run folder (records are runs.RunRecord)."""
    monitors = {r.monitor for r in records if r.best_value is not None}
    headlines = {r.headline[0] for r in records if r.headline}
    val_header = monitors.pop() if len(monitors) == 1 else "val"  # a shared name heads its column ...
    test_header = f"test {headlines.pop()}" if len(headlines) == 1 else "test"
    table = Table(title_justify="left")
    for column in ("name", "started", "status", "epochs", "best", val_header, test_header, "time", "folder"):
        table.add_column(column, justify="left" if column in ("name", "started", "status", "folder") else "right",
                         no_wrap=column != "folder", overflow="fold")
    colours = {"completed": "green", "early-stopped": "green", "interrupted": "yellow", "pruned": "yellow",
               "failed": "red"}
    for r in records:
        epochs = f"{r.epochs_run}/{r.epochs}" if r.epochs_run is not None else "-"
        val = format_number(r.best_value) if r.best_value is not None else "-"  # ... else each value names its own
        val = f"{r.monitor} {val}" if val_header == "val" and r.best_value is not None else val
        test = format_number(r.headline[1]) if r.headline else "-"
        test = f"{r.headline[0]} {test}" if test_header == "test" and r.headline else test
        table.add_row(r.name, r.started.strftime("%Y-%m-%d %H:%M") if r.started else "-",
                      Text(r.status, style=colours.get(r.status, "dim")), epochs, str(r.best_epoch or "-"), val, test,
                      format_duration(r.seconds) if r.seconds is not None else "-", str(r.folder))
    return table


def comparison_table(rows: list[dict], modes: dict[str, str]) -> Table:
    """Runs side by side, a column each: epochs, best epoch, and each metric's final and best value, the best
    run of each row in bold. `rows` are comparison.csv's rows; `modes` maps each metric to `min` or `max`."""
    table = Table(title="runs compared", title_justify="left",
                  caption="final = the last epoch's value; best = the best value over all epochs",
                  caption_justify="left")
    table.add_column("")
    for row in rows:
        table.add_column(Text(row["name"]), justify="right", overflow="fold")
    table.add_row("epochs", *(format_number(row["epochs"]) for row in rows))
    table.add_row("best epoch", *(format_number(row["best_epoch"]) for row in rows))
    for metric, mode in modes.items():
        for which in ("final", "best"):
            values = [row.get(f"{which}_{metric}") for row in rows]
            known = [v for v in values if v is not None and math.isfinite(v)]
            top = (max if mode == "max" else min)(known) if len(known) > 1 else None
            table.add_row(f"{metric} {which}", *(f"[bold]{format_number(v)}[/]" if v == top else format_number(v)
                                                  for v in values))
    return table

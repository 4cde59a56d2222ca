"""report.html: one self-contained page per run. It opens with the headline result, then the plots (the answer
first) in a grid, the tables and the config. Images are embedded as data URIs, so the page needs nothing else."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import yaml

from nnrun.console import format_duration, format_number
from nnrun.errors import writing
from nnrun.metrics import HEADLINE
from nnrun.runs import Run, RunFiles

# The plot that answers "how good is it?" first, then how training went.
PLOT_ORDER = ("confusion_matrix", "predictions", "loss", "metrics", "lr")
CAPTIONS = {
    "confusion_matrix": "Test split: rows are the true class, columns the predicted one.",
    "predictions": "Test split: predicted against actual (on the dashed line is right), and the residuals.",
    "loss": "Train and validation loss by epoch; the dashed line is the best epoch, whose weights were kept.",
    "metrics": "Metrics by epoch; the dashed line is the best epoch.",
    "lr": "The learning rate each epoch trained with.",
}
# The headline number: what a reader asks of each task first.
SHOWN = {"r2": "R²"}  # how a metric's name reads in the headline

STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 1.5rem auto; max-width: 1400px;
       color: #222; line-height: 1.4; padding: 0 1rem; }
h1 { margin: 0 0 0.2rem; font-size: clamp(1.5rem, 6vw, 2rem); overflow-wrap: anywhere; } h2 { margin: 2rem 0 0.5rem; }
.sub { color: #666; margin: 0; overflow-wrap: anywhere; }
.headline { display: flex; flex-wrap: wrap; gap: 0.75rem; margin: 1rem 0; }
.headline > div { flex: 1 1 9rem; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; }
.headline .answer { flex-grow: 1.5; background: #f2f7fd; border-color: #b7cfe9; }
.label { display: block; color: #555; font-size: 0.9rem; }
.value { display: block; font-size: 1.5rem; font-weight: 600; }
.answer .value { font-size: 2.2rem; }
.detail { display: block; color: #555; font-size: 0.85rem; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: minmax(0, 1fr); gap: 1rem 1.5rem; align-items: start; }
@media (min-width: 900px) { .grid { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
figure { margin: 0; }
figure img { display: block; width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85rem; margin-top: 0.25rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.8rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
@media (max-width: 600px) { table { font-size: 0.9rem; } th, td { padding: 0.25rem 0.35rem; } }
pre { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
.note { color: #8a6d3b; overflow-wrap: anywhere; }
"""


def write_report(run: RunFiles, plots: list[Path]) -> Path:
    """Write `report.html` into the run folder from its files and the PNGs just drawn."""
    summary = run.summary
    parts = [f"<header><h1>{_e(run.name)}</h1>",
             f"<p class='sub'>{_e(summary.get('task', run.task))} &middot; {_e(str(run.root))}</p></header>",
             _headline(run)]
    parts += [f"<p class='note'>{_e(note)}</p>" for note in [*run.notes, *summary.get("notes", [])]]

    parts.append("<h2>Plots</h2>\n<section class='grid plots'>")
    rank = {name: i for i, name in enumerate(PLOT_ORDER)}
    for path in sorted(plots, key=lambda p: rank.get(p.stem, len(rank))):
        parts.append(_figure(path))
    parts.append("</section>")

    tables = [f"<div><h2>Summary</h2>{_table(['', 'value'], [[k, v] for k, v in _overview(run).items()])}</div>"]
    test = summary.get("test") or {}
    if test:
        scalars = {k: v for k, v in test.items() if isinstance(v, (int, float)) or v is None}
        rows = [[k, v, (summary.get("val") or {}).get(k, "")] for k, v in scalars.items()]
        tables.insert(0, f"<div><h2>Test metrics ({_cell(summary.get('rows', {}).get('test', '?'))} rows)</h2>"
                         f"{_table(['metric', 'test', 'val (best epoch)'], rows)}</div>")
    if "per_class" in test:
        tables.insert(1, "<div><h2>Per class (test)</h2>" +
                      _table(["class", "precision", "recall", "f1", "support"],
                             [[name, s["precision"], s["recall"], s["f1"], s["support"]]
                              for name, s in test["per_class"].items()]) + "</div>")
    parts.append("<section class='grid tables'>" + "\n".join(tables) + "</section>")
    if run.config:
        parts.append("<h2>Config</h2>")
        parts.append(f"<pre>{_e(yaml.safe_dump(run.config, sort_keys=False, default_flow_style=None))}</pre>")
    page = ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(run.name)}: nnrun report</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    out = Run(run.root).report_path
    with writing(out):
        out.write_text(page, encoding="utf-8")
    return out


def _headline(run: RunFiles) -> str:
    """The answer (test accuracy or R²), the best epoch, why training stopped, and how long it took."""
    summary = run.summary
    key = HEADLINE[summary.get("task") or run.task]  # the summary knows the task even when metrics.csv is empty
    shown = SHOWN.get(key, key)
    rows = summary.get("rows") or {}
    if summary.get("test"):
        answer = ("test " + shown, summary["test"].get(key),
                  f"{_cell(rows.get('test', '?'))} test rows, with the best epoch's weights")
    else:
        column = f"val_{key}"
        best = run.best_epoch
        values = run.metrics.get(column, [])
        value = (summary.get("val") or {}).get(key) if summary else \
            (values[run.epochs.index(best)] if best in run.epochs and values else None)
        untested = "test split not evaluated" if rows.get("test") else "no test split"  # test: false, or interrupted
        answer = (f"val {shown}", value, "at the best epoch; " + (untested if summary else "run not finished"))
    boxes = [("answer", *answer)]

    epochs = summary.get("epochs_run", len(run.epochs))
    best, monitor = run.best_epoch, summary.get("monitor") or (run.config.get("early_stopping") or {}).get("monitor")
    best_value = summary.get("best_value")
    if best_value is None and best in run.epochs and monitor in run.metrics:
        best_value = run.metrics[monitor][run.epochs.index(best)]
    boxes.append(("best", "best epoch", best if best else "n/a",
                  f"of {_cell(epochs)}" + (f"; {monitor} {format_number(best_value)}" if best else "")))

    if summary:
        boxes.append(("stopped", "stopped", str(summary.get("stop_reason", "")).replace("_", " "),
                      summary.get("stop_detail", "")))
    else:
        boxes.append(("stopped", "stopped", "not finished",
                      "no summary.json: the run was killed, or is still training"))

    seconds = summary.get("seconds") or {}
    if "total" in seconds:
        detail = f"training {format_duration(seconds['train'])}" if "train" in seconds else ""
        if summary.get("resumed"):
            detail += f"; over {len(summary['resumed']) + 1} sessions"
        boxes.append(("duration", "duration", format_duration(seconds["total"]), detail))
    elif run.metrics.get("epoch_seconds"):
        spent = sum(v for v in run.metrics["epoch_seconds"] if math.isfinite(v))
        boxes.append(("duration", "duration", format_duration(spent), "the finished epochs only"))
    cells = "".join(f"<div class='{css}'><span class='label'>{_e(label)}</span><span class='value'>"
                    f"{_e(_cell(value))}</span><span class='detail'>{_e(detail)}</span></div>"
                    for css, label, value, detail in boxes)
    return f"<section class='headline' id='headline'>{cells}</section>"


def _figure(path: Path) -> str:
    data = path.read_bytes()
    # The PNG's size (IHDR) as width and height attributes: the browser lays the grid out before decoding.
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    name = path.stem
    return (f"<figure id='plot-{_e(name)}'><img alt='{_e(name.replace('_', ' '))}' width='{width}' "
            f"height='{height}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"
            f"<figcaption>{_e(CAPTIONS.get(name, ''))}</figcaption></figure>")


def _overview(run: RunFiles) -> dict[str, Any]:
    summary = run.summary
    rows = summary.get("rows") or {}
    seconds = summary.get("seconds") or {}
    overview = {
        "epochs run": summary.get("epochs_run", len(run.epochs)),
        "best epoch": f"{run.best_epoch} ({summary.get('monitor', 'val_loss')})" if run.best_epoch else "",
        "rows (train / val / test)": " / ".join(_cell(rows.get(k, "?")) for k in ("train", "val", "test")) if rows
        else "",
        "parameters": summary.get("parameters", ""),
        "device": summary.get("device", ""),
        "resumed": "; ".join(f"after epoch {r['after_epoch']} ({r['at']})" for r in summary.get("resumed") or []),
        "duration (total / training)": " / ".join(format_duration(seconds[k]) for k in ("total", "train"))
        if "total" in seconds and "train" in seconds else "",
        "versions": ", ".join(f"{k} {v}" for k, v in (summary.get("versions") or {}).items()),
    }
    return {k: v for k, v in overview.items() if v != ""}


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _cell(value: Any) -> str:
    return "" if value == "" else format_number(value)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)

"""report.html: one self-contained page per run (config, summary, plots embedded as data URIs, per-class table)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import yaml

from nnrun.errors import writing
from nnrun.runs import Run, RunFiles

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 1000px;
       color: #222; line-height: 1.4; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.8rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
pre { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
.note { color: #8a6d3b; }
"""


def write_report(run: RunFiles, plots: list[Path]) -> Path:
    """Write `report.html` into the run folder from its files and the PNGs just drawn."""
    summary = run.summary
    parts = [f"<h1>{_e(run.name)}</h1>",
             f"<p class='sub'>{_e(str(run.root))} &middot; {_e(summary.get('task', run.task))}</p>"]
    if summary:
        parts.append(f"<p><b>{_e(summary.get('stop_reason', ''))}</b>: {_e(summary.get('stop_detail', ''))}</p>")
    else:
        parts.append("<p class='note'>The run has not finished (no summary.json): the page shows what it has.</p>")
    parts += [f"<p class='note'>{_e(note)}</p>" for note in [*run.notes, *summary.get("notes", [])]]

    parts.append("<h2>Summary</h2>")
    parts.append(_table(["", "value"], [[k, v] for k, v in _overview(run).items()]))
    if summary.get("test"):
        test = summary["test"]
        scalars = {k: v for k, v in test.items() if isinstance(v, (int, float)) or v is None}
        parts.append(f"<h2>Test metrics ({summary.get('rows', {}).get('test', '?')} rows)</h2>")
        parts.append(_table(["metric", "test", "val (best epoch)"],
                            [[k, v, (summary.get("val") or {}).get(k, "")] for k, v in scalars.items()]))
        if "per_class" in test:
            parts.append("<h2>Per class (test)</h2>")
            parts.append(_table(["class", "precision", "recall", "f1", "support"],
                                [[name, s["precision"], s["recall"], s["f1"], s["support"]]
                                 for name, s in test["per_class"].items()]))

    parts.append("<h2>Plots</h2>")
    for path in plots:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<img alt='{_e(path.stem)}' src='data:image/png;base64,{data}'>")
    if run.config:
        parts.append("<h2>Config</h2>")
        parts.append(f"<pre>{_e(yaml.safe_dump(run.config, sort_keys=False, default_flow_style=None))}</pre>")
    page = (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(run.name)}: nnrun report"
            f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    out = Run(run.root).report_path
    with writing(out):
        out.write_text(page, encoding="utf-8")
    return out


def _overview(run: RunFiles) -> dict[str, Any]:
    summary = run.summary
    rows = summary.get("rows") or {}
    overview = {
        "epochs run": summary.get("epochs_run", len(run.epochs)),
        "best epoch": f"{run.best_epoch} ({summary.get('monitor', 'val_loss')})" if run.best_epoch else "",
        "rows (train / val / test)": " / ".join(str(rows.get(k, "?")) for k in ("train", "val", "test")) if rows
        else "",
        "parameters": f"{summary['parameters']:,}" if "parameters" in summary else "",
        "device": summary.get("device", ""),
        "resumed": "; ".join(f"after epoch {r['after_epoch']} ({r['at']})" for r in summary.get("resumed") or []),
        "seconds (total / training)": " / ".join(f"{summary['seconds'][k]:.1f}" for k in ("total", "train"))
        if "seconds" in summary else "",
        "versions": ", ".join(f"{k} {v}" for k, v in (summary.get("versions") or {}).items()),
    }
    return {k: v for k, v in overview.items() if v != ""}


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:,.1f}"
    return str(value)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)

"""report.html as a reader sees it: the headline first, the answer plot before the curves, two columns of plots
on a wide screen and one on a phone, one number format. Rendered in headless Chromium when one is installed."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from nnrun.console import format_duration, format_number
from tests.helpers import HOUSE_CONFIG, house_prices, train_runs

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ANSWER_PLOT = {"classification": "plot-confusion_matrix", "regression": "plot-predictions"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A classifier with a step schedule and a regression of six-digit prices, trained through the CLI."""
    folder = tmp_path_factory.mktemp("report")
    house_prices().to_csv(folder / "house.csv", index=False)
    return train_runs(folder, {
        "classification": {"epochs": 4, "scheduler": {"type": "step", "step_size": 2, "gamma": 0.5}},
        "regression": HOUSE_CONFIG,
    })


class Outline(HTMLParser):
    """The page as a reader meets it: elements with an id in document order, the text of the headline, the CSS,
    and the cells of each table."""

    def __init__(self, page: str):
        super().__init__()
        self.ids: list[str] = []
        self.headline_text: list[str] = []
        self.style = ""
        self.tables: list[list[list[str]]] = []
        self._open: list[str] = []  # the stack of open tags, for knowing when the headline ends
        self._in_headline = self._in_style = False
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.append(attrs["id"])
        if attrs.get("id") == "headline":
            self._in_headline, self._depth = True, len(self._open)
        self._in_style = tag == "style"
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        if tag not in ("meta", "img", "br"):
            self._open.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        self._open.pop()
        if self._in_headline and len(self._open) == self._depth:
            self._in_headline = False
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        if self._in_headline:
            self.headline_text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def headline(self) -> str:
        return " ".join(" ".join(self.headline_text).split())


def read(run) -> tuple[Outline, dict]:
    return Outline((run / "report.html").read_text()), json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("task, shown", [("classification", "test accuracy"), ("regression", "test R²")])
def test_the_report_opens_with_the_headline_then_the_answer_plot(runs, task, shown):
    page, summary = read(runs[task])
    figures = [i for i in page.ids if i.startswith("plot-")]
    assert page.ids.index("headline") < page.ids.index(figures[0])  # before any plot
    assert figures == [ANSWER_PLOT[task], "plot-loss", "plot-metrics", "plot-lr"]
    value = summary["test"]["accuracy" if task == "classification" else "r2"]
    for part in (f"{shown} {format_number(value)}", f"best epoch {summary['best_epoch']} of {summary['epochs_run']}",
                 f"stopped {summary['stop_reason']} {summary['stop_detail']}",
                 f"duration {format_duration(summary['seconds']['total'])}"):
        assert part in page.headline, (part, page.headline)


def test_an_unfinished_run_still_opens_with_what_it_has(cli, runs, tmp_path):
    partial = shutil.copytree(runs["classification"], tmp_path / "partial")
    (partial / "summary.json").unlink()
    assert cli("plot", partial).exit_code == 0
    page = Outline((partial / "report.html").read_text())
    assert page.ids.index("headline") < page.ids.index("plot-confusion_matrix") < page.ids.index("plot-loss")
    assert "stopped not finished" in page.headline and "val accuracy" in page.headline


def test_every_number_in_the_report_has_the_one_format(runs):
    page, summary = read(runs["regression"])
    test_table = next(t for t in page.tables if t[0] == ["metric", "test", "val (best epoch)"])
    shown = {name: test for name, test, _ in test_table[1:]}
    assert shown == {name: format_number(summary["test"][name]) for name in shown}
    assert shown["rmse"].count(",") == 1  # tens of thousands: 41,234
    numbers = [cell for table in page.tables for row in table for cell in row if re.fullmatch(r"[-\d.,]+", cell)]
    assert numbers and not [n for n in numbers if re.search(r"\.\d{5,}", n)]  # never 47950.0091
    assert not re.search(r"\d[eE][+-]\d", page.headline + " ".join(str(t) for t in page.tables))


def test_plots_sit_in_two_columns_on_a_wide_screen_and_one_on_a_phone(runs, tmp_path):
    page = (runs["classification"] / "report.html").read_text()
    outline = Outline(page)
    grid = re.search(r"\.grid\s*{[^}]*display:\s*grid", outline.style)
    wide = re.search(r"@media\s*\(min-width:\s*(\d+)px\)\s*{\s*\.grid\s*{[^}]*repeat\(2,", outline.style)
    assert grid and wide and 390 < int(wide.group(1)) < 1280  # one column below the breakpoint, two above
    assert "name='viewport'" in page  # a phone lays it out at its own width
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        print(f"none of {', '.join(BROWSERS)} is on PATH, so the layout is checked from the HTML and CSS only")
        return
    layout = render(browser, page, tmp_path)
    wide, phone = layout["1280"], layout["390"]
    first, second, third = wide["figures"][:3]
    assert wide["headline"]["bottom"] <= first["top"]
    assert first["top"] == second["top"] and second["left"] >= first["right"]  # side by side
    assert third["top"] >= max(first["bottom"], second["bottom"])
    assert second["right"] - first["left"] > 1100  # the plots fill the window, not an 800 px column
    assert phone["headline"]["bottom"] <= phone["figures"][0]["top"]
    for above, below in zip(phone["figures"], phone["figures"][1:]):
        assert below["top"] >= above["bottom"]  # one column
    assert all(f["right"] <= 390 for f in phone["figures"]) and phone["scrollWidth"] <= 390  # nothing off-screen
    assert [f["id"] for f in wide["figures"]] == ["plot-confusion_matrix", "plot-loss", "plot-metrics", "plot-lr"]


def render(browser: str, page: str, tmp_path) -> dict:
    """Lay the page out in headless Chromium 1280 and 390 px wide: the boxes of the headline and each figure.

    Headless Chromium makes no window narrower than 500 px, so each width is an iframe of the page.
    """
    measure = """
    const box = e => { const r = e.getBoundingClientRect();
                       return {id: e.id, left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
    window.addEventListener('load', () => {
      const out = {};
      for (const frame of document.querySelectorAll('iframe')) {
        const doc = frame.contentDocument;
        out[frame.width] = {scrollWidth: doc.documentElement.scrollWidth, headline: box(doc.getElementById('headline')),
                            figures: [...doc.querySelectorAll('figure')].map(box)};
      }
      document.body.setAttribute('data-layout', JSON.stringify(out));
    });"""
    frames = "".join(f"<iframe width='{w}' height='20000' style='border:0' srcdoc='{html.escape(page, quote=True)}'>"
                     f"</iframe>" for w in (1280, 390))
    wrapper = tmp_path / "layout.html"
    wrapper.write_text(f"<!doctype html><body style='margin:0'>{frames}<script>{measure}</script></body>")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                           "--window-size=1800,1000", "--dump-dom", wrapper.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'data-layout="([^"]*)"', done.stdout)
    assert found, f"{browser} rendered no layout: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))

"""Plots and report.html: drawn from the run's files, readable, and robust to unfinished runs."""

import base64
import csv
import json
import re
import shutil
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from nnrun.console import format_number
from nnrun.plots import (
    comparison_figure,
    confusion_figure,
    loss_figure,
    lr_figure,
    metric_panels,
    metrics_figure,
    predictions_figure,
)
from nnrun.runs import read_run
from tests.helpers import HOUSE_CONFIG, house_prices, train_runs

CLASSIFICATION_PLOTS = {"loss.png", "metrics.png", "lr.png", "confusion_matrix.png"}
REGRESSION_PLOTS = {"loss.png", "metrics.png", "lr.png", "predictions.png"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four short runs: two iris classifiers, a regression and one of six-digit prices, trained through the CLI."""
    folder = tmp_path_factory.mktemp("plots")
    house_prices().to_csv(folder / "house.csv", index=False)
    return train_runs(folder, {
        "fast": {"epochs": 6, "scheduler": {"type": "step", "step_size": 2, "gamma": 0.5}},
        "slow": {"epochs": 4, "optimizer": {"lr": 0.01}},
        "reg": {"epochs": 5, "data": {"type": "diabetes"}, "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01}},
        "house": HOUSE_CONFIG,
    })


def decoded(path):
    image = imread(path)  # (height, width, 4) floats
    colors = len(np.unique(image.reshape(-1, image.shape[-1]), axis=0))
    return image, colors


def test_training_writes_every_plot_and_the_report(runs):
    assert {p.name for p in (runs["fast"] / "plots").iterdir()} == CLASSIFICATION_PLOTS
    assert {p.name for p in (runs["reg"] / "plots").iterdir()} == REGRESSION_PLOTS
    assert (runs["fast"] / "report.html").is_file() and (runs["reg"] / "report.html").is_file()


@pytest.mark.parametrize("run_name, plots", [("fast", CLASSIFICATION_PLOTS), ("reg", REGRESSION_PLOTS)])
def test_each_png_decodes_has_its_size_and_is_not_blank(runs, run_name, plots):
    for name in plots:
        image, colors = decoded(runs[run_name] / "plots" / name)
        if name == "confusion_matrix.png":
            assert image.shape == (500, 600, 4)  # 3 classes: 6 x 5 inches at 100 dpi
        else:
            assert image.shape == (500, 800, 4), name
        assert colors > 50 and image[..., :3].std() > 0.05, f"{name} looks blank"


def test_curves_are_the_numbers_in_metrics_csv(runs):
    run = read_run(runs["fast"])
    table = pd.read_csv(runs["fast"] / "metrics.csv")
    lines = {line.get_label(): line.get_xydata() for line in loss_figure(run).axes[0].get_lines()}
    assert np.array_equal(lines["train"][:, 0], table["epoch"]) and np.array_equal(lines["train"][:, 1],
                                                                                     table["train_loss"])
    assert np.array_equal(lines["val"][:, 1], table["val_loss"])
    summary = json.loads((runs["fast"] / "summary.json").read_text())
    best = lines[f"best epoch ({summary['best_epoch']})"]
    assert best[0, 0] == summary["best_epoch"]

    (lr_line,) = lr_figure(run).axes[0].get_lines()
    assert np.array_equal(lr_line.get_ydata(), table["lr"]) and list(table["lr"][:3]) == [0.1, 0.1, 0.05]

    fig = metrics_figure(run, metric_panels(run))
    drawn = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    assert np.array_equal(drawn["val accuracy"], table["val_accuracy"])
    assert np.array_equal(drawn["train accuracy"], table["train_accuracy"])


def test_confusion_matrix_comes_from_predictions_csv(runs):
    run = read_run(runs["fast"])
    predictions = pd.read_csv(runs["fast"] / "predictions.csv")
    counts = pd.crosstab(predictions["target"], predictions["prediction"]).reindex(
        index=["setosa", "versicolor", "virginica"], columns=["setosa", "versicolor", "virginica"], fill_value=0)
    fig = confusion_figure(run)
    ax = fig.axes[0]
    shares = ax.get_images()[0].get_array()
    assert np.allclose(shares, counts.to_numpy() / counts.to_numpy().sum(axis=1, keepdims=True))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["setosa", "versicolor", "virginica"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["setosa", "versicolor", "virginica"]
    texts = [t.get_text() for t in ax.texts]
    assert texts[0].split("\n")[0] == str(counts.iloc[0, 0])
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"


def test_regression_predictions_plot(runs):
    run = read_run(runs["reg"])
    predictions = pd.read_csv(runs["reg"] / "predictions.csv")
    scatter_ax, residual_ax = predictions_figure(run).axes
    points = scatter_ax.collections[0].get_offsets()
    assert np.allclose(points, predictions[["target", "prediction"]].to_numpy())
    (diagonal,) = [line for line in scatter_ax.get_lines() if line.get_label() == "y = x"]
    assert np.array_equal(diagonal.get_xdata(), diagonal.get_ydata())
    assert sum(p.get_height() for p in residual_ax.patches) == len(predictions)


def test_titles_labels_and_legends_beside_the_data(runs):
    run = read_run(runs["fast"])
    for fig in (loss_figure(run), lr_figure(run)):
        ax = fig.axes[0]
        assert ax.get_title().startswith("fast: ") and ax.get_xlabel() == "epoch" and ax.get_ylabel()
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer)), "the legend covers the plot area"


def test_plot_redraws_deleted_plots_identically(cli, runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs["fast"], copy)
    before = {p.name: imread(p) for p in (copy / "plots").iterdir()}
    shutil.rmtree(copy / "plots")
    (copy / "report.html").unlink()
    result = cli("plot", copy)
    assert result.exit_code == 0, result.output
    after = {p.name: imread(p) for p in (copy / "plots").iterdir()}
    assert set(after) == set(before) == CLASSIFICATION_PLOTS
    for name in before:
        assert np.array_equal(before[name], after[name]), name
    assert (copy / "report.html").is_file()


def test_report_is_self_contained_with_the_summary_numbers(runs):
    page = (runs["fast"] / "report.html").read_text()
    summary = json.loads((runs["fast"] / "summary.json").read_text())
    assert f"<td>{format_number(summary['test']['accuracy'])}</td>" in page
    assert f"<td>{format_number(summary['test']['f1_macro'])}</td>" in page
    assert "versicolor" in page and "<h2>Per class (test)</h2>" in page
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 4
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing to fetch: opens offline
    assert "lr: 0.1" in page  # the config


def test_compare_runs_draws_one_labelled_line_per_run(cli, runs, tmp_path):
    out = tmp_path / "cmp"
    result = cli("plot", runs["fast"], runs["slow"], runs["reg"], "--out", out)
    assert result.exit_code == 0, result.output
    assert {"val_loss.png", "train_loss.png", "val_accuracy.png", "val_rmse.png", "lr.png"} <= \
        {p.name for p in out.iterdir()}
    assert "val_accuracy: not recorded by reg" in result.stdout
    fast, slow, reg = (read_run(runs[n]) for n in ("fast", "slow", "reg"))
    fig = comparison_figure([fast, slow, reg], ["fast", "slow", "reg"], "val_loss")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["fast", "slow", "reg"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fast", "slow", "reg", "best epoch"]
    assert np.array_equal(lines[1].get_ydata(), pd.read_csv(runs["slow"] / "metrics.csv")["val_loss"])
    image, colors = decoded(out / "val_loss.png")
    assert image.shape == (500, 800, 4) and colors > 50


def test_compare_writes_beside_the_runs_folder_and_filters_metrics(cli, runs, tmp_path):
    copies = []
    for name in ("fast", "slow"):
        shutil.copytree(runs[name], tmp_path / "runs" / runs[name].name)
        copies.append(tmp_path / "runs" / runs[name].name)
    result = cli("plot", *copies, "--metrics", "accuracy,rmse")
    assert result.exit_code == 2 and "--metrics names 'rmse'" in result.stderr
    assert not (tmp_path / "comparisons").exists()  # a refused command leaves no folder behind
    result = cli("plot", *copies, "--metrics", "loss")
    assert result.exit_code == 0, result.output
    assert sorted((tmp_path / "runs").iterdir()) == copies  # nothing in the runs folder looks like another run
    (folder,) = (tmp_path / "comparisons").iterdir()
    assert folder.name.startswith("fast-vs-slow-")
    assert {p.name for p in folder.iterdir()} == {"val_loss.png", "train_loss.png", "comparison.csv"}


def test_compare_writes_and_prints_each_runs_final_and_best_metrics(cli, runs, tmp_path):
    result = cli("plot", runs["fast"], runs["slow"], "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "cmp" / "comparison.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == ["fast", "slow"]
    for row, name in zip(rows, ("fast", "slow")):
        table = pd.read_csv(runs[name] / "metrics.csv")
        summary = json.loads((runs[name] / "summary.json").read_text())
        assert row["folder"] == str(runs[name]) and int(row["epochs"]) == len(table)
        assert int(row["best_epoch"]) == summary["best_epoch"]
        assert float(row["final_val_loss"]) == table["val_loss"].iloc[-1]
        assert float(row["best_val_loss"]) == table["val_loss"].min()  # lower is better
        assert float(row["best_val_accuracy"]) == table["val_accuracy"].max()  # higher is better
        assert float(row["final_train_accuracy"]) == table["train_accuracy"].iloc[-1]
    assert "lr" not in "".join(rows[0])  # a setting, not a result
    assert "runs compared" in result.stdout
    printed = {cells[0]: cells[1:] for line in result.stdout.splitlines()
               if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 3}  # the table's rows, cell by cell
    assert printed["epochs"] == [row["epochs"] for row in rows]
    assert printed["best epoch"] == [row["best_epoch"] for row in rows]
    for metric in ("val_loss", "val_accuracy", "train_loss"):
        for which in ("final", "best"):
            assert printed[f"{metric} {which}"] == [format_number(float(row[f"{which}_{metric}"])) for row in rows]


def test_compare_draws_lr_as_steps_and_every_run_alike_with_its_best_epoch(runs):
    fast, slow = read_run(runs["fast"]), read_run(runs["slow"])
    lr_lines = comparison_figure([fast, slow], ["fast", "slow"], "lr").axes[0].get_lines()
    assert [line.get_drawstyle() for line in lr_lines] == ["steps-post", "steps-post"]  # a schedule changes in steps
    ax = comparison_figure([fast, slow], ["fast", "slow"], "val_loss").axes[0]
    styles = {(line.get_marker(), line.get_linestyle(), line.get_linewidth()) for line in ax.get_lines()}
    assert len(styles) == 1  # 6 and 4 epochs: both with markers, or neither
    marks = [tuple(c.get_offsets()[0]) for c in ax.collections]
    assert marks == [(run.best_epoch, run.metrics["val_loss"][run.epochs.index(run.best_epoch)]) for run in (fast, slow)]
    assert ax.get_ylabel() == "val loss (cross_entropy)" and ax.get_xlabel() == "epoch"
    assert comparison_figure([fast, slow], ["fast", "slow"], "val_accuracy").axes[0].get_ylabel() == \
        "val accuracy (share of rows)"
    house = read_run(runs["house"])
    assert comparison_figure([house], ["house"], "val_rmse").axes[0].get_ylabel() == "val RMSE (price)"


def test_metrics_png_is_titled_by_what_it_draws(runs):
    fast, reg = read_run(runs["fast"]), read_run(runs["reg"])
    assert metrics_figure(fast, metric_panels(fast))._suptitle.get_text() == "fast: train and validation metrics"
    only_val = metric_panels(fast, ["val_accuracy"])
    assert metrics_figure(fast, only_val)._suptitle.get_text() == "fast: validation metrics"
    assert metrics_figure(reg, metric_panels(reg))._suptitle.get_text() == "reg: validation metrics"


def drawn_labels(fig, axis):
    """The visible tick labels of an axis once drawn, with their boxes on the canvas."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    low, high = sorted(axis.get_view_interval())
    ticks = [(tick, label) for tick, label in zip(axis.get_ticklocs(), axis.get_ticklabels())
             if low <= tick <= high and label.get_text()]
    return [(tick, label.get_text(), label.get_window_extent(renderer)) for tick, label in ticks]


def test_six_digit_targets_get_readable_separated_tick_labels(runs):
    run = read_run(runs["house"])
    fig = predictions_figure(run)
    scatter_ax, residual_ax = fig.axes
    for ax in (scatter_ax, residual_ax):
        labels = drawn_labels(fig, ax.xaxis)
        assert len(labels) >= 3
        for (_, _, left), (_, _, right) in pairwise(labels):
            assert right.x0 - left.x1 >= 5, [text for _, text, _ in labels]  # apart, never "100000200000"
        for tick, text, _ in labels:
            assert text == format_number(tick, step=abs(labels[1][0] - labels[0][0]))
        large = [text for tick, text, _ in labels if abs(tick) >= 1000]
        assert large and all("," in text for text in large)  # 100,000 and 25,000, not 100000
    assert max(tick for tick, _, _ in drawn_labels(fig, scatter_ax.xaxis)) >= 100_000  # the six-digit case
    for _, text, _ in drawn_labels(fig, scatter_ax.yaxis):
        assert "e" not in text and (len(text) < 4 or "," in text)
    predictions = pd.read_csv(runs["house"] / "predictions.csv")
    rmse = float(np.sqrt(((predictions["prediction"] - predictions["target"]) ** 2).mean()))
    assert residual_ax.get_title() == f"residuals (RMSE {format_number(rmse)})"  # not 4.795e+04
    assert not [t for t in fig.findobj(lambda a: hasattr(a, "get_text")) if re.search(r"\de[+-]\d", t.get_text())]


def test_residual_counts_and_epochs_are_whole_numbers(runs):
    fig = predictions_figure(read_run(runs["house"]))
    residual_ax = fig.axes[1]
    for top in (None, 3, 17, 35):  # few test rows, or many
        if top:
            residual_ax.set_ylim(0, top)
        counts = [tick for tick, _, _ in drawn_labels(fig, residual_ax.yaxis)]
        assert len(counts) >= 3 and all(float(c).is_integer() for c in counts), counts
    fig = loss_figure(read_run(runs["house"]))  # 3 epochs: 1, 2, 3, never 1.5
    assert [tick for tick, _, _ in drawn_labels(fig, fig.axes[0].xaxis)] == [1, 2, 3]


@pytest.mark.parametrize("step, values, labels", [
    (0.025, [0.25, 0.275, 0.3], ["0.250", "0.275", "0.300"]),
    (0.1, [0.9, 1.0], ["0.9", "1.0"]),
    (0.09999999999999998, [0.0, 0.1], ["0.0", "0.1"]),  # a difference of two ticks
    (50_000, [-100_000, 0, 150_000], ["-100,000", "0", "150,000"]),
    (2e-5, [0.0001, 0.00012], ["0.00010", "0.00012"]),
    (0.5, [-1e-17], ["0.0"]),  # no "-0.0"
])
def test_tick_labels_share_their_decimals_and_never_use_an_exponent(step, values, labels):
    assert [format_number(v, step=step) for v in values] == labels


def test_unfinished_runs_get_partial_plots_or_a_clear_message(cli, runs, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(runs["fast"], partial)
    shutil.rmtree(partial / "plots")
    for name in ("summary.json", "predictions.csv", "report.html"):
        (partial / name).unlink()
    lines = (partial / "metrics.csv").read_text().splitlines()
    (partial / "metrics.csv").write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # killed mid-row
    result = cli("plot", partial)
    assert result.exit_code == 0, result.output
    assert "left out 1 incomplete row" in result.stdout and "no predictions.csv" in result.stdout
    assert {p.name for p in (partial / "plots").iterdir()} == {"loss.png", "metrics.png", "lr.png"}
    (line,) = [l for l in loss_figure(read_run(partial)).axes[0].get_lines() if l.get_label() == "train"]
    assert list(line.get_xdata()) == [1, 2]

    (partial / "metrics.csv").write_text(lines[0] + "\n")  # killed during epoch 1
    result = cli("plot", partial)
    assert result.exit_code == 2
    (message,) = result.stderr.strip().splitlines()
    assert "has no finished epoch in metrics.csv yet" in message

    (partial / "metrics.csv").write_text("")
    assert cli("plot", partial).exit_code == 2
    (partial / "metrics.csv").unlink()
    result = cli("plot", partial)
    assert result.exit_code == 2 and "has no metrics.csv" in result.stderr
    result = cli("plot", tmp_path / "nowhere")
    assert result.exit_code == 2 and "run folder" in result.stderr and "not found" in result.stderr
    for result in (cli("plot", partial), cli("plot", tmp_path / "nowhere")):
        assert "Traceback" not in result.output

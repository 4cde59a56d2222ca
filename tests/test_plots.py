"""Plots and report.html: drawn from the run's files, readable, and robust to unfinished runs."""

import base64
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

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
from tests.helpers import run_dirs

CLASSIFICATION_PLOTS = {"loss.png", "metrics.png", "lr.png", "confusion_matrix.png"}
REGRESSION_PLOTS = {"loss.png", "metrics.png", "lr.png", "predictions.png"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three short runs: two iris classifiers and one regression, trained through the CLI."""
    import yaml
    from typer.testing import CliRunner

    from nnrun.cli import app
    from tests.helpers import BASE_CONFIG, merged

    folder = tmp_path_factory.mktemp("plots")
    made = {}
    for name, changes in {
        "fast": {"epochs": 6, "scheduler": {"type": "step", "step_size": 2, "gamma": 0.5}},
        "slow": {"epochs": 4, "optimizer": {"lr": 0.01}},
        "reg": {"epochs": 5, "data": {"type": "diabetes"}, "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01}},
    }.items():
        config = folder / f"{name}.yaml"
        config.write_text(yaml.safe_dump(merged(BASE_CONFIG, {"name": name, **changes})))
        result = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(folder / "runs")])
        assert result.exit_code == 0, result.output
        made[name] = next(p for p in run_dirs(folder / "runs") if p.name.startswith(f"{name}-"))
    return made


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
    assert f"{summary['test']['accuracy']:.4f}" in page and f"{summary['test']['f1_macro']:.4f}" in page
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
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fast", "slow", "reg"]
    assert np.array_equal(lines[1].get_ydata(), pd.read_csv(runs["slow"] / "metrics.csv")["val_loss"])
    image, colors = decoded(out / "val_loss.png")
    assert image.shape == (500, 800, 4) and colors > 50


def test_compare_default_folder_and_metric_filter(cli, runs, tmp_path):
    copies = []
    for name in ("fast", "slow"):
        shutil.copytree(runs[name], tmp_path / "runs" / runs[name].name)
        copies.append(tmp_path / "runs" / runs[name].name)
    result = cli("plot", *copies, "--metrics", "loss")
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("compare-")]
    assert {p.name for p in folder.iterdir()} == {"val_loss.png", "train_loss.png"}
    result = cli("plot", *copies, "--metrics", "accuracy,rmse")
    assert result.exit_code == 2 and "--metrics names 'rmse'" in result.stderr


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

"""The tutorial experiments in configs/: each one runs as shipped and beats the tutorial's own result."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from nnrun.data.context import DataContext
from nnrun.data.datasets import DATASETS
from nnrun.data.splits import split_indices
from tests.helpers import CONFIGS, ROOT, run_dirs

# Where the California CSV lives on our machines (and in CI); NNRUN_DATA_DIR points elsewhere if needed.
SHARED_DATA = next((d for d in (os.environ.get("NNRUN_DATA_DIR"), ROOT.parent / "shared" / "data")
                    if d and (Path(d) / "california_housing.zip").is_file()), ROOT.parent / "shared" / "data")


def train(cli, tmp_path, config: str, *args: str) -> dict:
    result = cli("train", CONFIGS / config, *args, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    return json.loads((run / "summary.json").read_text())


def test_house_price_reaches_the_least_squares_optimum(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # as a user runs it from the repo (tests/test_configs.py also runs it from elsewhere)
    summary = train(cli, tmp_path, "house_price_linear.yaml")
    assert summary["rows"] == {"train": 6, "val": 6, "test": 6}
    assert summary["test"]["mse"] <= 42.9  # the tutorial stops at 44.19; the optimum is 42.87
    assert summary["test"]["rmse"] <= 6.548
    area = np.array([80, 95, 104, 112, 125, 135.0])
    price = np.array([200, 230, 245, 247, 259, 262.0])
    optimum = np.mean((np.polyval(np.polyfit(area, price, 1), area) - price) ** 2)
    assert summary["test"]["mse"] == pytest.approx(optimum, rel=1e-4)


def test_make_regression_matches_the_closed_form_fit(cli, tmp_path):
    summary = train(cli, tmp_path, "make_regression_linear.yaml")
    table = DATASETS.build("make_regression", DataContext(), n_samples=100, noise=20.0, seed=12)
    index, _ = split_indices(100, val=0.15, test=0.15, seed=0)
    x, y = table.features.to_numpy(), table.target
    fit = LinearRegression().fit(x[index["train"]], y[index["train"]])
    rmse = float(np.sqrt(np.mean((fit.predict(x[index["test"]]) - y[index["test"]]) ** 2)))
    assert summary["test"]["rmse"] == pytest.approx(rmse, rel=1e-3)
    assert summary["rows"]["test"] == 15


def test_breast_cancer_beats_the_tutorial(cli, tmp_path):
    summary = train(cli, tmp_path, "breast_cancer_logistic.yaml")
    assert summary["rows"]["test"] == 114  # the tutorial's 20% test split
    assert summary["test"]["accuracy"] >= 0.95  # the tutorial gets 0.9479


def test_iris_mlp(cli, tmp_path):
    summary = train(cli, tmp_path, "iris_mlp.yaml")
    assert summary["test"]["accuracy"] >= 0.95
    assert summary["parameters"] == 83


def test_product_mlp_rmse_in_original_units(cli, tmp_path):
    summary = train(cli, tmp_path, "product_mlp.yaml")
    assert summary["test"]["rmse"] < 1.0
    assert summary["test"]["max_error"] > summary["test"]["rmse"]  # y is 1 to 100: these are original units


@pytest.mark.skipif(not (SHARED_DATA / "california_housing.zip").is_file(),
                    reason=f"California housing CSV not found at {SHARED_DATA / 'california_housing.zip'}")
def test_california_housing_r2(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NNRUN_DATA_DIR", str(SHARED_DATA))  # as the config's first line runs it
    summary = train(cli, tmp_path, "california_housing_mlp.yaml")
    assert summary["rows"]["train"] + summary["rows"]["val"] + summary["rows"]["test"] == 20640
    assert summary["test"]["r2"] >= 0.78
    assert "total_bedrooms (207)" in " ".join(summary["notes"])


MNIST5K = SHARED_DATA / "mnist-5k"


@pytest.mark.skipif(not MNIST5K.is_dir(), reason=f"the MNIST-5k IDX files are not at {MNIST5K}")
@pytest.mark.parametrize("config, target", [("mnist5k_mlp.yaml", 0.92), ("mnist5k_cnn.yaml", 0.96)])
def test_mnist5k(cli, tmp_path, monkeypatch, config, target):
    monkeypatch.setenv("NNRUN_DATA_DIR", str(SHARED_DATA))
    summary = train(cli, tmp_path, config)
    assert summary["rows"] == {"train": 3600, "val": 400, "test": 1000}
    assert summary["test"]["accuracy"] >= target


def test_digits_mlp(cli, tmp_path):
    summary = train(cli, tmp_path, "digits_mlp.yaml")
    assert summary["test"]["accuracy"] >= 0.95


def test_every_shipped_config_trains_from_any_folder_with_its_data_in_configs_data(cli, tmp_path, monkeypatch):
    """The README's promise: put a config's data in configs/data/ and run it from anywhere."""
    import shutil

    if not all((SHARED_DATA / name).exists() for name in ("california_housing.zip", "mnist-5k")):
        pytest.skip(f"needs the downloads in {SHARED_DATA} (or NNRUN_DATA_DIR): california_housing.zip, mnist-5k")

    from tests.helpers import write_idx_folder

    project = tmp_path / "project"
    shutil.copytree(CONFIGS, project / "configs")
    data = project / "configs" / "data"
    for name in ("california_housing.zip", "mnist-5k"):  # the downloads, placed as the README says
        (data / name).symlink_to(SHARED_DATA / name)
    write_idx_folder(data / "FashionMNIST" / "raw", n_train=300, n_test=60)  # what torchvision's download leaves
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("NNRUN_DATA_DIR", raising=False)
    small = {"mnist5k_cnn.yaml": ["data.train_subset=400"], "fashion_mnist_cnn.yaml": ["model.channels=[8]"],
             "california_housing_mlp.yaml": ["data.sample=2000"]}
    trained = []
    for config in sorted(p.name for p in CONFIGS.glob("*.yaml")):
        if config == "cifar10_resnet18.yaml":
            continue  # torchvision checks CIFAR's md5 sums, so only the real archive loads (no network here)
        result = cli("train", project / "configs" / config, "epochs=1", *small.get(config, []),
                     "--runs-dir", tmp_path / "runs" / config)
        assert result.exit_code == 0, f"{config}: {result.output}"
        trained.append(config)
    assert len(trained) == len(list(CONFIGS.glob("*.yaml"))) - 1

"""Image data: IDX files, torchvision datasets (offline, from local files), image folders, and image runs end to end."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from nnrun.config import validate
from nnrun.data.bundle import load_data
from nnrun.data.images import Augment, channel_stats, read_idx
from nnrun.errors import UserError
from tests.helpers import (
    BASE_CONFIG,
    fake_digits,
    merged,
    run_dirs,
    write_idx,
    write_idx_folder,
)

CPU = torch.device("cpu")
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def image_config(data: dict, **changes) -> dict:
    return merged(BASE_CONFIG, {"data": {"split": {"train": 0.9, "val": 0.1, "test": 0.0}, **data},
                                "model": {"type": "mlp", "hidden": [32]}, "batch_size": 32, **changes})


def train(cli, tmp_path, config: dict, *args):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("train", path, "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path, *args)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    return run, json.loads((run / "summary.json").read_text())


# --- IDX -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_reader_reads_gz_and_plain_files(tmp_path, gz):
    images, labels = fake_digits(30, size=12)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"images{suffix}", images, gz=gz)
    write_idx(tmp_path / f"labels{suffix}", labels, gz=gz)
    assert np.array_equal(read_idx(tmp_path / f"images{suffix}", 2051), images)
    assert np.array_equal(read_idx(tmp_path / f"labels{suffix}", 2049), labels)


def test_idx_dataset_splits_files_into_train_val_and_test(tmp_path):
    write_idx_folder(tmp_path / "digits", n_train=200, n_test=50, gz=False)
    cfg = validate(image_config({"type": "idx", "path": "digits"}))
    data = load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (180, 20, 50)
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (1, 28, 28)
    assert data.in_shape == (1, 28, 28) and data.class_names == [str(i) for i in range(10)]
    _, labels = fake_digits(50, size=28, seed=1)
    assert np.array_equal(data.test.y.numpy(), labels)  # the t10k files are the test split, in order


def test_idx_folds_partition_the_training_files_and_keep_the_test_files(tmp_path):
    write_idx_folder(tmp_path / "digits", n_train=60, n_test=10, size=8, gz=False)
    folds = []
    for fold in range(4):
        cfg = validate(image_config({"type": "idx", "path": "digits", "split": {"test": 0.0, "folds": 4, "fold": fold}}))
        folds.append(load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path))
    for data in folds:
        assert data.test.rows.tolist() == list(range(10))
        assert sorted([*data.train.rows, *data.val.rows]) == list(range(60))
        assert data.preprocessing["images"]["mean"] == channel_stats(data.train.x, "auto")[0]  # from this fold's train
    assert sorted(row for data in folds for row in data.val.rows) == list(range(60))


@pytest.mark.parametrize("damage, message", [
    ("truncated", "is truncated or padded: its header says 200 x 28 x 28"),
    ("mismatch", "holds 200 images but 'train-labels-idx1-ubyte.gz' holds 199 labels"),
    ("magic", "has magic number 2049, but an IDX images file has 2051"),
    ("missing", "has no t10k-labels-idx1-ubyte[.gz]"),
    ("not gzip", "is not readable"),
])
def test_damaged_idx_files_exit_2_with_one_line(cli, tmp_path, damage, message):
    folder = write_idx_folder(tmp_path / "digits", n_train=200, n_test=20)
    images, labels = fake_digits(200)
    if damage == "truncated":
        raw = gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())
        (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    elif damage == "mismatch":
        write_idx(folder / "train-labels-idx1-ubyte.gz", labels[:199])
    elif damage == "magic":
        write_idx(folder / "train-images-idx3-ubyte.gz", images, magic=2049)
    elif damage == "missing":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    else:
        (folder / "train-images-idx3-ubyte.gz").write_bytes(b"this is not gzip data at all")
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(image_config({"type": "idx", "path": "digits"})))
    result = cli("train", tmp_path / "c.yaml", "--data-dir", tmp_path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_mnist_style_run_learns_and_eval_predict_plots_work(cli, tmp_path):
    write_idx_folder(tmp_path / "digits", n_train=300, n_test=100)
    run, summary = train(cli, tmp_path, image_config({"type": "idx", "path": "digits", "train_subset": 250},
                                                     epochs=8, optimizer={"type": "adam", "lr": 0.003}))
    assert summary["rows"] == {"train": 225, "val": 25, "test": 100}
    assert summary["test"]["accuracy"] > 0.8  # the fake digits are easy: real learning, not chance (0.1)
    assert {p.name for p in (run / "plots").iterdir()} >= {"loss.png", "confusion_matrix.png"}

    best = run / "checkpoints" / "best.pth"
    result = cli("eval", best, "--data-dir", tmp_path, "--json")
    assert json.loads(result.stdout)["metrics"]["accuracy"] == summary["test"]["accuracy"]
    result = cli("eval", best, "--data", tmp_path / "digits", "--json")  # the folder's t10k files
    assert json.loads(result.stdout)["metrics"]["accuracy"] == summary["test"]["accuracy"]
    out = tmp_path / "p.csv"
    result = cli("predict", best, tmp_path / "digits" / "t10k-images-idx3-ubyte.gz", "--out", out)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["prediction"].astype(str).tolist() == \
        pd.read_csv(run / "predictions.csv")["prediction"].astype(str).tolist()


# --- torchvision -----------------------------------------------------------------------------------------------

def fake_fashion(root, *, n_train=120, n_test=40):
    """Small fake IDX files in torchvision's raw layout for FashionMNIST (what a download would leave)."""
    return write_idx_folder(root / "FashionMNIST" / "raw", n_train=n_train, n_test=n_test)


def test_torchvision_fashion_mnist_offline_from_local_files(cli, tmp_path):
    fake_fashion(tmp_path / "tv")
    config = image_config({"type": "torchvision", "name": "FashionMNIST", "root": "tv", "download": False}, epochs=1)
    run, summary = train(cli, tmp_path, config)
    assert summary["rows"] == {"train": 108, "val": 12, "test": 40}
    checkpoint = torch.load(run / "checkpoints" / "best.pth", weights_only=True)
    assert checkpoint["data"]["class_names"] == FASHION
    assert checkpoint["data"]["in_shape"] == [1, 28, 28]
    cfg = validate(config)
    data = load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path)
    _, labels = fake_digits(40, seed=1)
    assert np.array_equal(data.test.y.numpy(), labels) and data.test.x.shape == (40, 1, 28, 28)
    predictions = pd.read_csv(run / "predictions.csv")
    assert set(predictions["target"]) <= set(FASHION) and "prob_Ankle boot" in predictions.columns

    from nnrun.plots import confusion_figure
    from nnrun.runs import read_run

    ax = confusion_figure(read_run(run)).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == FASHION


def test_torchvision_without_files_or_network_exits_2_with_the_expected_files(cli, tmp_path, monkeypatch):
    import torchvision

    # A real download attempt that cannot connect, whatever network this machine has.
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    import yaml

    for download, expected in ((True, "could not download FashionMNIST"), (False, "FashionMNIST not found")):
        config = image_config({"type": "torchvision", "name": "FashionMNIST", "root": "tv", "download": download})
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        result = cli("train", tmp_path / "c.yaml", "--data-dir", tmp_path, "--runs-dir", tmp_path / "runs")
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert expected in line and "train-images-idx3-ubyte.gz" in line and str(tmp_path / "tv" / "FashionMNIST" /
                                                                                   "raw") in line
        assert "Traceback" not in result.output and result.stdout == ""


def test_subset_first_n_or_seeded_sample(tmp_path):
    fake_fashion(tmp_path / "tv", n_train=100, n_test=30)
    base = {"type": "torchvision", "name": "FashionMNIST", "root": "tv", "train_subset": 50, "test_subset": 10}
    first = load_data(validate(image_config(base)).data, seed=0, device=CPU, data_dir=tmp_path)
    assert sorted(np.concatenate([first.train.rows, first.val.rows]).tolist()) == list(range(50))
    assert first.test.rows.tolist() == list(range(10))
    sampled = load_data(validate(image_config({**base, "subset_seed": 3})).data, seed=0, device=CPU,
                        data_dir=tmp_path)
    rows = sorted(np.concatenate([sampled.train.rows, sampled.val.rows]).tolist())
    assert len(rows) == 50 and rows != list(range(50))


# --- image folders ---------------------------------------------------------------------------------------------

def write_folder(root, *, classes=("circle", "square"), per_class=30, size=(24, 24), mode="L", seed=0):
    """A tree of PNGs, one subfolder per class, each class with its own shape."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 40, (*size, 3)).astype(np.uint8)
            h, w = size
            if k == 0:
                pixels[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 250
            else:
                pixels[:, : w // 3] = 250
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i:03d}.png")
    return root


def test_image_folder_trains_evaluates_and_predicts(cli, tmp_path):
    write_folder(tmp_path / "shapes", mode="RGB")
    config = image_config({"type": "image_folder", "path": "shapes", "split": {"train": 0.6, "val": 0.2, "test": 0.2}},
                          epochs=6, model={"type": "cnn", "channels": [8, 16], "convs_per_block": 1},
                          optimizer={"type": "adam", "lr": 0.01}, batch_size=8)
    run, summary = train(cli, tmp_path, config)
    checkpoint = torch.load(run / "checkpoints" / "best.pth", weights_only=True)
    assert checkpoint["data"]["in_shape"] == [3, 24, 24] and checkpoint["data"]["class_names"] == ["circle", "square"]
    assert summary["test"]["accuracy"] >= 0.9
    predictions = pd.read_csv(run / "predictions.csv")
    assert predictions["row"].str.match(r"(circle|square)/\d{3}\.png").all()

    best = run / "checkpoints" / "best.pth"
    result = cli("eval", best, "--data", tmp_path / "shapes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 60
    # New images of another size are resized as in training; their file names are the row ids.
    new = tmp_path / "new"
    new.mkdir()
    Image.fromarray(np.full((48, 48, 3), 250, dtype=np.uint8)).save(new / "bright.png")
    out = tmp_path / "p.csv"
    assert cli("predict", best, new, "--out", out).exit_code == 0
    assert pd.read_csv(out)["row"].tolist() == ["bright.png"]


def test_image_folder_grayscale_and_resize(tmp_path):
    write_folder(tmp_path / "gray", mode="L", size=(20, 16))
    cfg = validate(image_config({"type": "image_folder", "path": "gray", "resize": [12, 10]}))
    data = load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path)
    assert data.in_shape == (1, 12, 10)


@pytest.mark.parametrize("layout, message", [
    ("empty", "has no images in class subfolders"),
    ("one class", "has a single class, 'circle'"),
    ("mixed sizes", "the images have different sizes"),
    ("missing", "data folder 'shapes' not found"),
])
def test_bad_image_folders_exit_2(cli, tmp_path, layout, message):
    root = tmp_path / "shapes"
    if layout == "empty":
        (root / "circle").mkdir(parents=True)
        (root / "circle" / "notes.txt").write_text("no images here")
    elif layout == "one class":
        write_folder(root, classes=("circle",))
    elif layout == "mixed sizes":
        write_folder(root, classes=("circle",), size=(24, 24))
        write_folder(root, classes=("square",), size=(30, 30))
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(image_config({"type": "image_folder", "path": "shapes"})))
    result = cli("train", tmp_path / "c.yaml", "--data-dir", tmp_path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line and "Traceback" not in result.output


# --- normalization and augmentation ----------------------------------------------------------------------------

def test_normalization_statistics_come_from_the_train_split(tmp_path):
    write_idx_folder(tmp_path / "digits", n_train=100, n_test=100)
    cfg = validate(image_config({"type": "idx", "path": "digits"}))
    data = load_data(cfg.data, seed=0, device=CPU, data_dir=tmp_path)
    pixels = data.train.x.double() / 255
    stats = data.preprocessing["images"]
    assert stats["mean"][0] == pytest.approx(float(pixels.mean()), abs=1e-9)
    assert stats["std"][0] == pytest.approx(float(pixels.std(unbiased=False)), abs=1e-9)
    assert channel_stats(data.train.x, "none") == ([0.0], [1.0])
    assert channel_stats(data.train.x, {"mean": [0.5], "std": [0.2]}) == ([0.5], [0.2])
    with pytest.raises(UserError, match="data.normalize must be"):
        channel_stats(data.train.x, {"mean": [0.5, 0.5], "std": [0.2]})


def test_augment_flips_and_shifts_without_changing_the_batch_shape():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    flipped = Augment(horizontal_flip=True)(x.repeat(20, 1, 1, 1))
    assert any(torch.equal(img, x[0].flip(-1)) for img in flipped[::2])
    assert all(torch.equal(img, x[0]) or torch.equal(img, x[0].flip(-1)) for img in flipped[::2])
    cropped = Augment(random_crop=1)(x)
    assert cropped.shape == x.shape and cropped.dtype == torch.uint8
    assert not Augment()


def test_streamed_image_folder_trains_like_the_in_memory_one(cli, tmp_path):
    """in_memory=no decodes files batch by batch in DataLoader workers: same data, same metrics."""
    write_folder(tmp_path / "shapes", mode="RGB", per_class=20)
    results = {}
    for in_memory in ("yes", "no"):
        config = image_config({"type": "image_folder", "path": "shapes", "in_memory": in_memory,
                               "split": {"train": 0.6, "val": 0.2, "test": 0.2}, "normalize": "auto"},
                              epochs=3, batch_size=8, model={"type": "cnn", "channels": [8], "convs_per_block": 1})
        folder = tmp_path / in_memory
        folder.mkdir()
        run, summary = train(cli, folder, config, "--data-dir", tmp_path)
        results[in_memory] = (pd.read_csv(run / "metrics.csv").drop(columns=["train_seconds", "epoch_seconds"]),
                              summary)
        if in_memory == "no":
            assert any("streaming 40 images from disk" in n for n in summary["notes"])
    pd.testing.assert_frame_equal(results["yes"][0], results["no"][0], check_exact=False, atol=1e-5)
    assert results["yes"][1]["test"]["accuracy"] == results["no"][1]["test"]["accuracy"]

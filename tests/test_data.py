import numpy as np
import pandas as pd
import pytest
import torch

from nnrun.config import validate
from nnrun.data.batching import Batches
from nnrun.data.bundle import load_data, split_rows
from nnrun.data.context import DataContext
from nnrun.data.datasets import DATASETS
from nnrun.data.preprocessing import FeaturePreprocessor, TargetScaler
from nnrun.data.splits import Split, fold_indices, fold_split, split_indices
from nnrun.data.tables import Table
from nnrun.errors import UserError
from tests.helpers import BASE_CONFIG, merged

CPU = torch.device("cpu")
CTX = DataContext()
# Every dataset that needs no file (csv: tests/test_csv.py; image datasets: tests/test_images.py).
BUILT_IN = [entry.name for entry in DATASETS if not any(p.required for p in entry.params.values())]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_dataset_builds_a_consistent_table(name):
    table = DATASETS.build(name, CTX)
    assert len(table.features) == len(table.target) >= 100
    assert table.task == DATASETS.get(name).meta["task"]
    assert all(pd.api.types.is_numeric_dtype(table.features[c]) for c in table.features.columns)
    if table.task == "classification":
        assert table.target.dtype == np.int64
        assert set(np.unique(table.target)) == set(range(len(table.class_names)))
    else:
        assert table.target.dtype == np.float64 and table.class_names is None


def test_synthetic_datasets_take_size_noise_and_seed():
    a = DATASETS.build("make_regression", CTX, n_samples=50, noise=5.0, seed=1)
    b = DATASETS.build("make_regression", CTX, n_samples=50, noise=5.0, seed=1)
    c = DATASETS.build("make_regression", CTX, n_samples=50, noise=5.0, seed=2)
    assert len(a.features) == 50
    assert np.array_equal(a.target, b.target) and not np.array_equal(a.target, c.target)


def test_product_dataset_is_x1_times_x2():
    table = DATASETS.build("product", CTX, n_samples=200, seed=3)
    x = table.features.to_numpy()
    assert np.allclose(table.target, x[:, 0] * x[:, 1])
    assert x.min() >= 1 and x.max() < 10


def test_split_is_seeded_disjoint_complete_and_stratified():
    y = np.repeat([0, 1, 2], [100, 50, 30])
    index, notes = split_indices(len(y), val=0.2, test=0.2, seed=7, stratify=y)
    again, _ = split_indices(len(y), val=0.2, test=0.2, seed=7, stratify=y)
    other, _ = split_indices(len(y), val=0.2, test=0.2, seed=8, stratify=y)
    assert notes == []
    assert all(np.array_equal(index[k], again[k]) for k in index)
    assert not np.array_equal(index["test"], other["test"])
    everything = np.concatenate(list(index.values()))
    assert sorted(everything.tolist()) == list(range(len(y)))  # disjoint and complete
    assert [len(index[k]) for k in ("train", "val", "test")] == [108, 36, 36]
    for k in index:  # class proportions kept in every split
        assert np.allclose(np.bincount(y[index[k]]) / len(index[k]), [100 / 180, 50 / 180, 30 / 180], atol=0.02)


def test_split_falls_back_with_a_note_when_a_class_is_tiny():
    y = np.array([0] * 20 + [1])
    index, notes = split_indices(len(y), val=0.2, test=0.2, seed=0, stratify=y)
    assert notes and "not stratified" in notes[0]
    assert sum(len(v) for v in index.values()) == 21


# --- K-fold cross-validation ------------------------------------------------------------------------------------

FOLD_Y = np.repeat([0, 1, 2], [60, 37, 23])  # 120 rows, uneven classes


@pytest.mark.parametrize("stratify", [FOLD_Y, None], ids=["classification", "regression"])
def test_folds_partition_the_rows_that_are_not_test_and_never_touch_test(stratify):
    plain, _ = split_indices(len(FOLD_Y), val=0.15, test=0.2, seed=3, stratify=stratify)
    rest = np.setdiff1d(np.arange(len(FOLD_Y)), plain["test"])
    folds = [fold_split(len(FOLD_Y), test=0.2, folds=5, fold=i, seed=3, stratify=stratify)[0] for i in range(5)]
    for index in folds:
        assert np.array_equal(index["test"], plain["test"])  # every fold tests on the plain split's test rows
        assert not set(index["test"]) & (set(index["train"]) | set(index["val"]))
        assert np.array_equal(np.sort(np.concatenate([index["train"], index["val"]])), rest)
    every_val = np.concatenate([index["val"] for index in folds])
    assert np.array_equal(np.sort(every_val), rest)  # each non-test row is val in exactly one fold


def test_folds_are_seeded_and_stratified():
    parts, notes = fold_indices(len(FOLD_Y), folds=4, seed=1, stratify=FOLD_Y)
    again, _ = fold_indices(len(FOLD_Y), folds=4, seed=1, stratify=FOLD_Y)
    other, _ = fold_indices(len(FOLD_Y), folds=4, seed=2, stratify=FOLD_Y)
    assert notes == [] and all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(FOLD_Y)))
    counts = np.array([np.bincount(FOLD_Y[part], minlength=3) for part in parts])  # (folds, classes)
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()


def test_folds_fall_back_to_a_plain_kfold_with_a_note_when_a_class_is_tiny():
    y = np.array([0] * 30 + [1] * 3)
    parts, notes = fold_indices(len(y), folds=5, seed=0, stratify=y)
    assert "folds are not stratified: the smallest class has 3" in notes[0]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))
    with pytest.raises(UserError, match="data.split.folds is 5, but only 4 rows are left"):
        fold_indices(4, folds=5, seed=0)


def test_split_seed_fixes_the_split_while_the_run_seed_changes():
    def val_rows(split: dict, seed: int) -> list[int]:
        cfg = validate(merged(BASE_CONFIG, {"seed": seed, "data": {"split": split}}))
        return load_data(cfg.data, seed=cfg.seed, device=CPU).val.rows.tolist()

    fold = {"test": 0.2, "folds": 5, "fold": 1}
    assert val_rows({**fold, "seed": 9}, 0) == val_rows({**fold, "seed": 9}, 1) == val_rows(fold, 9)
    assert val_rows(fold, 0) != val_rows(fold, 1)
    assert val_rows({"seed": 9}, 0) == val_rows({}, 9) != val_rows({}, 0)


def test_folds_of_data_with_its_own_test_split_partition_its_train_and_val_rows():
    own = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 15)
    table = Table(pd.DataFrame({"a": np.arange(65.0)}), np.arange(65) % 3, "classification", ["a", "b", "c"],
                  split=own)
    folds = [split_rows(table, Split(test=0.0, folds=5, fold=i), seed=0) for i in range(5)]
    for index, notes in folds:
        assert index["test"].tolist() == list(range(50, 65))
        assert sorted([*index["train"], *index["val"]]) == list(range(50))
        assert "fold" in notes[-1] and "the data's own test split" in notes[-1]
    assert sorted(row for index, _ in folds for row in index["val"]) == list(range(50))


def test_scaler_statistics_come_from_the_rows_it_was_fitted_on():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(5, 2, 500), "b": rng.normal(-3, 0.5, 500)})
    shifted = train + 100.0
    pre = FeaturePreprocessor("standard").fit(train)
    assert np.allclose(pre.center, train.mean().to_numpy())
    assert np.allclose(pre.spread, train.std(ddof=0).to_numpy())
    out = pre.transform(shifted)  # transform applies the train statistics, it does not refit
    assert np.allclose(out.mean(axis=0), 100.0 / train.std(ddof=0).to_numpy() + 0.0, atol=0.2)
    assert np.allclose(pre.center, train.mean().to_numpy())
    restored = FeaturePreprocessor.from_state(pre.state_dict())
    assert np.array_equal(restored.transform(train), pre.transform(train))


def test_minmax_and_none_scaling():
    frame = pd.DataFrame({"a": [0.0, 5.0, 10.0], "c": [3.0, 3.0, 3.0]})
    assert np.allclose(FeaturePreprocessor("minmax").fit(frame).transform(frame)[:, 0], [0, 0.5, 1])
    assert np.allclose(FeaturePreprocessor("minmax").fit(frame).transform(frame)[:, 1], 0)  # constant column
    assert np.array_equal(FeaturePreprocessor("none").fit(frame).transform(frame), frame.to_numpy(np.float32))


def test_target_scaler_round_trip():
    y = np.array([10.0, 20.0, 30.0])
    scaler = TargetScaler("standard").fit(y)
    z = scaler.transform(y)
    assert z.shape == (3, 1) and abs(z.mean()) < 1e-6
    assert np.allclose(z[:, 0] * scaler.std + scaler.mean, y)


def test_load_data_fits_scaling_on_train_only():
    cfg = validate(merged(BASE_CONFIG, {"data": {"type": "wine", "split": {"train": 0.6, "val": 0.2, "test": 0.2}}}))
    data = load_data(cfg.data, seed=0, device=CPU)
    table = DATASETS.build("wine", CTX)
    train_rows = table.features.iloc[data.train.rows]
    assert np.allclose(data.preprocessing["features"]["center"], train_rows.mean().to_numpy())
    assert torch.allclose(data.train.x.mean(dim=0), torch.zeros(13), atol=1e-5)
    assert not torch.allclose(data.test.x.mean(dim=0), torch.zeros(13), atol=1e-3)
    assert data.train.y.dtype == torch.int64
    assert len(set(data.train.rows) & set(data.test.rows)) == 0  # test rows are not train rows


def test_load_data_standardizes_regression_targets():
    cfg = validate(merged(BASE_CONFIG, {"data": {"type": "diabetes"}, "loss": "mse"}))
    data = load_data(cfg.data, seed=0, device=CPU)
    raw = DATASETS.build("diabetes", CTX).target
    assert data.train.y.shape == (len(data.train), 1)
    assert abs(float(data.train.y.mean())) < 1e-5
    assert np.isclose(data.preprocessing["target"]["mean"][0], raw[data.train.rows].mean())


def test_split_all_uses_every_row_everywhere_with_a_note():
    cfg = validate(merged(BASE_CONFIG, {"data": {"split": "all"}}))
    data = load_data(cfg.data, seed=0, device=CPU)
    assert all(len(s) == 150 for s in data.splits.values())
    assert "no metric is held-out" in data.notes[0]


def test_bad_dataset_arguments_are_user_errors():
    cfg = validate(merged(BASE_CONFIG, {"data": {"type": "make_classification", "n_informative": 9}}))
    with pytest.raises(UserError, match="data 'make_classification' could not be built"):
        load_data(cfg.data, seed=0, device=CPU)


def test_batches_cover_every_row_once_per_epoch_in_seeded_order():
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(10)
    batches = Batches(x, y, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    epoch = [b for b in batches]
    assert [len(bx) for bx, _ in epoch] == [4, 4, 2] and len(batches) == 3
    assert sorted(torch.cat([by for _, by in epoch]).tolist()) == list(range(10))
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in epoch)  # rows stay paired
    replay = Batches(x, y, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(epoch, replay))


def test_batches_full_and_trailing_single_row():
    x, y = torch.zeros(9, 2), torch.arange(9)
    (only,) = list(Batches(x, y, batch_size=None, shuffle=True, generator=torch.Generator()))
    assert only[0].data_ptr() == x.data_ptr() and only[0].shape == x.shape  # full batch: a view, no copy
    sizes = [len(bx) for bx, _ in Batches(x, y, batch_size=4, shuffle=True, generator=torch.Generator())]
    assert sizes == [4, 4]  # a last batch of one row would break BatchNorm
    assert [len(bx) for bx, _ in Batches(x, y, batch_size=4)] == [4, 4, 1]  # evaluation keeps every row


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_dataset_trains_one_step(name):
    from tests.helpers import experiment, one_step

    task = DATASETS.get(name).meta["task"]
    exp = experiment(data={"type": name}, loss="cross_entropy" if task == "classification" else "mse")
    one_step(exp)
    assert exp.data.train.x.shape[1] == len(exp.data.feature_names)


@pytest.mark.parametrize("name", BUILT_IN)
def test_tabular_split_tensors_are_row_major(name):
    # pandas hands back column-major matrices; gathering batch rows from one was 3.5x slower (issue 10).
    loss = "cross_entropy" if DATASETS.get(name).meta["task"] == "classification" else "mse"
    cfg = validate(merged(BASE_CONFIG, {"data": {"type": name}, "loss": loss}))
    data = load_data(cfg.data, seed=0, device=CPU)
    for split in data.splits.values():
        assert split.x.is_contiguous() and split.x.stride() == (split.x.shape[1], 1)


def test_one_hot_features_are_row_major_too():
    frame = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0) ** 2, "c": list("xyzxyz")})
    x = FeaturePreprocessor(categorical=["c"]).fit(frame).transform(frame)
    assert x.flags["C_CONTIGUOUS"] and x.dtype == np.float32 and x.shape == (6, 5)


@pytest.mark.parametrize("split", [{"train": 0.8, "val": 0.2, "test": 0.0}, {"test": 0.0, "folds": 2, "fold": 1}])
def test_a_regression_split_without_test_rows_loads(split):
    # found by the config fuzzer: scaling the targets of an empty test split raised a numpy reshape error
    cfg = validate(merged(BASE_CONFIG, {"data": {"type": "diabetes", "split": split}, "loss": "mse"}))
    data = load_data(cfg.data, seed=0, device=torch.device("cpu"))
    assert data.test is None or len(data.test.y) == 0
    assert len(data.train.y) + len(data.val.y) == 442

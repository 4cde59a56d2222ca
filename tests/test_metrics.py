"""The metric reports: the regression metrics equal scikit-learn's, edge cases included."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from nnrun.metrics import classification_report, regression_report, resolve_mode


@pytest.mark.parametrize("targets", [1, 3])
def test_regression_report_equals_scikit_learn(targets):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(500, targets)) * 1000
    pred = y + rng.normal(size=y.shape) * 300
    report = regression_report(y, pred)
    assert report["mse"] == pytest.approx(skm.mean_squared_error(y, pred), rel=1e-12)
    assert report["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)), rel=1e-12)
    assert report["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    assert report["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-12)
    assert report["max_error"] == pytest.approx(np.abs(y - pred).max(), rel=1e-12)


@pytest.mark.parametrize("y, pred", [
    ([[5.0], [5.0], [5.0]], [[5.0], [5.0], [5.0]]),  # constant target, perfect: 1.0
    ([[5.0], [5.0], [5.0]], [[4.0], [5.0], [6.0]]),  # constant target, not perfect: 0.0
    ([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]], [[1.1, 6.0], [2.2, 7.0], [2.9, 8.0]]),  # one constant column
])
def test_r2_edge_cases_follow_scikit_learn(y, pred):
    assert regression_report(np.array(y), np.array(pred))["r2"] == pytest.approx(skm.r2_score(y, pred))


def test_r2_is_nan_for_one_row_and_every_metric_for_no_rows():
    assert math.isnan(regression_report(np.array([1.0]), np.array([2.0]))["r2"])
    assert all(math.isnan(v) for v in regression_report(np.zeros(0), np.zeros(0)).values())


def test_balanced_accuracy_skips_classes_absent_from_the_truth_without_a_warning(recwarn):
    proba = np.eye(3)[[0, 0, 1, 2]]  # predicts class 2 once, which the truth never holds
    report = classification_report(np.array([0, 0, 1, 1]), proba, ["a", "b", "c"])
    assert report["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert not [w for w in recwarn if "y_pred contains classes" in str(w.message)]


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("val_accuracy", "max"), ("val_r2", "max"),
                                           ("val_rmse", "min")])
def test_auto_mode_follows_the_metric(monitor, mode):
    assert resolve_mode(monitor, "auto") == mode
    assert resolve_mode(monitor, "max") == "max"

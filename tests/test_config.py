from pathlib import Path

import pytest
import yaml

from nnrun.config import Split, apply_overrides, load_yaml, parse_value, validate
from nnrun.errors import UserError
from tests.helpers import BASE_CONFIG, CONFIGS, merged


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(UserError) as info:
        validate(raw)
    return info.value.problems


# --- loading -----------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"config file '.*nope.yaml' not found \(check the path"):
        load_yaml(tmp_path / "nope.yaml")


def test_malformed_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 5\nmodel: {type: mlp\n")
    with pytest.raises(UserError) as info:
        load_yaml(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:") and "invalid YAML" in problem and "fix the syntax" in problem


@pytest.mark.parametrize("text, expected", [("", "is empty"), ("- a\n- b\n", "must be a mapping")])
def test_empty_or_non_mapping_file(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=expected):
        load_yaml(path)


def test_exponent_floats_are_floats():
    # Plain YAML 1.1 reads 1e-3 as the string '1e-3'.
    assert parse_value("1e-3") == 0.001
    assert parse_value("[64,32]") == [64, 32]
    assert parse_value("true") is True
    assert parse_value("adam") == "adam"


# --- overrides ---------------------------------------------------------------------------------------------

def test_overrides_set_nested_keys_without_touching_the_original():
    raw = {"optimizer": {"type": "sgd", "lr": 0.1}, "loss": "cross_entropy", "epochs": 3}
    out = apply_overrides(raw, ["optimizer.lr=0.01", "epochs=5", "loss.label_smoothing=0.1",
                                "model.hidden=[64,32]"])
    assert out["optimizer"] == {"type": "sgd", "lr": 0.01}
    assert out["epochs"] == 5
    assert out["loss"] == {"type": "cross_entropy", "label_smoothing": 0.1}
    assert out["model"] == {"hidden": [64, 32]}
    assert raw["optimizer"]["lr"] == 0.1


@pytest.mark.parametrize("item", ["epochs5", "=3", "optimizer..lr=1"])
def test_malformed_override(item):
    with pytest.raises(UserError, match="must look like key=value"):
        apply_overrides({}, [item])


def test_override_below_a_value_is_refused():
    with pytest.raises(UserError, match="'epochs' is a value, not a section"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_unknown_override_key_is_caught_by_validation():
    raw = apply_overrides(BASE_CONFIG, ["optimizer.lrr=0.1"])
    (problem,) = problems_of(raw)
    assert problem.startswith("unknown key 'optimizer.lrr' for optimizer 'sgd' (did you mean 'optimizer.lr'?")


def test_override_may_name_a_default_key_that_the_file_omits():
    cfg = validate(apply_overrides(BASE_CONFIG, ["optimizer.momentum=0.9"]))
    assert cfg.optimizer.kwargs["momentum"] == 0.9


# --- validation --------------------------------------------------------------------------------------------

def test_resolved_config_has_defaults_and_reruns_as_is():
    cfg = validate(BASE_CONFIG)
    resolved = cfg.to_dict()
    assert resolved["optimizer"] == {"type": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False,
                                     "dampening": 0.0, "weight_decay": 0.0}
    assert resolved["model"]["output_activation"] == "none"
    assert resolved["data"]["split"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    assert resolved["early_stopping"]["mode"] == "min"
    assert validate(yaml.safe_load(cfg.to_yaml())) == cfg


def test_every_problem_is_reported_at_once():
    raw = merged(BASE_CONFIG, {"epoch": 5, "optimizer": {"type": "adamm"}, "model": {"hidden": "ten"},
                               "batch_size": 0})
    problems = problems_of(raw)
    assert any(p.startswith("unknown key 'epoch' in config (did you mean 'epochs'?") for p in problems)
    assert any(p.startswith("unknown optimizer 'adamm' (did you mean 'adam'?") for p in problems)
    assert any(p.startswith("model.hidden must be a list of integers, each >= 1, got 'ten'") for p in problems)
    assert any(p.startswith("batch_size must be an integer >= 1 or 'full'") for p in problems)
    assert len(problems) == 4


def test_missing_required_keys():
    problems = problems_of({"name": "x"})
    assert [p.split("'")[1] for p in problems] == ["data", "model", "loss", "optimizer", "epochs"]


def test_component_shorthand_and_full_batch():
    cfg = validate(merged(BASE_CONFIG, {"batch_size": "full", "loss": "cross_entropy"}))
    assert cfg.batch_size == "full" and cfg.loss.type == "cross_entropy"


@pytest.mark.parametrize("split, expected", [
    ({"train": 0.8, "val": 0.1, "test": 0.1}, Split(0.8, 0.1, 0.1)),
    ({"val": 0.2, "test": 0.2}, Split(0.6, 0.2, 0.2)),
    ("all", Split(1.0, 0.0, 0.0, all=True)),
])
def test_split_forms(split, expected):
    assert validate(merged(BASE_CONFIG, {"data": {"split": split}})).data.split == expected


@pytest.mark.parametrize("split, expected", [
    ({"train": 0.8, "val": 0.3, "test": 0.1}, "must add up to 1"),
    ({"train": 0.9, "val": 0.0, "test": 0.1}, "needs train > 0 and val > 0"),
    ({"train": 0.7, "vall": 0.3}, "unknown key 'data.split.vall'"),
    ("half", "must be a mapping of fractions or 'all'"),
])
def test_bad_split(split, expected):
    (problem,) = problems_of(merged(BASE_CONFIG, {"data": {"split": split}}))
    assert expected in problem


def test_folds_and_split_seed_are_written_only_when_set_and_rerun_as_is():
    cfg = validate(merged(BASE_CONFIG, {"data": {"split": {"test": 0.2, "folds": 5, "fold": 3, "seed": 7}}}))
    assert cfg.data.split == Split(train=0.64, val=0.16, test=0.2, folds=5, fold=3, seed=7)
    assert cfg.to_dict()["data"]["split"] == {"test": 0.2, "folds": 5, "fold": 3, "seed": 7}
    assert validate(yaml.safe_load(cfg.to_yaml())) == cfg
    assert validate(merged(BASE_CONFIG, {"data": {"split": {"folds": 4, "fold": 0}}})).data.split.test == 0.15
    assert validate(merged(BASE_CONFIG, {"data": {"split": {"seed": 7}}})).to_dict()["data"]["split"] == \
        {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 7}


@pytest.mark.parametrize("split, expected", [
    ({"folds": 5, "fold": 7}, "data.split.fold must be an integer from 0 to 4 (folds: 5), got 7"),
    ({"folds": 5}, "data.split.folds needs data.split.fold, the fold that is val: an integer from 0 to 4"),
    ({"fold": 2}, "data.split.fold needs data.split.folds, the number of folds"),
    ({"folds": 1, "fold": 0}, "data.split.folds must be an integer >= 2, got 1"),
    ({"folds": 5, "fold": 0, "val": 0.2}, "data.split.val is set by folds"),
    ({"folds": 5, "fold": 0, "test": 1.0}, "data.split.test must be a fraction from 0 up to (not including) 1"),
    ({"folds": 5, "fold": 0, "seed": "x"}, "data.split.seed must be an integer from 0 to 2**32 - 1, got 'x'"),
])
def test_bad_folds_are_one_line_each(split, expected):
    raw = merged(BASE_CONFIG, {"epochs": 0, "data": {"split": split}})
    problems = problems_of(raw)
    assert len(problems) == 2 and problems[0].startswith("epochs must be")  # collected with the other problems
    assert problems[1].startswith(expected) and problems[1].endswith(")")


def test_folds_on_a_split_of_all_is_refused_with_the_fix():
    with pytest.raises(UserError) as info:
        apply_overrides(merged(BASE_CONFIG, {"data": {"split": "all"}}), ["data.split.folds=5", "data.split.fold=0"])
    assert info.value.problems[0] == ("override 'data.split.folds=5': data.split is 'all', which has no 'folds' (set "
                                      "fractions instead, for example data.split={test: 0.15, folds: 5, fold: 0})")


def test_test_false_is_written_only_when_off_and_must_be_a_boolean():
    assert "test" not in validate(BASE_CONFIG).to_dict()
    cfg = validate(merged(BASE_CONFIG, {"test": False}))
    assert cfg.test is False and cfg.to_dict()["test"] is False
    assert validate(yaml.safe_load(cfg.to_yaml())) == cfg
    (problem,) = problems_of(merged(BASE_CONFIG, {"test": "no"}))
    assert problem.startswith("test must be true or false, got 'no'")


def test_unknown_data_key_lists_the_shared_keys():
    (problem,) = problems_of(merged(BASE_CONFIG, {"data": {"scal": "minmax"}}))
    assert "did you mean 'data.scale'?" in problem and "split" in problem


@pytest.mark.parametrize("loss, activation, resolved", [
    ("cross_entropy", "auto", "none"), ("bce", "auto", "sigmoid"), ("bce_with_logits", "auto", "none"),
    ("nll", "auto", "log_softmax"), ("kl_div", "auto", "log_softmax"), ("bce", "sigmoid", "sigmoid"),
])
def test_output_activation_follows_the_loss(loss, activation, resolved):
    raw = merged(BASE_CONFIG, {"data": {"type": "moons"}, "loss": loss, "model": {"output_activation": activation}})
    assert validate(raw).model.output_activation == resolved


@pytest.mark.parametrize("loss, activation, expected", [
    ("cross_entropy", "softmax", "applies softmax twice"),
    ("bce_with_logits", "sigmoid", "applies sigmoid twice"),
    ("bce", "none", "set model.output_activation=sigmoid, or use loss bce_with_logits"),
    ("nll", "softmax", "set model.output_activation=log_softmax"),
])
def test_tutorial_mistakes_are_refused(loss, activation, expected):
    raw = merged(BASE_CONFIG, {"data": {"type": "moons"}, "loss": loss, "model": {"output_activation": activation}})
    (problem,) = problems_of(raw)
    assert expected in problem


def test_cross_entropy_on_float_targets_is_refused():
    (problem,) = problems_of(merged(BASE_CONFIG, {"data": {"type": "diabetes"}}))
    assert problem.startswith("loss 'cross_entropy' needs class labels, but dataset 'diabetes' has float "
                              "regression targets (use loss mse")


def test_regression_loss_on_classes_is_refused():
    (problem,) = problems_of(merged(BASE_CONFIG, {"loss": "mse"}))
    assert "loss 'mse' is for regression, but dataset 'iris' has class labels" in problem


def test_early_stopping_validation_and_auto_mode():
    cfg = validate(merged(BASE_CONFIG, {"early_stopping": {"monitor": "val_accuracy", "patience": 3}}))
    assert cfg.early_stopping.mode == "max"
    problems = problems_of(merged(BASE_CONFIG, {"early_stopping": {"monitor": "val_acc", "patience": 0,
                                                                     "stop": 1}}))
    assert len(problems) == 3
    assert any("did you mean 'val_accuracy'" in p for p in problems)


@pytest.mark.parametrize("monitor", [None, 3])
def test_a_monitor_that_is_not_a_name_is_one_problem(monitor):
    (problem,) = problems_of(merged(BASE_CONFIG, {"early_stopping": {"monitor": monitor}}))
    assert problem.startswith("early_stopping.monitor must be one of val_loss")


@pytest.mark.parametrize("device, ok", [("auto", True), ("cpu", True), ("cuda:1", True), ("mps", True),
                                        ("gpu", False), ("cuda:x", False)])
def test_device_names(device, ok):
    raw = merged(BASE_CONFIG, {"device": device})
    if ok:
        assert validate(raw).device == device
    else:
        assert problems_of(raw)[0].startswith("device must be auto, cpu, cuda, cuda:N or mps")


def test_name_defaults_to_the_file_name():
    raw = {k: v for k, v in BASE_CONFIG.items() if k != "name"}
    assert validate(raw, source=Path("configs/my_exp.yaml")).name == "my_exp"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate_and_start_with_their_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and f"nnrun train configs/{path.name}" in first
    validate(load_yaml(path), source=path)

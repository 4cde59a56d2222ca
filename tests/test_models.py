import pytest
import torch
from torch import nn

from nnrun.models import MODELS, build_model, summarize
from tests.helpers import experiment, one_step, write_idx_folder

INITS = ["default", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform", "normal", "zeros"]


IMAGE_MODELS = {"cnn", "resnet18", "resnet34"}


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_trains_one_step(name, tmp_path):
    if name in IMAGE_MODELS:
        write_idx_folder(tmp_path / "digits", n_train=40, n_test=10, size=16)
        exp = experiment(model={"type": name}, data={"type": "idx", "path": str(tmp_path / "digits")},
                         batch_size=8)
        classes = 10
    else:
        exp = experiment(model={"type": name})
        classes = 3
    one_step(exp)
    exp.model.eval()
    out = exp.model(exp.data.val.x)
    assert out.shape == (len(exp.data.val), classes)


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_image_models_take_one_and_three_channels(name):
    for channels in (1, 3):
        model = build_model(name, {}, in_shape=(channels, 28, 28), out_features=7,
                            input_stats={"mean": [0.5] * channels, "std": [0.25] * channels})
        model.eval()
        assert model(torch.zeros(2, channels, 28, 28, dtype=torch.uint8)).shape == (2, 7)


def test_image_models_refuse_tables():
    from nnrun.errors import UserError

    with pytest.raises(UserError, match="cnn needs images"):
        experiment(model={"type": "cnn"})


def test_standardize_is_the_first_layer_and_uses_the_given_statistics():
    model = build_model("mlp", {"hidden": [4]}, in_shape=(1, 2, 2), out_features=2,
                        input_stats={"mean": [0.5], "std": [0.5]})
    assert list(dict(model.named_children()))[0] == "standardize"
    x = torch.tensor([[[[0, 255], [51, 204]]]], dtype=torch.uint8)
    assert torch.allclose(model.standardize(x), torch.tensor([[[[-1.0, 1.0], [-0.6, 0.6]]]]))


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("name", [e.name for e in MODELS if "init" in e.params])
def test_init_schemes(name, init):
    torch.manual_seed(0)
    shape = (1, 8, 8) if name in IMAGE_MODELS else (4,)
    model = build_model(name, {"init": init}, in_shape=shape, out_features=3)
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None]
    weights = torch.cat([m.weight.flatten() for m in linears])
    if init == "zeros":
        assert torch.count_nonzero(weights) == 0
        assert all(torch.count_nonzero(m.weight) == 0 for m in model.modules() if isinstance(m, nn.Conv2d))
    elif init == "normal":
        assert 0.003 < weights.std() < 0.03
    if init != "default":
        assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    default = build_model(name, {}, in_shape=shape, out_features=3)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in default.parameters())


def test_iris_mlp_summary_has_83_parameters():
    model = build_model("mlp", {"hidden": [10]}, in_shape=(4,), out_features=3)
    summary = summarize(model, torch.zeros(5, 4))
    assert summary.total_params == 83 == summary.trainable_params
    assert [(r.name, r.kind, r.output_shape, r.params) for r in summary.rows] == [
        ("fc1", "Linear", (5, 10), 50), ("act1", "ReLU", (5, 10), 0), ("out", "Linear", (5, 3), 33)]


def test_mlp_options_add_their_layers():
    model = build_model("mlp", {"hidden": [8, 4], "activation": "tanh", "dropout": 0.5, "batchnorm": True},
                        in_shape=(6,), out_features=2, output_activation="softmax")
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "BatchNorm1d", "Tanh", "Dropout",
                     "Linear", "Softmax"]
    model.eval()
    assert torch.allclose(model(torch.randn(3, 6)).sum(dim=1), torch.ones(3))


def test_image_shaped_input_is_flattened():
    model = build_model("mlp", {"hidden": [16]}, in_shape=(1, 8, 8), out_features=10)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)

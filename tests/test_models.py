import pytest
import torch
from torch import nn

from nnrun.models import MODELS, build_model, summarize
from tests.helpers import experiment, one_step

INITS = ["default", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform", "normal", "zeros"]


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_trains_one_step(name):
    exp = experiment(model={"type": name})
    one_step(exp)
    out = exp.model(exp.data.val.x)
    assert out.shape == (len(exp.data.val), 3)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("name", MODELS.names())
def test_init_schemes(name, init):
    torch.manual_seed(0)
    model = build_model(name, {"init": init}, in_shape=(4,), out_features=3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    if init == "zeros":
        assert torch.count_nonzero(weights) == 0
    elif init == "normal":
        assert 0.003 < weights.std() < 0.03
    if init != "default":
        assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    default = build_model(name, {}, in_shape=(4,), out_features=3)
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

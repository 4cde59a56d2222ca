import pytest

from nnrun.errors import UserError
from nnrun.optimizers import OPTIMIZERS
from tests.helpers import experiment, one_step


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_takes_a_step(name):
    exp = experiment(optimizer={"type": name, "lr": 0.01})
    one_step(exp)
    assert exp.optimizer.param_groups[0]["lr"] == 0.01


def test_sgd_settings_reach_torch():
    exp = experiment(optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4})
    group = exp.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 1e-4)


def test_settings_torch_rejects_are_user_errors():
    with pytest.raises(UserError, match="optimizer settings are invalid: Nesterov momentum requires"):
        experiment(optimizer={"type": "sgd", "nesterov": True})

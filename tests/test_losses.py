import pytest
import torch

from nnrun.losses import LOSSES
from tests.helpers import DATA_FOR_LOSS, experiment, one_step


def data_for(name: str) -> str:
    meta = LOSSES.get(name).meta
    return DATA_FOR_LOSS["binary" if meta.get("binary") else meta["task"]]


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_trains_one_step(name):
    exp = experiment(data={"type": data_for(name)}, loss=name)
    first = one_step(exp)
    assert first >= 0  # every registered loss is non-negative


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_falls_over_a_few_epochs(name):
    from nnrun.training import train_one_epoch

    exp = experiment(data={"type": data_for(name)}, loss=name, optimizer={"type": "adam", "lr": 0.01})
    losses = [train_one_epoch(exp)[0] for _ in range(15)]
    assert losses[-1] < losses[0]


def test_binary_losses_use_one_output_and_class_index_targets():
    exp = experiment(data={"type": "moons"}, loss="bce_with_logits")
    assert exp.task.out_features == 1
    out = exp.model(exp.data.val.x)
    assert out.shape == (len(exp.data.val), 1)
    probs = exp.task.probabilities(out)
    assert probs.shape == (len(exp.data.val), 2) and torch.allclose(probs.sum(dim=1), torch.ones(len(probs)))


def test_kl_div_against_one_hot_equals_nll():
    log_probs = torch.log_softmax(torch.randn(6, 3), dim=1)
    target = torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.allclose(LOSSES.build("kl_div")(log_probs, target), LOSSES.build("nll")(log_probs, target))


def test_class_weights_must_match_the_classes():
    from nnrun.errors import UserError

    with pytest.raises(UserError, match="loss.weight has 2 values, but data 'iris' has 3 classes"):
        experiment(loss={"type": "cross_entropy", "weight": [1.0, 2.0]})
    experiment(loss={"type": "cross_entropy", "weight": [1.0, 2.0, 1.0], "label_smoothing": 0.1})

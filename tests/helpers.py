"""Building real experiments from small configs, and one real training step."""

from __future__ import annotations

import torch

from nnrun.config import validate
from nnrun.experiment import Experiment, build_experiment
from tests.conftest import BASE_CONFIG, merged

# A dataset that fits each kind of loss.
DATA_FOR_LOSS = {"classification": "iris", "binary": "moons", "regression": "diabetes"}


def experiment(**changes) -> Experiment:
    return build_experiment(validate(merged(BASE_CONFIG, changes)))


def one_step(exp: Experiment) -> float:
    """One forward, backward and optimizer step on a real batch; asserts that the weights moved."""
    x, y = next(iter(exp.train_batches))
    before = [p.detach().clone() for p in exp.model.parameters()]
    exp.model.train()
    loss = exp.loss_fn(exp.model(x), y)
    exp.optimizer.zero_grad()
    loss.backward()
    exp.optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, exp.model.parameters())), "no weight changed"
    return loss.item()

import pytest

from nnrun.checkpoints import load_checkpoint, save_checkpoint
from nnrun.schedulers import SCHEDULERS, step_after_epoch
from nnrun.training import train_one_epoch
from tests.helpers import experiment


def lrs_over(exp, epochs: int) -> list[float]:
    """The lr used in each epoch, stepping the scheduler as the loop does."""
    seen = []
    for _ in range(epochs):
        seen.append(exp.optimizer.param_groups[0]["lr"])
        train_one_epoch(exp)
        if exp.scheduler_interval == "epoch":
            step_after_epoch(exp.scheduler, 1.0)  # a metric that never improves
    return seen


# Settings under which every scheduler changes the lr within six epochs, so a lost state would show.
BUSY = {"step": {"step_size": 2}, "multistep": {"milestones": [2, 4]}, "reduce_on_plateau": {"patience": 1}}


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_runs_and_its_state_loads_safely(name, tmp_path):
    scheduler = {"type": name, **BUSY.get(name, {})}
    exp = experiment(scheduler=scheduler, epochs=6, optimizer={"type": "sgd", "lr": 0.1})
    before = lrs_over(exp, 3)
    save_checkpoint(tmp_path / "s.pth", {"scheduler": exp.scheduler.state_dict(),
                                         "optimizer": exp.optimizer.state_dict()})
    expected = lrs_over(exp, 3)  # the next three epochs' rates, from the saved point

    state = load_checkpoint(tmp_path / "s.pth")  # weights_only=True
    fresh = experiment(scheduler=scheduler, epochs=6, optimizer={"type": "sgd", "lr": 0.1})
    fresh.optimizer.load_state_dict(state["optimizer"])
    fresh.scheduler.load_state_dict(state["scheduler"])
    assert len(set(before + expected)) > 1, "the schedule must move, or this test could not fail"
    assert lrs_over(fresh, 3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("scheduler, expected", [
    ({"type": "step", "step_size": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05, 0.025]),
    ({"type": "multistep", "milestones": [1, 4], "gamma": 0.1}, [0.1, 0.01, 0.01, 0.01, 0.001]),
    ({"type": "exponential", "gamma": 0.5}, [0.1, 0.05, 0.025, 0.0125, 0.00625]),
    ({"type": "linear_warmup", "warmup_epochs": 2, "start_factor": 0.5}, [0.05, 0.075, 0.1, 0.1, 0.1]),
    ({"type": "cosine", "t_max": 4}, [0.1, 0.0853553, 0.05, 0.0146447, 0.0]),
])
def test_epoch_schedules(scheduler, expected):
    exp = experiment(scheduler=scheduler, epochs=5, optimizer={"type": "sgd", "lr": 0.1})
    assert lrs_over(exp, 5) == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_reduce_on_plateau_cuts_the_lr_when_the_metric_stalls():
    exp = experiment(scheduler={"type": "reduce_on_plateau", "patience": 1, "factor": 0.5},
                     optimizer={"type": "sgd", "lr": 0.1})
    assert lrs_over(exp, 5) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05])


def test_onecycle_steps_every_batch_over_the_whole_run():
    exp = experiment(scheduler={"type": "onecycle", "max_lr": 0.5}, epochs=4, optimizer={"type": "sgd", "lr": 0.1})
    assert exp.scheduler_interval == "step"
    lrs = lrs_over(exp, 4)
    assert lrs[0] == pytest.approx(0.5 / 25)
    assert max(lrs) > lrs[0] and lrs[-1] < max(lrs)
    assert exp.scheduler.last_epoch == 4 * len(exp.train_batches)

"""The thread policy: a fixed count, or `threads: auto` choosing by timing the run's own steps."""

import json
import time

import pytest
import torch

from nnrun.threads import RECHECK_SECONDS, ThreadPolicy, available_cores
from tests.helpers import run_dirs

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def keep_thread_count():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def train_steps(policy: ThreadPolicy, steps: int, seconds: dict[int, float]) -> None:
    """Steps whose cost depends on the thread count, as on a machine where one count is clearly faster."""
    for _ in policy.timed(range(steps)):
        time.sleep(seconds[torch.get_num_threads()])


def test_a_fixed_count_is_set_and_never_measured():
    said = []
    policy = ThreadPolicy(1, device=CPU, say=said.append)
    assert torch.get_num_threads() == 1 and policy.candidates == []
    assert list(policy.timed([1, 2, 3])) == [1, 2, 3] and policy.trial is None
    assert said == ["threads 1 (set by threads= or --threads)"]
    assert policy.summary() == {"setting": 1, "threads": 1, "checks": 1,
                                "decisions": [{"threads": 1, "after_checks": 1, "ms_per_step": {}}]}


def test_auto_keeps_the_faster_count_and_says_why():
    said = []
    policy = ThreadPolicy("auto", device=CPU, max_threads=2, say=said.append)
    train_steps(policy, 200, {1: 0.0005, 2: 0.003})
    assert policy.threads == 1 and torch.get_num_threads() == 1
    (message,) = said
    assert message.startswith("threads 1 of 2 cores (auto: ") and "ms/step at 1" in message and "at 2" in message
    timings = policy.summary()["decisions"][0]["ms_per_step"]
    assert timings["1"] < timings["2"]


def test_a_re_check_follows_a_neighbour_that_starts_or_stops():
    said = []
    policy = ThreadPolicy("auto", device=CPU, max_threads=2, say=said.append)
    train_steps(policy, 200, {1: 0.003, 2: 0.0005})
    assert policy.threads == 2
    policy.next_check = 0.0  # the re-check is due (normally RECHECK_SECONDS later)
    train_steps(policy, 200, {1: 0.0005, 2: 0.003})
    assert policy.threads == 1 and said[-1].startswith("threads now 1 (auto re-check: ")
    assert [d["threads"] for d in policy.summary()["decisions"]] == [2, 1]


def test_only_time_in_training_steps_brings_the_re_check_nearer():
    # a pause between epochs (a val pass, a checkpoint, bench/run.py's lockstep) is not training, so that a run
    # which pauses often is not re-checked at every epoch
    policy = ThreadPolicy("auto", device=CPU, max_threads=2, say=lambda _: None)
    train_steps(policy, 200, {1: 0.0005, 2: 0.003})
    assert policy.trial is None and policy.next_check >= RECHECK_SECONDS  # in training seconds, not wall time
    policy.next_check = policy.trained + 0.05
    time.sleep(0.1)  # wall time passes, no training
    train_steps(policy, 1, {1: 0.001, 2: 0.003})
    assert policy.trial is None and policy.checks == 1  # not yet due: 1 ms of training since
    train_steps(policy, 60, {1: 0.001, 2: 0.003})  # 60 ms of training: due at the next epoch
    train_steps(policy, 1, {1: 0.001, 2: 0.003})
    assert policy.trial is not None  # the re-check has begun


def test_a_re_check_that_finds_no_clear_winner_stays():
    said = []
    policy = ThreadPolicy("auto", device=CPU, max_threads=2, say=said.append)
    train_steps(policy, 200, {1: 0.0005, 2: 0.003})
    policy.next_check = 0.0
    train_steps(policy, 200, {1: 0.001, 2: 0.001})  # equal: noise must not flip the choice
    assert policy.threads == 1 and len(said) == 1 and policy.summary()["checks"] == 2


def test_auto_does_not_measure_what_it_cannot_improve():
    said = []
    assert ThreadPolicy("auto", device=CPU, max_threads=1, say=said.append).candidates == []
    assert said == ["threads 1 (auto: one core available)"]
    policy = ThreadPolicy("auto", device=torch.device("cuda"), say=said.append)
    assert policy.candidates == [] and "not measured, cuda does the work" in said[-1]


def test_omp_num_threads_caps_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert available_cores() >= 1


def test_training_reports_the_choice_in_the_log_and_summary(cli, write_config, tmp_path):
    result = cli("train", write_config(epochs=3), "--runs-dir", tmp_path / "runs", "--threads", "1")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["threads"]["setting"] == 1 and summary["threads"]["threads"] == 1
    assert "threads 1 (set by threads= or --threads)" in (run / "train.log").read_text()
    assert "threads: 1" in (run / "config.yaml").read_text()


@pytest.mark.parametrize("value, message", [("0", "threads must be auto or an integer >= 1, got 0"),
                                            ("many", "threads must be auto or an integer >= 1, got 'many'")])
def test_a_bad_thread_count_is_a_config_error(cli, write_config, tmp_path, value, message):
    result = cli("train", write_config(), f"threads={value}", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and message in result.stderr and not (tmp_path / "runs").exists()

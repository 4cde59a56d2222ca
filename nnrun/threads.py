"""How many CPU threads torch uses for each op: a fixed number, or `auto`, chosen by timing the training steps.

No fixed number is right. On a quiet 2-core machine one thread is 5-11% faster for small MLPs and two are
26% faster for a 784-wide one; with one other busy process, two threads are 2-2.5x *slower* on all of them.
So `auto` times the run's own steps at one thread and at every available core, in alternating windows, keeps
the faster, and checks again later, so that a neighbour starting or stopping is noticed: after `RECHECK_SECONDS`
of training steps (val passes, checkpoints and anything else between epochs do not count), or later still when a
check is slow (a big model's steps), so that checking costs at most `CHECK_SHARE` of the training time.
`torch.set_num_threads` is process-wide: the choice holds for everything else the process does.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import torch

T = TypeVar("T")
Threads = Literal["auto"] | int

WINDOW_STEPS = 2  # a timing window is at least this many steps ...
WINDOW_SECONDS = 0.02  # ... and at least this long, so that timer noise stays small
ROUNDS = 3  # windows per candidate in the first trial (the median decides); a re-check has 2 ...
CLEAR_WIN = 0.67  # ... and either ends after one round when a count is this much faster in every window
RECHECK_SECONDS = 10.0  # seconds of settled training steps between two trials, at the least
CHECK_SHARE = 0.02  # ... and long enough that re-checks take at most this share of the time
SWITCH_MARGIN = 0.9  # on a re-check, another count must be at least 10% faster to take over


def available_cores() -> int:
    """The cores this process may run on, capped by OMP_NUM_THREADS when the user set it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(cap))) if cap.isdigit() and int(cap) > 0 else cores


@dataclass
class _Trial:
    """Alternating timing windows over the candidate thread counts."""

    candidates: list[int]
    rounds: int = ROUNDS
    skip: int = 0  # steps to leave out first: a run's first step pays one-time costs at whatever count it has
    seconds: dict[int, list[float]] = field(default_factory=dict)  # count -> mean step time of each window
    started: float = 0.0  # the policy's training seconds when the trial began
    turn: int = 0  # index into the schedule below
    steps: int = 0
    elapsed: float = 0.0

    @property
    def schedule(self) -> list[int]:
        return [c for _ in range(self.rounds) for c in self.candidates]

    @property
    def current(self) -> int:
        return self.schedule[self.turn]

    def add(self, seconds: float) -> bool:
        """Count one step at the current count; True when the trial is over."""
        if self.skip:
            self.skip -= 1
            return False
        self.steps += 1
        self.elapsed += seconds
        if self.steps >= WINDOW_STEPS and self.elapsed >= WINDOW_SECONDS:
            self.seconds.setdefault(self.current, []).append(self.elapsed / self.steps)
            self.turn, self.steps, self.elapsed = self.turn + 1, 0, 0.0
            if self.turn % len(self.candidates) == 0 and self.clear_winner():
                return True
        return self.turn == len(self.schedule)

    def clear_winner(self) -> bool:
        """Is one count faster than every other in all their windows by CLEAR_WIN? (Big steps decide early.)"""
        worst = {count: max(times) for count, times in self.seconds.items()}
        best = {count: min(times) for count, times in self.seconds.items()}
        return any(all(worst[c] <= CLEAR_WIN * best[o] for o in best if o != c) for c in worst)

    def medians(self) -> dict[int, float]:
        return {count: statistics.median(times) for count, times in self.seconds.items()}


class ThreadPolicy:
    """Sets torch's intra-op thread count for a training run: fixed, or chosen by measurement (`auto`)."""

    def __init__(self, setting: Threads, *, device: torch.device, max_threads: int | None = None,
                 say: Callable[[str], None] = print):
        self.setting = setting
        self.say = say  # where a decision is reported: the console and train.log
        self.decisions: list[dict[str, object]] = []  # every change of count, for summary.json
        self.checks = 0
        self.candidates: list[int] = []  # the counts `auto` compares; empty when nothing is measured
        self.trial: _Trial | None = None
        self.next_check = math.inf  # in training seconds: a re-check is due once `trained` reaches it
        self.trained = 0.0  # seconds spent in training steps so far
        cores = max_threads or available_cores()
        if setting != "auto":
            self._use(int(setting), "threads {n} (set by threads= or --threads)")
        elif device.type != "cpu":
            self._use(torch.get_num_threads(), f"threads {{n}} (auto: not measured, {device.type} does the work)")
        elif cores == 1:
            self._use(1, "threads 1 (auto: one core available)")
        else:
            self.candidates = [1, cores]
            self._start_trial()

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def timed(self, batches: Iterable[T]) -> Iterator[T]:
        """Yield the batches; while a trial runs, time each training step (gather + step) and switch counts."""
        if self.trial is None and self.trained < self.next_check:
            started = time.perf_counter()
            yield from batches
            self.trained += time.perf_counter() - started
            return
        if self.trial is None:
            self._start_trial()
        last = time.perf_counter()
        for batch in batches:
            yield batch
            now = time.perf_counter()
            self.trained += now - last
            if self.trial is not None:
                self._record(now - last)
            last = now

    def summary(self) -> dict[str, object]:
        """What summary.json records: the setting, the final count, how often it was measured, and each change."""
        return {"setting": self.setting, "threads": self.threads, "checks": self.checks, "decisions": self.decisions}

    def _start_trial(self) -> None:
        # The current count goes first: a re-check then costs nothing until the other count's window.
        current = self.threads if self.decisions else self.candidates[0]
        self.trial = _Trial(candidates=[current, *[c for c in self.candidates if c != current]],
                            rounds=2 if self.decisions else ROUNDS, skip=0 if self.decisions else 1,
                            started=self.trained)
        torch.set_num_threads(self.trial.current)

    def _record(self, seconds: float) -> None:
        if self.trial.add(seconds):
            self._decide()
        elif self.trial.steps == 0:  # a new window starts
            torch.set_num_threads(self.trial.current)

    def _decide(self) -> None:
        trial, self.trial = self.trial, None
        medians = trial.medians()
        before = self.decisions[-1]["threads"] if self.decisions else None
        best = min(medians, key=medians.get)
        if before is not None and medians[best] > SWITCH_MARGIN * medians[before]:
            best = before  # not clearly faster: stay, so that timer noise does not flip the choice
        timings = ", ".join(f"{medians[c] * 1e3:.3g} ms/step at {c}" for c in sorted(medians))
        if before is None:
            message = f"threads {{n}} of {max(medians)} cores (auto: {timings}; checked again while training)"
        else:
            message = f"threads now {{n}} (auto re-check: {timings})" if best != before else None
        self._use(best, message, timings=medians)
        # A slow check (big steps) waits longer, so that checking stays a small share of the run.
        self.next_check = self.trained + max(RECHECK_SECONDS, (self.trained - trial.started) / CHECK_SHARE)

    def _use(self, threads: int, message: str | None, *, timings: dict[int, float] | None = None) -> None:
        torch.set_num_threads(threads)
        self.checks += 1
        if not self.decisions or threads != self.decisions[-1]["threads"]:
            self.decisions.append({"threads": threads, "after_checks": self.checks,
                                   "ms_per_step": {str(k): v * 1e3 for k, v in (timings or {}).items()}})
        if message:
            self.say(message.format(n=threads))

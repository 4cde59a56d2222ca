"""`nnrun sweep`: trials of one config with other values, proposed by Optuna, scored on validation; the best tested.

A sweep folder, `<runs-dir>/<name>-sweep-<time>/`, holds:

    sweep.yaml      the config, its `sweep:` block holding this sweep's specs and settings (`nnrun sweep` reruns it)
    study.db        the Optuna study in SQLite; study.journal (Optuna's journal file) when trials run in parallel
    000_lr=0.01_... one ordinary run folder per trial, named after its values; with --folds or --repeats, one run
                    per fold or seed inside it (fold0, fold1, ... or seed0, seed1, ...)
    results.csv     one row per trial, best first;  plots/  the trials' curves compared;  best -> the chosen trial
    sweep.log       what the console showed

Each trial's score is the mean, over its runs, of the monitored metric at the run's best epoch (validation, never
test). The chosen trial is the best complete one; with --folds or --repeats no trial sees the test split while the
sweep runs, and the chosen trial's runs are tested once at the end. Optuna is imported by this command only.
"""

from __future__ import annotations

import csv
import ctypes
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from rich.text import Text

from nnrun.commands import train_run
from nnrun.config import (
    SWEEP_KEY,
    Config,
    apply_overrides,
    check_loggers_installed,
    load_yaml,
    missing_package,
    validate,
)
from nnrun.console import RunLog, console, format_duration, format_number
from nnrun.data.bundle import load_data
from nnrun.data.context import DataContext
from nnrun.errors import Interrupted, UserError, hint, write_problem
from nnrun.experiment import build_experiment
from nnrun.losses import LOSSES
from nnrun.runs import Run, check_runs_dir, new_folder, point_link
from nnrun.search_space import (
    Choices,
    Param,
    grid,
    parse_assignments,
    parse_block_params,
)
from nnrun.session import draw, quiet_log
from nnrun.threads import available_cores

SAMPLERS = ("grid", "random", "tpe")
STORAGES = {"sqlite": "study.db", "journal": "study.journal"}
KEPT = ("complete", "pruned", "failed")  # a trial with one of these statuses is done; an interrupted one runs again
# Keys a sweep sets itself, which a spec cannot vary: the run names and the score; with --folds and --repeats, also
# what each run of a trial sets.
OWN_KEYS = {"always": ("name", "early_stopping.monitor", "early_stopping.mode"),
            "folds": ("test", "data.split.folds", "data.split.fold", "data.split.train", "data.split.val"),
            "repeats": ("test", "seed", "data.split.seed")}
WORKER_STOP_SECONDS = 60  # after Ctrl-C, how long a parallel trial may take to save its last epoch
PR_SET_PDEATHSIG = 1  # Linux's prctl option: a signal for this process when its parent dies


@dataclass(frozen=True)
class Settings:
    """How a sweep runs: the command line's options, else the `sweep:` block's, else these defaults."""

    sampler: str | None = None  # grid when every parameter is a list, else tpe
    trials: int | None = None  # random and tpe: 20; grid: every combination (at most this many)
    prune: bool = False
    parallel: int = 1
    folds: int | None = None
    repeats: int | None = None
    vectorize: bool | None = None  # None: automatic where it applies

    def problems(self, params: dict[str, Param]) -> list[str]:
        """Every setting that is out of range or does not fit the parameters, one line each."""
        found = []
        for name, least, example in (("trials", 1, "--trials 20"), ("parallel", 1, "--parallel 2"),
                                     ("folds", 2, "--folds 5"), ("repeats", 1, "--repeats 3")):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < least):
                found.append(f"--{name} must be an integer >= {least}, got {value!r} (for example {example})")
        for name in ("prune", "vectorize"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                found.append(f"sweep.{name} must be true or false, got {value!r} (or give --{name} on the command "
                             f"line)")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            found.append(f"unknown sampler '{self.sampler}' ({hint(str(self.sampler), SAMPLERS)}choices: "
                         f"{', '.join(SAMPLERS)})")
        if _is_int(self.parallel) and self.parallel > 1 and self.vectorize is True:
            found.append("--vectorize trains trials in one process, --parallel in several (choose one)")
        ranges = [p for p in params.values() if not isinstance(p, Choices)]
        if self.sampler == "grid" and ranges:
            found.append(f"--sampler grid needs lists of values, but {ranges[0].key}={ranges[0].spec} is a "
                         f"distribution (give a list such as {ranges[0].key}=A,B,C, or use --sampler tpe)")
        return found

    def resolved(self, params: dict[str, Param]) -> Settings:
        """The sampler and trial count filled in."""
        sampler = self.sampler or ("grid" if all(isinstance(p, Choices) for p in params.values()) else "tpe")
        if sampler == "grid" or not params:  # no parameters: one trial, its folds or seeds
            size = len(grid(list(params.values())))
            return replace(self, sampler="grid", trials=min(size, self.trials or size))
        return replace(self, sampler=sampler, trials=self.trials or 20)


@dataclass(frozen=True)
class Unit:
    """One training run of a trial: a fold, a seed, or both; the trial's only run when neither."""

    fold: int | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        return "-".join(part for part in (f"fold{self.fold}" if self.fold is not None else "",
                                          f"seed{self.seed}" if self.seed is not None else "") if part)


@dataclass
class Outcome:
    """What became of a trial: stored on it as user attributes, and read back for results.csv."""

    status: str  # complete, pruned, failed or interrupted
    message: str = ""
    scores: list[float] | None = None  # the monitored value at each run's best epoch
    best_epochs: list[int] | None = None
    seconds: float = 0.0


@dataclass
class Sweep:
    """A sweep being run: its folder and study, the config and search space, and the settings."""

    folder: Path
    raw: dict[str, Any]  # the config as written, without its sweep: block
    fixed: dict[str, str]  # key -> value text, applied to every trial
    params: list[Param]
    settings: Settings
    base: Config  # the config of a first trial, for its name, seed and monitored metric
    config_dir: Path | None
    data_dir: Path
    storage: str  # sqlite | journal
    study: Any = None  # optuna.Study
    log: RunLog | None = None

    @property
    def monitor(self) -> str:
        return self.base.early_stopping.monitor

    @property
    def direction(self) -> str:
        return "maximize" if self.base.early_stopping.mode == "max" else "minimize"

    @property
    def storage_url(self) -> str:
        """What optuna-dashboard opens: SQLite's URL, or the journal file's path."""
        return _storage_url(self.folder, self.storage)

    def units(self) -> list[Unit]:
        """The runs each trial trains: every fold for every seed; one run when neither is asked for."""
        folds = range(self.settings.folds) if self.settings.folds else [None]
        seeds = [self.base.seed + r for r in range(self.settings.repeats)] if self.settings.repeats else [None]
        return [Unit(fold, seed) for fold in folds for seed in seeds]

    def run_name(self, number: int, unit: Unit) -> str:
        """`iris_mlp-003`, or `iris_mlp-003-fold2`: what a trial's run is called in its config.yaml."""
        return f"{self.base.name}-{number:03d}" + (f"-{unit.name}" if unit.name else "")

    def trial_raw(self, values: dict[str, Any], unit: Unit, *, name: str, threads: int | None = None) -> dict:
        """One run's config, raw: the config, the split of the cores, the fixed values, the trial's, then the unit's."""
        overrides = [*([f"threads={threads}"] if threads else []), *(f"{k}={v}" for k, v in self.fixed.items()),
                     *(f"{p.key}={p.text(values[p.key])}" for p in self.params if p.key in values), f"name={name}"]
        raw = apply_overrides(self.raw, overrides)
        if unit.fold is None and unit.seed is None:
            return raw
        try:  # the trial's plain config says its test fraction and seeds, as validation fills them in
            plain = validate(raw, config_dir=self.config_dir)
        except UserError:
            return raw  # the run fails on the same problems
        raw["test"] = False  # the test split waits for the chosen trial
        data = raw["data"] = dict(raw["data"]) if isinstance(raw.get("data"), dict) else {"type": raw.get("data")}
        split = data.get("split", {})
        if not isinstance(split, dict):
            raise UserError(f"--folds and --repeats need data.split as fractions with a test part, got "
                            f"{split!r} (for example data.split={{train: 0.6, val: 0.2, test: 0.2}})")
        split = dict(split)
        if unit.fold is not None:  # val is fold i of train + val; test is exactly the plain split's
            split = {k: v for k, v in split.items() if k not in ("train", "val")}
            split.update(test=plain.data.split.test, folds=self.settings.folds, fold=unit.fold)
        if unit.seed is not None:  # a new seed for training, the same split for every seed
            split["seed"] = plain.data.split.seed_for(plain.seed)
            raw["seed"] = unit.seed
        data["split"] = split
        return raw


def run_sweep(config: Path | None, items: list[str], *, given: dict[str, Any], runs_dir: Path = Path("runs"),
              data_dir: Path = Path("data"), resume: Path | None = None) -> Path:
    """`nnrun sweep`: start a sweep (or continue one), run its trials, then report and test the best; its folder."""
    if problem := missing_package("nnrun sweep", "optuna", "nnrun[sweep]"):
        raise UserError(problem)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    given = {k: v for k, v in given.items() if v is not None}
    if resume is not None:
        if config is not None or items:
            raise UserError(f"give either a CONFIG and KEY=SPEC pairs or --resume, not both (--resume continues "
                            f"the sweep in {resume} with its own config and specs)")
        sweep = _reopen(Path(resume), given)
    elif config is None:
        raise UserError("missing CONFIG (for example: nnrun sweep configs/iris_mlp.yaml optimizer.lr=0.001,0.01,0.1)")
    else:
        sweep = _start(Path(config), items, given, runs_dir=runs_dir, data_dir=data_dir)
    try:
        sweep.log = RunLog(sweep.folder / "sweep.log")
    except OSError as exc:
        raise write_problem(exc) or exc from None
    try:
        _say_plan(sweep, resumed=resume is not None)
        todo = _todo(sweep)
        if sweep.settings.parallel > 1:
            _run_parallel(sweep, todo)
        else:
            _run_in_process(sweep, todo)
        _finish(sweep)
    finally:
        sweep.log.close()
    return sweep.folder


# --- setting up -----------------------------------------------------------------------------------------------


def _start(config: Path, items: list[str], given: dict[str, Any], *, runs_dir: Path, data_dir: Path) -> Sweep:
    """Read the config and the specs, check everything, then create the sweep folder and the study."""
    import optuna

    raw = load_yaml(config)
    block = raw.pop(SWEEP_KEY, None)
    fixed, params, options = _read_block(block)
    cli_fixed, cli_params = parse_assignments(items)
    for key in cli_fixed:
        params.pop(key, None)
    for key in cli_params:
        fixed.pop(key, None)
    fixed.update(cli_fixed)
    params.update(cli_params)
    settings = _settings({**options, **given}, params)
    base = _check_space(raw, fixed, params, settings, source=config)
    check_loggers_installed(base)
    check_runs_dir(runs_dir)
    if not any(key == "data" or key.startswith("data.") for key in params):
        # the data every trial shares: a problem with it (a missing file) is one error now, not a failure per trial
        load_data(base.data, seed=base.seed, device=torch.device("cpu"), data_dir=data_dir, config_dir=base.config_dir)
        raw, fixed = _found_data_path(raw, fixed, base, data_dir=data_dir)

    raw = {"name": base.name, **raw}  # a resume reads the name from sweep.yaml, not from the file name
    folder = new_folder(runs_dir, f"{base.name}-sweep")
    sweep = Sweep(folder, raw, fixed, list(params.values()), settings, base, config_dir=base.config_dir,
                  data_dir=Path(data_dir).absolute(), storage="journal" if settings.parallel > 1 else "sqlite")
    _write_plan(sweep)
    sweep.study = optuna.create_study(study_name=folder.name, storage=_storage(sweep), direction=sweep.direction,
                                      sampler=_sampler(sweep), pruner=_pruner(sweep))
    sweep.study.set_user_attr("nnrun", {"config_dir": str(base.config_dir or ""), "data_dir": str(sweep.data_dir),
                                        "monitor": sweep.monitor})
    return sweep


def _found_data_path(raw: dict[str, Any], fixed: dict[str, str], base: Config, *,
                     data_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The config and fixed values with a relative `data.path` made absolute where it was found: sweep.yaml and
    each trial's config.yaml live in other folders, and must load the same file from any folder."""
    path = base.data.kwargs.get("path")
    if not isinstance(raw.get("data"), dict) or not isinstance(path, str) or Path(path).expanduser().is_absolute():
        return raw, fixed
    context = DataContext(data_dir=Path(data_dir), config_dir=base.config_dir)
    found = next((place for place in context.candidates(path) if place.exists()), None)
    if found is None:
        return raw, fixed
    absolute = str(found.resolve())
    if "data.path" in fixed:
        fixed = {**fixed, "data.path": json.dumps(absolute)}  # quoted: a YAML scalar, whatever the path holds
    return {**raw, "data": {**raw["data"], "path": absolute}}, fixed


def _reopen(folder: Path, given: dict[str, Any]) -> Sweep:
    """A sweep folder made before, with its study; `--trials` and `--parallel` may change, nothing else."""
    import optuna

    storage = next((kind for kind, name in STORAGES.items() if (folder / name).is_file()), None)
    if not (folder / "sweep.yaml").is_file() or storage is None:
        raise UserError(f"'{folder}' is not a sweep folder (it has no sweep.yaml and study.db; give a folder that "
                        f"nnrun sweep made, such as runs/NAME-sweep-DATE)")
    other = sorted(set(given) - {"trials", "parallel"})
    if other:
        raise UserError(f"--{other[0]} cannot change when a sweep resumes (only --trials and --parallel can; start "
                        f"a new sweep for other settings)")
    raw = load_yaml(folder / "sweep.yaml")
    fixed, params, options = _read_block(raw.pop(SWEEP_KEY, None))
    settings = _settings({**options, **given}, params)
    if storage == "sqlite" and settings.parallel > 1:
        raise UserError(f"this sweep's study is SQLite ({folder / 'study.db'}), which parallel processes would lock "
                        f"(resume it without --parallel)")
    study = optuna.load_study(study_name=None, storage=_storage_for(folder, storage))
    where, name, count = study.user_attrs.get("nnrun", {}), study.study_name, len(study.trials)
    config_dir = Path(where["config_dir"]) if where.get("config_dir") else None
    base = _check_space(raw, fixed, params, settings, config_dir=config_dir)
    sweep = Sweep(folder, raw, fixed, list(params.values()), settings, base, config_dir=config_dir,
                  data_dir=Path(where.get("data_dir", "data")), storage=storage)
    if given:
        _write_plan(sweep)
    # the sampler restarts from a new seed, so that it does not propose the values it proposed before
    sweep.study = optuna.load_study(study_name=name, storage=_storage_for(folder, storage),
                                    sampler=_sampler(sweep, offset=count), pruner=_pruner(sweep))
    return sweep


def _read_block(block: Any) -> tuple[dict[str, str], dict[str, Param], dict[str, Any]]:
    """The config's `sweep:` block: its parameters (fixed values and specs) and its settings."""
    if block is None:
        return {}, {}, {}
    names = [f.name for f in fields(Settings)]
    if not isinstance(block, dict):
        raise UserError(f"the sweep: block must be a mapping, got {block!r} (for example sweep: {{params: "
                        f"{{optimizer.lr: loguniform(1e-4,1e-1)}}, trials: 20}})")
    unknown = [k for k in block if k not in ("params", *names)]
    if unknown:
        raise UserError(f"unknown key 'sweep.{unknown[0]}' ({hint(str(unknown[0]), ['params', *names])}valid keys: "
                        f"params, {', '.join(names)})")
    fixed, params = parse_block_params(block.get("params"))
    return fixed, params, {k: block[k] for k in names if block.get(k) is not None}


def _settings(options: dict[str, Any], params: dict[str, Param]) -> Settings:
    settings = Settings(**options)
    problems = settings.problems(params)
    owned = {*OWN_KEYS["always"], *(OWN_KEYS["folds"] if settings.folds else ()),
             *(OWN_KEYS["repeats"] if settings.repeats else ())}
    problems += [f"{key} cannot be swept: the sweep sets it for every run (leave {key} out of the specs)"
                 for key in params if key in owned]
    if not params and not settings.folds and not settings.repeats:
        problems.append("nothing to sweep (give KEY=SPEC pairs such as optimizer.lr=0.001,0.01,0.1, or --folds 5 "
                        "to cross-validate the config as it is)")
    if problems:
        raise UserError(*problems)
    return settings.resolved(params)


def _check_space(raw: dict[str, Any], fixed: dict[str, str], params: dict[str, Param], settings: Settings, *,
                 source: Path | None = None, config_dir: Path | None = None) -> Config:
    """Before any trial: a problem that every value of the specs shares (an unknown key, a bad fixed value) is an
    error now. A problem of some values only fails those trials, while the sweep goes on. Returns the first config
    that validates, which names the sweep and says what it scores."""
    probe = Sweep(Path("."), raw, fixed, list(params.values()), settings, base=None, config_dir=config_dir,
                  data_dir=Path("data"), storage="sqlite")
    name = raw.get("name", source.stem if source else "run")
    first = {key: p.candidates()[0] for key, p in params.items()}
    tried = [first] + [{**first, key: value} for key, p in params.items() for value in p.candidates()[1:]]
    shared: set[str] | None = None
    found: list[list[str]] = []
    config = None
    for values in tried:
        try:
            validated = validate(probe.trial_raw(values, Unit(), name=name), source=source, config_dir=config_dir)
            config = config or validated
            problems: list[str] = []
        except UserError as exc:
            problems = exc.problems
        found.append(problems)
        shared = set(problems) if shared is None else shared & set(problems)
    if shared:
        raise UserError(*[p for p in found[0] if p in shared])
    if config is None:
        raise UserError(*found[0])
    if settings.folds or settings.repeats:  # a unit's own settings (the folds) are checked as well
        unit = Unit(0 if settings.folds else None, config.seed if settings.repeats else None)
        validate(probe.trial_raw(first, unit, name=config.name), source=source, config_dir=config_dir)
    return config


def _write_plan(sweep: Sweep) -> None:
    """sweep.yaml: the config with a sweep: block that says what this sweep ran, so `nnrun sweep` reruns it."""
    import yaml

    settings = {k: v for k, v in asdict(sweep.settings).items() if v is not None}
    block = {"params": {**sweep.fixed, **{p.key: p.spec for p in sweep.params}}, **settings}
    text = (f"# nnrun sweep {sweep.folder / 'sweep.yaml'}\n# The config of the sweep in this folder, with its specs "
            f"and settings; nnrun sweep --resume {sweep.folder} continues it.\n")
    try:
        (sweep.folder / "sweep.yaml").write_text(
            text + yaml.safe_dump({**sweep.raw, SWEEP_KEY: block}, sort_keys=False, default_flow_style=None),
            encoding="utf-8")
    except OSError as exc:
        raise write_problem(exc) or exc from None


def _storage(sweep: Sweep):
    return _storage_for(sweep.folder, sweep.storage)


def _storage_for(folder: Path, kind: str):
    """SQLite for one process; Optuna's journal file for several (SQLite locks up under parallel writers)."""
    url = _storage_url(folder, kind)
    if kind == "sqlite":
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(url))


def _storage_url(folder: Path, kind: str) -> str:
    """The study's place: `sqlite:///PATH` for SQLite, the journal file's path for a journal."""
    path = (folder / STORAGES[kind]).resolve()
    return f"sqlite:///{path}" if kind == "sqlite" else str(path)


def _sampler(sweep: Sweep, *, offset: int = 0):
    """Seeded with the config's seed (and how many trials a resumed study has), so that a sweep is repeatable."""
    import optuna

    seed = sweep.base.seed + offset
    if sweep.settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # grid: every trial's values are given, nothing is drawn


def _pruner(sweep: Sweep):
    """Optuna's MedianPruner: once a few trials have finished, a trial whose monitored value at an epoch is worse
    than the median of the earlier trials' at that epoch stops there; never in its first tenth of the epochs (at
    most 10), where a good setting can still trail from its random start."""
    import optuna

    if not sweep.settings.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, sweep.settings.trials // 4)),
                                       # steps are epochs, from 1; Optuna judges a step from n_warmup_steps on
                                       n_warmup_steps=min(10, max(1, sweep.base.epochs // 10)) + 1)


# --- running the trials ---------------------------------------------------------------------------------------


def _todo(sweep: Sweep) -> list[dict[str, Any] | None]:
    """The trials left to run: values to run (the grid's, or an interrupted trial's), or None for the sampler's pick.

    Trials left running by a sweep that was killed are marked interrupted first, and interrupted trials' folders
    are removed: they run again from the start.
    """
    study = sweep.study
    import optuna

    for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.WAITING]):
        _tell(study, study.ask(), Outcome("interrupted", "enqueued, never started"))
    for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
        _tell(study, trial.number, Outcome("interrupted", "its sweep was stopped"))
    trials = study.get_trials(deepcopy=False)
    kept = [t.params for t in trials if _status(t) in KEPT]
    for trial in trials:
        if _status(trial) == "interrupted" and trial.user_attrs.get("folder"):
            shutil.rmtree(sweep.folder / trial.user_attrs["folder"], ignore_errors=True)
    left = max(0, sweep.settings.trials - len(kept))
    if sweep.settings.sampler == "grid":
        return [values for values in grid(sweep.params) if values not in kept][:left]
    reruns: list[dict[str, Any]] = []
    for trial in trials:
        if _status(trial) == "interrupted" and trial.params not in kept and trial.params not in reruns:
            reruns.append(trial.params)
    return [*reruns, *[None] * left][:left]


def _ask(sweep: Sweep, values: dict[str, Any] | None):
    """A new trial in the study, with these values or the sampler's; its folder is named after them."""
    if values is not None:
        sweep.study.enqueue_trial(values)
    trial = sweep.study.ask()
    values = {p.key: p.suggest(trial) for p in sweep.params}
    trial.set_user_attr("folder", _folder_name(sweep, trial.number, values))
    trial.set_user_attr("overrides", [f"{p.key}={p.text(values[p.key])}" for p in sweep.params])
    return trial


def _run_in_process(sweep: Sweep, todo: list[dict[str, Any] | None]) -> None:
    """One trial after another in this process, unless the batch trains together (`--vectorize`); Ctrl-C stops the
    trial in progress, which a resume runs again."""
    todo = _train_together(sweep, todo)
    for index, item in enumerate(todo, 1):
        trial = None
        try:
            trial = item if _asked(item) else _ask(sweep, item)
            outcome = run_trial(sweep, trial)
        except Interrupted:
            outcome = Outcome("interrupted")  # run_trial recorded it
        except KeyboardInterrupt:  # while asking for the trial, or while saying how it went
            if trial is not None and not sweep.study.trials[trial.number].state.is_finished():
                _tell(sweep.study, trial, Outcome("interrupted", "interrupted"))
            outcome = Outcome("interrupted")
        if trial is not None and sweep.study.trials[trial.number].state.is_finished():
            outcome = _outcome(sweep.study.trials[trial.number])  # as recorded, with its duration
        _say_outcome(sweep, trial, outcome, index=index, total=len(todo))
        if outcome.status == "interrupted":
            for left in todo[index:]:
                if _asked(left):  # asked for a batch that could not train together, never started
                    _tell(sweep.study, left, Outcome("interrupted", "never started"))
            _stop(sweep)


def _train_together(sweep: Sweep, todo: list[dict[str, Any] | None]) -> list:
    """`--vectorize` (automatic for a grid without --prune, --folds, --repeats): the whole batch trains as one stacked
    model (nnrun/vectorized.py) where its configs allow. Returns what is left to train one by one: nothing, or the
    batch (its trials asked already), after one line that says why not."""
    reason = _apart(sweep, todo)
    if reason is not None:
        if reason:
            sweep.log.print(f"[yellow]note[/]   trials train one after another: {reason}")
        return todo
    from nnrun.vectorized import (  # the one place that needs it
        stack_problem,
        train_together,
    )

    if all(values is not None for values in todo):  # a grid's values are known: ask no trial before it is clear
        probes = []
        for number, values in enumerate(todo):
            try:
                probes.append(validate(sweep.trial_raw(values, Unit(), name=sweep.run_name(number, Unit())),
                                       config_dir=sweep.config_dir))
            except UserError:
                pass  # that trial fails on its own, whichever way the others train
        if problem := stack_problem(probes):
            sweep.log.print(f"[yellow]note[/]   trials train one after another: {problem}")
            return todo
    trials, configs, said = [], [], 0
    for values in todo:
        trial = _ask(sweep, values)
        try:
            configs.append(_config(sweep, trial, Unit()))
            trials.append(trial)
        except UserError as exc:
            _tell(sweep.study, trial, outcome := Outcome("failed", _failure(sweep, trial, exc)))
            said += 1
            _say_outcome(sweep, trial, outcome, index=said, total=len(todo))
    if problem := stack_problem(configs):
        sweep.log.print(f"[yellow]note[/]   trials train one after another: {problem}")
        return trials
    sweep.log.print(f"{_count(len(trials), 'trial')} train together as one stacked model")
    started = time.perf_counter()
    try:
        runs = [Run.create_at(sweep.folder / trial.user_attrs["folder"]) for trial in trials]
        results = train_together(configs, runs, data_dir=sweep.data_dir, log=quiet_log, plots=False)
    except (Interrupted, KeyboardInterrupt):
        for trial in trials:
            _tell(sweep.study, trial, Outcome("interrupted", "interrupted"))
        _stop(sweep)
    except Exception as exc:  # noqa: BLE001 - a problem that every trial has (the data) fails each of them
        results = [exc] * len(trials)
    seconds = (time.perf_counter() - started) / max(1, len(trials))  # one shared run: its time, shared out
    for index, (trial, result) in enumerate(zip(trials, results), said + 1):
        if isinstance(result, Exception):
            outcome = Outcome("failed", _failure(sweep, trial, result), seconds=seconds)
        else:
            outcome = Outcome("complete", "", [result["best_value"]], [result["best_epoch"]], seconds)
        _tell(sweep.study, trial, outcome)
        _say_outcome(sweep, trial, outcome, index=index, total=len(todo))
    return []


def _apart(sweep: Sweep, todo: list) -> str | None:
    """None when the batch should try to train together; else why not ("" where there is nothing to say)."""
    settings, auto = sweep.settings, sweep.settings.vectorize is None
    if settings.vectorize is False or (auto and (settings.sampler != "grid" or len(todo) < 2)):
        return ""
    if settings.prune:
        return "" if auto else "--prune stops each trial on its own curve, which stacked trials do not have"
    if settings.folds or settings.repeats:
        return "" if auto else "with --folds or --repeats a trial's runs differ in their split or seed"
    return None


def _asked(item: Any) -> bool:
    return item is not None and not isinstance(item, dict)


def _run_parallel(sweep: Sweep, todo: list[dict[str, Any] | None]) -> None:
    """`--parallel K`: K trials at once, each in its own process with cores // K threads (see nnrun/threads.py)."""
    threads = max(1, available_cores() // sweep.settings.parallel)
    pending, running, done = list(todo), {}, 0
    try:
        while pending or running:
            while pending and len(running) < sweep.settings.parallel:
                trial = _ask(sweep, pending.pop(0))
                errors = open(sweep.folder / f".trial-{trial.number}.err", "w+b")  # noqa: SIM115 - closed below
                process = subprocess.Popen(
                    [sys.executable, "-m", "nnrun.sweep", str(sweep.folder), str(trial.number), str(threads),
                     str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                    start_new_session=True)  # Ctrl-C reaches this process, which passes it on once
                running[trial.number] = (process, errors)
            time.sleep(0.05)
            for number, (process, errors) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[number]
                done += 1
                outcome = _collect(sweep, number, process.returncode, errors)
                _say_outcome(sweep, sweep.study.trials[number], outcome, index=done, total=len(todo))
                if outcome.status == "interrupted":
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        for process, _ in running.values():
            process.send_signal(signal.SIGINT)  # each saves its last epoch and marks its trial interrupted
        for number, (process, errors) in running.items():
            try:
                process.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            done += 1
            outcome = _collect(sweep, number, process.returncode, errors, stopped=True)
            _say_outcome(sweep, sweep.study.trials[number], outcome, index=done, total=len(todo))
        _stop(sweep)


def _collect(sweep: Sweep, number: int, code: int, errors, *, stopped: bool = False) -> Outcome:
    """A finished trial process's outcome, as it recorded it; one that died without recording gets its last line,
    unless the sweep `stopped` it (Ctrl-C, or killed after WORKER_STOP_SECONDS): then it is interrupted, to rerun."""
    import optuna

    errors.seek(0)
    text = errors.read().decode("utf-8", "replace").strip()
    errors.close()
    Path(errors.name).unlink(missing_ok=True)
    if text:
        sweep.log.print(Text(f"trial {number}'s process wrote:\n{text}"), console_too=False)
    lines = text.splitlines()
    trial = sweep.study.trials[number]
    if trial.state == optuna.trial.TrialState.RUNNING:
        if stopped or code in (130, -signal.SIGINT):
            outcome = Outcome("interrupted", "interrupted")
        else:
            outcome = Outcome("failed", (lines[-1] if lines else f"the trial's process ended with exit code {code}"))
        _tell(sweep.study, number, outcome)
        return outcome
    return _outcome(trial)


def run_trial(sweep: Sweep, trial, *, threads: int | None = None) -> Outcome:
    """Train a trial's runs (one, or one per fold and seed), record the outcome in the study, and return it.

    A trial that fails (a bad value, a loss that became NaN, a bug) is recorded with its one-line message, and the
    sweep goes on. Ctrl-C marks it interrupted and raises Interrupted.
    """
    started = time.perf_counter()
    folder = sweep.folder / trial.user_attrs["folder"]
    units = sweep.units()
    scores, best_epochs, status = [], [], "complete"
    where = ""
    try:
        configs = []
        for unit in units:
            where = f"{unit.name}: " if unit.name else ""
            configs.append(_config(sweep, trial, unit, threads=threads))
        for i, (unit, config) in enumerate(zip(units, configs)):
            where = f"{unit.name}: " if unit.name else ""
            exp = build_experiment(config, data_dir=sweep.data_dir)
            run = Run.create_at(folder / unit.name if unit.name else folder)
            pruner = _reporter(sweep, trial) if sweep.settings.prune and i == 0 else None
            summary = train_run(exp, run, echo=False, plots=False, prune=pruner)
            scores.append(summary["best_value"])
            best_epochs.append(summary["best_epoch"])
            if summary["stop_reason"] == "pruned":
                status = "pruned"  # its other folds or seeds are not trained
                where = summary["stop_detail"]
                break
        outcome = Outcome(status, where if status == "pruned" else "", scores, best_epochs)
    except (Interrupted, KeyboardInterrupt):
        _tell(sweep.study, trial, Outcome("interrupted", "interrupted", scores, best_epochs,
                                          time.perf_counter() - started))
        raise Interrupted("interrupted") from None
    except Exception as exc:  # noqa: BLE001 - one trial's failure, even a bug, must not stop the others
        outcome = Outcome("failed", where + _failure(sweep, trial, exc), scores, best_epochs)
    outcome.seconds = time.perf_counter() - started
    _tell(sweep.study, trial, outcome)
    return outcome


def _config(sweep: Sweep, trial, unit: Unit, *, threads: int | None = None) -> Config:
    """One run of a trial as a validated config; a bad value is a UserError, which fails that trial only."""
    raw = sweep.trial_raw(trial.params, unit, name=sweep.run_name(trial.number, unit), threads=threads)
    return validate(raw, config_dir=sweep.config_dir)


def _failure(sweep: Sweep, trial, exc: Exception) -> str:
    """Why a trial failed, in one line. A bug's traceback goes to sweep.log (from a trial process: to stderr,
    which the sweep copies there)."""
    if isinstance(exc, UserError):
        return "; ".join(exc.problems)
    details = f"trial {trial.number} failed:\n{''.join(traceback.format_exception(exc))}"
    if sweep.log is not None:
        sweep.log.print(Text(details), console_too=False)
    else:
        print(details, file=sys.stderr)
    reason = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {reason}".rstrip(": ")


def _reporter(sweep: Sweep, trial):
    """The pruning hook `fit` calls after each epoch: report the monitored value; the reason to stop, or None."""
    monitor = sweep.monitor

    def prune(row: dict[str, float]) -> str | None:
        epoch, value = int(row["epoch"]), row[monitor]
        trial.report(value, epoch)
        if trial.should_prune():
            return f"pruned at epoch {epoch}: {monitor} {format_number(value)} was behind the earlier trials' median"
        return None

    return prune


def _tell(study, trial, outcome: Outcome) -> None:
    """Record the outcome on the trial (user attributes) and finish it in the study."""
    import optuna

    trial = _live(study, trial) if isinstance(trial, int) else trial
    attrs = {"status": outcome.status, "message": outcome.message, "scores": outcome.scores or [],
             "best_epochs": outcome.best_epochs or [], "seconds": outcome.seconds}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if outcome.status == "complete":
        study.tell(trial, statistics.fmean(outcome.scores))
    else:
        state = optuna.trial.TrialState.PRUNED if outcome.status == "pruned" else optuna.trial.TrialState.FAIL
        study.tell(trial, state=state)


def _live(study, number: int):
    """The running trial `number` as an optuna.Trial, to report to and finish (Optuna looks trials up by id)."""
    import optuna

    return optuna.trial.Trial(study, study.trials[number]._trial_id)


def _status(trial) -> str:
    return trial.user_attrs.get("status", "running" if not trial.state.is_finished() else "failed")


def _outcome(trial) -> Outcome:
    attrs = trial.user_attrs
    return Outcome(_status(trial), attrs.get("message", ""), attrs.get("scores"), attrs.get("best_epochs"),
                   attrs.get("seconds", 0.0))


def _stop(sweep: Sweep) -> None:
    """After Ctrl-C: results.csv for the trials so far, and the command that continues."""
    try:
        _write_results(sweep, _rows(sweep), test=None)
    except (OSError, KeyboardInterrupt):
        pass
    kept = sum(_status(t) in KEPT for t in sweep.study.get_trials(deepcopy=False))
    raise Interrupted(f"sweep interrupted: {kept} of {sweep.settings.trials} trials are done and saved in "
                      f"{sweep.folder}; an interrupted trial runs again from its start (continue with: nnrun sweep "
                      f"--resume {sweep.folder})")


# --- the end: results, the best trial, its test ---------------------------------------------------------------


def _finish(sweep: Sweep) -> None:
    """results.csv, the table, the comparison plots, the `best` link, and the chosen trial's test results."""
    rows = _rows(sweep)
    log = sweep.log
    if not console.is_terminal:
        console.width = 200  # a pipe or a file: whole rows, for grep
    chosen = next((row for row in rows if row["status"] == "complete"), None)
    if chosen is None:  # the trials are still worth a look: why each one failed
        _write_results(sweep, rows, test=None)
        log.print(_table(sweep, rows))
        failed = next((row for row in rows if row["message"]), None)
        raise UserError(f"no trial completed in {sweep.folder}" +
                        (f"; trial {failed['trial']}: {failed['message']}" if failed else "") +
                        " (results.csv says why each failed; fix the config or the specs and start again)")
    chosen["chosen"] = True
    try:
        test = _test(sweep, chosen)
        _write_results(sweep, rows, test=test)
        point_link(sweep.folder / "best", sweep.folder / chosen["folder"])
        for unit in sweep.units():  # trials skip their plots and report; the chosen one gets them
            draw(sweep.folder / chosen["folder"] / unit.name)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while testing the chosen trial; every trial is done (finish with: nnrun "
                          f"sweep --resume {sweep.folder})") from None
    log.print(_table(sweep, rows))
    spread = _spread(chosen["scores"])
    runs = len(chosen["scores"])
    each = ", ".join(format_number(s) for s in chosen["scores"])
    log.print(f"[bold]best[/] trial {chosen['trial']} ({' '.join(chosen['overrides']) or 'the config as it is'}): "
              f"{sweep.monitor} {spread}" + (f" over {runs} runs ({each})" if runs > 1
                                              else f" at epoch {chosen['best_epochs'][0]}"))
    if test:
        shown = {k: v for k, v in test["mean"].items() if k in ("loss", "accuracy", "balanced_accuracy", "f1_macro",
                                                                 "rmse", "mae", "r2")}
        spreads = ", ".join(f"{k} {_spread(test['values'][k])}" for k in shown)
        log.print(f"test of the best trial{' (each run tested once, mean ± std)' if runs > 1 else ''}: {spreads}")
    try:
        written = _plots(sweep, rows)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while drawing the plots; the results are saved in {sweep.folder}") from None
    link = sweep.folder / "best"
    dashboard = sweep.storage_url
    log.print(f"results {sweep.folder / 'results.csv'}" + (f"; plots {written}" if written else "") +
              (f"; best -> {link.resolve()}" if link.is_symlink() else ""))
    log.print(f"study   optuna-dashboard {dashboard}")


def _rows(sweep: Sweep) -> list[dict[str, Any]]:
    """One row per trial, best first: complete trials by score, then pruned ones, then the rest; an interrupted
    trial that ran again is left out."""
    trials = sweep.study.get_trials(deepcopy=False)
    kept = [t.params for t in trials if _status(t) in KEPT]
    rows = []
    for trial in trials:
        status = _status(trial)
        if status == "interrupted" and trial.params in kept:
            continue
        outcome = _outcome(trial)
        scores = [s for s in (outcome.scores or []) if s is not None]
        rows.append({"trial": trial.number, "folder": trial.user_attrs.get("folder", ""), "status": status,
                     "message": outcome.message, "overrides": trial.user_attrs.get("overrides", []),
                     "params": dict(trial.params), "scores": scores, "best_epochs": outcome.best_epochs or [],
                     "seconds": outcome.seconds, "chosen": False})
    sign = -1 if sweep.direction == "maximize" else 1
    order = {"complete": 0, "pruned": 1, "failed": 2}
    return sorted(rows, key=lambda r: (order.get(r["status"], 3),
                                       sign * statistics.fmean(r["scores"]) if r["scores"] else math.inf, r["trial"]))


def _test(sweep: Sweep, chosen: dict[str, Any]) -> dict[str, Any] | None:
    """The chosen trial's test metrics: its run's own (a single run tests itself), or, with folds or seeds, each
    run's best checkpoint tested now, once; `values` holds each metric per run."""
    folder = sweep.folder / chosen["folder"]
    if not (sweep.settings.folds or sweep.settings.repeats):
        try:
            summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        metrics = {k: v for k, v in (summary.get("test") or {}).items() if isinstance(v, (int, float))}
        return {"mean": metrics, "std": {}, "values": {k: [v] for k, v in metrics.items()}} if metrics else None
    from nnrun.inference import evaluate_checkpoint, restore

    per_run = {}
    for unit in sweep.units():
        restored = restore(folder / unit.name / "checkpoints" / "best.pth", device=sweep.base.device)
        report = evaluate_checkpoint(restored, split="test", data_dir=sweep.data_dir).report
        per_run[unit.name] = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    names = [k for k in next(iter(per_run.values())) if all(k in m for m in per_run.values())]
    values = {k: [m[k] for m in per_run.values()] for k in names}
    result = {"trial": chosen["trial"], "folder": chosen["folder"], "runs": per_run, "values": values,
              "mean": {k: statistics.fmean(v) for k, v in values.items()},
              "std": {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in values.items()}}
    (sweep.folder / "test.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _write_results(sweep: Sweep, rows: list[dict[str, Any]], *, test: dict[str, Any] | None) -> None:
    """results.csv: the trials as the table shows them, values at full precision; test metrics on the chosen row."""
    monitor = sweep.monitor
    keys = [p.key for p in sweep.params]
    spread = ("", "_std") if len(sweep.units()) > 1 else ("",)  # a standard deviation needs several runs
    tests = [f"test_{k}{suffix}" for k in (test or {}).get("mean", {}) for suffix in spread]
    columns = ["trial", "status", *keys, "best_epoch", *(f"{monitor}{suffix}" for suffix in spread), "runs",
               "seconds", "chosen", *tests, "folder", "message"]
    path = sweep.folder / "results.csv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            scores, epochs = row["scores"], [e for e in row["best_epochs"] if e is not None]
            params = {p.key: p.text(row["params"][p.key]) for p in sweep.params if p.key in row["params"]}
            line = {"trial": row["trial"], "status": row["status"], **params,
                    "best_epoch": round(statistics.median(epochs)) if epochs else "",
                    monitor: statistics.fmean(scores) if scores else "",
                    f"{monitor}_std": statistics.stdev(scores) if len(scores) > 1 else "",
                    "runs": len(scores), "seconds": round(row["seconds"], 3), "chosen": str(row["chosen"]).lower(),
                    "folder": row["folder"], "message": row["message"]}
            if row["chosen"] and test:
                for k, mean in test["mean"].items():
                    line[f"test_{k}"] = mean
                    line[f"test_{k}_std"] = test["std"].get(k, "")
            writer.writerow({k: v for k, v in line.items() if k in columns})


def _table(sweep: Sweep, rows: list[dict[str, Any]]) -> Table:
    """The trials, best first, as results.csv has them; the chosen one in bold."""
    shorts = _short_keys(sweep)
    runs = len(sweep.units())
    table = Table(title=f"{_count(len(rows), 'trial')}, best first by {sweep.monitor}" +
                  (f" (mean ± std over {runs} runs each)" if runs > 1 else ""), title_justify="left")
    notes = any(row["message"] for row in rows)
    for column in ("trial", *shorts.values(), "status", "best epoch", sweep.monitor, "time", *["note"] * notes):
        table.add_column(column, justify="right" if column in ("trial", "best epoch", sweep.monitor, "time")
                         else "left", overflow="fold")
    colours = {"complete": "green", "pruned": "yellow", "failed": "red", "interrupted": "yellow"}
    for row in rows:
        epochs = [e for e in row["best_epochs"] if e is not None]
        cells = [str(row["trial"]),
                 *(_shown(p, row["params"][p.key]) if p.key in row["params"] else "-" for p in sweep.params),
                 Text(row["status"], style=colours.get(row["status"], "")),
                 str(round(statistics.median(epochs))) if epochs else "-",
                 _spread(row["scores"]) if row["scores"] else "-",
                 format_duration(row["seconds"]), *[Text(row["message"].removeprefix("pruned "))] * notes]
        table.add_row(*cells, style="bold" if row["chosen"] else None)
    return table


def _plots(sweep: Sweep, rows: list[dict[str, Any]]) -> Path | None:
    """The trials' curves in one plot per metric (nnrun plot A B ...), each trial's first run; in plots/."""
    from nnrun.comparison import compare_runs

    first = sweep.units()[0].name
    drawn = [row for row in rows
             if row["folder"] and (sweep.folder / row["folder"] / first / "metrics.csv").is_file()]
    if not drawn:
        return None
    out = sweep.folder / "plots"
    shutil.rmtree(out, ignore_errors=True)  # a resumed sweep draws them again
    # each line is named after its trial's folder, which says its values: `003_lr=0.01_hidden=32`
    comparison = compare_runs([sweep.folder / row["folder"] / first for row in drawn], out,
                              labels=[row["folder"] for row in drawn])
    return comparison.folder


# --- what the console shows -----------------------------------------------------------------------------------


def _say_plan(sweep: Sweep, *, resumed: bool) -> None:
    log, settings = sweep.log, sweep.settings
    log.print(f"[bold]nnrun sweep[/] {sweep.base.name} -> {sweep.folder}" + (" (resumed)" if resumed else ""))
    how = {"grid": "grid, every combination", "random": "random sampling", "tpe": "TPE (Bayesian) sampling"}
    space = (f"{', '.join(f'{p.key} {p.describe()}' for p in sweep.params)}: {_count(settings.trials, 'trial')} by "
             f"{how[settings.sampler]}") if sweep.params else "one trial, the config as it is"
    log.print(f"space  {space}" + (f"; fixed {' '.join(f'{k}={v}' for k, v in sweep.fixed.items())}"
                                   if sweep.fixed else ""))
    runs = []
    if settings.folds:
        stratified = LOSSES.get(sweep.base.loss.type).meta["task"] == "classification"  # regression: plain KFold
        runs.append(f"{settings.folds} {'stratified ' if stratified else ''}folds of train + val")
    if settings.repeats:
        runs.append(f"{settings.repeats} seeds ({sweep.base.seed}..{sweep.base.seed + settings.repeats - 1})")
    log.print(f"score  {sweep.monitor} at each run's best epoch ({sweep.direction}); " +
              (f"mean over {' x '.join(runs)}; the test split waits for the best trial" if runs else "one run each") +
              ("; MedianPruner stops trials behind the median" if settings.prune else ""))
    if settings.parallel > 1:
        threads = max(1, available_cores() // settings.parallel)
        log.print(f"runs   {settings.parallel} trials at once, threads={threads} each ({available_cores()} cores)")
    log.print(f"study  {sweep.storage_url}")


def _say_outcome(sweep: Sweep, trial, outcome: Outcome, *, index: int, total: int) -> None:
    name = trial.user_attrs.get("folder", f"trial {trial.number}") if trial is not None else "-"
    scores = [s for s in (outcome.scores or []) if s is not None]
    if outcome.status == "complete":
        epochs = outcome.best_epochs or []
        result = f"{sweep.monitor} {_spread(scores)}" + (f" (epoch {epochs[0]})" if len(scores) == 1 else
                                                          f" over {len(scores)} runs")
    elif outcome.status == "failed":
        result = f"[red]failed[/]: {outcome.message}"
    elif outcome.status == "pruned":
        result = f"[yellow]pruned[/] {outcome.message.removeprefix('pruned ')}"
    else:
        result = "[yellow]interrupted[/]"
    # [done/total], then the folder, whose number is the trial's number in the table, results.csv and the study
    sweep.log.print(f"[{index}/{total}]  {name}  {result}  {format_duration(outcome.seconds)}")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _spread(scores: list[float]) -> str:
    if len(scores) == 1:
        return format_number(scores[0])
    return f"{format_number(statistics.fmean(scores))} ± {format_number(statistics.stdev(scores))}"


def _short_keys(sweep: Sweep) -> dict[str, str]:
    """Each parameter's last key part (`lr`), or its whole key where two parameters share that part or it is
    `type`."""
    lasts = [p.key.rsplit(".", 1)[-1] for p in sweep.params]
    return {p.key: last if lasts.count(last) == 1 and last != "type" else p.key for p, last in zip(sweep.params, lasts)}


def _shown(param: Param, stored: Any) -> str:
    """A value as the table and folder names show it: numbers in four significant digits."""
    if isinstance(stored, float) and not isinstance(param, Choices):
        return f"{stored:.4g}"
    return param.text(stored)


def _folder_name(sweep: Sweep, number: int, values: dict[str, Any]) -> str:
    """`003_lr=0.01_hidden=64,32`: the trial number, then each value, with only characters that are safe in paths."""
    shorts = _short_keys(sweep)
    parts = [f"{number:03d}"]
    for param in sweep.params:
        shown = _shown(param, values[param.key])
        safe = "".join(c if c.isalnum() or c in "._,+-" else "" for c in shown.replace(" ", ""))
        parts.append(f"{shorts[param.key]}={safe}")
    return "_".join(parts)[:120]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- a trial in its own process: `python -m nnrun.sweep SWEEP_DIR TRIAL_NUMBER THREADS SWEEP_PID` (--parallel) ----


def _work(folder: Path, number: int, threads: int, parent: int) -> int:
    """Run one trial of the sweep in `folder` in this process, with `threads` threads; the exit code."""
    import optuna

    if not _stop_with(parent):
        return 130  # the sweep is gone already: its resume runs this trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = _reopen(folder, {})
    trial = _live(sweep.study, number)
    try:
        run_trial(sweep, trial, threads=threads)
    except Interrupted:
        return 130
    return 0


def _stop_with(parent: int) -> bool:
    """Have Linux send this trial process SIGTERM when the sweep's process dies, even killed outright: it started a
    session of its own, so nothing else would stop it. False when that process is gone already."""
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # no prctl: the trial runs to its end, as on other systems
    return os.getppid() == parent  # it may have died before prctl: this process now has another parent


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops a trial as Ctrl-C does
    sys.exit(_work(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))

"""A sweep's trials trained together (one stacked model) against one after another, on the 2-16-8-1 MLP.

    python bench/vectorize.py [--quick] [--trials 8] [--epochs N] [--repeats 3]

Both ways do a sweep's whole job in this process, on the CPU: every trial gets its run folder as a sweep's
trial has it (`nnrun train`'s, without plots and report: metrics.csv, checkpoints, summary.json, predictions).
Sequential trains the trials one after another through nnrun train's own path (build_experiment, then fit
inside a session); vectorized hands them all to nnrun.vectorized.train_together. The trials are
configs/product_mlp.yaml with log-spaced learning rates, early stopping off so that every trial runs every epoch.
The two ways alternate, repeat after repeat, so that a neighbour's load falls on both alike.

Reported: trials per second each way (median seconds) and their ratio (median of the repeats' ratios), for the
whole job, and for training alone (summary.json's `seconds.total`: from the first epoch to summary.json, without
building the experiments, which costs both ways the same per trial); and per trial, the largest
relative difference between the two ways' metrics.csv: batched matmuls round differently, and long training
amplifies it. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # nnrun from this checkout: the imports below come after it

from nnrun.commands import load_config  # noqa: E402
from nnrun.config import Config  # noqa: E402
from nnrun.console import RunLog, console  # noqa: E402
from nnrun.experiment import build_experiment  # noqa: E402
from nnrun.runs import Run, read_metrics  # noqa: E402
from nnrun.session import close_session, open_session  # noqa: E402
from nnrun.training import fit  # noqa: E402
from nnrun.vectorized import stack_problem, train_together  # noqa: E402

CONFIG = ROOT / "configs" / "product_mlp.yaml"
EPOCHS = (100, 20)  # (full, quick)
REPEATS = (3, 1)
LR_RANGE = (1e-3, 3e-2)  # Adam's learning rates, log-spaced: a range where every trial trains well


def trial_configs(trials: int, epochs: int) -> list[Config]:
    """product_mlp on the CPU with `trials` learning rates, all epochs run, one thread (as on a shared machine)."""
    low, high = LR_RANGE
    lrs = [low * (high / low) ** (i / max(trials - 1, 1)) for i in range(trials)]
    return [load_config(CONFIG, [f"optimizer.lr={lr:.6g}", f"epochs={epochs}", "early_stopping.patience=null",
                                 "device=cpu", "threads=1", f"name=lr{i}"]) for i, lr in enumerate(lrs)]


def _quiet_log(run: Run) -> RunLog:
    return RunLog(run.log_path, quiet_console=False)


def sequential(configs: list[Config], runs_dir: Path) -> dict[str, float]:
    """One trial after another, each as `nnrun train` runs it; wall seconds, and seconds training."""
    started, training = time.perf_counter(), 0.0
    for cfg in configs:
        exp = build_experiment(cfg)
        run = Run.create(runs_dir, cfg.name)
        session = open_session(exp, run, open_log=_quiet_log)
        summary = close_session(session, lambda exp=exp, run=run, session=session: fit(
            exp, run, session.log, loggers=session.loggers), plots=False)
        training += summary["seconds"]["total"]
    return {"seconds": time.perf_counter() - started, "training": training}


def vectorized(configs: list[Config], runs_dir: Path) -> dict[str, float]:
    """All trials as one stacked model; wall seconds, and seconds training (the trials train at the same time)."""
    started = time.perf_counter()
    runs = [Run.create(runs_dir, cfg.name) for cfg in configs]
    results = train_together(configs, runs, data_dir=Path("data"), log=_quiet_log, plots=False)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise RuntimeError(f"{len(failed)} trial(s) failed: {failed[0]}")
    return {"seconds": time.perf_counter() - started, "training": max(r["seconds"]["total"] for r in results)}


def measure(trials: int = 8, epochs: int | None = None, *, quick: bool = False, repeats: int | None = None,
            workdir: Path | None = None) -> dict:
    """Trials per second trained one after another and trained together, and their ratio (median over repeats)."""
    epochs = epochs or EPOCHS[quick]
    repeats = repeats or REPEATS[quick]
    configs = trial_configs(trials, epochs)
    if problem := stack_problem(configs):
        raise RuntimeError(f"the benchmark's trials cannot be stacked: {problem}")
    times: dict[str, list[dict[str, float]]] = {"sequential": [], "vectorized": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp)
        quiet, console.quiet = console.quiet, True  # both ways write the same train.log; the terminal gets nothing
        try:
            # warm-up, unmeasured: the first optimizer step imports torch._dynamo
            warm_up = trial_configs(2, 1)
            sequential(warm_up, folder / "warm-up")
            vectorized(warm_up, folder / "warm-up")
            for repeat in range(repeats):
                ways = [("sequential", sequential), ("vectorized", vectorized)]
                for name, way in ways if repeat % 2 == 0 else ways[::-1]:
                    times[name].append(way(configs, folder / f"{name}-{repeat}"))
            differences = agreement(folder / "sequential-0", folder / "vectorized-0")
        finally:
            console.quiet = quiet

    def rate(name: str, key: str) -> float:
        return trials / statistics.median(t[key] for t in times[name])

    result = {"trials": trials, "epochs": epochs, "repeats": repeats, "model": "2-16-8-1 MLP (product_mlp)"}
    for key, label in (("seconds", "job"), ("training", "training")):
        result[f"{label}_trials_per_s"] = {"sequential": rate("sequential", key), "vectorized": rate("vectorized", key)}
        # each repeat's two ways ran back to back, under the same load: the ratio is taken within a repeat
        result[f"{label}_ratios"] = [s[key] / v[key] for s, v in zip(times["sequential"], times["vectorized"],
                                                                      strict=True)]
        result[f"{label}_ratio"] = statistics.median(result[f"{label}_ratios"])
    result["max_relative_difference"] = differences
    result["seconds"] = times
    return result


def agreement(sequential_dir: Path, vectorized_dir: Path) -> dict[str, float]:
    """Per trial, the largest relative difference between the two ways' metrics.csv (timings left out)."""
    def folders(runs_dir: Path) -> list[Path]:
        return sorted(path for path in runs_dir.iterdir() if path.is_dir() and not path.is_symlink())

    found = {}
    for one, other in zip(folders(sequential_dir), folders(vectorized_dir), strict=True):
        rows, others = (read_metrics(folder / "metrics.csv")[0] for folder in (one, other))
        found[one.name.split("-")[0]] = max(
            abs(a - b) / max(abs(a), 1e-8) for column, values in rows.items() if not column.endswith("seconds")
            for a, b in zip(values, others[column], strict=True))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{EPOCHS[1]} epochs, {REPEATS[1]} repeat")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = measure(args.trials, args.epochs, quick=args.quick, repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['trials']} trials of the {result['model']}, {result['epochs']} epochs, CPU, "
          f"median of {result['repeats']} interleaved repeat(s)")
    for label in ("job", "training"):
        rates = result[f"{label}_trials_per_s"]
        spread = ", ".join(f"{r:.2f}" for r in result[f"{label}_ratios"])
        print(f"{label:>8}: sequential {rates['sequential']:.3f} trials/s, vectorized {rates['vectorized']:.3f} "
              f"trials/s, ratio {result[f'{label}_ratio']:.2f}x (each repeat: {spread})")
    differences = ", ".join(f"{name} {value:.1e}" for name, value in result["max_relative_difference"].items())
    print(f"largest relative difference in metrics.csv, sequential against vectorized: {differences}")


if __name__ == "__main__":
    main()

"""nnrun's speed against the same job done by hand, with a DataLoader and with Lightning, measured in one run.

    python bench/run.py [--quick] [--tasks tiny,medium,wide,images,process] [--out bench/results.md]

Every measurement runs in a fresh process, and the ways are interleaved (round by round, in a shuffled order),
so that a neighbour's load falls on all of them alike. Each task runs twice: on the machine as it is ("quiet"),
and with one competing CPU-bound process that the benchmark starts and stops itself ("loaded"). It prints the
median seconds per epoch after the first (warm-up) epoch and the ratios, and writes the tables to --out.
This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.worker import TASKS  # noqa: E402 - after the path is set

# Epochs per task: enough that the median after the warm-up epoch is stable, (full, quick).
EPOCHS = {"tiny": (40, 12), "medium": (8, 3), "wide": (5, 3), "images": (5, 4)}
ROUNDS = (3, 1)
PROCESS_RUNS = (5, 2)
IMAGES = (4000, 512)  # training images of the image task
WIDE_ROWS = (60000, 10000)  # training rows of the wide task


def measure(task: str, way: str, *, epochs: int, workdir: Path, threads: str = "auto", compile: bool = False,
            quick: bool) -> dict:
    """Run one worker process; its JSON result (or the error it printed)."""
    command = [sys.executable, str(HERE / "worker.py"), task, way, "--epochs", str(epochs), "--threads", threads,
               "--images", str(IMAGES[quick]), "--rows", str(WIDE_ROWS[quick]), "--workdir", str(workdir)]
    command += ["--compile"] if compile else []
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {done.returncode}"}


def whole_process(runs: int, workdir: Path) -> dict:
    """Wall time of `nnrun train configs/iris_mlp.yaml` against the plain script, interleaved, median."""
    workdir.mkdir(parents=True, exist_ok=True)
    nnrun = [sys.executable, "-m", "nnrun", "train", str(ROOT / "configs" / "iris_mlp.yaml"),
             "early_stopping.patience=null", "--runs-dir", str(workdir / "runs")]
    plain = [sys.executable, str(HERE / "plain_iris.py"), str(workdir / "plain")]
    times: dict[str, list[float]] = {"nnrun": [], "plain": []}
    for _ in range(runs):
        for name, command in sorted([("nnrun", nnrun), ("plain", plain)], key=lambda _: random.random()):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, cwd=workdir, check=True)
            times[name].append(time.perf_counter() - started)
    help_times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nnrun", "--help"], capture_output=True, cwd=workdir, check=True)
        help_times.append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()} | {
        "help": statistics.median(help_times), "all": times}


class Competitor:
    """One CPU-bound process, started and stopped by the benchmark: the "loaded" condition."""

    def __enter__(self) -> Competitor:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.kill()
        self.process.wait()


def ways_for(condition: str, cores: int, *, quick: bool) -> list[tuple[str, str, str, bool]]:
    """(label, way, threads, compile) measured under a condition. --quick measures what the targets need and
    leaves the DataLoader out under load and Lightning out altogether (it takes seconds to import)."""
    ways = [("nnrun", "nnrun", "auto", False), ("hand", "hand", "auto", False)]
    if not (quick and condition == "loaded"):
        ways.append(("loader", "loader", "auto", False))
    if not quick:
        ways.append(("lightning", "lightning", "auto", False))
    if condition == "loaded":
        ways += [("nnrun t=1", "nnrun", "1", False), (f"nnrun t={cores}", "nnrun", str(cores), False)]
    return ways


def run_condition(condition: str, tasks: list[str], *, quick: bool, workdir: Path, cores: int,
                  lightning: bool) -> dict:
    results: dict = {}
    rounds = ROUNDS[quick]
    for task in [t for t in tasks if t in TASKS]:
        epochs = EPOCHS[task][quick]
        ways = [w for w in ways_for(condition, cores, quick=quick) if lightning or w[1] != "lightning"]
        if task == "medium" and condition == "quiet":
            ways.append(("nnrun compile", "nnrun", "auto", True))
        samples: dict[str, list[dict]] = {label: [] for label, *_ in ways}
        for _ in range(rounds):
            for label, way, threads, compile in random.sample(ways, len(ways)):
                result = measure(task, way, epochs=epochs, workdir=workdir / task, threads=threads, compile=compile,
                                 quick=quick)
                samples[label].append(result)
                shown = f"{result['median']:.4f} s/epoch" if "median" in result else f"FAILED {result['error']}"
                print(f"  {condition:6} {task:7} {label:14} {shown}", flush=True)
        results[task] = {label: _combine(runs) for label, runs in samples.items()}
    if "process" in tasks:
        results["process"] = whole_process(PROCESS_RUNS[quick], workdir / "process")
        print(f"  {condition:6} process nnrun {results['process']['nnrun']:.2f} s, plain script "
              f"{results['process']['plain']:.2f} s", flush=True)
    return results


def _combine(runs: list[dict]) -> dict:
    ok = [r for r in runs if "median" in r]
    if not ok:
        return {"error": runs[0].get("error", "failed")}
    combined = {"median": statistics.median(r["median"] for r in ok), "threads": ok[0].get("threads")}
    if any("compile_seconds" in r for r in ok):
        combined["compile_seconds"] = statistics.median(r.get("compile_seconds", 0.0) for r in ok)
    return combined


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only (no GPU)"
    return (f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), {device}, torch "
            f"{torch.__version__}, Python {platform.python_version()}, {platform.system()}")


def tables(results: dict, *, quick: bool, cores: int) -> str:
    """The markdown tables for results.md (and the terminal)."""
    lines = []
    for condition, by_task in results.items():
        lines += [f"### {condition}" + (" (one competing CPU-bound process)" if condition == "loaded" else ""), ""]
        head = "| task | data | model | nnrun s/epoch | hand | loader | lightning | nnrun/hand | loader/nnrun " \
               "| lightning/nnrun |"
        if condition == "loaded":
            head += f" nnrun t=1 | nnrun t={cores} | auto / best forced |"
        lines += [head, "|" + " --- |" * (head.count("|") - 1)]
        for task, ways in by_task.items():
            if task == "process":
                continue
            spec = TASKS[task]
            rows = spec.rows.format(n=f"{(IMAGES if task == 'images' else WIDE_ROWS)[quick]:,}")
            s = {label: w.get("median") for label, w in ways.items()}
            cells = [task, rows, spec.model, _s(s.get("nnrun")), _s(s.get("hand")), _s(s.get("loader")),
                     _s(s.get("lightning")), _r(s.get("nnrun"), s.get("hand")), _r(s.get("loader"), s.get("nnrun")),
                     _r(s.get("lightning"), s.get("nnrun"))]
            if condition == "loaded":
                forced = [v for k, v in s.items() if k.startswith("nnrun t=") and v]
                cells += [_s(s.get("nnrun t=1")), _s(s.get(f"nnrun t={cores}")),
                          _r(s.get("nnrun"), min(forced)) if forced else "n/a"]
            lines.append("| " + " | ".join(cells) + " |")
            if "nnrun compile" in ways and "median" in ways["nnrun compile"]:
                c = ways["nnrun compile"]
                lines.append(f"| {task}, `compile: true` | | | {_s(c['median'])} | {_s(s.get('hand'))} | | | "
                             f"{_r(c['median'], s.get('hand'))} | | | compile time {c['compile_seconds']:.1f} s |")
        if "process" in by_task:
            p = by_task["process"]
            lines += ["", f"Whole process, `nnrun train configs/iris_mlp.yaml early_stopping.patience=null` (200 "
                          f"epochs, plots and report included) against `bench/plain_iris.py` (the same job, no "
                          f"plots), median of {len(p['all']['nnrun'])} interleaved runs: nnrun {p['nnrun']:.2f} s, "
                          f"plain script {p['plain']:.2f} s, **ratio {p['nnrun'] / p['plain']:.2f}**. "
                          f"`nnrun --help`: {p['help']:.2f} s."]
        lines.append("")
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _r(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round and fewer epochs (a few minutes)")
    parser.add_argument("--tasks", default="tiny,medium,wide,images,process",
                        help="comma-separated: tiny, medium, wide, images, process")
    parser.add_argument("--conditions", default="quiet,loaded", help="quiet, loaded or both")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS and t != "process"]
    if unknown:
        parser.error(f"unknown task {unknown[0]!r} (choose from {', '.join([*TASKS, 'process'])})")
    # Compiled bytecode, as a regular (non-editable) install has it: this machine sets PYTHONDONTWRITEBYTECODE.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "nnrun")], check=False)
    try:
        import lightning  # noqa: F401
        has_lightning = True
    except ImportError:
        has_lightning = False
        print("note: lightning is not installed, so its column is n/a (pip install \"nnrun[bench]\")")
    if args.quick:
        print("note: --quick measures one round, on fewer rows, without Lightning (and the DataLoader under load)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    random.seed(0)
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="nnrun-bench-") as tmp:
        for condition in [c.strip() for c in args.conditions.split(",")]:
            print(f"{condition}:", flush=True)
            if condition == "loaded":
                with Competitor():
                    results[condition] = run_condition(condition, tasks, quick=args.quick, workdir=Path(tmp),
                                                       cores=cores, lightning=has_lightning)
            else:
                results[condition] = run_condition(condition, tasks, quick=args.quick, workdir=Path(tmp),
                                                   cores=cores, lightning=has_lightning)
    body = tables(results, quick=args.quick, cores=cores)
    minutes = (time.perf_counter() - started) / 60
    text = (f"# nnrun benchmark\n\n`python bench/run.py{' --quick' if args.quick else ''} --tasks {args.tasks}` on "
            f"{datetime.now():%Y-%m-%d %H:%M}, {minutes:.1f} min.\n\nMachine: {machine()}.\n\n"
            f"Seconds per epoch are medians after the first epoch, each way in a fresh process, interleaved; "
            f"nnrun's include its per-epoch bookkeeping (checkpoint snapshot, metrics row, log line). `hand` is "
            f"randperm + slicing of tensors already on the device, `loader` a DataLoader over a TensorDataset, "
            f"`lightning` Lightning's Trainer; all use torch's default thread count. Ratios below 1 favour the "
            f"first named.\n\n{body}")
    args.out.write_text(text, encoding="utf-8")
    print(body)
    print(f"wrote {args.out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()

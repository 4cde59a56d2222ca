"""nnrun's speed against the same job done by hand, with a DataLoader and with Lightning, measured in one run.

    python bench/run.py [--quick] [--tasks tiny,medium,wide,images,process,sweep] [--out bench/results.md]

Every way runs in a fresh process, and the ways run in lockstep: epoch k of each, one at a time in a shuffled
order, then epoch k + 1, so that a neighbour's load falls on all of them alike. A ratio is the median of the
per-epoch ratios (epoch k of one way over epoch k of the other, measured seconds apart). Each task runs twice:
on the machine as it is ("quiet"), and with one competing CPU-bound process that the benchmark starts and stops
itself ("loaded"). It prints the median seconds per epoch after the first (warm-up) epoch and the ratios, and
writes the tables to --out.
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

from bench.worker import PREFIX, TASKS, write_images  # noqa: E402 - after the path is set

# Epochs per task: enough that the median after the warm-up epoch is stable, (full, quick).
EPOCHS = {"tiny": (40, 20), "medium": (8, 4), "wide": (6, 5), "images": (5, 4)}
ROUNDS = (3, 1)
PROCESS_RUNS = (5, 2)
IMAGES = (4000, 512)  # training images of the image task
WIDE_ROWS = (60000, 10000)  # training rows of the wide task


def measure_together(task: str, ways: list[tuple[str, str, str, bool, str]], *, epochs: int, workdir: Path,
                     quick: bool) -> dict[str, dict]:
    """One fresh worker process per way, run in lockstep: epoch k of every way, one at a time in a shuffled order,
    then epoch k + 1. The processes start (imports) together; only the epochs are timed. Returns each way's
    result (its epoch times after the first), or the error it printed."""
    workdir.mkdir(parents=True, exist_ok=True)
    workers: dict[str, subprocess.Popen] = {}
    errors: dict[str, Path] = {}
    for label, way, threads, compile, precision in ways:
        command = [sys.executable, str(HERE / "worker.py"), task, way, "--epochs", str(epochs), "--threads",
                   threads, "--precision", precision, "--images", str(IMAGES[quick]), "--rows",
                   str(WIDE_ROWS[quick]), "--workdir", str(workdir), "--lockstep", *(["--compile"] if compile else [])]
        errors[label] = workdir / f"{label.replace(' ', '_')}.stderr"
        with errors[label].open("w") as stderr:
            workers[label] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                              text=True, cwd=ROOT)
    results: dict[str, dict] = {}
    alive = [label for label in workers if _next(workers[label]) == ["ready"]]
    for label in workers:
        if label not in alive:
            results[label] = _failed(workers[label], errors[label])
    for _ in range(epochs + 1):  # the last turn lets each worker finish and report
        for label in random.sample(alive, len(alive)):
            worker = workers[label]
            worker.stdin.write("go\n")
            worker.stdin.flush()
            message = _next(worker)
            if message[:1] == ["result"]:
                results[label] = json.loads(message[1])
            elif message[:1] != ["epoch"]:
                results[label] = _failed(worker, errors[label])
        alive = [label for label in alive if label not in results]
    for label in alive:
        results[label] = {"error": "did not finish"}
    for worker in workers.values():
        worker.kill()
        worker.wait()
    return results


def _next(worker: subprocess.Popen) -> list[str]:
    """The worker's next protocol message (its other output is nnrun's console, skipped), or [] when it ended."""
    for line in worker.stdout:
        if line.startswith(PREFIX + " "):
            return line[len(PREFIX) + 1:].rstrip("\n").split(" ", 1)
    return []


def _failed(worker: subprocess.Popen, stderr: Path) -> dict:
    worker.kill()
    tail = stderr.read_text(errors="replace").strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit {worker.wait()}"}


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


def sweep_trials(*, quick: bool) -> dict:
    """bench/vectorize.py in a fresh process: a sweep's 8 trials trained together against one after another."""
    done = subprocess.run([sys.executable, str(HERE / "vectorize.py"), "--json", *(["--quick"] if quick else [])],
                          capture_output=True, text=True, cwd=ROOT)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"error": " | ".join(done.stderr.strip().splitlines()[-3:]) or f"exit {done.returncode}"}


class Competitor:
    """One CPU-bound process, started and stopped by the benchmark: the "loaded" condition."""

    def __enter__(self) -> Competitor:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.kill()
        self.process.wait()


def ways_for(condition: str, cores: int, *, quick: bool, cuda: bool) -> list[tuple[str, str, str, bool, str]]:
    """(label, way, threads, compile, precision) measured under a condition. --quick measures what the targets need
    and leaves the DataLoader out under load and Lightning out altogether (it takes seconds to import). On CUDA,
    nnrun also runs in fp32 beside its default (`precision: auto`, bf16 there), as the other ways compute."""
    ways = [("nnrun", "nnrun", "auto", False, "auto"), ("hand", "hand", "auto", False, "auto")]
    if not (quick and condition == "loaded"):
        ways.append(("loader", "loader", "auto", False, "auto"))
    if not quick:
        ways.append(("lightning", "lightning", "auto", False, "auto"))
    if cuda and condition == "quiet":
        ways.append(("nnrun fp32", "nnrun", "auto", False, "fp32"))
    if condition == "loaded":
        ways += [("nnrun t=1", "nnrun", "1", False, "auto"), (f"nnrun t={cores}", "nnrun", str(cores), False, "auto")]
    return ways


def run_condition(condition: str, tasks: list[str], *, quick: bool, workdir: Path, cores: int,
                  lightning: bool, cuda: bool, all_epochs: int | None) -> dict:
    results: dict = {}
    for task in [t for t in tasks if t in TASKS]:
        epochs = all_epochs or EPOCHS[task][quick]
        ways = [w for w in ways_for(condition, cores, quick=quick, cuda=cuda) if lightning or w[1] != "lightning"]
        if task == "medium" and condition == "quiet":
            ways.append(("nnrun compile", "nnrun", "auto", True, "auto"))
        if task == "images" and not (workdir / task / "idx").is_dir():
            write_images(workdir / task, IMAGES[quick])
        rounds = []
        for round_ in range(ROUNDS[quick]):
            print(f"  {condition:6} {task:7} round {round_ + 1} of {ROUNDS[quick]}: {len(ways)} ways, {epochs} epochs",
                  flush=True)
            rounds.append(measure_together(task, ways, epochs=epochs, workdir=workdir / task, quick=quick))
        results[task] = {label: _combine([r[label] for r in rounds]) for label, *_ in ways}
        for label, result in results[task].items():
            shown = f"{result['median']:.4f} s/epoch at {result['threads']} threads" if "median" in result \
                else f"FAILED {result['error']}"
            print(f"  {condition:6} {task:7} {label:14} {shown}", flush=True)
    if "sweep" in tasks and condition == "quiet":
        results["sweep"] = sweep_trials(quick=quick)
        print(f"  {condition:6} sweep   {results['sweep'].get('job_ratio', 'FAILED')}", flush=True)
    if "process" in tasks:
        results["process"] = whole_process(PROCESS_RUNS[quick], workdir / "process")
        print(f"  {condition:6} process nnrun {results['process']['nnrun']:.2f} s, plain script "
              f"{results['process']['plain']:.2f} s", flush=True)
    return results


def _combine(runs: list[dict]) -> dict:
    """A way's rounds together: every epoch time after the first, round by round, and their median."""
    ok = [r for r in runs if r.get("epochs")]
    if not ok:
        return {"error": runs[0].get("error", "no epochs timed")}
    combined = {"epochs": [r["epochs"] for r in ok], "threads": ok[0].get("threads"),
                "median": statistics.median(t for r in ok for t in r["epochs"])}
    if any("compile_seconds" in r for r in ok):
        combined["compile_seconds"] = statistics.median(r.get("compile_seconds", 0.0) for r in ok)
    return combined


def paired_ratio(a: dict | None, b: dict | None) -> float | None:
    """The median over epochs of a's epoch time over b's same epoch (run back to back in lockstep), or None."""
    if not a or not b or "epochs" not in a or "epochs" not in b:
        return None
    return statistics.median(x / y for ra, rb in zip(a["epochs"], b["epochs"]) for x, y in zip(ra, rb) if y > 0)


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
            if task in ("process", "sweep"):
                continue
            spec = TASKS[task]
            rows = spec.rows.format(n=f"{(IMAGES if task == 'images' else WIDE_ROWS)[quick]:,}")
            s = {label: w.get("median") for label, w in ways.items()}
            cells = [task, rows, spec.model, _s(s.get("nnrun")), _s(s.get("hand")), _s(s.get("loader")),
                     _s(s.get("lightning")), _r(ways, "nnrun", "hand"), _r(ways, "loader", "nnrun"),
                     _r(ways, "lightning", "nnrun")]
            if condition == "loaded":
                forced = [label for label in (f"nnrun t={c}" for c in sorted({1, cores})) if s.get(label)]
                best = min(forced, key=s.get) if forced else None
                cells += [_s(s.get("nnrun t=1")), _s(s.get(f"nnrun t={cores}")),
                          _r(ways, "nnrun", best) if best else "n/a"]
            lines.append("| " + " | ".join(cells) + " |")
            if "nnrun fp32" in ways and "median" in ways["nnrun fp32"]:
                f = ways["nnrun fp32"]
                lines.append(f"| {task}, `precision: fp32` | | | {_s(f['median'])} | {_s(s.get('hand'))} | "
                             f"{_s(s.get('loader'))} | | {_r(ways, 'nnrun fp32', 'hand')} | "
                             f"{_r(ways, 'loader', 'nnrun fp32')} | |")
            if "nnrun compile" in ways and "median" in ways["nnrun compile"]:
                c = ways["nnrun compile"]
                lines.append(f"| {task}, `compile: true` | | | {_s(c['median'])} | {_s(s.get('hand'))} | | | "
                             f"{_r(ways, 'nnrun compile', 'hand')} | | | compile time {c['compile_seconds']:.1f} s |")
        if "sweep" in by_task:
            v = by_task["sweep"]
            lines += ["", f"Sweep trials trained together (`nnrun sweep --vectorize`, bench/vectorize.py): "
                          f"{v['trials']} learning rates of the {v['model']}, {v['epochs']} epochs, median of "
                          f"{v['repeats']} interleaved repeat(s): sequential "
                          f"{v['job_trials_per_s']['sequential']:.2f} trials/s, together "
                          f"{v['job_trials_per_s']['vectorized']:.2f} trials/s, **{v['job_ratio']:.1f}x** for the "
                          f"whole job ({v['training_ratio']:.1f}x for training alone)." if "job_ratio" in v else
                          f"Sweep trials trained together: FAILED {v.get('error')}"]
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


def _r(ways: dict, a: str, b: str) -> str:
    ratio = paired_ratio(ways.get(a), ways.get(b))
    return "n/a" if ratio is None else f"{ratio:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round and fewer epochs (a few minutes)")
    parser.add_argument("--tasks", default="tiny,medium,wide,images,process,sweep",
                        help="comma-separated: tiny, medium, wide, images, process, sweep")
    parser.add_argument("--conditions", default="quiet,loaded", help="quiet, loaded or both")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--epochs", type=int, default=None, help="every task's epochs (default: per task)")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS and t not in ("process", "sweep")]
    if unknown:
        parser.error(f"unknown task {unknown[0]!r} (choose from {', '.join([*TASKS, 'process', 'sweep'])})")
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
    import torch

    cuda = torch.cuda.is_available()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    random.seed(0)
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="nnrun-bench-") as tmp:
        for condition in [c.strip() for c in args.conditions.split(",")]:
            print(f"{condition}:", flush=True)
            settings = dict(quick=args.quick, workdir=Path(tmp), cores=cores, lightning=has_lightning, cuda=cuda,
                            all_epochs=args.epochs)
            if condition == "loaded":
                with Competitor():
                    results[condition] = run_condition(condition, tasks, **settings)
            else:
                results[condition] = run_condition(condition, tasks, **settings)
    body = tables(results, quick=args.quick, cores=cores)
    minutes = (time.perf_counter() - started) / 60
    text = (f"# nnrun benchmark\n\n`python bench/run.py{' --quick' if args.quick else ''} --tasks {args.tasks}` on "
            f"{datetime.now():%Y-%m-%d %H:%M}, {minutes:.1f} min.\n\nMachine: {machine()}.\n\n"
            f"Seconds per epoch are medians after the first epoch, each way in a fresh process; the ways run in "
            f"lockstep (epoch k of each, one at a time in a shuffled order, then epoch k + 1), and a ratio is the "
            f"median of the per-epoch ratios, so a neighbour's load falls on both sides of it alike; "
            f"nnrun's include its per-epoch bookkeeping (checkpoint snapshot, metrics row, log line). `hand` is "
            f"randperm + slicing of tensors already on the device, `loader` a DataLoader over a TensorDataset, "
            f"`lightning` Lightning's Trainer; all use torch's default thread count. Ratios below 1 favour the "
            f"first named.\n\n{body}")
    args.out.write_text(text, encoding="utf-8")
    print(body)
    print(f"wrote {args.out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()

"""Faults from outside: signals at any moment (start-up included), a full disk at each kind of write, runs
folders that cannot be created, and two runs started at once under one name.

Each case runs the real command in its own process and checks what a user would: the exit code, one `error:`
line, no traceback, and the files on disk (nothing half-written, earlier checkpoints load, resume continues).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import BASE_CONFIG, ROOT, merged, run_dirs
from tests.robustness.conftest import CASES, assert_clean

NNRUN = [sys.executable, "-m", "nnrun"]


def write_config(folder: Path, **changes) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(merged(BASE_CONFIG, {"threads": 1, **changes})))
    return path


def nnrun(*args, **options) -> subprocess.CompletedProcess:
    return subprocess.run([*NNRUN, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          **options)


def assert_consistent(run: Path) -> None:
    """A run folder after any fault: no temp file once resumed, checkpoints load safely, metrics.csv is whole."""
    for name in ("best.pth", "last.pth"):
        path = run / "checkpoints" / name
        if path.exists():
            state = torch.load(path, weights_only=True)  # never a half-written file: writes are atomic
            assert state["format"] == "nnrun-checkpoint"
    if (run / "checkpoints" / "last.pth").exists():
        epochs_saved = torch.load(run / "checkpoints" / "last.pth", weights_only=True)["epoch"]
        rows = (run / "metrics.csv").read_text().splitlines()[1:]
        assert len(rows) >= epochs_saved  # a row is written before its checkpoint; resume rewrites the rest


# --- signals at random moments ----------------------------------------------------------------------------------

# Every signal in training; start-up and drawing, where each handler path differs, with the signals that reach it.
CASES_TO_RUN = [(signal.SIGINT, "start-up"), (signal.SIGTERM, "start-up"), (signal.SIGINT, "training"),
                (signal.SIGTERM, "training"), (signal.SIGKILL, "training"), (signal.SIGINT, "drawing")]


def signal_in(phase: str, process: subprocess.Popen, runs: Path, rng: random.Random) -> None:
    """Wait for a phase of `nnrun train` (by the files it writes, so the machine's speed does not matter)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        folders = run_dirs(runs) if runs.exists() else []
        if phase == "start-up":
            time.sleep(rng.uniform(0.2, 1.5))  # imports, config, data: before any folder exists
            return
        if phase == "training" and folders and (folders[0] / "metrics.csv").exists() and \
                len((folders[0] / "metrics.csv").read_text().splitlines()) > 2:
            time.sleep(rng.uniform(0.0, 0.3))
            return
        if phase == "drawing" and folders and (folders[0] / "summary.json").exists():
            return
        time.sleep(0.02)


@pytest.mark.parametrize("signum, phase", CASES_TO_RUN, ids=[f"{s.name}-{p}" for s, p in CASES_TO_RUN])
def test_a_signal_at_any_moment_leaves_a_consistent_folder_that_resumes(tmp_path, signum, phase):
    rng = random.Random(f"{signum}{phase}")
    runs = tmp_path / f"runs-{phase}"
    config = write_config(tmp_path, epochs=300 if phase != "drawing" else 3, batch_size=1)
    process = subprocess.Popen([*NNRUN, "train", str(config), "--runs-dir", str(runs)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    signal_in(phase, process, runs, rng)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    CASES[f"faults: {signum.name} | in {phase}"] += 1
    if signum == signal.SIGKILL:
        CASES["faults: SIGKILL"] += 1
        assert process.returncode in (-signal.SIGKILL, 0) and "Traceback" not in stderr
    else:
        assert_clean(f"faults: {signum.name}", process.returncode, stdout, stderr, allowed=(0, 130))
        if phase == "start-up" and process.returncode == 130:
            assert "interrupted before training started (nothing was written)" in stderr
    folders = run_dirs(runs) if runs.exists() else []
    assert len(folders) <= 1
    if phase == "start-up" and signum != signal.SIGKILL:
        assert not folders  # an interrupt before training leaves no folder behind
    if not folders or not (folders[0] / "checkpoints" / "last.pth").exists():
        return  # stopped before a finished epoch: there is nothing to resume
    (run,) = folders
    assert_consistent(run)
    if phase == "training" and process.returncode == 130:  # the handler saved the last finished epoch and said so
        saved = torch.load(run / "checkpoints" / "last.pth", weights_only=True)["epoch"]
        assert f"interrupted after epoch {saved}" in stderr and "--resume" in stderr
        assert len((run / "metrics.csv").read_text().splitlines()[1:]) == saved
        assert json.loads((run / "summary.json").read_text())["stop_reason"] == "interrupted"
        assert (run / "plots" / "loss.png").is_file() and (run / "report.html").is_file()
    saved = torch.load(run / "checkpoints" / "last.pth", weights_only=True)["epoch"]
    done = nnrun("train", "--resume", run, f"epochs={saved + 3}")
    assert done.returncode == 0, done.stderr
    assert not list(run.rglob(".*.tmp"))  # a temp file a SIGKILL left is gone
    epochs = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, saved + 4))  # no epoch missing or repeated
    assert (run / "report.html").exists()


# --- a full disk ------------------------------------------------------------------------------------------------

PAGE = 4096


def pages(size: int) -> int:
    return -(-size // PAGE)


@pytest.fixture(scope="module")
def sizes(tmp_path_factory) -> dict[str, int]:
    """What a 3-epoch run writes, file by file, from a reference run on the ordinary disk."""
    folder = tmp_path_factory.mktemp("reference")
    done = nnrun("train", write_config(folder, epochs=3), "--runs-dir", folder / "runs")
    assert done.returncode == 0, done.stderr
    (run,) = run_dirs(folder / "runs")
    sizes = {str(p.relative_to(run)): p.stat().st_size for p in run.rglob("*") if p.is_file()}
    done = nnrun("train", write_config(folder, epochs=1), "--runs-dir", folder / "first")
    assert done.returncode == 0, done.stderr
    (first,) = run_dirs(folder / "first")
    sizes["first last.pth"] = (first / "checkpoints" / "last.pth").stat().st_size  # less metrics than at the end
    return sizes


def disk_limits(sizes: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Where space runs out: (bytes of a tmpfs, bytes one file may hold) that fail the first checkpoint, the
    first plot, or the report, and nothing before it."""
    early = sum(pages(sizes[f]) for f in ("config.yaml", "train.log", "metrics.csv"))
    checkpoints = pages(sizes["checkpoints/best.pth"]) + 2 * pages(sizes["checkpoints/last.pth"])  # + a temp copy
    results = pages(sizes["predictions.csv"]) + pages(sizes["summary.json"])
    plots = sum(pages(size) for name, size in sizes.items() if name.startswith("plots/"))
    largest_before_plots = max(size for name, size in sizes.items() if not name.startswith(("plots/", "report")))
    assert largest_before_plots < sizes["plots/loss.png"]  # else no per-file limit can separate the two
    assert sizes["first last.pth"] < sizes["checkpoints/last.pth"]  # else no per-file limit separates the two
    return {
        "checkpoint": ((early + 1) * PAGE, (sizes["train.log"] + sizes["checkpoints/best.pth"]) // 2),
        # The first epoch's checkpoints fit; the final ones need a temp copy beside them, which does not.
        "later checkpoint": ((early + checkpoints - pages(sizes["checkpoints/last.pth"]) + 1) * PAGE,
                             (sizes["first last.pth"] + sizes["checkpoints/last.pth"]) // 2),
        "plots": ((early + checkpoints + results + pages(sizes["plots/loss.png"]) - 1) * PAGE,
                  (largest_before_plots + sizes["plots/loss.png"]) // 2),
        "report": ((early + checkpoints + results + plots + pages(sizes["report.html"]) // 2) * PAGE,
                   (max(s for n, s in sizes.items() if n.startswith("plots/")) + sizes["report.html"]) // 2),
    }


class FullDisk:
    """A folder that runs out of space: a tmpfs of the given size where mounting works (as root), else a limit
    on the size of each file the child process writes (RLIMIT_FSIZE: writes past it fail with EFBIG)."""

    def __init__(self, folder: Path, limits: tuple[int, int]):
        self.folder, (self.disk_bytes, self.file_bytes) = folder, limits
        folder.mkdir(parents=True)
        self.mounted = not os.environ.get("NNRUN_TEST_NO_MOUNT") and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.disk_bytes}", "tmpfs", str(folder)],
            capture_output=True).returncode == 0

    def run(self, *args) -> subprocess.CompletedProcess:
        def limit_file_sizes():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))

        return nnrun(*args, preexec_fn=None if self.mounted else limit_file_sizes)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.folder)], check=True)


@pytest.mark.parametrize("where", ["checkpoint", "later checkpoint", "plots", "report"])
def test_a_full_disk_is_one_line_and_keeps_every_good_checkpoint(tmp_path, sizes, where):
    disk = FullDisk(tmp_path / "disk", disk_limits(sizes)[where])
    try:
        done = disk.run("train", write_config(tmp_path, epochs=3), "--runs-dir", disk.folder / "runs")
        CASES[f"faults: disk full | at the {where}, " + ("a tmpfs" if disk.mounted else "RLIMIT_FSIZE")] += 1
        assert_clean("faults: disk full", done.returncode, done.stdout, done.stderr, allowed=(2,))
        (line,) = done.stderr.strip().splitlines()
        assert "could not write" in line and ("free some disk space" in line)
        (run,) = run_dirs(disk.folder / "runs")
        assert not list(run.rglob(".*.tmp"))  # no stray temp file
        assert_consistent(run)  # every checkpoint there loads with weights_only=True
        if where == "checkpoint":
            assert ".pth" in line and "start the run again" in line
            assert not list((run / "checkpoints").glob("*.pth"))
        elif where == "later checkpoint":  # the first epoch survives, and the run goes on once there is space
            assert ".pth" in line and f"continue with: nnrun train --resume {run}" in line
            assert torch.load(run / "checkpoints" / "last.pth", weights_only=True)["epoch"] == 1
            moved = shutil.copytree(run, tmp_path / "space" / run.name)
            done = nnrun("train", "--resume", moved)
            assert done.returncode == 0, done.stderr
            assert [line.split(",")[0] for line in (moved / "metrics.csv").read_text().splitlines()[1:]] == \
                ["1", "2", "3"]
        else:
            assert ("report.html" if where == "report" else ".png") in line
            assert "training finished (completed) and its results are saved" in line
            assert f"nnrun plot {run}" in line and (run / "summary.json").exists()
            assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.pth", "last.pth"}
    finally:
        disk.close()


# --- runs folders that cannot be made, and two runs under one name --------------------------------------------

def test_a_runs_folder_that_cannot_be_made_is_one_line_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("in the way")
    config = write_config(tmp_path, epochs=1)
    done = nnrun("train", config, "--runs-dir", tmp_path / "a-file" / "runs")
    assert_clean("faults: uncreatable runs folder", done.returncode, done.stdout, done.stderr, allowed=(2,))
    assert "'" + str(tmp_path / "a-file") + "' is a file, not a folder" in done.stderr
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    if os.geteuid() == 0:  # root writes anywhere a permission bit allows nothing: a read-only mount forbids it
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)], check=True)
    else:
        readonly.chmod(0o555)
    try:
        done = nnrun("train", config, "--runs-dir", readonly / "runs")
        assert_clean("faults: uncreatable runs folder", done.returncode, done.stdout, done.stderr, allowed=(2,))
        assert "runs" in done.stderr and ("not writable" in done.stderr or "Read-only" in done.stderr)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(readonly)], check=True)


def test_two_runs_started_at_once_under_one_name_get_a_folder_each(tmp_path):
    config = write_config(tmp_path, epochs=2)
    processes = [subprocess.Popen([*NNRUN, "train", str(config), "--runs-dir", str(tmp_path / "runs")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(2)]
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert_clean("faults: two runs at once", process.returncode, stdout, stderr, allowed=(0,))
    folders = run_dirs(tmp_path / "runs")
    assert len(folders) == 2 and all((f / "summary.json").exists() for f in folders)

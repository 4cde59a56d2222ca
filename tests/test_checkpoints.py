"""The checkpoint file: complete, safe to load, atomic, and clear about files it cannot use."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from nnrun.checkpoints import FORMAT_VERSION, load_checkpoint, save_checkpoint
from nnrun.errors import UserError
from tests.helpers import ROOT, run_dirs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short iris run (with a scheduler, so every part of the state is there)."""
    import yaml
    from typer.testing import CliRunner

    from nnrun.cli import app
    from tests.helpers import BASE_CONFIG, merged

    folder = tmp_path_factory.mktemp("trained")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(merged(BASE_CONFIG, {"epochs": 3, "scheduler": {"type": "step"}})))
    result = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(folder / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(folder / "runs")
    return run


def test_checkpoints_hold_everything_and_load_with_weights_only(trained):
    last = torch.load(trained / "checkpoints" / "last.pth", weights_only=True)
    best = torch.load(trained / "checkpoints" / "best.pth", weights_only=True)
    for checkpoint in (last, best):
        assert checkpoint["format"] == "nnrun-checkpoint" and checkpoint["format_version"] == FORMAT_VERSION
        assert set(checkpoint["model"]) == {"fc1.weight", "fc1.bias", "out.weight", "out.bias"}
        assert checkpoint["config"]["model"]["hidden"] == [10]
        data = checkpoint["data"]
        assert data["class_names"] == ["setosa", "versicolor", "virginica"]
        assert data["feature_names"][0] == "sepal length (cm)" and len(data["feature_names"]) == 4
        assert len(data["preprocessing"]["features"]["center"]) == 4
        assert data["fingerprint"]["rows"] == 150 and len(data["fingerprint"]["sha256"]) == 64
        assert set(checkpoint["versions"]) >= {"nnrun", "torch", "numpy", "python"}
    assert last["epoch"] == 3 and [row["epoch"] for row in last["metrics"]] == [1, 2, 3]
    assert set(last["optimizer"]) == {"state", "param_groups"}
    assert last["scheduler"]["last_epoch"] == 3
    assert set(last["loop"]) == {"epoch", "best_value", "best_epoch", "bad_epochs", "seconds", "resumed"}
    assert set(last["rng"]) == {"torch", "shuffle", "python", "numpy", "cuda"}
    assert torch.equal(last["best_model"]["out.weight"], best["model"]["out.weight"])


def test_save_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    save_checkpoint(tmp_path / "a.pth", {"epoch": 1})
    save_checkpoint(tmp_path / "a.pth", {"epoch": 2})
    assert load_checkpoint(tmp_path / "a.pth")["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["a.pth"]


CRASHING_WRITER = textwrap.dedent("""
    import sys, torch
    from nnrun.checkpoints import save_checkpoint
    big = torch.randn(25_000_000)  # 100 MB: each write takes a while
    epoch = 0
    while True:
        epoch += 1
        save_checkpoint(sys.argv[1], {"model": {"w": big}, "epoch": epoch})
        print(epoch, flush=True)
""")


def test_a_crash_during_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.pth"
    caught_mid_write = False
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(path)], stdout=subprocess.PIPE,
                                text=True, cwd=ROOT)
        first = int(proc.stdout.readline())  # one complete checkpoint exists
        time.sleep(0.05 + 0.1 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        caught_mid_write |= bool(leftovers)
        checkpoint = load_checkpoint(path)  # the last complete write, never a torn one
        assert checkpoint["epoch"] >= first and checkpoint["model"]["w"].numel() == 25_000_000
        for p in leftovers:
            p.unlink()
        if caught_mid_write:
            break
    assert caught_mid_write, "the kill never landed during a write; the test proved nothing"


class Payload:
    """Unpickling this object creates a folder: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def malicious_files(tmp_path):
    marker = tmp_path / "payload-ran"
    zip_style = tmp_path / "evil.pth"
    torch.save({"format": "nnrun-checkpoint", "format_version": 1, "model": Payload(marker)}, zip_style)
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(Payload(marker)))
    return marker, [zip_style, legacy]


@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused(cli, tmp_path, command):
    marker, files = malicious_files(tmp_path)
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    for path in files:
        args = {"eval": ["eval", path], "predict": ["predict", path, tmp_path / "rows.csv"],
                "resume": ["train", "--resume", path]}[command]
        result = cli(*args)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert "would import posix.mkdir when loaded, which could run code, so nnrun refused to load it" in line
        assert not marker.exists()
    # The payload is real: unpickling it without weights_only does run it.
    torch.load(files[0], weights_only=False)
    assert marker.exists()


def test_unusable_files_get_one_line_each(cli, trained, tmp_path):
    good = (trained / "checkpoints" / "best.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.pth").write_bytes(os.urandom(4096))
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "bare_state_dict.pth")
    state = torch.load(trained / "checkpoints" / "best.pth", weights_only=True)
    torch.save({**state, "format_version": FORMAT_VERSION + 1}, tmp_path / "future.pth")
    torch.save({"format": "nnrun-checkpoint", "format_version": 1}, tmp_path / "hollow.pth")
    expected = {
        "truncated.pth": "is truncated or corrupt",
        "noise.pth": "is truncated or corrupt",
        "text.pth": "is truncated or corrupt",
        "bare_state_dict.pth": "is not an nnrun checkpoint",
        "future.pth": f"has format version {FORMAT_VERSION + 1}, newer than this nnrun reads",
        "hollow.pth": "is incomplete or does not match its own config",
        "missing.pth": "not found",
    }
    for name, message in expected.items():
        result = cli("eval", tmp_path / name)
        assert result.exit_code == 2, (name, result.output)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, (name, line)
        assert "Traceback" not in result.output


def test_load_checkpoint_errors_are_user_errors(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"\x00" * 10)
    with pytest.raises(UserError):
        load_checkpoint(tmp_path / "x.pth")

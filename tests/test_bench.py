"""The benchmark runs end to end (it is not a speed test: it asserts nothing about the numbers)."""

import subprocess
import sys

from tests.helpers import ROOT


def test_quick_benchmark_of_the_tiny_task_completes_and_writes_the_table(tmp_path):
    out = tmp_path / "results.md"
    done = subprocess.run([sys.executable, "bench/run.py", "--quick", "--tasks", "tiny", "--conditions", "loaded",
                           "--epochs", "3", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    # The loaded condition runs every moving part: the competing process, nnrun at auto and at fixed thread counts.
    assert "### loaded" in text and text.count("| tiny | 3,500 x 2 | 16-8-1 |") == 1
    assert "FAILED" not in done.stdout

"""The robustness suite's shared pieces: a case counter printed at the end, the hypothesis settings, and the one
check every case makes (exit code, one `error:` line per problem, no traceback)."""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

CASES: Counter[str] = Counter()  # cases run, by kind; printed at the end of the session

# Example counts sized so the whole suite stays within a few minutes on 2 CPU cores; NNRUN_FUZZ=thorough for more.
settings.register_profile("default", max_examples=60, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("NNRUN_FUZZ", "default"))


def assert_clean(kind: str, code: int, stdout: str, stderr: str, *, allowed: tuple[int, ...] = (0, 2)) -> None:
    """Exit code 0, 2 or 130 as allowed; on 2, every stderr line is one `error: what (fix)`; never a traceback."""
    CASES[kind] += 1
    assert "Traceback" not in stdout + stderr, stdout + stderr
    assert code in allowed, f"exit {code}: {stderr}"
    if code == 2:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        assert lines and all(line.startswith("error: ") for line in lines), stderr
        CASES[f"{kind} | refused"] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if not CASES:
        return
    terminalreporter.section("robustness cases")
    kinds = sorted(kind for kind in CASES if " | " not in kind)  # "kind | detail" keys break a kind down
    width = max(len(kind) for kind in CASES) + 2
    for kind in kinds:
        terminalreporter.write_line(f"{kind:{width}} {CASES[kind]:5}")
        for key in sorted(key for key in CASES if key.startswith(f"{kind} | ")):
            terminalreporter.write_line(f"{'  ' + key.split(' | ', 1)[1]:{width}} {CASES[key]:5}")
    total = sum(CASES[kind] for kind in kinds)
    terminalreporter.write_line(f"{'total':{width}} {total:5}; "
                                f"tracebacks that reached the user: 0 (a traceback fails its test)")

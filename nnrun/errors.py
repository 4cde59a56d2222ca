"""The one exception type for user mistakes, and "did you mean" suggestions."""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from pathlib import Path
import errno
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix (config, data, usage): printed as `error: ...`, exit code 2.

    Holds one or more problems; each is a single line saying what was wrong and how to fix it.
    """

    def __init__(self, *problems: str):
        if not problems:
            raise ValueError("UserError needs at least one problem")
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# Failed writes that are the machine's state, not a bug: a full disk, a read-only or unwritable folder.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                errno.EEXIST, errno.EIO, errno.EISDIR}


@contextmanager
def writing(path: Path):
    """Name the file in an OSError raised while writing it (a full disk fails mid-write, without a name)."""
    try:
        yield
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def write_problem(exc: OSError, *, then: str = "") -> UserError | None:
    """A failed write as one line that says what failed and how to fix it; None when it is not about writing.

    `then` adds what to do once the cause is fixed (such as the command that resumes the run).
    """
    if exc.errno not in WRITE_ERRNOS:
        return None
    where = f"'{exc.filename}'" if exc.filename else "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free some disk space"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        fix = "a file stands where a folder should be: choose another --runs-dir or --out"
    else:
        fix = "make the folder writable, or choose another --runs-dir or --out"
    reason = exc.strerror or str(exc)
    return UserError(f"could not write {where}: {reason} ({fix}{'; then ' + then if then else ''})")


class Interrupted(Exception):
    """Training was stopped by Ctrl-C or SIGTERM after saving its state; the CLI exits with code 130."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to `word`, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def hint(word: str, choices: Iterable[str]) -> str:
    """`did you mean 'mlp'? ` when a choice is close to `word`, else an empty string: the start of a fix."""
    guess = did_you_mean(word, choices)
    return f"did you mean '{guess}'? " if guess else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> str:
    """`unknown model 'mpl' (did you mean 'mlp'? choices: cnn, linear, mlp)`."""
    choices = sorted(choices)
    return f"unknown {kind} '{name}' ({hint(name, choices)}choices: {', '.join(choices)})"

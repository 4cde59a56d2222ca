"""The one exception type for user mistakes, and "did you mean" suggestions."""

from __future__ import annotations

import difflib
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

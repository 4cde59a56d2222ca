"""Checkpoints: one `.pth` file of tensors and plain Python types, written atomically, loaded safely.

`torch.load(path, weights_only=True)` loads every nnrun checkpoint, so loading one never runs code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from nnrun.errors import UserError

FORMAT = "nnrun-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; anything unsafe, corrupt or foreign is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' not found (give a .pth file from a run's checkpoints/ folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).split("\n")[0]
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise UserError(f"checkpoint '{path}' contains Python objects that could run code when loaded, "
                            f"so nnrun refused to load it (only load checkpoints written by nnrun train)") from None
        raise UserError(f"checkpoint '{path}' is corrupt ({reason}; train again or use another checkpoint)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        reason = str(exc).split("\n")[0]
        raise UserError(f"checkpoint '{path}' is truncated or corrupt ({reason}; "
                        f"use another checkpoint, such as checkpoints/best.pth)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"'{path}' is not an nnrun checkpoint (give a .pth file written by nnrun train)")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"checkpoint '{path}' has format version {version}, newer than this nnrun reads "
                        f"({FORMAT_VERSION}) (upgrade nnrun: pip install -U nnrun)")
    return state


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

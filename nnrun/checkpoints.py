"""Checkpoints: one `.pth` file of tensors and plain Python types, written atomically, loaded safely.

`torch.load(path, weights_only=True)` loads every nnrun checkpoint, so loading one never runs code.
"""

from __future__ import annotations

import io
import os
import pickletools
import platform
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nnrun
from nnrun.errors import UserError, writing

FORMAT = "nnrun-checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """The library versions a checkpoint or summary was written with."""
    return {"nnrun": nnrun.__version__, "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialize in memory first: torch.save's own file writer reports a full disk as a bare RuntimeError, while
    # a plain write raises OSError(ENOSPC) with the file's name.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with writing(path), os.fdopen(fd, "wb") as file:
            file.write(buffer.getbuffer())
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
        with warnings.catch_warnings():  # torch warns about odd pickles before refusing them; the error says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in many ways; each is the user's file
        imported = _unsafe_import(path)
        if imported:
            raise UserError(f"checkpoint '{path}' would import {imported} when loaded, which could run code, so "
                            f"nnrun refused to load it (only load checkpoints written by nnrun train)") from None
        reason = str(exc).strip().split("\n")[0] or type(exc).__name__
        raise UserError(f"checkpoint '{path}' is truncated or corrupt ({reason[:120]}; use another checkpoint, "
                        f"such as the run's checkpoints/best.pth)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"'{path}' is not an nnrun checkpoint (give a .pth file written by nnrun train)")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"checkpoint '{path}' has format version {version}, newer than this nnrun reads "
                        f"({FORMAT_VERSION}) (upgrade nnrun: pip install -U nnrun)")
    return state


# What a checkpoint's pickle may import: torch's tensor rebuilders and the containers around them.
_SAFE_IMPORTS = ("torch.", "collections.OrderedDict", "_codecs.encode")


def _unsafe_import(path: Path) -> str | None:
    """The first `module.name` the file's pickle would import beyond tensors and containers, if any.

    Read with pickletools, which only lists the opcodes: nothing is imported or run.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                stream = archive.read(member) if member else b""
        else:
            stream = path.read_bytes()
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(stream):
            if isinstance(arg, str) and ("UNICODE" in op.name or "STRING" in op.name):
                strings.append(str(arg))
            if op.name in ("GLOBAL", "INST"):
                name = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            else:
                continue
            if not name.startswith(_SAFE_IMPORTS):
                return name
    except Exception:  # noqa: BLE001 - not a readable pickle: plain corruption
        return None
    return None


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

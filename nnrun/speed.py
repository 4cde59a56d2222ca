"""Opt-in speed: compiled train and eval steps, mixed precision on CUDA, channels_last for CNNs on CUDA.

`Speed` is what a run resolved these to on its device. Checkpoints record it, so `nnrun eval` and `nnrun predict`
compute the way training did (the same autocast dtype, the same memory format).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS = list(get_args(Precision))
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Speed:
    """How a run computes on its device: `compile`, the resolved `precision`, and the memory format."""

    compile: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False

    @classmethod
    def resolve(cls, *, compile: bool, precision: Precision, device: torch.device,
                images: bool) -> tuple[Speed, list[str]]:
        """What the config's settings mean on `device`, and notes for what could not be honoured."""
        notes = []
        if device.type == "cuda":
            if precision == "auto":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            if precision in DTYPES:
                notes.append(f"precision {precision} applies on CUDA only, so this {device.type} run trains in fp32")
            precision = "fp32"
        if compile and (problem := compile_problem(device)):
            notes.append(f"compile: true falls back to eager mode: {problem}")
            compile = False
        return cls(compile=compile, precision=precision, channels_last=device.type == "cuda" and images), notes

    @classmethod
    def from_dict(cls, state: dict[str, Any] | None) -> Speed:
        """A checkpoint's record; checkpoints from before it existed computed in plain fp32."""
        return cls(**state) if state else cls()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass (and the loss), or nothing in fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=DTYPES[self.precision])

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        return torch.amp.GradScaler(device.type) if self.precision == "fp16" else None


def compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, or None; a failure this misses surfaces, and falls back, at warm-up."""
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++", "cl")):
        return "torch.compile needs a C++ compiler for CPU code and none was found (install gcc or clang)"
    return None


@dataclass
class Steps:
    """The three calls a training run makes, eager or compiled: forward with loss, optimizer step, eval forward."""

    forward_loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    optimizer_step: Callable[[], Any]
    eval_forward: Callable[[torch.Tensor], torch.Tensor]
    compiled: bool = False

    @classmethod
    def build(cls, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, *,
              compile: bool) -> Steps:
        """Plain calls; with `compile`, each wrapped by torch.compile (compiled at its first call)."""
        def forward_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            output = model(x)  # (batch, outputs)
            return output, loss_fn(output, y)

        if not compile:
            return cls(forward_loss, optimizer.step, model)
        # On small models the optimizer step is where compiling pays: Adam's per-tensor ops fuse into one kernel.
        return cls(torch.compile(forward_loss), torch.compile(optimizer.step), torch.compile(model), compiled=True)


def is_compile_failure(exc: BaseException) -> bool:
    """Did torch.compile fail (an unsupported op, a missing compiler), as opposed to the model itself?"""
    from torch._dynamo.exc import (
        TorchDynamoException,  # only asked after a compiled call raised
    )

    return isinstance(exc, TorchDynamoException)


class CompileClock:
    """Seconds torch.compile spends compiling (its own start and end callbacks), so that they are reported apart.

    `take()` returns the seconds since the last call: the loop takes them once per epoch.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.total = 0.0
        self._taken = 0.0
        self._depth = 0
        self._since = 0.0

    def __enter__(self) -> CompileClock:
        if self.enabled:
            from torch._dynamo.callback import callback_handler

            callback_handler.register_start_callback(self._start)
            callback_handler.register_end_callback(self._end)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.enabled:
            from torch._dynamo.callback import callback_handler

            callback_handler.remove_start_callback(self._start)
            callback_handler.remove_end_callback(self._end)

    def take(self) -> float:
        seconds, self._taken = self.total - self._taken, self.total
        return seconds

    def _start(self, _args: Any) -> None:
        self._depth += 1
        if self._depth == 1:
            self._since = time.perf_counter()

    def _end(self, _args: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.total += time.perf_counter() - self._since

"""One timed measurement, in a fresh process: one task trained one way. bench/run.py starts it.

    python bench/worker.py TASK WAY --epochs N [--threads N] [--compile] [--workdir DIR] [--lockstep]

Prints one JSON line: the wall time of every epoch (train pass + one val pass, and for nnrun its bookkeeping),
and for nnrun the seconds spent compiling. Every way does the same work: the same rows, model, batch size and
optimizer, and one val pass per epoch.

With --lockstep, the worker takes turns with the other ways' workers: it says `@@bench ready` when its imports
are done and `@@bench epoch SECONDS` after each epoch, and each time waits for a line on stdin before going on.
bench/run.py so runs the ways epoch by epoch, one at a time, and a neighbour's load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "@@bench"


class Clock:
    """Epoch wall times; with lockstep, a pause for bench/run.py's go before the first epoch and after each one."""

    def __init__(self, lockstep: bool):
        self.lockstep = lockstep
        self.seconds: list[float] = []
        self._say("ready")
        self.start = time.perf_counter()

    def epoch_done(self) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self.start)
        self._say(f"epoch {now - self.start:.6f}")
        self.start = time.perf_counter()  # the wait for the go is not the next epoch's time

    def result(self) -> dict:
        return {"epochs": self.seconds[1:], "first": self.seconds[0] if self.seconds else math.nan}

    def _say(self, message: str) -> None:
        if self.lockstep:
            print(f"{PREFIX} {message}", flush=True)
            sys.stdin.readline()


@dataclass(frozen=True)
class Task:
    """What is trained: nnrun's config for it, and the same job's data and model for the other ways."""

    name: str
    rows: str  # for the table, such as "16,512 x 8"
    model: str  # for the table, such as "64-64-1"
    batch_size: int
    data: dict  # nnrun's data section
    hidden: list[int]
    classes: int = 0  # 0: regression


TASKS = {
    "tiny": Task("tiny", "3,500 x 2", "16-8-1", 100,
                 {"type": "product", "n_samples": 5000, "split": {"train": 0.7, "val": 0.15, "test": 0.15}}, [16, 8]),
    "medium": Task("medium", "16,512 x 8", "64-64-1", 64,
                   {"type": "make_regression", "n_samples": 20640, "n_features": 8, "noise": 10.0,
                    "split": {"train": 0.8, "val": 0.1, "test": 0.1}}, [64, 64]),
    "wide": Task("wide", "{n} x 784", "128-10", 128,
                 {"type": "make_classification", "n_samples": 62500, "n_features": 784, "n_informative": 40,
                  "n_classes": 10, "class_sep": 2.0, "split": {"train": 0.96, "val": 0.02, "test": 0.02}}, [128], 10),
    "images": Task("images", "{n} x 28 x 28 uint8", "default cnn", 128, {"type": "idx"}, [], 10),
}


def config(task: Task, *, epochs: int, threads: str, compile: bool, workdir: Path, rows: int | None = None,
           precision: str = "auto") -> dict:
    """nnrun's config for the task: Adam, no early stopping, `device: auto`; `rows` trains on fewer (--quick)."""
    data = dict(task.data)
    if rows and task.name == "wide":
        data["n_samples"] = round(rows / 0.96)
    if task.name == "images":
        data = {"type": "idx", "path": str(workdir / "idx"), "split": {"train": 0.9, "val": 0.1, "test": 0.0}}
    model = {"type": "cnn"} if task.name == "images" else {"type": "mlp", "hidden": task.hidden}
    threads = threads if threads == "auto" else int(threads)
    return {"name": f"bench-{task.name}", "seed": 0, "device": "auto", "threads": threads, "compile": compile,
            "precision": precision,
            "epochs": epochs, "batch_size": task.batch_size, "data": data, "model": model,
            "loss": "cross_entropy" if task.classes else "mse", "optimizer": {"type": "adam", "lr": 0.001}}


def tensors(task: Task, args, device: torch.device):
    """The task's train and val split as tensors on the device, built once by nnrun's own data code (so every
    way trains on the same rows) and cached in the work folder for the other ways' processes."""
    cache = args.workdir / f"{task.name}-{args.rows}.pt"
    if not cache.is_file():
        from nnrun.config import validate
        from nnrun.data.bundle import load_data

        cfg = validate(config(task, epochs=1, threads="auto", compile=False, workdir=args.workdir, rows=args.rows))
        data = load_data(cfg.data, seed=0, device=torch.device("cpu"), data_dir=args.workdir)
        torch.save({"x": data.train.x, "y": data.train.y, "xv": data.val.x, "yv": data.val.y,
                    "in_shape": list(data.in_shape), "input_stats": data.input_stats}, cache)
    saved = torch.load(cache, weights_only=True)
    return *(saved[k].to(device) for k in ("x", "y", "xv", "yv")), saved


def model_for(task: Task, data: dict) -> nn.Module:
    """The same architecture nnrun builds (its own builder, so no difference can creep in)."""
    from nnrun.models import build_model

    kind = "cnn" if task.name == "images" else "mlp"
    kwargs = {} if kind == "cnn" else {"hidden": task.hidden}
    return build_model(kind, kwargs, in_shape=tuple(data["in_shape"]), out_features=task.classes or 1,
                       input_stats=data["input_stats"])


def run_nnrun(task: Task, args) -> dict:
    """The real `nnrun train` path; epoch times are the gaps between metrics.csv rows (so they include the
    checkpoint snapshot, the log line and everything else an epoch costs)."""
    from nnrun import commands
    from nnrun.runs import MetricsWriter

    write = MetricsWriter.write
    path = args.workdir / f"{task.name}-{args.way}-{args.threads}-{args.compile}-{args.precision}.yaml"
    path.write_text(yaml.safe_dump(config(task, epochs=args.epochs, threads=args.threads, compile=args.compile,
                                          workdir=args.workdir, rows=args.rows, precision=args.precision)))
    clock = Clock(args.lockstep)

    def timed_write(self, row):
        clock.epoch_done()
        write(self, row)

    MetricsWriter.write = timed_write
    summary = commands.train(path, [], runs_dir=args.workdir / "runs", data_dir=args.workdir)
    return clock.result() | {"compile_seconds": summary["seconds"]["compile"],
                             "threads": summary["threads"]["threads"]}


def run_hand(task: Task, args, *, loader: bool) -> dict:
    """A plain loop: randperm and slicing of tensors already on the device, or a DataLoader over them."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    clock = Clock(args.lockstep)  # the first epoch includes loading the tensors
    x, y, xv, yv, data = tensors(task, args, device)
    model = model_for(task, data).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss() if task.classes else nn.MSELoss()
    if loader:
        from torch.utils.data import DataLoader, TensorDataset

        batches = DataLoader(TensorDataset(x, y), batch_size=task.batch_size, shuffle=True)
    for _ in range(args.epochs):
        model.train()
        if loader:
            epoch = batches
        else:
            order = torch.randperm(len(x), device=device)
            epoch = ((x[i], y[i]) for i in (order[s:s + task.batch_size] for s in range(0, len(x), task.batch_size)))
        for xb, yb in epoch:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = torch.cat([model(xv[s:s + 1024]) for s in range(0, len(xv), 1024)])
            loss_fn(val, yv).item()
        clock.epoch_done()
    return clock.result() | {"threads": torch.get_num_threads()}


def run_lightning(task: Task, args) -> dict:
    """Lightning's Trainer on the same model, with DataLoaders over the same tensors (its required input)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    clock = Clock(args.lockstep)
    x, y, xv, yv, data = tensors(task, args, torch.device("cpu"))
    loss_fn = nn.CrossEntropyLoss() if task.classes else nn.MSELoss()

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model_for(task, data)

        def training_step(self, batch, _):
            return loss_fn(self.net(batch[0]), batch[1])

        def validation_step(self, batch, _):
            return loss_fn(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.001)

    class Stamp(L.Callback):
        def on_validation_epoch_end(self, trainer, module):
            clock.epoch_done()

    trainer = L.Trainer(max_epochs=args.epochs, accelerator="auto", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[Stamp()])
    trainer.fit(Module(), DataLoader(TensorDataset(x, y), batch_size=task.batch_size, shuffle=True),
                DataLoader(TensorDataset(xv, yv), batch_size=1024))
    return clock.result() | {"threads": torch.get_num_threads()}


def write_images(workdir: Path, n: int) -> None:
    """n training and n // 4 test images of 28 x 28 uint8 in the IDX layout (a bright square per class)."""
    import gzip

    folder = workdir / "idx"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n), ("t10k", max(n // 4, 16))):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 4)
            images[i, r * 7:(r + 1) * 7, c * 7:(c + 1) * 7] = 255
        for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("way", choices=["nnrun", "hand", "loader", "lightning"])
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--precision", default="auto", help="nnrun's precision: auto, fp32, bf16 or fp16")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=None, help="wide task: train rows (default 60,000)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--lockstep", action="store_true", help="take turns with other workers (bench/run.py)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.threads != "auto" and args.way != "nnrun":
        torch.set_num_threads(int(args.threads))
    task = TASKS[args.task]
    if task.name == "images" and not (args.workdir / "idx").is_dir():
        write_images(args.workdir, args.images)
    if args.way == "nnrun":
        result = run_nnrun(task, args)
    elif args.way == "lightning":
        result = run_lightning(task, args)
    else:
        result = run_hand(task, args, loader=args.way == "loader")
    result["median"] = float(np.median(result["epochs"])) if result["epochs"] else math.nan
    print(f"{PREFIX} result {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

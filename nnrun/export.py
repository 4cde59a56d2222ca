"""A checkpoint as one graph that runs without nnrun: ONNX (onnxruntime, any language) or a torch.export program.

The graph takes what a user has and returns what a user wants. Inside it: the stored feature scaling (or the
image normalization), the model, and the output's meaning (class probabilities, or values in the target's
original units). Outside it, because they work on text: filling missing values and one-hot encoding text columns.
A JSON sidecar says how to build the input from raw rows. Nothing is reported as exported until the written
file, run by onnxruntime (or loaded back by torch.export.load), matches nnrun's own predictions.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrun.checkpoints import versions
from nnrun.data.bundle import build_table, split_rows
from nnrun.data.context import DataContext
from nnrun.data.images import ImageTable
from nnrun.data.preprocessing import FeaturePreprocessor
from nnrun.data.streaming import ImageFileTable
from nnrun.errors import UserError, unknown_name
from nnrun.evaluation import outputs
from nnrun.inference import Restored, restore

FORMATS = {"onnx": ".onnx", "exported_program": ".pt2"}  # format -> the model file's suffix
RUNNERS = {"onnx": "onnxruntime", "exported_program": "torch.export.load"}  # what runs the file to check it
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the `export` extra: pip install "nnrun[export]"
CHECK_ROWS = 256  # test rows the export is checked on, each at every batch size
CHECK_BATCH_SIZES = (1, 7)
# |exported - nnrun| <= ATOL + RTOL * |nnrun|: probabilities to 1e-5, and regression values in original units (which
# may be in the hundreds of thousands, beyond float32's absolute resolution) to 1e-5 of their size.
RTOL, ATOL = 1e-5, 1e-5
SIDECAR_FORMAT, SIDECAR_VERSION = "nnrun-export", 1


class Deployable(nn.Module):
    """The checkpoint's model between its input scaling and its output meaning: raw inputs in, answers out."""

    def __init__(self, restored: Restored):
        super().__init__()
        self.model = restored.model
        self.task = restored.task
        features = restored.data["preprocessing"].get("features")
        center = spread = None
        if features is not None:
            center, spread = (torch.from_numpy(v) for v in FeaturePreprocessor.from_state(features).input_scaling())
        self.register_buffer("center", center)  # (features,) float64; None for images
        self.register_buffer("spread", spread)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, features) float64, or (batch, c, h, w) uint8
        if self.center is not None:
            # Scaled in float64, then cast, exactly as FeaturePreprocessor.transform does.
            x = ((x - self.center) / self.spread).float()
        output = self.model(x)  # (batch, outputs); an image model normalizes its uint8 pixels itself
        if self.task.kind == "classification":
            return self.task.probabilities(output)  # (batch, classes)
        return self.task.to_units(output)  # (batch, targets)


@dataclass
class Exported:
    """What `nnrun export` wrote, and how closely the written file reproduced nnrun's predictions."""

    model_path: Path
    sidecar_path: Path
    format: str
    contract: dict[str, Any]  # the sidecar's content
    split: str  # the split the export was checked on
    rows: int
    max_difference: float
    tolerance_used: float  # the largest difference as a share of its row's tolerance (at most 1)
    notes: list[str]


def export_checkpoint(path: Path, *, format: str = "onnx", out: Path | None = None,
                      data_dir: Path = Path("data")) -> Exported:
    """Write the checkpoint as `format` with its JSON sidecar, after checking the file against nnrun's predictions
    on the checkpoint's own test rows at batch sizes 1 and 7; on a mismatch nothing is left written."""
    if format not in FORMATS:
        raise UserError(unknown_name("format", format, FORMATS))
    model_path = output_path(Path(path), format, out)
    sidecar_path = model_path.with_suffix(".json")
    if format == "onnx":
        require_onnx()
    restored = restore(Path(path), device="cpu")
    raw, model_input, split = check_rows(restored, data_dir=data_dir)
    expected = answers(restored, model_input)
    deployable = Deployable(restored).eval()
    contract = sidecar(restored)
    # Two example rows: an example batch of one would fix the batch dimension at 1.
    example = torch.zeros((2, *restored.data["in_shape"]), dtype=torch.from_numpy(raw).dtype)
    payload = serialize(deployable, example, format=format, input_name=contract["input"]["name"],
                        output_name=contract["output"]["name"])

    model_path.parent.mkdir(parents=True, exist_ok=True)
    temp_files: list[Path] = []
    try:
        # Written under temporary names and checked from disk; only a file that passed gets its real name.
        model_temp = _write_temp(model_path, payload, temp_files)
        sidecar_temp = _write_temp(sidecar_path, (json.dumps(contract, indent=2) + "\n").encode(), temp_files)
        difference, tolerance_used = check(model_temp, raw, expected, format=format, split=split)
        os.replace(model_temp, model_path)
        os.replace(sidecar_temp, sidecar_path)
    finally:
        for temp in temp_files:
            temp.unlink(missing_ok=True)
    return Exported(model_path, sidecar_path, format, contract, split, len(raw), difference, tolerance_used,
                    restored.notes)


def output_path(checkpoint: Path, format: str, out: Path | None) -> Path:
    """--out, a file in the folder --out names, or by default `<checkpoint stem>.onnx` (or .pt2) beside it."""
    suffix = FORMATS[format]
    out = checkpoint.with_suffix(suffix) if out is None else Path(out)
    if out.is_dir():
        out = out / f"{checkpoint.stem}{suffix}"
    if out.suffix.lower() == ".json":
        raise UserError(f"--out '{out}' ends in .json, the name of the sidecar written beside the model (give the "
                        f"model file's name, such as {out.with_suffix(suffix)})")
    if out.resolve() == checkpoint.resolve():
        raise UserError(f"--out '{out}' is the checkpoint itself (give another name, such as "
                        f"{checkpoint.with_suffix(suffix)})")
    # Before any work: a file where a folder should be, or a read-only folder, fails now rather than after exporting.
    folder = next(parent for parent in out.parents if parent.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        code = errno.EACCES if folder.is_dir() else errno.ENOTDIR
        raise OSError(code, os.strerror(code), str(out))
    return out


def require_onnx() -> None:
    """The `export` extra, imported only when an ONNX export asks for it."""
    missing = []
    for name in ONNX_PACKAGES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"exporting to ONNX needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                        f"not installed (pip install \"nnrun[export]\")")


def check_rows(restored: Restored, *, data_dir: Path) -> tuple[np.ndarray, torch.Tensor, str]:
    """Up to CHECK_ROWS of the checkpoint's test rows (else val, else train), rebuilt as `nnrun eval` does: the
    graph's raw input, nnrun's model input, and the split's name."""
    cfg = restored.config
    try:
        table = build_table(cfg.data, DataContext(data_dir=Path(data_dir), config_dir=cfg.config_dir))
        index, _ = split_rows(table, cfg.data.split, cfg.seed)
    except UserError as exc:
        raise UserError(f"the export is checked on the checkpoint's own test rows, which could not be loaded: "
                        f"{exc.problems[0]}") from None
    split = next(name for name in ("test", "val", "train") if len(index[name]))
    rows = index[split][:CHECK_ROWS]
    if isinstance(table, ImageTable):
        images = table.images[torch.from_numpy(rows)].contiguous()  # (rows, channels, height, width) uint8
        return images.numpy(), images, split
    if isinstance(table, ImageFileTable):
        files = table.files(rows)
        images = torch.stack([files[i][0] for i in range(len(files))])
        return images.numpy(), images, split
    features = FeaturePreprocessor.from_state(restored.data["preprocessing"]["features"])
    frame = table.features.iloc[rows]
    return features.encode(frame), torch.from_numpy(features.transform(frame)), split


def answers(restored: Restored, model_input: torch.Tensor) -> np.ndarray:
    """nnrun's own predictions, as `nnrun predict` makes them: (rows, classes) probabilities or (rows, targets)
    values in original units."""
    output = outputs(restored.model, model_input, speed=restored.speed)
    task = restored.task
    return (task.probabilities(output) if task.kind == "classification" else task.to_units(output)).numpy()


def serialize(module: nn.Module, example: torch.Tensor, *, format: str, input_name: str,
              output_name: str) -> bytes:
    """The module exported with a dynamic batch dimension, as the bytes of an .onnx or .pt2 file."""
    batch = {0: torch.export.Dim("batch")}
    if format == "onnx":
        program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=(batch,), verbose=False,
                                    input_names=[input_name], output_names=[output_name])
        return program.model_proto.SerializeToString()
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(module, (example,), dynamic_shapes=(batch,)), buffer)
    return buffer.getvalue()


def check(model_file: Path, raw: np.ndarray, expected: np.ndarray, *, format: str,
          split: str = "test") -> tuple[float, float]:
    """Run the written file on `raw` (rows of `split`) at each batch size, against `expected`: the largest
    difference and the largest share of the tolerance it used; a UserError when any row is beyond it."""
    largest = used = 0.0
    for batch_size in CHECK_BATCH_SIZES:
        got = _run(model_file, raw, batch_size, format=format)
        difference = np.abs(got - expected) if got.shape == expected.shape else np.full(expected.shape, np.nan)
        tolerance = ATOL + RTOL * np.abs(expected)
        if not (difference <= tolerance).all():  # NaN fails too
            worst = f"by up to {np.nanmax(difference):.3g}" if np.isfinite(difference).any() else \
                f"in shape {got.shape} or with NaN, where nnrun gives {expected.shape}"
            raise UserError(f"the exported model does not reproduce nnrun's predictions: run by {RUNNERS[format]} on "
                            f"{len(raw)} {split} rows at batch size {batch_size}, it differs {worst} (allowed: "
                            f"{ATOL:g} + {RTOL:g} x |value|), so nothing was written (please report this as a bug, "
                            f"with the checkpoint)")
        largest, used = max(largest, float(difference.max())), max(used, float((difference / tolerance).max()))
    return largest, used


def _run(model_file: Path, raw: np.ndarray, batch_size: int, *, format: str) -> np.ndarray:
    chunks = [np.ascontiguousarray(raw[i:i + batch_size]) for i in range(0, len(raw), batch_size)]
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: chunk})[0] for chunk in chunks])
    program = torch.export.load(model_file).module()
    with torch.no_grad():
        return np.concatenate([program(torch.from_numpy(chunk)).numpy() for chunk in chunks])


def sidecar(restored: Restored) -> dict[str, Any]:
    """The contract of the exported graph (the same for both formats): how to build its input from raw rows, and
    what its output means."""
    task = restored.task
    if task.kind == "classification":
        output = {"name": "probabilities", "dtype": "float32", "shape": ["batch", len(task.class_names)],
                  "classes": task.class_names,
                  "meaning": "one probability per class, in the order of `classes`; each row sums to 1 and the "
                             "predicted class is the largest"}
    else:
        column = restored.target_column
        targets = [column] if task.n_targets == 1 else [f"{column}_{i + 1}" for i in range(task.n_targets)]
        output = {"name": "values", "dtype": "float32", "shape": ["batch", task.n_targets], "targets": targets,
                  "meaning": f"the predicted value{'s' if task.n_targets > 1 else ''} of {', '.join(targets)} in the "
                             f"target's original units (the target scaling is undone inside the model)"}
    return {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, "checkpoint": str(restored.path),
            "epoch": restored.epoch,
            "input": _image_input(restored.images) if restored.images is not None else _table_input(restored),
            "output": output, "versions": versions()}


def _table_input(restored: Restored) -> dict[str, Any]:
    pre = FeaturePreprocessor.from_state(restored.data["preprocessing"]["features"])
    sources = [(name, "numeric", None) for name in pre.numeric]
    sources += [(column, "one_hot", category) for column in pre.categorical for category in pre.vocabulary[column]]
    columns = [{"position": i, "column": name, "kind": kind, **({"category": category} if category else {})}
               for i, (name, kind, category) in enumerate(sources)]
    if pre.fill:
        missing = {"policy": pre.missing, "fill": pre.fill,
                   "how": f"replace a missing value by its column's `fill` (the train split's "
                          f"{pre.missing.replace('_', ' ')}) before encoding it"}
    else:
        missing = {"policy": pre.missing, "fill": {},
                   "how": f"none is allowed: the model was trained with data.missing={pre.missing}, and nnrun "
                          f"predict refuses a row with a missing value"}
    return {
        "name": "features", "dtype": "float64", "shape": ["batch", len(columns)], "columns": columns,
        "vocabularies": {c: pre.vocabulary[c] for c in pre.categorical}, "missing": missing,
        "how": "one row per example, one value per entry of `columns`, in order. A numeric position takes the "
               "column's raw value: the scaling is inside the model. A one_hot position is 1.0 when the column's "
               "text equals its category and 0.0 otherwise; a category that is not in the column's vocabulary "
               "sets every position of that column to 0.0.",
    }


def _image_input(images: dict[str, Any]) -> dict[str, Any]:
    channels, (height, width) = images["channels"], images["size"]
    return {
        "name": "images", "dtype": "uint8", "shape": ["batch", channels, height, width], "layout": "NCHW",
        "channels": channels, "color": "grayscale" if channels == 1 else "RGB", "size": [height, width],
        "normalization": {"mean": images["mean"], "std": images["std"],
                          "how": "inside the model: (pixel / 255 - mean[c]) / std[c]"},
        "how": f"pixel values 0-255 as uint8, (channel, height, width) per image: convert each image to "
               f"{'grayscale' if channels == 1 else 'RGB'} and resize it to {height}x{width} (nnrun resizes with "
               f"PIL's bilinear filter); the normalization is inside the model",
    }


def _write_temp(final: Path, data: bytes, written: list[Path]) -> Path:
    """`data` in a new temporary file beside `final` (listed in `written` at once, so that it is always removed);
    a failure names `final`, the file the user asked for."""
    try:
        # The final suffix last: torch.export.load warns about a file whose name does not end in .pt2.
        fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
        written.append(Path(name))
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # mkstemp makes it private; an exported model is made to be handed on
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from None
    return Path(name)

"""A checkpoint on its own: rebuild the model and its preprocessing, then evaluate labelled rows or predict new ones.

Nothing here needs the original config file or the run folder; everything comes from the `.pth` file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from nnrun.checkpoints import load_checkpoint
from nnrun.config import Config, load_yaml, validate
from nnrun.data.bundle import SplitTensors, load_data
from nnrun.data.csv_table import read_frame
from nnrun.data.image_files import IMAGE_EXTENSIONS, decode_images, image_paths
from nnrun.data.images import IDX_FILES, IDX_IMAGES, find_idx, read_idx, read_idx_pair
from nnrun.data.preprocessing import FeaturePreprocessor, TargetScaler
from nnrun.errors import UserError
from nnrun.evaluation import outputs, split_report
from nnrun.experiment import resolve_device
from nnrun.losses import LOSSES
from nnrun.models import build_model
from nnrun.speed import Speed
from nnrun.tasks import Task

SPLITS = ("test", "val", "train")


@dataclass
class Restored:
    """A checkpoint turned back into a model with its task, loss and preprocessing."""

    path: Path
    config: Config
    epoch: int
    task: Task
    model: nn.Module
    loss_fn: nn.Module
    data: dict[str, Any]  # the checkpoint's data entry: preprocessing, class and feature names, fingerprint
    device: torch.device
    speed: Speed = field(default_factory=Speed)  # the training run's precision and memory format, on this device
    notes: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path | None:
        """The run folder the checkpoint sits in (`<run>/checkpoints/x.pth`), if it does."""
        folder = self.path.resolve().parent
        return folder.parent if folder.name == "checkpoints" else None

    @property
    def images(self) -> dict[str, Any] | None:
        """For an image model: the channels, size and normalization it was trained with."""
        return self.data["preprocessing"].get("images")

    @property
    def target_column(self) -> str:
        """The label column a labelled file must have: the CSV's own target, else `target`."""
        return self.config.data.kwargs.get("target", "target") if self.config.data.type == "csv" else "target"


@dataclass
class Evaluation:
    """What `nnrun eval` reports: the metrics, the per-row predictions, and where the rows came from."""

    source: str
    split: str
    report: dict[str, Any]
    predictions: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def restore(path: Path, *, device: str = "auto") -> Restored:
    """Load a checkpoint safely (weights_only) and rebuild its model; a damaged file is a UserError."""
    path = Path(path)
    checkpoint = load_checkpoint(path)
    try:
        cfg = validate(checkpoint["config"], config_dir=checkpoint["data"].get("config_dir"))
        data = checkpoint["data"]
        torch_device = resolve_device(device)
        # Compute as training did: its autocast dtype and memory format, where this device supports them.
        trained = Speed.from_dict(checkpoint.get("speed"))
        speed, notes = Speed.resolve(compile=False, precision=trained.precision, device=torch_device,
                                     images=data["preprocessing"].get("images") is not None)
        task = Task.for_loss(cfg.loss.type, kind=data["task"], class_names=data["class_names"],
                             n_targets=data["n_targets"], target_scaling=data["preprocessing"].get("target"),
                             device=torch_device)
        model = build_model(cfg.model.type, cfg.model.kwargs, in_shape=tuple(data["in_shape"]),
                            out_features=task.out_features, output_activation=cfg.model.output_activation,
                            input_stats=data["preprocessing"].get("images"), channels_last=speed.channels_last)
        model.load_state_dict(checkpoint["model"])
        loss_fn = LOSSES.build(cfg.loss.type, **cfg.loss.kwargs)
        epoch = int(checkpoint["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).split("\n")[0]
        raise UserError(f"checkpoint '{path}' is incomplete or does not match its own config ({type(exc).__name__}: "
                        f"{reason}; use another checkpoint, such as the run's last.pth)") from None
    except UserError as exc:
        raise UserError(f"checkpoint '{path}' holds a config this nnrun cannot use: {exc.problems[0]}") from None
    return Restored(path, cfg, epoch, task, model.to(torch_device).eval(), loss_fn.to(torch_device), data,
                    torch_device, speed=speed, notes=notes)


def evaluate_checkpoint(restored: Restored, *, split: str = "test", data: Path | None = None,
                        data_dir: Path = Path("data")) -> Evaluation:
    """Metrics and predictions on the checkpoint's own split, another config's split, or a labelled file."""
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (choose one of {', '.join(SPLITS)})")
    if data is not None and Path(data).suffix.lower() not in (".yaml", ".yml"):
        notes: list[str] = []
        if restored.images is not None:
            rows = _image_rows(restored, _existing(Path(data), folder_ok=True), labelled=True)
        else:
            rows, notes = _labelled_rows(restored, read_frame(_existing(Path(data))), str(data))
        return _evaluation(restored, rows, source=str(data), split="all rows", notes=notes)

    cfg = restored.config if data is None else validate(load_yaml(Path(data)), source=Path(data))
    bundle = load_data(cfg.data, seed=cfg.seed, device=restored.device, data_dir=data_dir, config_dir=cfg.config_dir,
                       preprocessing=restored.data["preprocessing"])
    if bundle.class_names != restored.data["class_names"]:
        raise UserError(f"the data has classes {bundle.class_names}, but the model was trained on "
                        f"{restored.data['class_names']} (evaluate on data with the same classes)")
    if not len(bundle.splits[split]):
        raise UserError(f"the {split} split is empty for this data (choose --split val or --split train)")
    notes = []
    if data is None and bundle.fingerprint != restored.data.get("fingerprint"):
        notes.append(f"the data differ from what the model was trained on ({restored.data['fingerprint']['rows']} "
                     f"rows then, {bundle.fingerprint['rows']} now, or changed values), so the split may differ too")
    source = f"{cfg.data.type} ({'the checkpoint' if data is None else data})"
    return _evaluation(restored, bundle.splits[split], source=source, split=split, notes=notes)


def predict_file(restored: Restored, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Predictions for new rows: a CSV (its target, if any, is ignored), or for an image model a folder of
    images or an IDX images file. Class names with probabilities, or values in original units; and notes
    (such as categories training never saw)."""
    if restored.images is not None:
        rows = _image_rows(restored, _existing(path, folder_ok=True), labelled=False)
        return restored.task.predictions(outputs(restored.model, rows.x, speed=restored.speed), None, rows.rows), []
    frame = read_frame(_existing(path))
    x, notes = _features(restored, frame)
    output = outputs(restored.model, x, speed=restored.speed)
    return restored.task.predictions(output, None, frame.index.to_numpy()), notes


def _image_rows(restored: Restored, path: Path, *, labelled: bool) -> SplitTensors:
    """Images to score, converted as in training (channels, size): an IDX images file, a folder holding IDX
    files (its t10k test set), or an image folder (class subfolders when `labelled`, any images otherwise)."""
    shape = restored.images
    if path.is_dir() and any(path.glob("*-idx3-ubyte*")):
        path = find_idx(path, IDX_FILES["test"][0])
    if path.is_file():
        labels_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        if labelled and not labels_path.is_file():
            raise UserError(f"no labels file '{labels_path.name}' beside '{path}' (eval needs the labels; nnrun "
                            f"predict scores images without them)")
        if labelled:
            images, labels = read_idx_pair(path, labels_path)
            y = torch.from_numpy(labels.astype(np.int64))
        else:
            images, y = read_idx(path, IDX_IMAGES), None
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        if tuple(x.shape[1:]) != (shape["channels"], *shape["size"]):
            raise UserError(f"'{path}' holds {x.shape[2]}x{x.shape[3]} images with {x.shape[1]} channel(s), but the "
                            f"model takes {shape['size'][0]}x{shape['size'][1]} with {shape['channels']}")
        return SplitTensors(x.to(restored.device), None if y is None else y.to(restored.device),
                            np.arange(len(x)))
    mode = "L" if shape["channels"] == 1 else "RGB"
    if labelled:
        classes = image_paths(path)
        known = {name: i for i, name in enumerate(restored.task.class_names)}
        unknown = [name for name in classes if name not in known]
        if unknown:
            raise UserError(f"'{path}' has a class folder '{unknown[0]}' that the model was not trained on (its "
                            f"classes: {', '.join(restored.task.class_names)})")
        files = [p for files in classes.values() for p in files]
        y = torch.tensor([known[name] for name, files in classes.items() for _ in files], dtype=torch.long)
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise UserError(f"'{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        y = None
    x = decode_images(files, mode=mode, size=tuple(shape["size"]))
    rows = np.array([str(p.relative_to(path)) for p in files], dtype=object)
    return SplitTensors(x.to(restored.device), None if y is None else y.to(restored.device), rows)


def _evaluation(restored: Restored, rows: SplitTensors, *, source: str, split: str,
                notes: list[str] | None = None) -> Evaluation:
    report, output = split_report(restored.model, rows, loss_fn=restored.loss_fn, task=restored.task,
                                  speed=restored.speed)
    predictions = restored.task.predictions(output, rows.y, rows.rows)
    return Evaluation(source, split, report, predictions, [*restored.notes, *(notes or [])])


def _labelled_rows(restored: Restored, frame: pd.DataFrame, name: str) -> tuple[SplitTensors, list[str]]:
    """A labelled file's rows as tensors, labels mapped through the checkpoint's own classes and scaling."""
    column = restored.target_column
    if column not in frame.columns:
        raise UserError(f"'{name}' has no target column '{column}' (eval needs the labels; nnrun predict scores "
                        f"rows without them)")
    labels = frame[column]
    if labels.isna().any():
        row = frame.index[labels.isna().to_numpy()][0]
        raise UserError(f"row {row} of '{name}' has no value in target column '{column}' (fill it in or drop the row)")
    task = restored.task
    if task.kind == "classification":
        known = {name: i for i, name in enumerate(task.class_names)}
        text = labels.astype(np.int64).astype(str) if pd.api.types.is_float_dtype(labels) else labels.astype(str)
        unknown = ~text.isin(list(known))
        if unknown.any():
            row = frame.index[unknown.to_numpy()][0]
            raise UserError(f"row {row} of '{name}' has label {text[unknown].iloc[0]!r}, which the model was not "
                            f"trained on (its classes: {', '.join(task.class_names)})")
        y = torch.tensor(text.map(known).to_numpy(), dtype=torch.long)
    else:
        if not pd.api.types.is_numeric_dtype(labels):
            raise UserError(f"target column '{column}' of '{name}' holds text, but the model predicts numbers "
                            f"(give the numeric target)")
        scaling = restored.data["preprocessing"]["target"]
        y = torch.from_numpy(TargetScaler.from_state(scaling).transform(labels.to_numpy(np.float64)))
    x, notes = _features(restored, frame)
    return SplitTensors(x, y.to(restored.device), frame.index.to_numpy()), notes


def _features(restored: Restored, frame: pd.DataFrame) -> tuple[torch.Tensor, list[str]]:
    pre = FeaturePreprocessor.from_state(restored.data["preprocessing"]["features"])
    return torch.from_numpy(pre.transform(frame)).to(restored.device), pre.unseen_notes(frame)


def _existing(path: Path, *, folder_ok: bool = False) -> Path:
    if not (path.is_file() or (folder_ok and path.is_dir())):
        raise UserError(f"{'file or folder' if folder_ok else 'file'} '{path}' not found (check the path)")
    return path

"""Image files on disk: finding them in class folders, and decoding them into uint8 tensors.

The lowest layer of image data: both the in-memory tables (`images`) and the streamed folders (`streaming`)
decode through these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nnrun.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
ImageMode = Literal["L", "RGB"]  # PIL's names: one channel (grayscale) or three


def image_paths(root: Path) -> dict[str, list[Path]]:
    """Class name -> image files, for a folder with one subfolder per class."""
    if not root.is_dir():
        raise UserError(f"image folder '{root}' not found (give a folder with one subfolder of images per class)")
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if files:
            classes[folder.name] = files
    if not classes:
        raise UserError(f"image folder '{root}' has no images in class subfolders (lay it out as "
                        f"{root}/<class>/<image>.png, with {', '.join(IMAGE_EXTENSIONS)} files)")
    if len(classes) < 2:
        raise UserError(f"image folder '{root}' has a single class, '{next(iter(classes))}', so there is nothing to "
                        f"classify (add a subfolder of images for each other class)")
    return classes


def decode_one(path: Path, *, mode: ImageMode, size: tuple[int, int] | None) -> torch.Tensor:
    """One image file as uint8 (channels, height, width), converted to `mode` (L or RGB), resized to `size`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.array(image, dtype=np.uint8)  # a writable copy: torch refuses read-only arrays
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"image '{path}' cannot be read ({exc}; remove or replace it)") from None
    return torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1).contiguous()


def decode_images(paths: list[Path], *, mode: ImageMode, size: tuple[int, int] | None) -> torch.Tensor:
    """(rows, channels, height, width) uint8 from image files, all of one size (or resized to `size`)."""
    images = [decode_one(path, mode=mode, size=size) for path in paths]
    shapes = sorted({tuple(image.shape[1:]) for image in images})
    if len(shapes) > 1:
        (h1, w1), (h2, w2) = shapes[:2]
        raise UserError(f"the images have different sizes ({w1}x{h1} and {w2}x{h2}), so they cannot form one "
                        f"batch (set data.resize, for example data.resize=[64, 64])")
    return torch.stack(images)


def image_mode(paths: list[Path], grayscale: bool | None) -> ImageMode:
    """L (one channel) when asked, or when every image is grayscale; else RGB."""
    if grayscale is not None:
        return "L" if grayscale else "RGB"
    from PIL import Image

    for path in paths:
        with Image.open(path) as image:
            if image.mode not in ("L", "1", "I;16", "I", "LA"):
                return "RGB"
    return "L"

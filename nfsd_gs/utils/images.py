"""Images to PNG: one grid layout and one atomic writer for snapshots, strips and checks."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .io import PathLike, write_with


def image_grid(images: Tensor, columns: int) -> Tensor:  # [N, H, W, 3] -> [rows*H, columns*W, 3]
    """``images`` in rows of ``columns``, left to right; empty cells are white."""
    count, height, width, _ = images.shape
    rows = (count + columns - 1) // columns
    grid = torch.ones(rows * height, columns * width, 3, dtype=images.dtype)
    for index, image in enumerate(images.cpu()):
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = image
    return grid


def save_png(path: PathLike, image: Tensor) -> None:
    """Write ``image`` [H, W, 3] in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype("uint8")
    write_with(path, lambda handle: Image.fromarray(array).save(handle, format="PNG"))


def save_image_grid(path: PathLike, images: Tensor, columns: Optional[int] = None) -> None:
    """``images`` [N, H, W, 3] in [0, 1] as one PNG, ``columns`` per row (default: one row),
    atomically: snapshots, evaluation strips, prior checks and dataset previews."""
    save_png(path, image_grid(images, columns or len(images)))

"""The ``.splat`` format of antimatter15's WebGL viewer: 32 bytes a splat, SH degree 0 only.

One row per splat, little endian, no header::

    x y z (float32)  sx sy sz (float32, linear std)  r g b a (uint8)  qw qx qy qz (uint8, q * 128 + 128)

Colour is the degree-0 SH colour ``0.5 + C0 sh0`` and ``a`` the opacity, each
in 1/255 steps (0 and 255 are read as half a step inside, so logits stay
finite); positions and scales are exact.  Writing is gsplat's
(``gsplat.exporter.export_splats(format="splat")``, which also sorts the
splats in Morton order).  No maintained Python library reads ``.splat``, and the
format is one numpy dtype, so :func:`load_splat` is written here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping

import numpy as np
import torch
from torch import Tensor

from ..errors import SplatFormatError
from ..render.sh import SH_C0
from ..utils.io import write_with
from .splats import PathLike, repair_non_finite, splat_arrays, splats_from_arrays

ROW = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
#: The smallest scale a .splat row's 0 is read as (log(0) would be -inf).
MIN_SCALE = 1e-12


def save_splat(path: PathLike, splats: Mapping[str, Tensor]) -> None:
    """Write Gaussians (gsplat's layout) as ``.splat``, atomically; higher SH degrees are dropped."""
    from gsplat.exporter import export_splats

    arrays = splat_arrays(splats, path)
    tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
    data = export_splats(**tensors, format="splat") if len(arrays["means"]) else b""
    write_with(path, lambda handle: handle.write(data))


def load_splat(path: PathLike) -> Dict[str, Tensor]:
    """Read a ``.splat`` into gsplat's tensors (SH degree 0); any problem is one :class:`SplatFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise SplatFormatError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise SplatFormatError(f"{path}: the .splat file holds zero splats")
    if size % ROW.itemsize:
        raise SplatFormatError(f"{path}: not a .splat file: {size} bytes is not a whole number of "
                               f"{ROW.itemsize}-byte rows (truncated or another format)")
    rows = np.fromfile(path, dtype=ROW)
    rgba = rows["rgba"].astype(np.float64) / 255.0  # [N, 4]
    alpha = np.clip(rgba[:, 3], 0.5 / 255, 254.5 / 255)  # 0 and 255 are "within half a step"
    quats = (rows["rotation"].astype(np.float32) - 128.0) / 128.0  # [N, 4] wxyz
    with np.errstate(divide="ignore"):
        columns = {
            "means": rows["position"].astype(np.float32),
            "scales": np.log(np.maximum(rows["scale"].astype(np.float64), MIN_SCALE)),
            "quats": quats,
            "opacities": np.log(alpha) - np.log1p(-alpha),  # logit
            "sh0": (rgba[:, :3] - 0.5) / SH_C0,
        }
    columns = repair_non_finite(path, columns, "opacities")
    return splats_from_arrays(**columns, shN=np.zeros((len(rows), 0, 3), np.float32))

"""Niantic's ``.spz``: gzip-compressed, quantized splats with SH up to degree 3 (about 10x smaller than ``.ply``).

Encoding and decoding are gsply's (``write_spz``/``read_spz``, after Niantic's
reference ``load-spz.cc``): version 3 (gzip), positions 24-bit fixed point
with 12 fractional bits (within 2^-13 = 0.00012 of the original), scales
``(log s + 10) * 16`` in a byte, colours ``sh0 * 0.15 * 255 + 127.5`` in a byte
(a degree-0 colour within 1/255), opacity in a byte, rotations "smallest
three", higher SH 8 bits.

Axes: the SPZ specification stores RUB axes (x right, y up, z back) where a
``.ply`` is read as RDF (x right, y down, z forward), and Niantic's own tools
and PlayCanvas splat-transform convert between the two.  So does this module
(:func:`flip_y_z`; gsply writes what it is given), so that those tools read
the same scene from our ``.spz`` as from our ``.ply``.  Spark shows both files
raw, so on its own it shows the ``.spz`` turned 180 degrees about x (as for every
``.ply``/``.spz`` pair made by Niantic's converter); ``viewer/web/index.html``
turns ``.spz`` files back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping

import numpy as np
import torch
from torch import Tensor

from ..errors import SplatFormatError
from ..render.sh import sh_bases
from ..utils.io import atomic_path
from .splats import PathLike, repair_non_finite, splat_arrays, splats_from_arrays

#: Position precision: 12 fractional bits (gsply's and Niantic's default).
FRACTIONAL_BITS = 12
#: RDF <-> RUB is the rotation by 180 degrees about x: diag(1, -1, -1), its own inverse.
FLIP_Y_Z = np.array([1.0, -1.0, -1.0], np.float32)


def flip_y_z(arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Gaussians [N, ...] turned 180 degrees about x (RDF <-> RUB; see the module docstring).

    Positions p -> R p; rotations q -> (w, x, -y, -z) (= R rot(q) R); scales and opacities
    unchanged; each SH coefficient k of the colour c(d) -> c(R d) takes the sign s_k with
    Y_k(R d) = s_k Y_k(d), read off the basis itself.
    """
    direction = torch.tensor([[0.36, 0.48, 0.8]])  # any direction where no basis function is 0
    signs = torch.sign(sh_bases(3, direction * torch.from_numpy(FLIP_Y_Z)) / sh_bases(3, direction))
    rest = arrays["shN"].shape[1]
    return {**arrays, "means": arrays["means"] * FLIP_Y_Z,
            "quats": arrays["quats"] * np.array([1.0, 1.0, -1.0, -1.0], np.float32),
            "shN": arrays["shN"] * signs[0, 1:1 + rest].numpy()[None, :, None]}


def save_spz(path: PathLike, splats: Mapping[str, Tensor]) -> None:
    """Write Gaussians (gsplat's layout) as ``.spz`` (version 3), atomically."""
    import gsply

    from .compressed_ply import unit_quaternions

    arrays = flip_y_z(splat_arrays(splats, path))
    data = gsply.GSData.from_arrays(arrays["means"], arrays["scales"],
                                    unit_quaternions(arrays["quats"]), arrays["opacities"],
                                    arrays["sh0"][:, 0], arrays["shN"], format="ply")
    with atomic_path(path) as tmp:
        gsply.write_spz(tmp, data, version=3, fractional_bits=FRACTIONAL_BITS)


def load_spz(path: PathLike) -> Dict[str, Tensor]:
    """Read a ``.spz`` into gsplat's tensors; any problem is one :class:`SplatFormatError`."""
    import gsply

    path = Path(path)
    if not path.is_file():
        raise SplatFormatError(f"{path}: no such file")
    try:
        data = gsply.read_spz(path)
    except (ValueError, OSError, EOFError, IndexError, KeyError) as err:
        reason = (str(err).splitlines() or [""])[0].replace(f": {path}", "")
        raise SplatFormatError(f"{path}: not a readable .spz file ({reason})") from None
    if len(data.means) == 0:
        raise SplatFormatError(f"{path}: the .spz file holds zero splats")
    columns = {"means": data.means, "scales": data.scales, "quats": data.quats,
               "opacities": data.opacities, "sh0": data.sh0, "shN": data.shN}
    return splats_from_arrays(**flip_y_z(repair_non_finite(path, columns, "opacities")))

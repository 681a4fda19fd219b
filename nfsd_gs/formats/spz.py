"""Niantic's ``.spz``: gzip-compressed, quantized splats with SH up to degree 3 (about 10x smaller than ``.ply``).

Encoding and decoding are gsply's (``write_spz``/``read_spz``, after Niantic's
reference ``load-spz.cc``): version 3 (gzip), positions 24-bit fixed point
with 12 fractional bits (within 2^-13 = 0.00012 of the original), scales
``(log s + 10) * 16`` in a byte, colours ``sh0 * 0.15 * 255 + 127.5`` in a byte
(a degree-0 colour within 1/255), opacity in a byte, rotations "smallest
three", higher SH 8 bits.  Axes are written as they are (no coordinate
conversion), as gsply and our ``.ply`` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping

from torch import Tensor

from ..errors import SplatFormatError
from ..utils.io import atomic_path
from .splats import PathLike, repair_non_finite, splat_arrays, splats_from_arrays

#: Position precision: 12 fractional bits (gsply's and Niantic's default).
FRACTIONAL_BITS = 12


def save_spz(path: PathLike, splats: Mapping[str, Tensor]) -> None:
    """Write Gaussians (gsplat's layout) as ``.spz`` (version 3), atomically."""
    import gsply

    from .compressed_ply import unit_quaternions

    arrays = splat_arrays(splats, path)
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
    return splats_from_arrays(**repair_non_finite(path, columns, "opacities"))

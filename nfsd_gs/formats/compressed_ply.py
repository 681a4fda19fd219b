"""The compressed ``.ply`` of PlayCanvas/SuperSplat: 256-splat chunks, quantized to 16 bytes a splat.

Layout (binary little endian; what PlayCanvas splat-transform, SuperSplat, gsplat and gsply write)::

    element chunk ceil(N / 256)   min_x min_y min_z max_x max_y max_z
                                  min_scale_x .. max_scale_z  min_r min_g min_b max_r max_g max_b
    element vertex N              packed_position packed_rotation packed_scale packed_color (uint)
    element sh N                  f_rest_0 .. f_rest_{M-1} (uchar; absent at SH degree 0)

Within its chunk's bounds, a position is 11/10/11 bits (x/y/z), a log-scale
11/10/11 bits, a colour 8 bits a channel with 8 bits of opacity, a rotation
"smallest three" (2 + 3 x 10 bits); a higher SH coefficient is 8 bits over
[-4, 4].  So a position is within ``chunk extent / (2 (2^10 - 1))`` on y, a
colour within ``chunk colour range / 510``.

Encoding and decoding are gsply's (``compress_to_bytes``,
``decompress_from_bytes``).  Here: the splats are put in Morton order first
(gsplat's ``sort_centers``, as splat-transform does) so that each chunk covers
a small region and quantizes finely; reading validates the file with plyfile
(counts, types, sizes) before gsply's unchecked kernels see it, and accepts any
property order, byte order and the older 12-property chunks (no colour bounds).
"""

from __future__ import annotations

import io
import math
from typing import Dict, Mapping

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from ..errors import PlyFormatError
from ..utils.io import write_with
from .plyio import element, property_names, read_ply, rest_property_names
from .splats import PathLike, repair_non_finite, splat_arrays, splats_from_arrays

CHUNK_SIZE = 256
POSITION_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")
SCALE_BOUNDS = ("min_scale_x", "min_scale_y", "min_scale_z",
                "max_scale_x", "max_scale_y", "max_scale_z")
COLOR_BOUNDS = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")


def is_compressed(header: PlyData) -> bool:
    """True for the chunked layout: a ``chunk`` element and packed ``vertex`` properties."""
    return element(header, "chunk") is not None and \
        "packed_position" in property_names(element(header, "vertex"))


def save_compressed_ply(path: PathLike, splats: Mapping[str, Tensor]) -> None:
    """Write Gaussians (gsplat's layout) as a compressed ``.ply``, atomically; every splat is kept."""
    import gsply
    from gsplat.exporter import sort_centers

    arrays = splat_arrays(splats, path)
    n = len(arrays["means"])
    order = sort_centers(torch.from_numpy(arrays["means"]), torch.arange(n)).numpy() if n else []
    data = gsply.compress_to_bytes(arrays["means"][order], arrays["scales"][order],
                                   unit_quaternions(arrays["quats"][order]),
                                   arrays["opacities"][order], arrays["sh0"][order, 0],
                                   arrays["shN"][order] if arrays["shN"].shape[1] else None)
    write_with(path, lambda handle: handle.write(data))


def unit_quaternions(quats: np.ndarray) -> np.ndarray:  # [N, 4] -> [N, 4], zero -> identity
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    identity = np.broadcast_to(np.array([1.0, 0, 0, 0], np.float32), quats.shape)
    return np.where(norm > 0, quats / np.maximum(norm, 1e-30), identity).astype(np.float32)


def load_compressed_ply(path: PathLike, header: PlyData) -> Dict[str, Tensor]:
    """Decompress a chunked ``.ply`` into gsplat's tensors; any problem is one :class:`PlyFormatError`."""
    import gsply

    vertex, chunk, sh = (element(header, name) for name in ("vertex", "chunk", "sh"))
    check_layout(path, vertex, chunk, sh)
    ply = read_ply(path, header)
    chunk_table = ply["chunk"].data
    chunks = {name: np.asarray(chunk_table[name], np.float32) for name in POSITION_BOUNDS + SCALE_BOUNDS}
    for name in COLOR_BOUNDS:  # the older layout stores colours over [0, 1]
        default = np.full(chunk.count, 0.0 if name.startswith("min") else 1.0, np.float32)
        chunks[name] = (np.asarray(chunk_table[name], np.float32)
                        if name in chunk_table.dtype.names else default)
    vertex_table = ply["vertex"].data
    packed = {name: np.asarray(vertex_table[name], np.uint32) for name in PACKED}
    rest = {}
    if sh is not None:
        names = rest_property_names(property_names(sh), path)
        rest = {name: np.asarray(ply["sh"].data[name], np.uint8) for name in names}
    canonical = io.BytesIO()  # the one layout gsply's decoder takes
    PlyData([table_element("chunk", chunks), table_element("vertex", packed)]
            + ([table_element("sh", rest)] if rest else []), byte_order="<").write(canonical)
    try:
        data = gsply.decompress_from_bytes(canonical.getvalue())
    except (ValueError, IndexError, KeyError) as err:
        raise PlyFormatError(f"{path}: cannot decompress ({type(err).__name__}: {err})") from None
    columns = {"means": data.means, "scales": data.scales, "quats": data.quats,
               "opacities": data.opacities, "sh0": data.sh0, "shN": data.shN}
    columns = repair_non_finite(path, columns, "opacities", PlyFormatError)
    return splats_from_arrays(**columns)


def check_layout(path: PathLike, vertex, chunk, sh) -> None:
    """Names, types and counts of a chunked file, checked before any kernel reads it."""
    missing = [name for name in PACKED if name not in property_names(vertex)]
    missing += [name for name in POSITION_BOUNDS + SCALE_BOUNDS if name not in property_names(chunk)]
    if missing:
        raise PlyFormatError(f"{path}: compressed PLY lacks properties {', '.join(missing)}")
    colors = [name for name in COLOR_BOUNDS if name in property_names(chunk)]
    if colors and len(colors) != len(COLOR_BOUNDS):
        raise PlyFormatError(f"{path}: compressed PLY has only some colour bounds ({', '.join(colors)})")
    if any(np.dtype(p.val_dtype).kind not in "ui" for p in vertex.properties if p.name in PACKED):
        raise PlyFormatError(f"{path}: compressed PLY's packed_* properties must be integers")
    if vertex.count == 0:
        raise PlyFormatError(f"{path}: the PLY file holds zero Gaussians")
    if chunk.count != math.ceil(vertex.count / CHUNK_SIZE):
        raise PlyFormatError(f"{path}: compressed PLY has {chunk.count} chunks for {vertex.count} "
                             f"splats; the layout needs {math.ceil(vertex.count / CHUNK_SIZE)}")
    if sh is not None and sh.count != vertex.count:
        raise PlyFormatError(f"{path}: compressed PLY has {sh.count} 'sh' rows for "
                             f"{vertex.count} splats")


def table_element(name: str, columns: Mapping[str, np.ndarray]) -> PlyElement:
    """A plyfile element from equal-length columns (little endian, in the given order)."""
    first = next(iter(columns.values()))
    table = np.empty(len(first), dtype=[(key, "<" + value.dtype.str[1:]) for key, value in
                                        columns.items()])
    for key, value in columns.items():
        table[key] = value
    return PlyElement.describe(table, name)

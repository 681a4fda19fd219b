"""PLY files, read and written with plyfile, hardened; 3D Gaussians in the INRIA 3DGS layout.

The 3DGS layout (Kerbl et al. 2023): one ``vertex`` element, one row per
Gaussian, float32, binary little endian::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..M-1  opacity  scale_0..2  rot_0..3

* ``x y z``: centres (world space, z up; see ``nfsd_gs/cameras.py``);
* ``nx ny nz``: zeros (the original writer's unused normals);
* ``f_dc_*``: the degree-0 SH coefficient per channel (gsplat's ``sh0``);
* ``f_rest_*``: the higher SH coefficients, **channel-major**: all of R, then
  all of G, then all of B.  The 3DGS writer transposes ``[N, K-1, 3]`` to
  ``[N, 3, K-1]`` before flattening, so ``M = 3 (K - 1)`` is 0, 9, 24 or 45
  for SH degree 0..3;
* ``opacity``: the logit of the opacity; ``scale_*``: log standard deviations;
  ``rot_*``: the quaternion w x y z (not necessarily normalized).

This is what every splat viewer reads.  Parsing and writing are plyfile's; this
module adds what a file from anywhere needs before plyfile allocates anything
(size checks against the header's counts) and turns every kind of damage into
one :class:`~nfsd_gs.errors.PlyFormatError` line naming the file.  :func:`load_ply`
reads other tools' files too: any property order and number type, extra
properties ignored, infinite opacity logits clamped (see
:func:`~nfsd_gs.formats.splats.repair_non_finite`), and the compressed layout
of PlayCanvas/SuperSplat (``compressed_ply.py``).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import numpy as np
from plyfile import PlyData, PlyElement, PlyListProperty
from torch import Tensor

from ..errors import PlyFormatError
from ..utils.io import write_with
from .compressed_ply import is_compressed, load_compressed_ply
from .plyio import (MAX_ELEMENT_COUNT, MAX_HEADER_BYTES, REST_COUNT_TO_DEGREE,  # noqa: F401
                    check_body_size, element, first_line, parse_ply_header, property_names,
                    read_ply, read_ply_header, rest_property_names)
from .splats import PathLike, repair_non_finite, splat_arrays, splats_from_arrays

POSITION = ("x", "y", "z")
NORMAL = ("nx", "ny", "nz")
DC = ("f_dc_0", "f_dc_1", "f_dc_2")
OPACITY = ("opacity",)
SCALE = ("scale_0", "scale_1", "scale_2")
ROTATION = ("rot_0", "rot_1", "rot_2", "rot_3")
REQUIRED = POSITION + DC + OPACITY + SCALE + ROTATION
MESH_HINT = ("looks like a mesh/point cloud, not 3D Gaussians (no opacity, scale_* or rot_* "
             "vertex properties); a run can start from it: init.kind=file init.path=<this file>")


# ----------------------------------------------------------------------------- header


def is_gaussians(header: PlyData) -> bool:
    """True if the ``vertex`` element carries 3DGS properties (opacity, scales, rotations)."""
    names = set(property_names(element(header, "vertex")))
    return bool(names & set(OPACITY + SCALE + ROTATION + DC))


# ----------------------------------------------------------------------------- body


def read_vertex_table(path: PathLike, header: PlyData) -> np.ndarray:
    """The ``vertex`` element of ``path`` as a numpy structured array (native byte order)."""
    vertex = element(header, "vertex")
    if vertex is None:
        raise PlyFormatError(f"{path}: PLY file has no 'vertex' element")
    if any(isinstance(p, PlyListProperty) for p in vertex.properties):
        raise PlyFormatError(f"{path}: the 'vertex' element has list properties; "
                             "3D Gaussians need scalar properties only")
    data = read_ply(path, header)["vertex"].data
    return data.astype(data.dtype.newbyteorder("="))


# ----------------------------------------------------------------------------- 3DGS


def load_ply(path: PathLike) -> Dict[str, Tensor]:
    """Read 3D Gaussians from a 3DGS ``.ply`` (this writer's or another tool's, plain or compressed).

    Returns float32 CPU tensors in gsplat's layout: ``means`` [N, 3], ``scales``
    [N, 3] (log), ``quats`` [N, 4] (w x y z), ``opacities`` [N] (logit),
    ``sh0`` [N, 1, 3], ``shN`` [N, K-1, 3] with the SH degree deduced from the
    number of ``f_rest_*`` properties.  Any problem is a :class:`PlyFormatError`.
    """
    header = read_ply_header(path)
    if is_compressed(header):
        return load_compressed_ply(path, header)
    vertex = element(header, "vertex")
    if vertex is None:
        raise PlyFormatError(f"{path}: PLY file has no 'vertex' element")
    check_is_gaussians(path, header)
    rest = rest_property_names(property_names(vertex), path)
    if vertex.count == 0:
        raise PlyFormatError(f"{path}: the PLY file holds zero Gaussians")
    table = read_vertex_table(path, header)
    columns = {name: np.ascontiguousarray(table[name], dtype=np.float32)
               for name in REQUIRED + tuple(rest)}
    columns = repair_non_finite(path, columns, "opacity", PlyFormatError)
    return splats_from_columns(columns, rest)


def check_is_gaussians(path: PathLike, header: PlyData) -> None:
    names = set(property_names(element(header, "vertex")))
    if element(header, "face") is not None or not is_gaussians(header):
        raise PlyFormatError(f"{path}: {MESH_HINT}")
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise PlyFormatError(f"{path}: not a 3DGS PLY: missing vertex properties "
                             f"{', '.join(missing)}")


def splats_from_columns(columns: Mapping[str, np.ndarray], rest: List[str]) -> Dict[str, Tensor]:
    """Per-property columns [N] -> gsplat's tensors (undoing the channel-major ``f_rest``)."""
    stack = lambda names: np.stack([columns[n] for n in names], axis=1)  # noqa: E731
    n = len(columns["x"])
    coefficients = len(rest) // 3  # K - 1
    sh_rest = (stack(rest).reshape(n, 3, coefficients).transpose(0, 2, 1) if rest
               else np.zeros((n, 0, 3), np.float32))  # [N, K-1, 3]
    return splats_from_arrays(stack(POSITION), stack(SCALE), stack(ROTATION), columns["opacity"],
                              stack(DC), sh_rest)


def save_ply(path: PathLike, splats: Mapping[str, Tensor]) -> None:
    """Write Gaussians (gsplat's layout, see :func:`load_ply`) as a 3DGS ``.ply``, atomically.

    Values are written as they are (log-scales, logit opacities, raw quaternions),
    float32 little endian; ``f_rest`` channel-major as the 3DGS writer does.
    """
    table = splats_to_table(splats, path)
    write_with(path, PlyData([PlyElement.describe(table, "vertex")], byte_order="<").write)


def splats_to_table(splats: Mapping[str, Tensor], path: PathLike = "<splats>") -> np.ndarray:
    """gsplat's tensors -> one little-endian float32 structured row per Gaussian."""
    arrays = splat_arrays(splats, path, PlyFormatError)
    n = arrays["means"].shape[0]
    sh_rest = arrays["shN"]  # [N, K-1, 3]
    rest = sh_rest.transpose(0, 2, 1).reshape(n, 3 * sh_rest.shape[1])  # [N, 3(K-1)] channel-major
    blocks: List[Tuple[Tuple[str, ...], np.ndarray]] = [
        (POSITION, arrays["means"]),
        (NORMAL, np.zeros((n, 3), np.float32)),
        (DC, arrays["sh0"].reshape(n, 3)),
        (tuple(f"f_rest_{i}" for i in range(rest.shape[1])), rest),
        (OPACITY, arrays["opacities"].reshape(n, 1)),
        (SCALE, arrays["scales"]),
        (ROTATION, arrays["quats"]),
    ]
    names = [name for block_names, _ in blocks for name in block_names]
    table = np.empty(n, dtype=np.dtype([(name, "<f4") for name in names]))
    for block_names, values in blocks:
        for column, name in enumerate(block_names):
            table[name] = values[:, column]
    return table

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

import io
import os
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from plyfile import PlyData, PlyElement, PlyListProperty, PlyParseError
from torch import Tensor

from ..errors import PlyFormatError
from ..utils.io import write_with
from .splats import PathLike, repair_non_finite, splat_arrays, splats_from_arrays

POSITION = ("x", "y", "z")
NORMAL = ("nx", "ny", "nz")
DC = ("f_dc_0", "f_dc_1", "f_dc_2")
OPACITY = ("opacity",)
SCALE = ("scale_0", "scale_1", "scale_2")
ROTATION = ("rot_0", "rot_1", "rot_2", "rot_3")
REQUIRED = POSITION + DC + OPACITY + SCALE + ROTATION
#: Number of ``f_rest_*`` properties per SH degree: 3 ((d + 1)^2 - 1).
REST_COUNT_TO_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3}
#: A header longer than this is not a header.
MAX_HEADER_BYTES = 1 << 20
#: Refuse absurd element counts before allocating anything.
MAX_ELEMENT_COUNT = 1 << 31

MESH_HINT = ("looks like a mesh/point cloud, not 3D Gaussians (no opacity, scale_* or rot_* "
             "vertex properties); a run can start from it: init.kind=file init.path=<this file>")


# ----------------------------------------------------------------------------- header


def read_ply_header(path: PathLike) -> PlyData:
    """The header of ``path`` as a plyfile ``PlyData`` whose elements hold no data yet.

    ``header.data_offset`` (added here) is where the body starts, in bytes.
    Any problem is one :class:`PlyFormatError` line.
    """
    path = Path(path)
    if not path.is_file():
        raise PlyFormatError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_HEADER_BYTES)
    except OSError as err:
        raise PlyFormatError(f"{path}: cannot read ({err.strerror})") from None
    return parse_ply_header(head, path)


def parse_ply_header(head: bytes, path: PathLike = "<bytes>") -> PlyData:
    """Parse a PLY header from the first bytes of a file (see :func:`read_ply_header`)."""
    if not re.match(rb"ply\r?\n", head):
        raise PlyFormatError(f"{path}: not a PLY file (it does not start with 'ply')")
    if re.search(rb"end_header\r?\n", head) is None:
        raise PlyFormatError(f"{path}: PLY header has no 'end_header' line (truncated or corrupt)")
    stream = io.BytesIO(head)
    try:
        # plyfile has no public header-only reader; its parser is the one PlyData.read uses.
        header = PlyData._parse_header(stream)
    except PlyParseError as err:
        raise PlyFormatError(f"{path}: bad PLY header: {err}") from None
    except UnicodeDecodeError:
        raise PlyFormatError(f"{path}: PLY header contains non-ASCII bytes (corrupt)") from None
    except (ValueError, TypeError) as err:
        raise PlyFormatError(f"{path}: bad PLY header: {first_line(err)}") from None
    header.data_offset = stream.tell()
    for element in header.elements:
        if not 0 <= element.count <= MAX_ELEMENT_COUNT:
            raise PlyFormatError(f"{path}: element '{element.name}' has an implausible count "
                                 f"{element.count}")
        names = [p.name for p in element.properties]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise PlyFormatError(f"{path}: element '{element.name}' declares property "
                                 f"'{twice[0]}' twice")
    return header


def element(header: PlyData, name: str) -> Optional[PlyElement]:
    """The first element called ``name``, or None."""
    return next((e for e in header.elements if e.name == name), None)


def property_names(item: Optional[PlyElement]) -> List[str]:
    return [p.name for p in item.properties] if item is not None else []


def is_gaussians(header: PlyData) -> bool:
    """True if the ``vertex`` element carries 3DGS properties (opacity, scales, rotations)."""
    names = set(property_names(element(header, "vertex")))
    return bool(names & set(OPACITY + SCALE + ROTATION + DC))


def first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"


# ----------------------------------------------------------------------------- body


def read_ply(path: PathLike, header: Optional[PlyData] = None) -> PlyData:
    """Every element of ``path`` with its data (plyfile, memory-mapped where it can).

    The body's size is checked against the header's counts first, so a
    truncated file or an absurd count is refused before anything is allocated.
    """
    header = header if header is not None else read_ply_header(path)
    check_body_size(path, header)
    try:
        return PlyData.read(str(path), mmap="c")
    except PlyParseError as err:
        raise PlyFormatError(f"{path}: truncated or malformed PLY data: {err}") from None
    except (OSError, ValueError, TypeError, OverflowError, MemoryError, IndexError,
            StopIteration, UnicodeDecodeError) as err:
        raise PlyFormatError(f"{path}: unreadable PLY data ({first_line(err)})") from None


def check_body_size(path: PathLike, header: PlyData) -> None:
    """Refuse a body too short for what the header declares (lists: their length prefixes only)."""
    body = os.path.getsize(path) - header.data_offset
    needed = 0
    for item in header.elements:
        if header.text:  # at least "v " per value, or a newline per row
            row = 2 * max(len(item.properties), 1)
        else:
            row = sum(np.dtype(p.len_dtype if isinstance(p, PlyListProperty) else p.val_dtype).itemsize
                      for p in item.properties)
        needed += item.count * row
        if needed > body + (1 if header.text else 0):
            raise PlyFormatError(f"{path}: truncated: the header declares {item.count} "
                                 f"'{item.name}' rows (at least {needed} bytes of data) but the "
                                 f"file has {body}")


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
    from .compressed_ply import is_compressed, load_compressed_ply

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


def rest_property_names(names: List[str], path: PathLike = "<ply>") -> List[str]:
    """``f_rest_0 .. f_rest_{M-1}`` in index order; M must be 0, 9, 24 or 45 (SH degree 0..3)."""
    rest = [n for n in names if re.fullmatch(r"f_rest_\d+", n)]
    if len(rest) not in REST_COUNT_TO_DEGREE:
        raise PlyFormatError(f"{path}: {len(rest)} f_rest properties; expected 0, 9, 24 or 45 "
                             "(SH degree 0-3)")
    expected = [f"f_rest_{i}" for i in range(len(rest))]
    if sorted(rest, key=lambda n: int(n[7:])) != expected:
        raise PlyFormatError(f"{path}: f_rest properties are not numbered 0..{len(rest) - 1}")
    return expected


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

"""3D Gaussians as ``.ply`` in the INRIA 3DGS layout (Kerbl et al. 2023).

One ``vertex`` element, one row per Gaussian, float32, binary little endian::

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

This is what every splat viewer reads.  :func:`load_ply` reads the files of
other tools too (any property order, extra properties ignored) and turns
every kind of damage into one :class:`~nfsd_gs.errors.PlyFormatError` line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import PlyFormatError
from ..utils.io import write_with

PathLike = Union[str, os.PathLike]

#: gsplat's keys and the property names they map to.
POSITION = ("x", "y", "z")
NORMAL = ("nx", "ny", "nz")
DC = ("f_dc_0", "f_dc_1", "f_dc_2")
OPACITY = ("opacity",)
SCALE = ("scale_0", "scale_1", "scale_2")
ROTATION = ("rot_0", "rot_1", "rot_2", "rot_3")
REQUIRED = POSITION + DC + OPACITY + SCALE + ROTATION
#: Number of ``f_rest_*`` properties per SH degree: 3 ((d + 1)^2 - 1).
REST_COUNT_TO_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3}

#: PLY scalar types -> numpy type codes (without byte order).
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
#: A header longer than this is not a header.
MAX_HEADER_BYTES = 1 << 20
#: Refuse absurd element counts before allocating anything.
MAX_ELEMENT_COUNT = 1 << 31

MESH_HINT = "looks like a mesh/point cloud, not 3D Gaussians; use init.kind=file"


# ----------------------------------------------------------------------------- header


@dataclass
class PlyProperty:
    name: str
    dtype: str  # numpy code without byte order, e.g. "f4"
    list_count_dtype: Optional[str] = None  # for ``property list <count> <item> name``

    @property
    def is_list(self) -> bool:
        return self.list_count_dtype is not None


@dataclass
class PlyElement:
    name: str
    count: int
    properties: List[PlyProperty]

    @property
    def property_names(self) -> List[str]:
        return [p.name for p in self.properties]

    def has_lists(self) -> bool:
        return any(p.is_list for p in self.properties)


@dataclass
class PlyHeader:
    """What a ``.ply`` header declares; ``data_offset`` is where the body starts (bytes)."""

    format: str  # ascii | binary_little_endian | binary_big_endian
    elements: List[PlyElement]
    data_offset: int

    def element(self, name: str) -> Optional[PlyElement]:
        return next((e for e in self.elements if e.name == name), None)

    def is_gaussians(self) -> bool:
        """True if the ``vertex`` element carries 3DGS properties (opacity, scales, rotations)."""
        vertex = self.element("vertex")
        names = set(vertex.property_names) if vertex else set()
        return bool(names & set(OPACITY + SCALE + ROTATION + DC))


def read_ply_header(path: PathLike) -> PlyHeader:
    """Parse the header of ``path``; :class:`PlyFormatError` if it is not a well-formed PLY header."""
    path = Path(path)
    if not path.is_file():
        raise PlyFormatError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_HEADER_BYTES)
    except OSError as err:
        raise PlyFormatError(f"{path}: cannot read ({err.strerror})") from None
    return parse_ply_header(head, path)


def parse_ply_header(head: bytes, path: PathLike = "<bytes>") -> PlyHeader:
    """Parse a PLY header from the first bytes of a file (see :func:`read_ply_header`)."""
    if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
        raise PlyFormatError(f"{path}: not a PLY file (it does not start with 'ply')")
    match = re.search(rb"end_header\r?\n", head)
    if match is None:
        raise PlyFormatError(f"{path}: PLY header has no 'end_header' line (truncated or corrupt)")
    try:
        text = head[: match.start()].decode("ascii")
    except UnicodeDecodeError:
        raise PlyFormatError(f"{path}: PLY header contains non-ASCII bytes (corrupt)") from None
    fmt: Optional[str] = None
    elements: List[PlyElement] = []
    for number, line in enumerate(text.splitlines()[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        where = f"{path}: PLY header line {number} ('{line.strip()[:60]}')"
        if words[0] == "format":
            fmt = _parse_format(words, where)
        elif words[0] == "element":
            elements.append(_parse_element(words, where))
        elif words[0] == "property":
            if not elements:
                raise PlyFormatError(f"{where}: property before any element")
            _add_property(elements[-1], words, where)
        else:
            raise PlyFormatError(f"{where}: unknown keyword '{words[0]}'")
    if fmt is None:
        raise PlyFormatError(f"{path}: PLY header has no 'format' line")
    return PlyHeader(format=fmt, elements=elements, data_offset=match.end())


def _parse_format(words: List[str], where: str) -> str:
    if len(words) != 3 or words[1] not in FORMATS:
        raise PlyFormatError(f"{where}: expected 'format ascii|binary_little_endian|"
                             "binary_big_endian 1.0'")
    return words[1]


def _parse_element(words: List[str], where: str) -> PlyElement:
    if len(words) != 3 or not words[2].isdigit():
        raise PlyFormatError(f"{where}: expected 'element <name> <count>'")
    count = int(words[2])
    if count > MAX_ELEMENT_COUNT:
        raise PlyFormatError(f"{where}: element count {count} is implausibly large")
    return PlyElement(words[1], count, [])


def _add_property(element: PlyElement, words: List[str], where: str) -> None:
    if len(words) == 3 and words[1] in PLY_TYPES:
        prop = PlyProperty(words[2], PLY_TYPES[words[1]])
    elif (len(words) == 5 and words[1] == "list" and words[2] in PLY_TYPES
          and words[3] in PLY_TYPES and PLY_TYPES[words[2]][0] == "u"):
        prop = PlyProperty(words[4], PLY_TYPES[words[3]], list_count_dtype=PLY_TYPES[words[2]])
    else:
        raise PlyFormatError(f"{where}: expected 'property <type> <name>' with a PLY type")
    if prop.name in element.property_names:
        raise PlyFormatError(f"{where}: property '{prop.name}' declared twice")
    element.properties.append(prop)


# ----------------------------------------------------------------------------- body


def read_vertex_table(path: PathLike, header: PlyHeader) -> np.ndarray:
    """The ``vertex`` element of ``path`` as a numpy structured array (native byte order)."""
    vertex = header.element("vertex")
    if vertex is None:
        raise PlyFormatError(f"{path}: PLY file has no 'vertex' element")
    if vertex.has_lists():
        raise PlyFormatError(f"{path}: the 'vertex' element has list properties; "
                             "3D Gaussians need scalar properties only")
    if header.format == "ascii":
        return _read_ascii_vertices(path, header, vertex)
    return _read_binary_vertices(path, header, vertex)


def _read_binary_vertices(path: PathLike, header: PlyHeader, vertex: PlyElement) -> np.ndarray:
    order = FORMATS[header.format]
    offset = header.data_offset
    for element in header.elements:
        if element is vertex:
            break
        if element.has_lists():  # its size is unknown without reading it
            raise PlyFormatError(f"{path}: element '{element.name}' with list properties comes "
                                 "before 'vertex'; unsupported")
        offset += element.count * _row_dtype(element, order).itemsize
    dtype = _row_dtype(vertex, order)
    needed = offset + vertex.count * dtype.itemsize
    size = os.path.getsize(path)
    if size < needed:
        raise PlyFormatError(f"{path}: truncated: the header declares {vertex.count} vertices "
                             f"({needed} bytes) but the file has {size} bytes")
    with open(path, "rb") as handle:
        handle.seek(offset)
        table = np.fromfile(handle, dtype=dtype, count=vertex.count)
    if table.shape[0] != vertex.count:
        raise PlyFormatError(f"{path}: truncated while reading vertices")
    return table.astype(dtype.newbyteorder("="))


def _row_dtype(element: PlyElement, order: str) -> np.dtype:
    return np.dtype([(p.name, order + p.dtype) for p in element.properties])


def _read_ascii_vertices(path: PathLike, header: PlyHeader, vertex: PlyElement) -> np.ndarray:
    """ASCII bodies: lines of numbers; elements before ``vertex`` are skipped line by line."""
    skip = 0
    for element in header.elements:
        if element is vertex:
            break
        skip += element.count
    dtype = _row_dtype(vertex, "=")
    width = len(vertex.properties)
    body_bytes = os.path.getsize(path) - header.data_offset
    if (skip + vertex.count) * max(width, 1) * 2 > body_bytes + 1:  # "v " per value at least
        raise PlyFormatError(f"{path}: truncated: the header declares {vertex.count} vertices "
                             f"but the ASCII body has only {body_bytes} bytes")
    rows = np.empty(vertex.count, dtype=dtype)
    with open(path, "rb") as handle:
        handle.seek(header.data_offset)
        for _ in range(skip):
            if not handle.readline():
                raise PlyFormatError(f"{path}: truncated before the vertex element")
        for index in range(vertex.count):
            words = handle.readline().split()
            if len(words) < width:
                raise PlyFormatError(f"{path}: truncated or malformed at vertex {index} "
                                     f"(expected {width} numbers)")
            try:
                rows[index] = tuple(_ascii_number(w, p.dtype) for w, p in
                                    zip(words[:width], vertex.properties))
            except (ValueError, OverflowError):
                raise PlyFormatError(f"{path}: vertex {index} has a value that is not a "
                                     "number of its declared type") from None
    return rows


def _ascii_number(word: bytes, dtype: str):
    return float(word) if dtype[0] == "f" else int(word)


# ----------------------------------------------------------------------------- 3DGS


def load_ply(path: PathLike) -> Dict[str, Tensor]:
    """Read 3D Gaussians from a 3DGS ``.ply`` (this writer's or another tool's).

    Returns float32 CPU tensors in gsplat's layout: ``means`` [N, 3], ``scales``
    [N, 3] (log), ``quats`` [N, 4] (w x y z), ``opacities`` [N] (logit),
    ``sh0`` [N, 1, 3], ``shN`` [N, K-1, 3] with the SH degree deduced from the
    number of ``f_rest_*`` properties.  Any problem is a :class:`PlyFormatError`.
    """
    header = read_ply_header(path)
    vertex = header.element("vertex")
    if vertex is None:
        raise PlyFormatError(f"{path}: PLY file has no 'vertex' element")
    _check_is_gaussians(path, header)
    names = vertex.property_names
    rest = rest_property_names(names, path)
    if vertex.count == 0:
        raise PlyFormatError(f"{path}: the PLY file holds zero Gaussians")
    table = read_vertex_table(path, header)
    columns = {name: _float_column(table, name) for name in REQUIRED + tuple(rest)}
    _check_finite(path, columns)
    return splats_from_columns(columns, rest)


def _check_is_gaussians(path: PathLike, header: PlyHeader) -> None:
    vertex = header.element("vertex")
    names = set(vertex.property_names)
    if header.element("face") is not None or not header.is_gaussians():
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


def _float_column(table: np.ndarray, name: str) -> np.ndarray:  # [N] float32
    return np.ascontiguousarray(table[name], dtype=np.float32)


def _check_finite(path: PathLike, columns: Mapping[str, np.ndarray]) -> None:
    for name, column in columns.items():
        bad = ~np.isfinite(column)
        if bad.any():
            raise PlyFormatError(f"{path}: {int(bad.sum())} non-finite value(s) in property "
                                 f"'{name}' (first at vertex {int(np.argmax(bad))})")


def splats_from_columns(columns: Mapping[str, np.ndarray], rest: List[str]) -> Dict[str, Tensor]:
    """Per-property columns [N] -> gsplat's tensors (undoing the channel-major ``f_rest``)."""
    stack = lambda names: torch.from_numpy(np.stack([columns[n] for n in names], axis=1))  # noqa: E731
    n = len(columns["x"])
    coefficients = len(rest) // 3  # K - 1
    if rest:
        flat = stack(rest)  # [N, 3 * (K-1)] channel-major
        sh_rest = flat.reshape(n, 3, coefficients).transpose(1, 2).contiguous()  # [N, K-1, 3]
    else:
        sh_rest = torch.zeros(n, 0, 3)
    return {
        "means": stack(POSITION),  # [N, 3]
        "scales": stack(SCALE),  # [N, 3] log
        "quats": stack(ROTATION),  # [N, 4] wxyz
        "opacities": torch.from_numpy(columns["opacity"].copy()),  # [N] logit
        "sh0": stack(DC)[:, None, :],  # [N, 1, 3]
        "shN": sh_rest,  # [N, K-1, 3]
    }


def save_ply(path: PathLike, splats: Mapping[str, Tensor]) -> None:
    """Write Gaussians (gsplat's layout, see :func:`load_ply`) as a 3DGS ``.ply``, atomically.

    Values are written as they are (log-scales, logit opacities, raw quaternions),
    float32 little endian; ``f_rest`` channel-major as the 3DGS writer does.
    """
    table = splats_to_table(splats, path)
    header = _header_text(table.dtype.names, len(table)).encode("ascii")

    def write(handle: IO[bytes]) -> None:
        handle.write(header)
        handle.write(table.tobytes())

    write_with(path, write)


def splats_to_table(splats: Mapping[str, Tensor], path: PathLike = "<splats>") -> np.ndarray:
    """gsplat's tensors -> one little-endian float32 structured row per Gaussian."""
    arrays = _checked_arrays(splats, path)
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


def _checked_arrays(splats: Mapping[str, Tensor], path: PathLike) -> Dict[str, np.ndarray]:
    missing = [k for k in ("means", "scales", "quats", "opacities", "sh0", "shN") if k not in splats]
    if missing:
        raise PlyFormatError(f"cannot write {path}: splats lack {', '.join(missing)}")
    arrays = {k: splats[k].detach().to("cpu", torch.float32).numpy() for k in
              ("means", "scales", "quats", "opacities", "sh0", "shN")}
    n = arrays["means"].shape[0]
    expected = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,),
                "sh0": (n, 1, 3)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise PlyFormatError(f"cannot write {path}: '{key}' has shape "
                                 f"{tuple(arrays[key].shape)}, expected {shape}")
    rest_shape = arrays["shN"].shape
    if len(rest_shape) != 3 or rest_shape[0] != n or rest_shape[2] != 3 \
            or 3 * rest_shape[1] not in REST_COUNT_TO_DEGREE:
        raise PlyFormatError(f"cannot write {path}: 'shN' has shape {tuple(rest_shape)}, "
                             f"expected ({n}, 0|3|8|15, 3)")
    for key, values in arrays.items():
        if not np.isfinite(values).all():
            raise PlyFormatError(f"cannot write {path}: '{key}' has non-finite values")
    return arrays


def _header_text(names, count: int) -> str:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {count}"]
    lines += [f"property float {name}" for name in names]
    lines += ["end_header"]
    return "\n".join(lines) + "\n"

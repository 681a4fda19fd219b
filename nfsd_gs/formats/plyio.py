"""PLY files read with plyfile, hardened: what a file from anywhere needs before plyfile
allocates anything.

The header's element counts are checked against the file's size, duplicate properties
and absurd counts are refused, and every kind of damage becomes one
:class:`~nfsd_gs.errors.PlyFormatError` line naming the file.  Shared by the 3DGS layout
(``ply.py``) and the compressed one (``compressed_ply.py``), with the one rule both follow
for the higher SH coefficients (``f_rest_*``).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import List, Optional

import numpy as np
from plyfile import PlyData, PlyElement, PlyListProperty, PlyParseError

from ..errors import PlyFormatError
from .splats import PathLike

#: A header longer than this is not a header.
MAX_HEADER_BYTES = 1 << 20
#: Refuse absurd element counts before allocating anything.
MAX_ELEMENT_COUNT = 1 << 31

#: Number of ``f_rest_*`` properties per SH degree: 3 ((d + 1)^2 - 1).
REST_COUNT_TO_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3}


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


def first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"



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

"""Splat files: one module per format, one function to read any of them and one to write.

=================  ====================  ==========================  ============================
format             file                  written by                  read by
=================  ====================  ==========================  ============================
``ply``            ``model.ply``         plyfile (ply.py)            plyfile (ply.py)
``ply-compressed`` ``model.compressed    gsply, Morton-sorted by     plyfile + gsply
                   .ply``                gsplat (compressed_ply.py)  (compressed_ply.py)
``splat``          ``model.splat``       gsplat's exporter           numpy (splat.py)
``spz``            ``model.spz``         gsply (spz.py)              gsply (spz.py)
=================  ====================  ==========================  ============================

Every reader returns gsplat's float32 tensors (see splats.py) and turns a bad
file into one :class:`~nfsd_gs.errors.SplatFormatError` line; every writer is
atomic (a failed export leaves no file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence, Tuple, get_args

from torch import Tensor

from ..config import SplatFormat
from ..errors import SplatFormatError
from .compressed_ply import save_compressed_ply
from .ply import load_ply, save_ply
from .splat import load_splat, save_splat
from .splats import PathLike
from .spz import load_spz, save_spz

#: format name -> (file name suffix, writer)
WRITERS: Dict[str, Tuple[str, Callable[[PathLike, Mapping[str, Tensor]], None]]] = {
    "ply": (".ply", save_ply),
    "ply-compressed": (".compressed.ply", save_compressed_ply),
    "splat": (".splat", save_splat),
    "spz": (".spz", save_spz),
}
#: The format names, written once: config.SplatFormat (output.formats is typed by it).
FORMATS: Tuple[str, ...] = get_args(SplatFormat)
assert set(FORMATS) == set(WRITERS), "config.SplatFormat and WRITERS must name the same formats"
#: file suffix -> reader (a ``.ply`` may be plain or compressed: ``load_ply`` tells which)
READERS: Dict[str, Callable[[PathLike], Dict[str, Tensor]]] = {
    ".ply": load_ply, ".splat": load_splat, ".spz": load_spz,
}
SPLAT_SUFFIXES = tuple(READERS)


def check_format(name: str, where: str = "--format") -> str:
    """``name`` if it is one of :data:`FORMATS`, else one :class:`SplatFormatError` line."""
    if name not in WRITERS:
        raise SplatFormatError(f"{where}: unknown format {name!r} (one of {', '.join(FORMATS)})")
    return name


def format_suffix(name: str) -> str:
    return WRITERS[check_format(name)][0]


def save_splats(path: PathLike, splats: Mapping[str, Tensor], format: str) -> Path:
    """Write ``splats`` to ``path`` in ``format`` (one of :data:`FORMATS`), atomically."""
    WRITERS[check_format(format)][1](path, splats)
    return Path(path)


def load_splats(path: PathLike) -> Dict[str, Tensor]:
    """3D Gaussians from a ``.ply`` (3DGS or compressed), ``.splat`` or ``.spz`` file."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise SplatFormatError(f"{path}: unknown splat file type '{path.suffix}' "
                               f"(expected {', '.join(SPLAT_SUFFIXES)})")
    return reader(path)


def is_splat_file(path: PathLike) -> bool:
    """True for ``.splat``/``.spz`` and for a ``.ply`` of Gaussians (3DGS or compressed)."""
    from .compressed_ply import is_compressed
    from .ply import is_gaussians, read_ply_header

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        header = read_ply_header(path)
        return is_gaussians(header) or is_compressed(header)
    return suffix in READERS


def save_model(run_dir: PathLike, splats: Mapping[str, Tensor],
               formats: Sequence[str] = ("ply",)) -> List[Path]:
    """A run's result: ``model.ply`` always (resume, render and evaluation read it), and
    ``model.<suffix>`` beside it for each other format in ``formats`` (``output.formats``)."""
    paths = [save_splats(Path(run_dir) / "model.ply", splats, "ply")]
    for name in dict.fromkeys(formats):
        if name != "ply":
            paths.append(save_splats(Path(run_dir) / f"model{format_suffix(name)}", splats, name))
    return paths

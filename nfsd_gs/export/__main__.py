"""Convert a run's Gaussians to another splat format.

``python -m nfsd_gs.export outputs/a_red_cone --format spz`` writes
``outputs/a_red_cone/model.spz`` beside ``model.ply``; ``-o`` names the file
(its suffix picks the format when ``--format`` is left out).  The input is a
run folder (its ``model.ply``) or any splat file nfsd_gs reads (3DGS or
compressed ``.ply``, ``.splat``, ``.spz``).  Formats and their sizes: README,
"Sharing a small file"; the code: nfsd_gs/formats.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..errors import NfsdError, SplatFormatError


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from ..formats import FORMATS

    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.export",
                                     description="Write a run's 3D Gaussians in another splat format.")
    parser.add_argument("source", type=Path, help="a run folder (its model.ply) or a splat file")
    parser.add_argument("--format", default=None, metavar="FORMAT",
                        help=f"one of {', '.join(FORMATS)} (default: from -o's suffix, else ply)")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="output file (default: beside the source, named for the format)")
    return parser.parse_args(argv)


def model_path(source: Path) -> Path:
    """The splat file behind ``source``: a run folder's ``model.ply``, or ``source`` itself."""
    if source.is_dir():
        model = source / "model.ply"
        if not model.is_file():
            raise SplatFormatError(f"{source}: a run folder without model.ply (the run has not "
                                   "finished, or its backend wrote no Gaussians)")
        return model
    if not source.is_file():
        raise SplatFormatError(f"{source}: no such file or run folder")
    return source


def format_of(out: Optional[Path], name: Optional[str]) -> str:
    """``--format``, else the one whose suffix ``out`` has, else ``ply``."""
    from ..formats import FORMATS, check_format, format_suffix

    if name is not None:
        return check_format(name)
    if out is not None:  # the longest matching suffix: .compressed.ply before .ply
        matches = [f for f in FORMATS if out.name.lower().endswith(format_suffix(f))]
        if matches:
            return max(matches, key=lambda f: len(format_suffix(f)))
        raise SplatFormatError(f"-o {out}: cannot tell the format from its suffix; give --format "
                               f"({', '.join(FORMATS)})")
    return "ply"


def default_out(model: Path, name: str) -> Path:
    from ..formats import format_suffix

    stem = model.name[: -len(".compressed.ply")] if model.name.endswith(".compressed.ply") \
        else model.stem
    return model.with_name(stem + format_suffix(name))


def export(source: Path, name: Optional[str] = None, out: Optional[Path] = None) -> Path:
    """Read ``source`` (run folder or splat file) and write it as format ``name`` to ``out``."""
    from ..formats import load_splats, save_splats

    name = format_of(out, name)
    model = model_path(source)
    out = out or default_out(model, name)
    if out.resolve() == model.resolve():
        raise SplatFormatError(f"{out}: the output would overwrite its source; choose another -o")
    return save_splats(out, load_splats(model), name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        out = export(args.source, args.format, args.out)
    except NfsdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

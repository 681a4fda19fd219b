"""Convert a run's Gaussians to another splat format.

``python -m nfsd_gs.export outputs/a_red_cone --format spz`` writes
``outputs/a_red_cone/model.spz`` beside ``model.ply``; ``-o`` names the file
(its suffix picks the format when ``--format`` is left out).  The input is a
run folder (its ``model.ply``) or any splat file nfsd_gs reads (3DGS or
compressed ``.ply``, ``.splat``, ``.spz``).  Formats and their sizes: README,
"Sharing a small file"; the code: nfsd_gs/formats.

``--mesh out.glb`` (or ``.obj``, ``.ply``) writes a mesh of the Gaussians
instead: marching cubes on their opacity field (nfsd_gs/export/mesh.py), with
vertex colours, or with ``--texture 1024`` a UV atlas and a texture baked from
renders of the Gaussians (nfsd_gs/export/texture.py; .glb only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..cli import fail
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
    from .mesh import MeshSettings, face_count

    mesh = parser.add_argument_group("mesh (instead of a splat file, unless --format or -o is given too)")
    mesh.add_argument("--mesh", type=Path, default=None, metavar="OUT",
                      help="write a mesh of the Gaussians: .glb, .obj or .ply")
    mesh.add_argument("--mesh-resolution", type=int, default=MeshSettings.resolution,
                      help="grid samples along the longest side (default %(default)s)")
    mesh.add_argument("--mesh-iso", type=float, default=MeshSettings.iso,
                      help="iso level of the opacity field (default %(default)s)")
    mesh.add_argument("--mesh-faces", type=face_count, default=MeshSettings.faces, metavar="N|auto",
                      help="decimate to at most N faces, 0 keeps all; auto (the default): a "
                           "budget from the object, triangles about one Gaussian scale across")
    mesh.add_argument("--texture", "--mesh-texture", dest="texture", type=int,
                      default=MeshSettings.texture, metavar="SIZE",
                      help="bake a SIZE x SIZE texture (a power of two, e.g. 1024) on a UV atlas "
                           "into the .glb; 0 (the default): vertex colours")
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
    if out.is_dir():
        raise SplatFormatError(f"-o {out}: is a folder; name the output file")
    if out.resolve() == model.resolve():
        raise SplatFormatError(f"{out}: the output would overwrite its source; choose another -o")
    return save_splats(out, load_splats(model), name)


def export_mesh_of(source: Path, out: Path, settings) -> Path:
    """Read ``source`` (run folder or splat file) and write the mesh of its Gaussians to ``out``."""
    from ..formats import load_splats
    from .mesh import check_mesh_path, export_mesh

    settings.check("option --mesh-{}")
    check_mesh_path(out, settings.texture)
    mesh = export_mesh(load_splats(model_path(source)), out, settings)
    colour = (f"a {settings.texture}x{settings.texture} texture (xatlas atlas, baked from "
              f"{mesh.metadata['bake_views']} views of the Gaussians; "
              f"{mesh.metadata['texture_coverage']:.0%} of its texels seen)"
              if settings.texture else "vertex colours")
    print(f"mesh: {len(mesh.faces):,} faces, {len(mesh.vertices):,} vertices, {colour}",
          file=sys.stderr)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .mesh import MeshSettings

    args = parse_args(argv)
    splat_file = args.mesh is None or args.format is not None or args.out is not None
    try:
        written = []
        if splat_file:  # a bad --format or -o fails before the mesh is made and written
            format_of(args.out, args.format)
        if args.mesh is not None:
            settings = MeshSettings(args.mesh_resolution, args.mesh_iso, args.mesh_faces,
                                    args.texture)
            written.append(export_mesh_of(args.source, args.mesh, settings))
        if splat_file:
            written.append(export(args.source, args.format, args.out))
    except NfsdError as err:
        return fail(err)
    for out in written:
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

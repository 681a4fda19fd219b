"""Mesh export time per phase and face count, per asset, end to end from a ``.ply``, on one device.

    python scripts/bench_mesh.py --ply outputs/a_red_cone/model.ply --synthetic 100000
    python scripts/bench_mesh.py --device cuda --synthetic 100000 --resolution 256 --texture 1024 \\
        --json mesh_256_tex1024.json

Phases (export/mesh.py, export/texture.py): ``load`` (read the ``.ply``), ``field`` (the
opacity field on the grid, blocked, 3-sigma culled), ``marching_cubes`` (and the main
component), ``simplify`` (decimation to the face budget: ``--faces``, by default the one
from the object), ``unwrap`` (xatlas; only with ``--texture``), ``bake`` (vertex colours, and
with ``--texture`` the renders and the texture) and ``write`` (the ``.glb``).  The synthetic
asset is what the project's own initialisation makes of a cone filled with N points
(``init.primitives``, ``init.gaussians``: scales from neighbour distances), with opacities
drawn uniformly in [0.3, 0.95] and SH degree 3: a stand-in for a trained 100k-Gaussian asset,
not one.  It is written to a ``.ply`` first (not timed) so that every asset is timed from its
file.  One warm-up export of a small asset runs first (CUDA context, kernels, lazy imports).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's nfsd_gs

from nfsd_gs.export.mesh import MeshSettings, export_mesh, face_count  # noqa: E402
from nfsd_gs.utils.io import write_json  # noqa: E402
from nfsd_gs.utils.timing import PhaseTimer, synchronize  # noqa: E402

#: Table columns: the phases in pipeline order.
PHASES = ("load", "field", "marching_cubes", "simplify", "unwrap", "bake", "write")


def synthetic_asset(count: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """``count`` Gaussians filling a red cone, as the project's initialisation builds them."""
    from nfsd_gs.init.gaussians import gaussians_from_points
    from nfsd_gs.init.primitives import primitive_points

    cloud = primitive_points("cone", count, size=(0.8, 0.8, 0.9), color=(0.8, 0.1, 0.1),
                             fill="volume", seed=seed)
    splats = gaussians_from_points(cloud, initial_opacity=0.5, scale_factor=1.0, sh_degree=3)
    opacity = 0.3 + 0.65 * torch.rand(count, generator=torch.Generator().manual_seed(seed))
    splats["opacities"] = torch.logit(opacity)
    return splats


def watertight(mesh) -> bool:
    """Closed once the atlas' seam copies of vertices are merged again."""
    import trimesh

    return bool(trimesh.Trimesh(mesh.vertices, mesh.faces, process=True).is_watertight)


def measure(name: str, ply: Path, settings: MeshSettings, device: torch.device, out_dir: Path,
            views: Optional[int]) -> dict:
    """Export ``ply``'s mesh with ``settings``; seconds per phase, face count, the file's size."""
    from nfsd_gs.formats import load_splats

    timer = PhaseTimer(torch.device("cpu"))  # host clocks: every phase ends with host data
    start = time.perf_counter()
    with timer.phase("load"):
        splats = load_splats(ply)
    bake = {"views": views} if views else {}
    out = out_dir / f"{name}_{settings.resolution}_tex{settings.texture}.glb"
    mesh = export_mesh(splats, out, settings, device, timer, **bake)
    synchronize(device)
    total = time.perf_counter() - start
    seconds = {phase: round(timer.totals_ms.get(phase, 0.0) / 1e3, 3) for phase in PHASES}
    return {"asset": name, "gaussians": len(splats["means"]), "device": str(device),
            "resolution": settings.resolution, "texture": settings.texture,
            "face_budget": "auto" if settings.faces is None else settings.faces,
            **{f"{phase}_s": value for phase, value in seconds.items()},
            "total_s": round(total, 3), "faces": len(mesh.faces), "vertices": len(mesh.vertices),
            "watertight": watertight(mesh), "glb_mb": round(out.stat().st_size / 1e6, 2),
            "texture_coverage": mesh.metadata.get("texture_coverage")}


def table(rows: List[dict]) -> str:
    heads = ["asset", "Gaussians", "res", "texture"] + [f"{p} s" for p in PHASES] + [
        "total s", "faces", "glb MB", "watertight"]
    lines = ["| " + " | ".join(heads) + " |",
             "| --- | ---: | ---: | ---: | " + "---: | " * (len(PHASES) + 3) + "--- |"]
    for r in rows:
        cells = [r["asset"], f"{r['gaussians']:,}", r["resolution"], r["texture"] or "vertex colours",
                 *(f"{r[p + '_s']:.2f}" for p in PHASES), f"**{r['total_s']:.2f}**",
                 f"{r['faces']:,}", r["glb_mb"], "yes" if r["watertight"] else "no"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/bench_mesh.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ply", type=Path, action="append", default=[], help="a trained model.ply")
    parser.add_argument("--synthetic", type=int, action="append", default=[],
                        help="a synthetic asset of this many Gaussians")
    parser.add_argument("--resolution", type=int, action="append", default=[],
                        help=f"grid resolution (repeatable; default {MeshSettings.resolution})")
    parser.add_argument("--texture", type=int, action="append", default=[],
                        help="texture size, 0 for vertex colours (repeatable; default 0)")
    parser.add_argument("--iso", type=float, default=MeshSettings.iso)
    parser.add_argument("--faces", type=face_count, default=MeshSettings.faces, metavar="N|auto")
    parser.add_argument("--views", type=int, default=None, help="bake views (default: the export's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="keep the .ply and meshes here")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    from nfsd_gs.formats.ply import save_ply

    device = torch.device(args.device)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-mesh-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    assets = [(path.parent.name or path.stem, path) for path in args.ply]
    for count in args.synthetic:
        path = out_dir / f"synthetic_{count}.ply"
        save_ply(path, synthetic_asset(count))
        assets.append((f"synthetic_{count // 1000}k" if count >= 1000 else f"synthetic_{count}", path))
    resolutions = args.resolution or [MeshSettings.resolution]
    textures = args.texture or [0]
    warmup = out_dir / "warmup.ply"
    save_ply(warmup, synthetic_asset(2000))
    measure("warmup", warmup, MeshSettings(32, args.iso, None, max(textures) and 128), device,
            out_dir, args.views)
    rows = []
    for name, ply in assets:
        for resolution in resolutions:
            for texture in textures:
                settings = MeshSettings(resolution, args.iso, args.faces, texture)
                rows.append(measure(name, ply, settings, device, out_dir, args.views))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                if args.json:
                    write_json(args.json, rows, indent=1)
    print(f"{device}, iso {args.iso}, face budget "
          f"{'from the object' if args.faces is None else args.faces}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

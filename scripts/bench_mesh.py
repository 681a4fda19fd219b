"""Mesh extraction time and face count (export/mesh.py), per asset, on one device.

    python scripts/bench_mesh.py --ply outputs/a_red_cone/model.ply --synthetic 100000
    python scripts/bench_mesh.py --device cuda --synthetic 100000 --json mesh.json

Phases: ``field`` (the opacity field on the grid, blocked, 3-sigma culled),
``surface`` (marching cubes, main component, decimation to ``--faces``, vertex
colours) and ``write`` (``mesh.glb``).  The synthetic asset is what the
project's own initialisation makes of a cone filled with N points
(``init.primitives``, ``init.gaussians``: scales from neighbour distances),
with opacities drawn uniformly in [0.3, 0.95] and SH degree 3: a stand-in
for a trained 100k-Gaussian asset, not one.  One warm-up extraction at a
small resolution runs first (CUDA context, lazy imports).
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

from nfsd_gs.export.mesh import (GaussianField, Grid, MeshSettings, export_mesh,  # noqa: E402
                                 save_mesh, surface_mesh)
from nfsd_gs.utils.timing import synchronize  # noqa: E402


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


def measure(name: str, splats, settings: MeshSettings, device: torch.device, out_dir: Path) -> dict:
    start = time.perf_counter()
    field = GaussianField.from_splats(splats, device)
    grid = Grid.box(*field.bounds(), settings.resolution)
    volume = field.volume(grid)
    synchronize(device)
    field_s = time.perf_counter() - start
    start = time.perf_counter()
    mesh = surface_mesh(volume, grid, settings.iso, settings.faces, field.colors_at)
    surface_s = time.perf_counter() - start
    start = time.perf_counter()
    save_mesh(out_dir / f"{name}.glb", mesh)
    write_s = time.perf_counter() - start
    return {"asset": name, "gaussians": len(splats["means"]), "device": str(device),
            "grid": "x".join(map(str, grid.shape)), "field_s": round(field_s, 2),
            "surface_s": round(surface_s, 2), "write_s": round(write_s, 2),
            "total_s": round(field_s + surface_s + write_s, 2), "faces": len(mesh.faces),
            "vertices": len(mesh.vertices), "watertight": bool(mesh.is_watertight)}


def table(rows: List[dict]) -> str:
    lines = ["| asset | Gaussians | device | grid | field s | surface s | write s | total s | faces | watertight |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['asset']} | {r['gaussians']:,} | {r['device']} | {r['grid']} | {r['field_s']} | "
              f"{r['surface_s']} | {r['write_s']} | {r['total_s']} | {r['faces']:,} | {r['watertight']} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/bench_mesh.py", description=__doc__.split("\n")[0])
    parser.add_argument("--ply", type=Path, action="append", default=[], help="a trained model.ply")
    parser.add_argument("--synthetic", type=int, action="append", default=[],
                        help="a synthetic asset of this many Gaussians")
    parser.add_argument("--resolution", type=int, default=MeshSettings.resolution)
    parser.add_argument("--iso", type=float, default=MeshSettings.iso)
    parser.add_argument("--faces", type=int, default=MeshSettings.faces)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="keep the meshes here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from nfsd_gs.formats import load_splats as load_ply

    device = torch.device(args.device)
    settings = MeshSettings(args.resolution, args.iso, args.faces)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-mesh-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    assets = [(path.parent.name or path.stem, lambda path=path: load_ply(path)) for path in args.ply]
    assets += [(f"synthetic_{n // 1000}k", lambda n=n: synthetic_asset(n)) for n in args.synthetic]
    export_mesh(synthetic_asset(2000), out_dir / "warmup.glb", MeshSettings(32, args.iso, 0), device)
    rows = []
    for name, load in assets:
        rows.append(measure(name, load(), settings, device, out_dir))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"resolution {settings.resolution}, iso {settings.iso}, face budget {settings.faces:,}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

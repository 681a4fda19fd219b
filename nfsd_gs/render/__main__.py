"""Render a turntable video of 3D Gaussians (``.ply``, compressed ``.ply``, ``.splat``, ``.spz``).

``python -m nfsd_gs.render outputs/a_red_cone/model.ply`` writes ``model.mp4``
beside it: a 360-degree orbit rendered with our rasterizer (gsplat on CUDA,
the PyTorch reference on the CPU).  Camera, background and video settings
come from the run's ``config.yaml`` beside the ``.ply`` if there is one
(else the defaults), and the flags override them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from ..cli import add_threads_argument, fail, parse_command_line
from ..errors import NfsdError


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.render",
                                     description="Turntable video (mp4, optional GIF) of a .ply.")
    parser.add_argument("ply", type=Path,
                        help="3D Gaussians: a .ply (3DGS or compressed), .splat or .spz")
    parser.add_argument("--out", type=Path, default=None,
                        help="video path (default: the .ply's name with .mp4)")
    parser.add_argument("--config", default=None,
                        help="config preset or YAML (default: config.yaml beside the .ply, "
                             "else the defaults)")
    parser.add_argument("--frames", type=int, default=None, help="output.turntable_frames")
    parser.add_argument("--resolution", type=int, default=None,
                        help="output.turntable_resolution (square, even)")
    parser.add_argument("--elevation", type=float, default=None,
                        help="output.turntable_elevation in degrees")
    parser.add_argument("--fps", type=int, default=None, help="output.turntable_fps")
    parser.add_argument("--gif", action="store_true", help="also write a GIF beside the mp4")
    parser.add_argument("--background", default=None, metavar="R,G,B",
                        help="background colour in [0, 1], e.g. 1,1,1")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (config's device)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_argument(parser)
    return parse_command_line(parser, argv)


def overrides_from_args(args: argparse.Namespace) -> List[str]:
    pairs = {
        "output.turntable_frames": args.frames,
        "output.turntable_resolution": args.resolution,
        "output.turntable_elevation": args.elevation,
        "output.turntable_fps": args.fps,
        "output.turntable_gif": True if args.gif else None,
        "device": args.device,
        "background.kind": "solid" if args.background else None,
    }
    overrides = [f"{key}={json.dumps(value)}" for key, value in pairs.items() if value is not None]
    if args.background:
        overrides.append(f"background.color=[{args.background}]")
    return overrides


def render_ply(ply: Path, out: Path, config, progress: bool = True) -> List[Path]:
    """Load ``ply``, render the turntable of ``config`` and write ``out`` (+ a GIF beside it if asked)."""
    import torch
    from tqdm import tqdm

    from ..export.video import TurntableSettings, write_turntable
    from ..formats import load_splats
    from ..representations.gaussians import GaussianModel
    from ..utils.device import resolve_device

    device = resolve_device(config.device)
    settings = TurntableSettings.from_config(config)
    splats = {key: value.to(device) for key, value in load_splats(ply).items()}
    model = GaussianModel.finished(splats, config)
    bar = tqdm(total=settings.frames, disable=not progress, desc="turntable", unit="frame")
    try:
        with torch.no_grad():
            return write_turntable(model, config, out, device,
                                   progress=lambda done: bar.update(done - bar.n))
    finally:
        bar.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..config import load_config

    args = parse_args(argv)
    if not args.ply.is_file():
        return fail(f"no file '{args.ply}'")
    beside = args.ply.parent / "config.yaml"
    preset = args.config or (beside if beside.is_file() else None)
    out = args.out or args.ply.with_suffix(".mp4")
    if out.is_dir():
        return fail(f"--out {out}: is a folder; name the video file")
    try:
        config = load_config(preset, overrides_from_args(args))
        written = render_ply(args.ply, out, config, progress=not args.no_progress)
    except NfsdError as err:
        return fail(err)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

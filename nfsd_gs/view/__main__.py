"""Open 3D Gaussians in the browser.

``python -m nfsd_gs.view outputs/a_red_cone/model.ply`` prints a URL and serves
until Ctrl+C.  Any ``.ply`` in the INRIA 3DGS layout opens: ours or one written
by another tool (``--up -y`` for scenes captured in OpenCV axes); so do the
compressed ``.ply`` of PlayCanvas/SuperSplat, ``.splat`` and ``.spz``.  It is
the live viser viewer of ``--viewer``.

``--static`` serves instead the static page of ``viewer/web/`` (Spark on
three.js, no Python behind it) with that one file: the page anyone can open
(see :mod:`nfsd_gs.viewer.static`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..cli import fail
from ..errors import NfsdError

UP_AXES = ("+z", "-z", "+y", "-y", "+x", "-x")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.view",
                                     description="Show 3D Gaussians in the browser (viser, or "
                                                 "the static Spark page with --static).")
    parser.add_argument("ply", type=Path, metavar="FILE",
                        help="3D Gaussians: a .ply (3DGS or compressed), .splat or .spz")
    parser.add_argument("--static", action="store_true",
                        help="serve the static web page (viewer/web, Spark) with this one file")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port (default 8080; the next free one if taken)")
    parser.add_argument("--up", choices=UP_AXES, default="+z", help="the scene's up axis")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this long instead of waiting for Ctrl+C")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not args.ply.is_file():
        return fail(f"no file '{args.ply}'")
    try:
        if args.static:
            from ..viewer.static import serve_page

            scene = serve_page(args.ply, args.host, args.port, up=args.up)
        else:
            from ..viewer.ply_view import serve_ply

            scene = serve_ply(args.ply, args.host, args.port, args.up)
    except NfsdError as err:
        return fail(err)
    print(f"viewer: {scene.url}  ({args.ply}; Ctrl+C to stop)", file=sys.stderr, flush=True)
    try:
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        scene.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serve any splat file (a 3DGS ``.ply``, ours or another tool's; compressed ``.ply``,
``.splat``, ``.spz``: nfsd_gs.formats) in the viewer.

Behind ``python -m nfsd_gs.view model.ply``.  Our own models sit at the
origin with z up and are framed by the run's evaluation camera; a scene from
another tool is framed around its median centre, at a distance proportional
to its size (``--up`` sets its up axis; INRIA captures are often ``-y``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from torch import Tensor

from ..config import CameraConfig

from .server import OrbitView, SplatScene
from .splats import SplatCloud, splat_cloud

#: Our evaluation camera sees an object of radius ~0.5 from 2.75: keep that ratio.
RADIUS_PER_EXTENT = 5.5


def framing_view(cloud: SplatCloud, up: str = "+z",
                 camera: CameraConfig = CameraConfig()) -> OrbitView:
    """The evaluation camera, moved back and re-centred if the scene is not our unit object."""
    centers = cloud.centers.astype(np.float64)  # [N, 3]
    center = np.median(centers, axis=0) if len(cloud) else np.zeros(3)
    extent = float(np.quantile(np.linalg.norm(centers - center, axis=1), 0.9)) if len(cloud) else 0.5
    ours = (up == "+z" and np.linalg.norm(center) < 0.25
            and extent <= 1.5 * camera.eval_radius / RADIUS_PER_EXTENT)
    if ours:
        return OrbitView(0.0, camera.eval_elevation, camera.eval_radius, camera.eval_fovy)
    return OrbitView(0.0, camera.eval_elevation, RADIUS_PER_EXTENT * max(extent, 1e-3),
                     camera.eval_fovy, tuple(float(v) for v in center), up)


def serve_ply(path: Path, host: str = "127.0.0.1", port: int = 8080, up: str = "+z",
              splats: Mapping[str, Tensor] | None = None) -> SplatScene:
    """Load ``path`` (any splat file: nfsd_gs.formats) and show it; returns the running scene."""
    if splats is None:
        from ..formats import load_splats

        splats = load_splats(path)
    cloud = splat_cloud(splats)
    scene = SplatScene.start(host, port, framing_view(cloud, up), label=f"nfsd_gs · {path.name}")
    gui = scene.server.gui
    gui.add_text("File", str(path), disabled=True)
    gui.add_number("Gaussians", len(cloud), disabled=True)
    scene.show(cloud)
    return scene

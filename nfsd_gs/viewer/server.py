"""The viser server and the one splat node it shows.

viser (https://viser.studio) serves its own web client over HTTP and a
websocket on one port and draws Gaussian splats in the browser (WebGL2,
sorted in a worker).  This module is the only place, with
:mod:`.training` and :mod:`.ply_view`, that imports it.

Coordinates: our world is z up with the object at the origin, azimuth 0 on
the +x axis (``nfsd_gs/cameras.py``); viser's default is z up too, so the
splats are sent as they are.  The initial browser camera is the run's
evaluation camera (azimuth 0, ``camera.eval_elevation``, ``eval_radius``,
``eval_fovy``): what the browser shows first is what ``snapshots/`` show first.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import viser

from .ports import find_free_port, url_of
from .splats import SplatCloud

@dataclass
class OrbitView:
    """Where the browser camera starts: on an orbit around ``look_at``.

    With ``up = "+z"`` this is ``nfsd_gs.cameras.orbit_cameras``' convention
    (azimuth 0 on +x, growing towards +y); another up axis rotates it along.
    """

    azimuth_deg: float = 0.0
    elevation_deg: float = 15.0
    radius: float = 2.75
    fovy_deg: float = 55.0
    look_at: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: str = "+z"  # one of +x, -x, +y, -y, +z, -z

    def up_vector(self) -> np.ndarray:  # [3]
        vector = np.zeros(3)
        vector["xyz".index(self.up[1])] = -1.0 if self.up[0] == "-" else 1.0
        return vector

    def position(self) -> np.ndarray:  # [3] world space
        up = self.up_vector()
        first = np.array([0.0, 0.0, 1.0]) if self.up[1] == "x" else np.array([1.0, 0.0, 0.0])
        second = np.cross(up, first)
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        direction = (math.cos(el) * (math.cos(az) * first + math.sin(az) * second)
                     + math.sin(el) * up)
        return np.asarray(self.look_at, dtype=np.float64) + self.radius * direction


class SplatScene:
    """A running viser server showing one set of Gaussians (replaced atomically on update)."""

    NODE = "/gaussians"

    def __init__(self, server: viser.ViserServer, url: str):
        self.server = server
        self.url = url
        self._handle: Optional[viser.GaussianSplatHandle] = None

    @classmethod
    def start(cls, host: str, port: int, view: OrbitView, label: str = "nfsd_gs") -> "SplatScene":
        """Listen on ``host:port`` (or the next free port) and set the initial camera."""
        free_port = find_free_port(host, port)
        with contextlib.redirect_stdout(io.StringIO()):  # viser prints a banner; we print one line
            server = viser.ViserServer(host=host, port=free_port, label=label, verbose=False)
        actual_port = server.get_port()
        if port not in (0, actual_port):
            print(f"viewer: port {port} is in use; using {actual_port}", file=sys.stderr)
        server.scene.set_up_direction(view.up)
        server.scene.world_axes.visible = False
        server.initial_camera.position = tuple(view.position())
        server.initial_camera.look_at = view.look_at
        server.initial_camera.up = tuple(view.up_vector())
        server.initial_camera.fov = math.radians(view.fovy_deg)
        return cls(server, url_of(host, actual_port))

    def show(self, cloud: SplatCloud) -> None:
        """Replace the Gaussians on every connected browser (and on those that connect later).

        viser keeps only the newest pending update of a node: a browser that is
        slower than the updates skips to the latest instead of queueing them.
        """
        if self._handle is None:
            self._handle = self.server.scene.add_gaussian_splats(
                self.NODE, centers=cloud.centers, covariances=cloud.covariances,
                rgbs=cloud.rgbs, opacities=cloud.opacities)
        else:
            self._handle.set_gaussians(cloud.centers, cloud.covariances, cloud.rgbs,
                                       cloud.opacities)

    def num_clients(self) -> int:
        return len(self.server.get_clients())

    def stop(self) -> None:
        self.server.stop()


"""Cameras on orbits around the origin.

Conventions (shared by every renderer, the bundled prior's data and the
exporters):

* world: right-handed, **z up**; the object sits at the origin;
* azimuth 0 places the camera on the +x axis ("front view"), azimuth grows
  counter-clockwise seen from above (towards +y); elevation is the angle above
  the xy-plane;
* camera: OpenCV / gsplat (x right, y down, z forward); ``world_to_camera`` are
  gsplat's ``viewmats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor

from .config import CameraConfig

VIEW_NAMES = ("front", "side", "back", "overhead")


@dataclass
class Cameras:
    """A batch of B pinhole cameras looking at the origin."""

    world_to_camera: Tensor  # [B, 4, 4] OpenCV convention
    fovy_deg: Tensor  # [B] vertical field of view
    azimuth_deg: Tensor  # [B] in [-180, 180)
    elevation_deg: Tensor  # [B]
    radius: Tensor  # [B] distance to the origin

    def __len__(self) -> int:
        return self.world_to_camera.shape[0]

    @property
    def device(self) -> torch.device:
        return self.world_to_camera.device

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(*(t.to(device) for t in (
            self.world_to_camera, self.fovy_deg, self.azimuth_deg, self.elevation_deg, self.radius)))

    def __getitem__(self, index) -> "Cameras":
        return Cameras(*(t[index] for t in (
            self.world_to_camera, self.fovy_deg, self.azimuth_deg, self.elevation_deg, self.radius)))

    @property
    def positions(self) -> Tensor:  # [B, 3] camera centres in world space
        rotation = self.world_to_camera[:, :3, :3]
        translation = self.world_to_camera[:, :3, 3:]
        return -(rotation.transpose(1, 2) @ translation)[..., 0]

    def intrinsics(self, width: int, height: int) -> Tensor:  # [B, 3, 3] in pixels
        """Square pixels, principal point at the image centre."""
        focal = 0.5 * height / torch.tan(torch.deg2rad(self.fovy_deg) / 2)  # [B]
        K = torch.zeros(len(self), 3, 3, dtype=self.world_to_camera.dtype, device=self.device)
        K[:, 0, 0] = focal
        K[:, 1, 1] = focal
        K[:, 0, 2] = width / 2
        K[:, 1, 2] = height / 2
        K[:, 2, 2] = 1
        return K

    def ray_directions(self, width: int, height: int) -> Tensor:  # [B, H, W, 3]
        """World-space directions through the pixel centres (u + 0.5, v + 0.5), scaled so
        their camera-space z component is 1; the rays start at :attr:`positions`."""
        K = self.intrinsics(width, height)  # [B, 3, 3]
        v, u = torch.meshgrid(torch.arange(height, device=self.device, dtype=K.dtype) + 0.5,
                              torch.arange(width, device=self.device, dtype=K.dtype) + 0.5,
                              indexing="ij")  # [H, W] each
        x = (u[None] - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None]  # [B, H, W]
        y = (v[None] - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None]  # [B, H, W]
        camera = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [B, H, W, 3]
        rotation = self.world_to_camera[:, :3, :3]  # [B, 3, 3] world -> camera
        return torch.einsum("bhwi,bij->bhwj", camera, rotation)  # R^T d, per pixel


def look_at_origin(positions: Tensor) -> Tensor:  # [B, 3] -> [B, 4, 4]
    """World-to-camera matrices (OpenCV axes) of cameras at ``positions`` facing the origin, z up."""
    forward = torch.nn.functional.normalize(-positions, dim=-1)  # [B, 3]
    up = torch.tensor([0.0, 0.0, 1.0], dtype=positions.dtype, device=positions.device)
    right = torch.cross(forward, up.expand_as(forward), dim=-1)
    # Straight above or below: any right vector orthogonal to z will do.
    degenerate = right.norm(dim=-1) < 1e-6
    right[degenerate] = torch.tensor([0.0, 1.0, 0.0], dtype=positions.dtype, device=positions.device)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.cross(forward, right, dim=-1)
    camera_to_world_rotation = torch.stack([right, down, forward], dim=-1)  # [B, 3, 3] columns
    world_to_camera = torch.eye(4, dtype=positions.dtype, device=positions.device).repeat(
        len(positions), 1, 1)
    world_to_camera[:, :3, :3] = camera_to_world_rotation.transpose(1, 2)
    world_to_camera[:, :3, 3] = -(camera_to_world_rotation.transpose(1, 2) @ positions[..., None])[..., 0]
    return world_to_camera


def orbit_cameras(azimuth_deg: Tensor, elevation_deg: Tensor, radius: Tensor,
                  fovy_deg: Tensor) -> Cameras:
    """Cameras from spherical coordinates; every argument is a [B] tensor."""
    azimuth_deg = torch.remainder(azimuth_deg + 180.0, 360.0) - 180.0
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    positions = radius[:, None] * torch.stack(
        [torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], dim=-1)
    return Cameras(look_at_origin(positions), fovy_deg, azimuth_deg, elevation_deg, radius)


def _uniform(low: float, high: float, n: int, generator: Optional[torch.Generator]) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float32)


class OrbitSampler:
    """Draws random cameras on the orbit ranges of a :class:`CameraConfig`."""

    def __init__(self, config: CameraConfig):
        self.config = config

    def sample(self, batch_size: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> Cameras:
        """B cameras with azimuth, elevation, radius and fov uniform in their ranges (CPU)."""
        c = self.config
        n = batch_size or c.batch_size
        return orbit_cameras(
            _uniform(*c.azimuth_range, n, generator),
            _uniform(*c.elevation_range, n, generator),
            _uniform(*c.radius_range, n, generator),
            _uniform(*c.fovy_range, n, generator),
        )

    def fixed_views(self, count: Optional[int] = None, elevation_deg: Optional[float] = None,
                    start_azimuth_deg: float = 0.0) -> Cameras:
        """``count`` evenly spaced azimuths at the evaluation radius, elevation and fov."""
        c = self.config
        n = count or c.eval_views
        azimuth = start_azimuth_deg + torch.arange(n, dtype=torch.float32) * (360.0 / n)
        full = lambda value: torch.full((n,), float(value))  # noqa: E731
        return orbit_cameras(azimuth, full(c.eval_elevation if elevation_deg is None else elevation_deg),
                             full(c.eval_radius), full(c.eval_fovy))


def view_direction(azimuth_deg: float, elevation_deg: float, config: CameraConfig) -> str:
    """DreamFusion's view-dependent prompt word: front, side, back or overhead."""
    if elevation_deg > config.overhead_elevation:
        return "overhead"
    azimuth = (azimuth_deg + 180.0) % 360.0 - 180.0
    if abs(azimuth) < config.front_threshold:
        return "front"
    if abs(azimuth) > 180.0 - config.back_threshold:
        return "back"
    return "side"


def view_prompts(prompt: str, cameras: Cameras, config: CameraConfig) -> List[str]:
    """One prompt per camera: ``"<prompt>, <direction> view"``."""
    return [
        f"{prompt}, {view_direction(float(a), float(e), config)} view"
        for a, e in zip(cameras.azimuth_deg.tolist(), cameras.elevation_deg.tolist())
    ]


def fov_to_focal(fov_deg: float, size: int) -> float:
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2)

"""Coloured point clouds and what every source of starting points does to them before they become Gaussians.

* :func:`axes_to_world`: a source's up/front convention -> the trainer's world
  (right-handed, z up, the "front view" camera on +x; see ``nfsd_gs/cameras.py``);
* :func:`fit_into_ball`: centre on the bounding-box centre, scale into ``radius``;
* :func:`grow_points`, :func:`jitter_colors`: GaussianDreamer's noisy point
  growing and colour perturbation (Yi et al. 2024, Sec. 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

AXIS_VECTORS = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


@dataclass
class PointCloud:
    """N coloured points in some coordinate frame."""

    positions: Tensor  # [N, 3] float32
    colors: Tensor  # [N, 3] float32, RGB in [0, 1]

    def __post_init__(self):
        self.positions = torch.as_tensor(self.positions, dtype=torch.float32)
        self.colors = torch.as_tensor(self.colors, dtype=torch.float32)
        n = self.positions.shape[0]
        if self.positions.shape != (n, 3) or self.colors.shape != (n, 3):
            raise ValueError(f"positions {tuple(self.positions.shape)} and colors "
                             f"{tuple(self.colors.shape)} must both be [N, 3]")

    def __len__(self) -> int:
        return self.positions.shape[0]

    def subset(self, index: Tensor) -> "PointCloud":
        return PointCloud(self.positions[index], self.colors[index])

    def concat(self, other: "PointCloud") -> "PointCloud":
        return PointCloud(torch.cat([self.positions, other.positions]),
                          torch.cat([self.colors, other.colors]))


def axis_vector(axis: str, key: str = "init.up_axis") -> np.ndarray:  # [3]
    """``"-y"`` -> (0, -1, 0)."""
    name = axis.lstrip("+-")
    if name not in AXIS_VECTORS or len(axis) - len(name) > 1:
        raise ConfigError(f"config key '{key}': {axis!r} is not an axis (x, -x, y, -y, z, -z)")
    sign = -1.0 if axis.startswith("-") else 1.0
    return sign * np.array(AXIS_VECTORS[name])


def axes_to_world(up_axis: str, front_axis: str) -> Tensor:  # [3, 3]
    """The rotation R (det +1) with R @ up = +z and R @ front = +x.

    Rows are (front, up x front, up): the source's front becomes world +x, its
    up world +z, and ``up x front`` world +y (so the frame stays right-handed).
    glTF (y up, +z front) gives ``world = (z, x, y)`` of the source point.
    """
    up, front = axis_vector(up_axis, "init.up_axis"), axis_vector(front_axis, "init.front_axis")
    if abs(float(up @ front)) > 0.5:
        raise ConfigError(f"config key 'init.front_axis': {front_axis!r} is not perpendicular "
                          f"to init.up_axis {up_axis!r}")
    rotation = np.stack([front, np.cross(up, front), up])
    return torch.from_numpy(rotation).float()


def to_world(cloud: PointCloud, up_axis: str, front_axis: str) -> PointCloud:
    """Rotate a cloud from its source convention into the trainer's world (z up, front +x)."""
    rotation = axes_to_world(up_axis, front_axis)  # [3, 3]
    return PointCloud(cloud.positions @ rotation.T, cloud.colors)


def fit_into_ball(cloud: PointCloud, radius: float) -> PointCloud:
    """Centre the bounding box on the origin and scale uniformly so the farthest point is at ``radius``."""
    positions = cloud.positions.double()  # [N, 3]
    centre = (positions.min(0).values + positions.max(0).values) / 2
    centred = positions - centre
    extent = centred.norm(dim=-1).max()
    scale = radius / extent if extent > 0 else 1.0
    return PointCloud((centred * scale).float(), cloud.colors)


def grow_points(cloud: PointCloud, count: int, radius: float,
                generator: Optional[torch.Generator] = None) -> PointCloud:
    """GaussianDreamer's noisy point growing: ``count`` new points near the surface.

    Each new point copies a random existing point (and its colour) and moves
    by a vector uniform in a ball of ``radius`` (scene units).  Returns the
    cloud with the new points appended.
    """
    if count <= 0 or len(cloud) == 0:
        return cloud
    source = torch.randint(len(cloud), (count,), generator=generator)  # [M]
    offsets = uniform_in_ball(count, generator) * radius  # [M, 3]
    grown = PointCloud(cloud.positions[source] + offsets, cloud.colors[source])
    return cloud.concat(grown)


def jitter_colors(cloud: PointCloud, std: float,
                  generator: Optional[torch.Generator] = None) -> PointCloud:
    """GaussianDreamer's colour perturbation: add N(0, std^2) to each RGB value, clamp to [0, 1]."""
    if std <= 0:
        return cloud
    noise = torch.randn(cloud.colors.shape, generator=generator) * std  # [N, 3]
    return PointCloud(cloud.positions, (cloud.colors + noise).clamp(0.0, 1.0))


def uniform_in_ball(n: int, generator: Optional[torch.Generator] = None) -> Tensor:  # [n, 3]
    """Points uniform in the unit ball (direction uniform on the sphere, radius ~ u^(1/3))."""
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    radius = torch.rand(n, 1, generator=generator) ** (1.0 / 3.0)
    return direction * radius


def random_subset(cloud: PointCloud, count: int,
                  generator: Optional[torch.Generator] = None) -> PointCloud:
    """At most ``count`` points, chosen at random without replacement."""
    if len(cloud) <= count:
        return cloud
    return cloud.subset(torch.randperm(len(cloud), generator=generator)[:count])

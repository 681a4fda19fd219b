"""Rays, samples and alpha compositing for the NeRF backend (Mildenhall et al. 2020).

Stateless functions, batched over rays:

* :func:`camera_rays` - one ray per pixel centre of each camera (OpenCV camera,
  z-up world, see ``nfsd_gs/cameras.py``).  Directions are scaled so that their
  camera-space z component is 1: the ray parameter t *is* the depth along the
  camera z axis, and world distances are t * |d|.
* :func:`intersect_sphere` - the [t_near, t_far] interval inside the bounding sphere.
* :func:`stratified_samples` - one jittered sample per equal bin (NeRF Sec. 4).
* :func:`composite` - the quadrature of NeRF eq. 3:
  C = sum_i T_i (1 - exp(-sigma_i delta_i)) c_i,  T_i = exp(-sum_{j<i} sigma_j delta_j).
* :class:`OccupancyGrid` - Instant-NGP's occupancy bitfield (Müller et al. 2022,
  Appendix E.2): samples in cells whose density stays below a threshold are
  skipped, i.e. the field is not evaluated there.
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras


def camera_rays(cameras: Cameras, width: int, height: int) -> Tuple[Tensor, Tensor]:
    """Origins [B, H, W, 3] and directions [B, H, W, 3] (camera z component 1) in world space.

    Pixel (u, v) looks through its centre (u + 0.5, v + 0.5); camera-to-world
    is the inverse of ``cameras.world_to_camera``.
    """
    dirs = cameras.ray_directions(width, height)  # [B, H, W, 3]
    origins = cameras.positions[:, None, None, :].expand_as(dirs)  # [B, H, W, 3]
    return origins, dirs


def intersect_sphere(origins: Tensor, dirs: Tensor, radius: float,
                     near: float = 0.0) -> Tuple[Tensor, Tensor, Tensor]:
    """Where rays o + t d [R, 3] cross the sphere |x| = radius: t_near [R], t_far [R], hit [R].

    Solves |o + t d|^2 = r^2; t_near is clamped to ``near`` (a camera inside
    the sphere starts at its near plane).  Missed rays get t_near = t_far.
    """
    a = (dirs * dirs).sum(-1)  # [R]
    b = (origins * dirs).sum(-1)  # [R]
    c = (origins * origins).sum(-1) - radius ** 2  # [R]
    disc = b * b - a * c
    root = torch.sqrt(disc.clamp(min=0.0))
    t_near = ((-b - root) / a).clamp(min=near)
    t_far = (-b + root) / a
    hit = (disc > 0) & (t_far > t_near)
    t_far = torch.where(hit, t_far, t_near)
    return t_near, t_far, hit


def stratified_samples(t_near: Tensor, t_far: Tensor, num_samples: int,
                       jitter: bool) -> Tuple[Tensor, Tensor]:
    """Sample depths t [R, S] (one per equal bin, uniform inside it if ``jitter``, else
    the bin centre) and the bin widths dt [R, 1]."""
    bins = torch.arange(num_samples, device=t_near.device, dtype=t_near.dtype)  # [S]
    offsets = (torch.rand(t_near.shape[0], num_samples, device=t_near.device, dtype=t_near.dtype)
               if jitter else torch.full_like(bins, 0.5)[None])
    dt = ((t_far - t_near) / num_samples)[:, None]  # [R, 1]
    return t_near[:, None] + (bins[None] + offsets) * dt, dt


def composite(sigma: Tensor, rgb: Tensor, t: Tensor, delta: Tensor
              ) -> Tuple[Tensor, Tensor, Tensor]:
    """NeRF eq. 3 for R rays of S samples: colour [R, 3], opacity [R, 1], expected depth [R, 1].

    sigma [R, S] (1/world unit), rgb [R, S, 3], t [R, S] sample depths, delta [R, S]
    world-space interval lengths.  Depth is the expected t over the visible
    part of the ray (normalised by opacity, as gsplat's "ED" mode).
    """
    optical = sigma * delta  # [R, S]
    alpha = 1.0 - torch.exp(-optical)
    # Exclusive cumulative sum: T_i = exp(-sum_{j<i} sigma_j delta_j).
    transmittance = torch.exp(-(torch.cumsum(optical, dim=-1) - optical))
    weights = alpha * transmittance  # [R, S]
    opacity = weights.sum(-1, keepdim=True)  # [R, 1]
    color = (weights[..., None] * rgb).sum(-2)  # [R, 3]
    depth = (weights * t).sum(-1, keepdim=True) / opacity.clamp(min=1e-10)  # [R, 1]
    return color, opacity, depth


class OccupancyGrid(torch.nn.Module):
    """A G^3 grid over the cube [-bound, bound]^3 marking where the density may be non-zero.

    ``density`` keeps, per cell, max(decay * previous, new estimate) of sigma
    (Instant-NGP App. E.2); a cell is occupied when sigma * step exceeds
    ``threshold`` (or the mean, whichever is lower), dilated by one cell so the
    surface can grow into its neighbours.  Until the first refresh every cell counts as
    occupied.
    """

    def __init__(self, resolution: int, bound: float):
        super().__init__()
        self.resolution = resolution
        self.bound = bound
        self.register_buffer("density", torch.full((resolution,) * 3, float("inf")))  # [G, G, G]
        self.register_buffer("occupied", torch.ones((resolution,) * 3, dtype=torch.bool))

    def cell_index(self, points: Tensor) -> Tensor:  # [N, 3] world -> [N, 3] int64
        unit = (points / self.bound + 1.0) * 0.5  # [N, 3] in [0, 1]
        return (unit * self.resolution).long().clamp(0, self.resolution - 1)

    def query(self, points: Tensor) -> Tensor:  # [N, 3] world -> [N] bool
        """Whether each point lies in an occupied cell."""
        i = self.cell_index(points)
        return self.occupied[i[:, 0], i[:, 1], i[:, 2]]

    @torch.no_grad()
    def refresh(self, density_fn: Callable[[Tensor], Tensor], step_size: float,
                threshold: float, decay: float = 0.95, chunk: int = 65536) -> None:
        """Re-estimate every cell's density at a random point inside it (no gradients)."""
        g = self.resolution
        device = self.density.device
        axes = torch.arange(g, device=device)
        cells = torch.stack(torch.meshgrid(axes, axes, axes, indexing="ij"), dim=-1).view(-1, 3)
        points = ((cells + torch.rand(cells.shape, device=device)) / g * 2.0 - 1.0) * self.bound
        fresh = torch.cat([density_fn(p) for p in points.split(chunk)]).view(g, g, g)
        previous = torch.where(torch.isinf(self.density), torch.zeros_like(fresh), self.density)
        self.density.copy_(torch.maximum(previous * decay, fresh))
        level = min(float(self.density.mean()) * step_size, threshold)
        occupied = (self.density * step_size) > level
        dilated = F.max_pool3d(occupied[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
        self.occupied.copy_(dilated)

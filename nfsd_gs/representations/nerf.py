"""The paper's baseline: a hash-grid radiance field rendered by volume rendering.

The NFSD paper (Katzir et al. 2024) optimizes a NeRF in threestudio; this is
that setup in plain PyTorch, behind the same :class:`~.base.Representation`
interface as the Gaussians, so the trainer, cameras, prior and guidance are shared.

Field (threestudio's "implicit-volume" geometry with "no-material" colour):

* encoding: multi-resolution hash grid (Instant-NGP, Müller et al. 2022), see ``hashgrid.py``;
* trunk MLP: encoding -> hidden (ReLU) -> 1 raw density + ``feature_dim`` features;
* density: sigma = softplus(raw + blob(x)), with the density bias
  blob(x) = blob_density * (1 - |x| / blob_radius) added before the activation.
  This is threestudio's ``blob_magic3d`` (Magic3D, Lin et al. 2023), chosen over
  DreamFusion's Gaussian blob lambda * exp(-|x|^2 / (2 nu^2)) (Poole et al. 2022,
  App. A.2) because its negative tail makes space outside the blob empty from the
  first step, which the occupancy grid then skips;
* colour: features -> hidden (ReLU) -> 3 -> sigmoid; view independent (as in
  threestudio's text-to-3D presets: the prior cannot supervise view-dependent effects).

Rendering: rays through pixel centres, clipped to the bounding sphere,
``samples_per_ray`` stratified samples, samples in empty occupancy-grid cells
skipped, NeRF eq. 3 compositing over the per-view background
(rgb + (1 - alpha) * bg), expected depth along the camera z axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..cameras import Cameras
from ..config import Config, NerfConfig, OutputConfig
from ..errors import ConfigError
from .base import RenderOutput
from .hashgrid import HashGrid
from .volume import OccupancyGrid, camera_rays, composite, intersect_sphere, stratified_samples


def mlp(in_dim: int, hidden: int, out_dim: int) -> torch.nn.Sequential:
    """One hidden layer, ReLU (threestudio's "VanillaMLP" with n_hidden_layers=1)."""
    return torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(inplace=True),
                               torch.nn.Linear(hidden, out_dim))


class NerfField(torch.nn.Module):
    """Hash-grid density and colour inside a sphere of radius ``config.bound_radius``."""

    def __init__(self, config: NerfConfig, near_plane: float = 0.01):
        super().__init__()
        self.config = config
        self.near_plane = near_plane
        self.encoding = HashGrid(config.num_levels, config.features_per_level,
                                 config.log2_table_size, config.base_resolution,
                                 config.max_resolution)
        self.trunk = mlp(self.encoding.output_dim, config.hidden_dim, 1 + config.feature_dim)
        self.color_net = mlp(config.feature_dim, config.hidden_dim, 3)
        self.occupancy = OccupancyGrid(config.occupancy_resolution, config.bound_radius)
        self.active_resolution: Optional[int] = None  # set by update() during the coarse phase

    @classmethod
    def from_config(cls, config: Config, device: torch.device) -> "NerfField":
        if config.nerf.bound_radius >= min(config.camera.radius_range):
            raise ConfigError(
                f"config key 'nerf.bound_radius': {config.nerf.bound_radius!r} must be smaller "
                f"than the nearest camera distance (camera.radius_range {list(config.camera.radius_range)})")
        return cls(config.nerf, near_plane=config.render.near_plane).to(device)

    # ------------------------------------------------------------------ field

    def density_bias(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """threestudio's blob_magic3d: blob_density * (1 - |x| / blob_radius), pre-activation."""
        c = self.config
        return c.blob_density * (1.0 - points.norm(dim=-1) / c.blob_radius)

    def _trunk(self, points: Tensor) -> Tensor:  # [N, 3] world -> [N, 1 + feature_dim]
        unit = (points / self.config.bound_radius + 1.0) * 0.5  # [-R, R]^3 -> [0, 1]^3
        return self.trunk(self.encoding(unit))

    def query(self, points: Tensor):  # [N, 3] -> sigma [N], rgb [N, 3]
        """Density (1/scene unit) and colour in [0, 1] at world points."""
        out = self._trunk(points)
        sigma = F.softplus(out[:, 0] + self.density_bias(points))
        rgb = torch.sigmoid(self.color_net(out[:, 1:]))
        return sigma, rgb

    def density(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        return F.softplus(self._trunk(points)[:, 0] + self.density_bias(points))

    def color(self, points: Tensor) -> Tensor:  # [N, 3] -> [N, 3]
        return self.query(points)[1]

    # ------------------------------------------------------------------ rendering

    @property
    def step_size(self) -> float:
        """Sample spacing of a ray through the centre (scene units)."""
        return 2.0 * self.config.bound_radius / self.config.samples_per_ray

    def render_rays(self, origins: Tensor, dirs: Tensor, background: Tensor):
        """Colour [R, 3] over ``background`` [R, 3], opacity [R, 1], depth [R, 1] of R rays."""
        c = self.config
        t_near, t_far, hit = intersect_sphere(origins, dirs, c.bound_radius, self.near_plane)
        t, dt = stratified_samples(t_near, t_far, c.samples_per_ray, jitter=torch.is_grad_enabled())
        points = origins[:, None, :] + t[..., None] * dirs[:, None, :]  # [R, S, 3]
        flat = points.reshape(-1, 3)  # [R*S, 3]
        keep = hit[:, None].expand_as(t).reshape(-1)  # [R*S]
        if c.occupancy:
            keep = keep & self.occupancy.query(flat)
        index = keep.nonzero()[:, 0]  # [K]
        sigma_k, rgb_k = self.query(flat[index])
        sigma = flat.new_zeros(flat.shape[0]).index_put((index,), sigma_k).view(t.shape)  # [R, S]
        rgb = flat.new_zeros(flat.shape).index_put((index,), rgb_k).view(points.shape)  # [R, S, 3]
        delta = (dt * dirs.norm(dim=-1, keepdim=True)).expand_as(t)  # [R, S] world lengths
        color, opacity, depth = composite(sigma, rgb, t, delta)
        return color + (1.0 - opacity) * background, opacity, depth

    def _render_chunk(self, origins: Tensor, dirs: Tensor, background: Tensor) -> Tensor:
        return torch.cat(self.render_rays(origins, dirs, background), dim=-1)  # [R, 5]

    def render(self, cameras: Cameras, width: int, height: int,
               background: Tensor) -> RenderOutput:
        """Volume-render B cameras at width x height over ``background`` [B, 3].

        During the coarse phase (see :meth:`update`), renders that need
        gradients are made at ``coarse_resolution`` and upsampled bilinearly.
        """
        if width < 1 or height < 1:
            raise ConfigError(f"render size {width}x{height} must be positive")
        size = self.active_resolution
        if torch.is_grad_enabled() and size is not None and size < max(width, height):
            scale = size / max(width, height)
            low_w, low_h = max(1, round(width * scale)), max(1, round(height * scale))
            low = self._render_full(cameras, low_w, low_h, background)
            return RenderOutput(*(upsample(x, width, height) for x in (low.rgb, low.alpha, low.depth)),
                                info={"render_resolution": (low_w, low_h)})
        return self._render_full(cameras, width, height, background)

    def _render_full(self, cameras: Cameras, width: int, height: int,
                     background: Tensor) -> RenderOutput:
        b = len(cameras)
        origins, dirs = camera_rays(cameras, width, height)  # [B, H, W, 3] each
        bg = background.to(origins)[:, None, None, :].expand(b, height, width, 3)
        rays = [x.reshape(-1, 3) for x in (origins, dirs, bg)]
        outputs = []
        for o, d, g in zip(*(x.split(self.config.chunk_rays) for x in rays)):
            if torch.is_grad_enabled() and self.config.gradient_checkpointing:
                outputs.append(checkpoint(self._render_chunk, o, d, g, use_reentrant=False))
            else:
                outputs.append(self._render_chunk(o, d, g))
        out = torch.cat(outputs).view(b, height, width, 5)
        return RenderOutput(rgb=out[..., :3], alpha=out[..., 3:4], depth=out[..., 4:5],
                            info={"render_resolution": (width, height)})

    # ------------------------------------------------------------------ optimization

    def make_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """Adam on the hash tables and on the MLPs (threestudio's lrs, betas (0.9, 0.99), eps
        1e-15), fused (one kernel per step and optimizer)."""
        c = self.config
        adam = dict(betas=(0.9, 0.99), eps=1e-15, fused=True)
        return {
            "grid": torch.optim.Adam(self.encoding.parameters(), lr=c.grid_lr, **adam),
            "mlp": torch.optim.Adam([*self.trunk.parameters(), *self.color_net.parameters()],
                                    lr=c.mlp_lr, **adam),
        }

    def update(self, step: int, total_steps: int,
               optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Occupancy-grid refresh every ``occupancy_update_every`` steps; resolution schedule."""
        c = self.config
        self.active_resolution = c.coarse_resolution if step < c.coarse_steps else None
        if c.occupancy and step % c.occupancy_update_every == 0:
            self.refresh_occupancy()

    def refresh_occupancy(self) -> None:
        c = self.config
        self.occupancy.refresh(self.density, self.step_size, c.occupancy_threshold,
                               c.occupancy_decay, chunk=max(c.chunk_rays, 4096) * 8)

    def make_densifier(self, config, optimizers) -> None:
        """A field does not grow or prune: no densifier."""
        return None

    def finish(self) -> None:
        self.active_resolution = None

    def regularization(self, step: int, total_steps: int) -> Dict[str, Tensor]:
        """No geometry terms: the field's density needs none (the Gaussians' are in
        ``gaussians.*_weight``)."""
        return {}

    count_name = "occupied_cells"

    @property
    def num_primitives(self) -> int:
        """Occupied cells of the occupancy grid (all of them until its first refresh):
        how much space the field fills, where the samples are evaluated."""
        return int(self.occupancy.occupied.sum())

    def gaussians(self) -> None:
        return None

    # state_dict / load_state_dict: torch.nn.Module's (hash tables, MLPs, occupancy grid).

    # ------------------------------------------------------------------ export

    def mesh(self, settings):
        """The density's iso-surface at ``nerf.mesh_threshold`` in the bounding cube."""
        from ..export.mesh import extract_mesh

        return extract_mesh(self, settings.resolution, self.config.mesh_threshold,
                            self.config.bound_radius, settings.faces)

    def export(self, run_dir: Path, output: Optional[OutputConfig] = None) -> Path:
        """``mesh.ply`` (+ ``mesh.obj``) by marching cubes, ``model.ply`` as Gaussians; returns mesh.ply."""
        from ..export.mesh import export_field

        return export_field(self, Path(run_dir))


def upsample(image: Tensor, width: int, height: int) -> Tensor:  # [B, h, w, C] -> [B, H, W, C]
    """Bilinear resize of channel-last images (threestudio's coarse renders are resized the same way)."""
    chw = image.permute(0, 3, 1, 2)
    return F.interpolate(chw, size=(height, width), mode="bilinear",
                         align_corners=False).permute(0, 2, 3, 1)

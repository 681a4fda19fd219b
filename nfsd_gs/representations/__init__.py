"""3D representations behind one interface (see base.py): Gaussians, NeRF."""

from __future__ import annotations

import torch

from ..config import Config
from .base import RenderOutput, Representation  # noqa: F401
from .gaussians import GaussianModel  # noqa: F401


def scene_extent(config: Config) -> float:
    """Size of the scene in world units: the diameter of the initial object."""
    return 2.0 * config.init.radius


def build_representation(config: Config, device: torch.device) -> Representation:
    """The representation named by ``config.representation``, initialised on ``device``."""
    if config.representation == "gaussians":
        from ..init import initial_splats

        splats = initial_splats(config.init, config.gaussians.sh_degree, config.prompt, device)
        return GaussianModel({k: v.to(device) for k, v in splats.items()}, config.gaussians,
                             config.render, scene_extent=scene_extent(config))
    from .nerf import NerfField  # the paper's baseline

    return NerfField.from_config(config, device)

"""3D representations behind one interface (see base.py): Gaussians, NeRF.

:data:`BACKENDS` maps each value of ``config.representation`` to the class that
builds it; nothing else in the package names a representation.
"""

from __future__ import annotations

from typing import Callable, Dict, get_args

import torch

from ..config import Config, RepresentationName
from .base import RenderOutput, Representation  # noqa: F401
from .gaussians import GaussianModel  # noqa: F401


def _nerf(config: Config, device: torch.device) -> Representation:
    from .nerf import NerfField  # the paper's baseline; imported only when asked for

    return NerfField.from_config(config, device)


#: ``config.representation`` -> a builder ``(config, device) -> Representation``.
BACKENDS: Dict[str, Callable[[Config, torch.device], Representation]] = {
    "gaussians": GaussianModel.from_config,
    "nerf": _nerf,
}
assert set(BACKENDS) == set(get_args(RepresentationName)), "one builder per representation"


def build_representation(config: Config, device: torch.device) -> Representation:
    """The representation named by ``config.representation``, initialised on ``device``."""
    return BACKENDS[config.representation](config, device)

"""What every 3D representation offers the trainer.

The trainer sees a representation only through :class:`Representation`:
render a batch of cameras, hand out optimizers, save and load its state.
Gaussians (``gaussians.py``) and the NeRF baseline (``nerf.py``) implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..cameras import Cameras


@dataclass
class RenderOutput:
    rgb: Tensor  # [B, H, W, 3] in [0, 1], composited over the background
    alpha: Tensor  # [B, H, W, 1] accumulated opacity
    depth: Tensor  # [B, H, W, 1] expected depth along the camera z axis
    #: Renderer-specific extras; for Gaussians gsplat's ``info`` dict
    #: (means2d, radii, width, height, n_cameras, ...) used by densification.
    info: Dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Representation(Protocol):
    def render(self, cameras: Cameras, width: int, height: int,
               background: Tensor) -> RenderOutput:
        """Render B cameras at width x height over ``background`` [B, 3]."""

    def make_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """One optimizer per parameter group (gsplat's strategies need that for Gaussians)."""

    def update(self, step: int, total_steps: int,
               optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Per-step schedules (learning rates, SH degree...) before rendering ``step``."""

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> Any: ...

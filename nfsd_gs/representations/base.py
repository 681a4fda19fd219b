"""What every 3D representation offers the trainer.

The trainer, the evaluation, the benchmark and the viewer see a representation
only through :class:`Representation` (as nerfstudio's trainer never names a
field type): render a batch of cameras, hand out optimizers and a densifier,
follow per-step schedules, count its primitives, export itself, save and load
its state. Gaussians (``gaussians.py``) and the NeRF baseline (``nerf.py``)
implement it; a new backend is one module implementing it plus one entry in
:data:`nfsd_gs.representations.BACKENDS` and the ``representation`` Literal of
:class:`nfsd_gs.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..cameras import Cameras
from ..config import DensifyConfig, OutputConfig


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

    def make_densifier(self, config: DensifyConfig,
                       optimizers: Mapping[str, torch.optim.Optimizer]) -> Optional[Any]:
        """Adaptive density control over these optimizers (a ``nfsd_gs.densify.Densifier``),
        or None for a representation that does not grow or prune."""

    def update(self, step: int, total_steps: int,
               optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Per-step schedules (learning rates, SH degree...) before rendering ``step``."""

    def finish(self) -> None:
        """Put every schedule at its end state (full SH degree...): a finished model."""

    def regularization(self, step: int, total_steps: int) -> Dict[str, Tensor]:
        """Terms the trainer adds to the distillation loss at ``step`` (``{name: weighted
        0-d tensor}``, logged as ``reg_<name>``); ``{}`` for none."""

    #: What :attr:`num_primitives` counts, as the progress bar names it ("gaussians").
    count_name: str

    @property
    def num_primitives(self) -> int:
        """How many primitives it holds (Gaussians; a field's occupied grid cells)."""

    def gaussians(self) -> Optional[Mapping[str, Tensor]]:
        """Its parameters in gsplat's layout (means, scales, quats, opacities, sh0, shN)
        when it is made of Gaussians (the live viewer draws them), else None."""

    def mesh(self, settings: Any) -> Any:
        """Its surface as a coloured ``trimesh.Trimesh`` (``settings``: an
        ``nfsd_gs.export.mesh.MeshSettings``); ``EmptyMeshError`` when there is none."""

    def export(self, run_dir: Path, output: OutputConfig) -> Path:
        """Write the run's result into ``run_dir`` (``model.ply`` at least, and what ``output``
        asks for: ``output.formats``...); returns the main file's path."""

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> Any: ...

"""Gaussians in gsplat's parameter layout -> what a browser splat renderer draws.

No viser here: these are plain tensor functions, tested on their own.

The parameters (see ``nfsd_gs/representations/gaussians.py``) are stored
unconstrained: log scales, unnormalised wxyz quaternions, opacity logits and
spherical-harmonic coefficients.  A splat renderer wants, per Gaussian, a
centre, a 3x3 world-space covariance ``Sigma = R S S^T R^T`` (3DGS, Kerbl et
al. 2023, Eq. 6), an RGB colour and an opacity in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping

import numpy as np
import torch
from torch import Tensor

from ..render.sh import SH_C0  # Y_0^0 = 1 / (2 sqrt(pi))

#: The parameters the browser needs (shN is view-dependent colour, which
#: viser's splat renderer does not draw).
VIEW_KEYS = ("means", "scales", "quats", "opacities", "sh0")


@dataclass
class SplatCloud:
    """One entry per Gaussian, float32 numpy arrays on the host (viser's layout)."""

    centers: np.ndarray  # [N, 3] world space, z up
    covariances: np.ndarray  # [N, 3, 3] world space
    rgbs: np.ndarray  # [N, 3] in [0, 1]
    opacities: np.ndarray  # [N, 1] in [0, 1]

    def __len__(self) -> int:
        return self.centers.shape[0]


def host_copy(splats: Mapping[str, Tensor], keys=VIEW_KEYS) -> Dict[str, Tensor]:
    """Detached CPU copies of ``keys``: safe to read in another thread while training goes on.

    On CUDA this is the one host synchronisation of a viewer update.
    """
    return {key: splats[key].detach().to("cpu", copy=True) for key in keys}


def rotation_matrices(quats: Tensor) -> Tensor:  # [N, 4] wxyz -> [N, 3, 3]
    """Rotation matrices of (not necessarily unit) quaternions in w, x, y, z order."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def covariances(log_scales: Tensor, quats: Tensor) -> Tensor:  # [N, 3], [N, 4] -> [N, 3, 3]
    """World-space covariances ``R diag(s)^2 R^T`` with ``s = exp(log_scales)`` (3DGS Eq. 6)."""
    rotation_scaled = rotation_matrices(quats) * torch.exp(log_scales)[:, None, :]  # R S
    return rotation_scaled @ rotation_scaled.transpose(1, 2)


def rgb_from_sh_dc(sh0: Tensor) -> Tensor:  # [N, 1, 3] -> [N, 3] in [0, 1]
    """The view-independent colour of degree-0 SH coefficients: ``0.5 + C0 * f_dc``, clamped."""
    return (0.5 + SH_C0 * sh0[:, 0, :]).clamp(0.0, 1.0)


@torch.no_grad()
def splat_cloud(splats: Mapping[str, Tensor]) -> SplatCloud:
    """gsplat-layout parameters (any device) -> a :class:`SplatCloud` on the host."""
    params = {key: splats[key].detach().float().cpu() for key in VIEW_KEYS}
    return SplatCloud(
        centers=params["means"].numpy().astype(np.float32),
        covariances=covariances(params["scales"], params["quats"]).numpy().astype(np.float32),
        rgbs=rgb_from_sh_dc(params["sh0"]).numpy().astype(np.float32),
        opacities=torch.sigmoid(params["opacities"])[:, None].numpy().astype(np.float32),
    )

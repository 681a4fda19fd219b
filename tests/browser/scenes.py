"""Small known scenes for the viewer, video and browser tests.

``red_blue_blobs``: a red blob at -y and a blue blob at +y, in gsplat's
parameter layout.  Our cameras at azimuth 0 sit on +x looking at the origin,
z up, so their image has +y on the right: red on the left, blue on the right.
"""

from __future__ import annotations

import math
from typing import Dict

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814


def red_blue_blobs(per_blob: int = 400, spread: float = 0.08, offset: float = 0.45,
                   size: float = 0.04, seed: int = 0) -> Dict[str, Tensor]:
    """2 * ``per_blob`` opaque isotropic Gaussians (``size`` std), blobs of std ``spread`` at y = -/+ offset."""
    generator = torch.Generator().manual_seed(seed)
    n = 2 * per_blob
    means = torch.randn(n, 3, generator=generator) * spread  # [N, 3]
    means[:per_blob, 1] -= offset
    means[per_blob:, 1] += offset
    rgb = torch.zeros(n, 3)  # [N, 3]
    rgb[:per_blob, 0] = 1.0
    rgb[per_blob:, 2] = 1.0
    return {
        "means": means,
        "scales": torch.full((n, 3), math.log(size)),  # log std
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),  # wxyz identity
        "opacities": torch.full((n,), 4.0),  # logit: sigmoid(4) = 0.98
        "sh0": ((rgb - 0.5) / SH_C0)[:, None, :],  # [N, 1, 3]: DC colour = rgb
        "shN": torch.zeros(n, 0, 3),  # degree 0
    }

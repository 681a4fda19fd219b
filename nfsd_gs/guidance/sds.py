"""Score Distillation Sampling (Poole et al., DreamFusion, 2022, eq. 3), for comparison.

    grad_x = w(t) (eps_cfg(z_t; y, s) - noise)

It needs a large guidance scale (~100) to give sharp results; the noise term
it subtracts is what NFSD removes.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from .base import DistillationMethod
from .cfg import classifier_free_guidance


def sds_direction(eps_cond: Tensor, eps_uncond: Tensor, noise: Tensor,
                  cfg_scale: float) -> Tensor:
    """eps_cfg - noise for each row (shapes [B, C, h, w])."""
    return classifier_free_guidance(eps_cond, eps_uncond, cfg_scale) - noise


class Sds(DistillationMethod):
    """SDS: two branches (prompt, empty) and eps_cfg - noise."""

    def direction(self, eps: Mapping[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        return sds_direction(eps["cond"], eps["uncond"], noise, self.config.cfg_scale)

"""Noise-Free Score Distillation (Katzir, Patashnik, Cohen-Or, Lischinski; ICLR 2024).

The score-distillation gradient is decomposed into a condition term, a domain
term and a noise term; NFSD keeps the first two and drops the noise
(arXiv 2310.17590, Sec. 4, eqs. 7-9):

    delta_C = eps(z_t; y) - eps(z_t; empty)
    delta_D = eps(z_t; empty)                          if t < 200
            = eps(z_t; empty) - eps(z_t; p_neg)        otherwise
    grad_x  = w(t) (delta_D + s delta_C)

``guidance.negative_scale`` (lambda, 1 by default: the paper) weighs the second line,
lambda (eps(z_t; empty) - eps(z_t; p_neg)): a lever, not the paper's.

For small t the unconditional prediction is already a good domain direction;
for large t the negative prompt ("unrealistic, blurry, ...") steers away from
the off-manifold content it describes.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor

from .base import DistillationMethod


def nfsd_direction(eps_cond: Tensor, eps_uncond: Tensor, eps_negative: Tensor, t: Tensor,
                   cfg_scale: float, negative_threshold_t: int,
                   negative_scale: float = 1.0) -> Tensor:
    """delta_D + s delta_C for each row (shapes [B, C, h, w]; t [B] long), eqs. 7-9, the
    negative term weighted by ``negative_scale`` (1: the paper).

    Rows with t < negative_threshold_t never read eps_negative (it may be NaN there: the
    U-Net call leaves those rows out)."""
    delta_c = eps_cond - eps_uncond
    below = _below(t, negative_threshold_t, eps_cond.dim())
    delta_d = torch.where(below, eps_uncond, negative_term(eps_uncond, eps_negative, t,
                                                           negative_threshold_t, negative_scale))
    return delta_d + cfg_scale * delta_c


def negative_term(eps_uncond: Tensor, eps_negative: Tensor, t: Tensor,
                  negative_threshold_t: int, negative_scale: float) -> Tensor:
    """lambda (eps(z_t; empty) - eps(z_t; p_neg)) on the rows with t >= negative_threshold_t
    and 0 on the others (shapes [B, C, h, w]; t [B] long): eq. 8's second line alone, the
    negative prompt's repulsion, for a method that has no domain term of its own (VSD's
    ``guidance.vsd.domain_scale``). Rows below the threshold never read eps_negative."""
    below = _below(t, negative_threshold_t, eps_uncond.dim())
    return (negative_scale * (eps_uncond - eps_negative)).masked_fill(below, 0.0)


def negative_views(config, t: Tensor) -> Optional[Tensor]:  # t [B] on the host
    """The views whose negative-prompt prediction eq. 8 reads (t >= the threshold) when
    ``guidance.negative_where_used``; None (every view) otherwise."""
    return t >= config.negative_threshold_t if config.negative_where_used else None


def _below(t: Tensor, threshold: int, dims: int) -> Tensor:  # [B, 1, ..., 1] bool
    return (t < threshold).view(-1, *([1] * (dims - 1)))


class Nfsd(DistillationMethod):
    """NFSD: three branches (prompt, empty, negative) and the direction of eqs. 7-9; the
    negative prompt only for the views whose t >= negative_threshold_t
    (``guidance.negative_where_used``), the only rows delta_D reads it for."""

    branches = ("cond", "uncond", "negative")

    def views_needed(self, branch: str, t: Tensor) -> Optional[Tensor]:  # t [B] on the host
        return negative_views(self.config, t) if branch == "negative" else None

    def direction(self, eps: Mapping[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        c = self.config
        return nfsd_direction(eps["cond"], eps["uncond"], eps["negative"], t, c.cfg_scale,
                              c.negative_threshold_t, c.negative_scale)

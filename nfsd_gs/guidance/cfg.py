"""Classifier-free guidance, written one way, in one place (Ho & Salimans 2022).

    eps_cfg = eps_uncond + s * (eps_cond - eps_uncond)

threestudio writes ``eps_cond + s * (eps_cond - eps_uncond)``: its scale 100 is our 101.
"""

from __future__ import annotations

from torch import Tensor


def classifier_free_guidance(eps_cond: Tensor, eps_uncond: Tensor, scale: float) -> Tensor:
    """eps_uncond + scale (eps_cond - eps_uncond); any matching shapes."""
    return eps_uncond + scale * (eps_cond - eps_uncond)

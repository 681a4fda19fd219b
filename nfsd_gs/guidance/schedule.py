"""Which diffusion timesteps a step distills from, and how much each counts.

Timesteps are drawn uniformly from [t_min, t_max] (fractions of the prior's
training steps, DreamFusion's U[0.02, 0.98]); ``t_max`` may anneal linearly
down to ``t_max_end`` so late steps refine details (ProlificDreamer, Wang et
al. 2023, switches t_max from 0.98 to 0.5 after its first phase; here the
decay is linear; the NFSD paper itself does not say how it draws t).  w(t) follows DreamFusion (Poole et al. 2022, eq. 3).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..config import GuidanceConfig


def max_timestep_fraction(config: GuidanceConfig, step: int, total_steps: int) -> float:
    """t_max at ``step``: constant, or linear from t_max to t_max_end over
    [t_anneal_start, t_anneal_end] (fractions of ``total_steps``)."""
    if config.t_anneal == "none" or total_steps <= 0:
        return config.t_max
    progress = step / total_steps
    span = max(config.t_anneal_end - config.t_anneal_start, 1e-8)
    ramp = min(max((progress - config.t_anneal_start) / span, 0.0), 1.0)
    return config.t_max + ramp * (config.t_max_end - config.t_max)


def timestep_range(config: GuidanceConfig, num_train_timesteps: int, step: int,
                   total_steps: int) -> Tuple[int, int]:
    """The integers [low, high] that :func:`sample_timesteps` draws t from at ``step``."""
    low = int(config.t_min * num_train_timesteps)
    high = max(int(max_timestep_fraction(config, step, total_steps) * num_train_timesteps), low)
    return low, high


def probability_below(config: GuidanceConfig, num_train_timesteps: int, step: int,
                      total_steps: int, threshold: int) -> float:
    """P(t < threshold) at ``step``: t is uniform over the integers of :func:`timestep_range`."""
    low, high = timestep_range(config, num_train_timesteps, step, total_steps)
    return min(max(threshold - low, 0), high - low + 1) / (high - low + 1)


def sample_timesteps(config: GuidanceConfig, num_train_timesteps: int, step: int,
                     total_steps: int, batch_size: int, device: torch.device,
                     generator: Optional[torch.Generator] = None) -> Tensor:  # [B] long
    """Integer timesteps in [t_min T, t_max(step) T]; one shared by the batch unless
    ``t_per_view``."""
    low, high = timestep_range(config, num_train_timesteps, step, total_steps)
    count = batch_size if config.t_per_view else 1
    t = torch.randint(low, high + 1, (count,), generator=generator)
    return t.expand(batch_size).to(device)


def draw_noise(x0: Tensor) -> Tensor:  # [B, C, h, w], contiguous
    """Standard normal noise of x0's shape, drawn in NCHW order whatever x0's strides
    (``randn_like`` follows the strides, so the encoder's memory layout would change which
    noise a seed gives each element)."""
    return torch.randn(x0.shape, device=x0.device, dtype=x0.dtype)


def timestep_weights(weighting: str, alphas_cumprod: Tensor, t: Tensor) -> Tensor:  # [B]
    """w(t): ``one_minus_alpha_bar`` 1 - a_t (DreamFusion), ``sqrt_alpha_one_minus``
    sqrt(a_t)(1 - a_t), or ``uniform`` 1."""
    alpha_bar = alphas_cumprod[t]
    if weighting == "one_minus_alpha_bar":
        return 1 - alpha_bar
    if weighting == "sqrt_alpha_one_minus":
        return alpha_bar.sqrt() * (1 - alpha_bar)
    if weighting == "uniform":
        return torch.ones_like(alpha_bar)
    raise ValueError(f"unknown weighting '{weighting}'")

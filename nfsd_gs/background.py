"""Background colours behind the rendered object (one solid colour per view).

A random background keeps the optimizer from explaining the prompt with a
semi-transparent haze (DreamFusion, Sec. 3); the bundled prior's training
images use the same scheme, so the two agree on what "background" means.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .config import BackgroundConfig


def sample_backgrounds(config: BackgroundConfig, batch_size: int,
                       generator: Optional[torch.Generator] = None,
                       progress: float = 0.0) -> Tensor:  # [B, 3] on CPU
    """``solid``: ``config.color`` for every view; ``random``: a uniform random colour
    with probability ``random_probability`` while the run's ``progress`` (step / steps) is
    below ``random_until``, ``config.color`` otherwise. The draws are made either way, so
    the schedule leaves the rest of the run's random stream as it was."""
    fixed = torch.tensor(config.color, dtype=torch.float32).expand(batch_size, 3)
    if config.kind == "solid":
        return fixed.clone()
    random_colors = torch.rand(batch_size, 3, generator=generator)
    use_random = torch.rand(batch_size, 1, generator=generator) < config.random_probability
    if progress >= config.random_until:
        return fixed.clone()
    return torch.where(use_random, random_colors, fixed)


def fixed_backgrounds(config: BackgroundConfig, batch_size: int) -> Tensor:  # [B, 3]
    """The deterministic background for snapshots, turntables and evaluation."""
    return torch.tensor(config.color, dtype=torch.float32).expand(batch_size, 3).clone()

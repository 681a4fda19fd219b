"""Image degradations, each tied to words of NFSD's negative prompt.

A share of the prior's training images is degraded and captioned with the
matching words ("a red cone, side view, blurry, dark"), or with those words
alone ("blurry, dark"), so that the negative prompt
``"unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull,
dark, low-resolution, gloomy"`` means "a degraded image" to the prior and
``eps(z; empty) - eps(z; negative)`` points away from degradation (NFSD's delta_D).

Images are ``[B, 3, H, W]`` in [0, 1]; every function is batched with one
strength per image.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError


def blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur with a per-image standard deviation ``sigma`` [B] in pixels."""
    B, C, H, W = images.shape
    radius = int(math.ceil(3 * float(sigma.detach().cpu().max())))  # sigma: keep it on the CPU
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.to(images)[:, None]) ** 2)  # [B, K]
    kernel = (kernel / kernel.sum(-1, keepdim=True)).repeat_interleave(C, dim=0)  # [B*C, K]
    x = F.pad(images.reshape(1, B * C, H, W), (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel[:, None, :, None], groups=B * C)  # vertical
    x = F.conv2d(x, kernel[:, None, None, :], groups=B * C)  # horizontal
    return x.view(B, C, H, W)


def low_resolution(images: Tensor, factor: Tensor) -> Tensor:
    """Area-downsample by ``factor`` [B] (2, 4 or 8) and upsample back with nearest pixels."""
    out = images.clone()
    factor = factor.cpu()
    for f in factor.unique().tolist():
        rows = (factor == f).nonzero()[:, 0].to(images.device)
        small = F.avg_pool2d(images[rows], int(f))
        out[rows] = F.interpolate(small, size=images.shape[-2:], mode="nearest")
    return out


def low_contrast(images: Tensor, contrast: Tensor) -> Tensor:
    """Pull every pixel towards the image mean: contrast [B] in (0, 1), 1 = unchanged."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return mean + contrast.to(images).view(-1, 1, 1, 1) * (images - mean)


def darken(images: Tensor, brightness: Tensor) -> Tensor:
    """Multiply by ``brightness`` [B] in (0, 1)."""
    return images * brightness.to(images).view(-1, 1, 1, 1)


def add_noise(images: Tensor, sigma: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Add Gaussian pixel noise of standard deviation ``sigma`` [B] (in [0, 1] units)."""
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    return (images + sigma.to(images).view(-1, 1, 1, 1) * noise).clamp(0, 1)


def desaturate(images: Tensor, amount: Tensor) -> Tensor:
    """Blend towards grey (Rec. 601 luma) by ``amount`` [B] in [0, 1]."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    grey = (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    a = amount.to(images).view(-1, 1, 1, 1)
    return (1 - a) * images + a * grey


Sampler = Callable[[int, torch.Generator], Tensor]


def _uniform(low: float, high: float) -> Sampler:
    return lambda n, g: low + (high - low) * torch.rand(n, generator=g)


#: name -> (function, strength sampler, negative-prompt words it earns).
DEGRADATIONS: Dict[str, Tuple[Callable, Sampler, Tuple[str, ...]]] = {
    "blur": (blur, _uniform(1.0, 2.5), ("blurry", "out of focus")),
    "low_resolution": (low_resolution,
                       lambda n, g: torch.tensor([2, 4, 8])[torch.randint(1, 3, (n,), generator=g)],
                       ("low-resolution", "low quality")),
    "low_contrast": (low_contrast, _uniform(0.2, 0.5), ("low contrast", "dull")),
    "dark": (darken, _uniform(0.2, 0.5), ("dark", "gloomy")),
    "noise": (add_noise, _uniform(0.08, 0.2), ("low quality", "ugly")),
    "desaturate": (desaturate, _uniform(0.7, 1.0), ("dull", "unrealistic")),
}


def _pick_words(words: Tuple[str, ...], generator: torch.Generator) -> List[str]:
    """A non-empty random subset of ``words``, in order."""
    keep = torch.rand(len(words), generator=generator) < 0.6
    keep[torch.randint(len(words), (1,), generator=generator)] = True
    return [w for w, k in zip(words, keep.tolist()) if k]


def degrade(images: Tensor, probability: float, generator: torch.Generator
            ) -> Tuple[Tensor, List[List[str]]]:
    """Degrade a random share of ``images`` [B, 3, H, W] with one or two degradations each.

    Returns the images (clean ones unchanged) and, per image, its negative-prompt
    words (empty for clean images), without duplicates.
    """
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"degrade probability={probability} must be in [0, 1]")
    B = images.shape[0]
    names = list(DEGRADATIONS)
    chosen: List[List[str]] = [[] for _ in range(B)]
    degraded = (torch.rand(B, generator=generator) < probability).tolist()
    for i in range(B):
        if degraded[i]:
            count = 1 + int(torch.rand(1, generator=generator) < 0.4)
            order = torch.randperm(len(names), generator=generator)[:count].tolist()
            chosen[i] = [names[k] for k in sorted(order)]
    out = images
    for name, (function, sampler, _) in DEGRADATIONS.items():
        rows = torch.tensor([i for i in range(B) if name in chosen[i]], dtype=torch.long)
        if len(rows) == 0:
            continue
        strength = sampler(len(rows), generator)  # [R] on the CPU (no device syncs)
        rows = rows.to(images.device)
        args = (out[rows], strength)
        result = function(*args, generator) if function is add_noise else function(*args)
        out = out.index_copy(0, rows, result.clamp(0, 1))
    words = []
    for names_i in chosen:
        picked: List[str] = []
        for name in names_i:
            picked += [w for w in _pick_words(DEGRADATIONS[name][2], generator) if w not in picked]
        words.append(picked)
    return out, words

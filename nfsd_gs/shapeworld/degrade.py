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


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """Host -> device without waiting for the GPU: a pageable copy would block until the
    previous training step has finished, serialising the data work with the GPU's."""
    if torch.device(device).type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _like(values: Tensor, images: Tensor) -> Tensor:
    """Per-image strengths [B] (CPU) on the images' device and dtype, without a sync."""
    return to_device(values, images.device).to(images.dtype)


def blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur with a per-image standard deviation ``sigma`` [B] in pixels."""
    B, C, H, W = images.shape
    radius = int(math.ceil(3 * float(sigma.detach().cpu().max())))  # sigma: keep it on the CPU
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / _like(sigma, images)[:, None]) ** 2)  # [B, K]
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
        rows = to_device((factor == f).nonzero()[:, 0], images.device)
        small = F.avg_pool2d(images[rows], int(f))
        out[rows] = F.interpolate(small, size=images.shape[-2:], mode="nearest")
    return out


def low_contrast(images: Tensor, contrast: Tensor) -> Tensor:
    """Pull every pixel towards the image mean: contrast [B] in (0, 1), 1 = unchanged."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return mean + _like(contrast, images).view(-1, 1, 1, 1) * (images - mean)


def darken(images: Tensor, brightness: Tensor) -> Tensor:
    """Multiply by ``brightness`` [B] in (0, 1)."""
    return images * _like(brightness, images).view(-1, 1, 1, 1)


def add_noise(images: Tensor, sigma: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Add Gaussian pixel noise of standard deviation ``sigma`` [B] (in [0, 1] units)."""
    noise = to_device(torch.randn(images.shape, generator=generator), images.device)
    return (images + _like(sigma, images).view(-1, 1, 1, 1) * noise).clamp(0, 1)


def desaturate(images: Tensor, amount: Tensor) -> Tensor:
    """Blend towards grey (Rec. 601 luma) by ``amount`` [B] in [0, 1]."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    grey = (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    a = _like(amount, images).view(-1, 1, 1, 1)
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


def _pick_words(words: Tuple[str, ...], keep: List[bool], forced: int) -> List[str]:
    """The kept ``words`` (``keep`` per word, ``forced`` always kept), in order."""
    return [w for k, w in enumerate(words) if keep[k] or k == forced]


def degrade(images: Tensor, probability: float, generator: torch.Generator
            ) -> Tuple[Tensor, List[List[str]]]:
    """Degrade a random share of ``images`` [B, 3, H, W] with one or two degradations each.

    Returns the images (clean ones unchanged) and, per image, its negative-prompt
    words (a random non-empty subset of each degradation's words; empty for clean
    images), without duplicates. Random draws are batched on the CPU and nothing waits
    for the device.
    """
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"degrade probability={probability} must be in [0, 1]")
    B = images.shape[0]
    names = list(DEGRADATIONS)
    degraded = torch.rand(B, generator=generator) < probability  # [B]
    count = 1 + (torch.rand(B, generator=generator) < 0.4).long()  # [B] one or two
    rank = torch.rand(B, len(names), generator=generator).argsort(dim=1).argsort(dim=1)
    chosen = degraded[:, None] & (rank < count[:, None])  # [B, D] bool
    out = images
    for k, (function, sampler, _) in enumerate(DEGRADATIONS.values()):
        rows = chosen[:, k].nonzero()[:, 0]  # [R] (CPU)
        if len(rows) == 0:
            continue
        strength = sampler(len(rows), generator)  # [R] on the CPU (no device syncs)
        rows = to_device(rows, images.device)
        args = (out[rows], strength)
        result = function(*args, generator) if function is add_noise else function(*args)
        out = out.index_copy(0, rows, result.clamp(0, 1))
    most = max(len(words) for _, _, words in DEGRADATIONS.values())
    keep = (torch.rand(B, len(names), most, generator=generator) < 0.6).tolist()  # [B, D, W]
    forced = torch.rand(B, len(names), generator=generator)  # [B, D] -> a word index
    words: List[List[str]] = []
    for i, row in enumerate(chosen.tolist()):
        picked: List[str] = []
        for k, name in enumerate(names):
            if row[k]:
                options = DEGRADATIONS[name][2]
                index = int(float(forced[i, k]) * len(options))
                picked += [w for w in _pick_words(options, keep[i][k], index) if w not in picked]
        words.append(picked)
    return out, words

"""Image metrics of the evaluation: pure functions of views ``[B, H, W, 3]`` in [0, 1] (sRGB)
and object masks ``[B, H, W]`` (bool).

* judge: fraction of views whose shape / colour the judge names as the prompt's;
* appearance: mean HSV saturation of object pixels, sharpness (variance of the
  Laplacian of the luminance), coverage of the frame;
* against the ground truth (issue 18): silhouette IoU, colour error in CIELAB
  (CIE 1976 Delta E*ab on pixels inside both silhouettes), and speckle (share of
  object pixels whose colour is far from the median of their neighbourhood).
"""

from __future__ import annotations

from typing import Dict, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

#: sRGB (linear, D65) -> CIE XYZ, IEC 61966-2-1.
_SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
                (0.2126729, 0.7151522, 0.0721750),
                (0.0193339, 0.1191920, 0.9503041))
#: Reference white D65 (Y = 1).
_WHITE_D65 = (0.95047, 1.0, 1.08883)
#: Delta E*ab above which a pixel counts as a speckle (about "clearly different at a glance").
SPECKLE_DELTA_E = 10.0
SPECKLE_WINDOW = 5


def _check_mask(images: Tensor, mask: Tensor) -> None:
    if mask.shape != images.shape[:-1]:
        raise ConfigError(f"mask of shape {tuple(mask.shape)} does not match images "
                          f"{tuple(images.shape)}")


# ---------------------------------------------------------------------------- appearance


def luminance(images: Tensor) -> Tensor:  # [B, H, W, 3] -> [B, H, W]
    """Rec. 601 luma of images in [0, 1]."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return images @ weights


def saturation_map(images: Tensor) -> Tensor:  # [B, H, W, 3] -> [B, H, W]
    """HSV saturation (max - min) / max per pixel; 0 where the pixel is black."""
    high = images.amax(dim=-1)
    low = images.amin(dim=-1)
    return torch.where(high > 1e-6, (high - low) / high.clamp(min=1e-6), torch.zeros_like(high))


def mean_saturation(images: Tensor, mask: Tensor) -> float:
    """Mean HSV saturation of the pixels where ``mask`` [B, H, W] (bool) holds; NaN if none."""
    _check_mask(images, mask)
    if not bool(mask.any()):
        return float("nan")
    return float(saturation_map(images)[mask].mean())


def laplacian_variance(images: Tensor) -> Tensor:  # [B, H, W, 3] -> [B]
    """Variance of the 4-neighbour Laplacian of the luminance (valid pixels), per image.

    The classic focus measure: blur lowers it, crisp edges and fine texture raise it.
    Only comparable between images of the same size (here: ours vs the ground truth).
    """
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
                          dtype=images.dtype, device=images.device).view(1, 1, 3, 3)
    response = F.conv2d(luminance(images)[:, None], kernel)  # [B, 1, H-2, W-2]
    return response.flatten(1).var(dim=1)


def coverage(mask: Tensor) -> Tensor:  # [B, H, W] bool -> [B]
    """Fraction of the frame the object covers."""
    return mask.flatten(1).float().mean(dim=1)


# ---------------------------------------------------------------------------- CIELAB


def srgb_to_lab(images: Tensor) -> Tensor:  # [..., 3] sRGB in [0, 1] -> [..., 3] (L*, a*, b*)
    """CIE 1976 L*a*b* (D65 white) of sRGB colours: the sRGB transfer curve
    (IEC 61966-2-1), the sRGB->XYZ matrix, then the CIE L*a*b* formulas
    (CIE 15:2004, eqs. 8.1-8.6). L* in [0, 100]."""
    rgb = images.clamp(0, 1).double()
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(_SRGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device)
    xyz = (linear @ matrix.T) / white
    epsilon, kappa = 216 / 24389, 24389 / 27
    f = torch.where(xyz > epsilon, xyz.clamp(min=epsilon) ** (1 / 3), (kappa * xyz + 16) / 116)
    lab = torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                       200 * (f[..., 1] - f[..., 2])], dim=-1)
    return lab.to(images.dtype if images.is_floating_point() else torch.float32)


def delta_e76(lab_a: Tensor, lab_b: Tensor) -> Tensor:  # [..., 3] x2 -> [...]
    """CIE 1976 colour difference Delta E*ab: the Euclidean distance in L*a*b*."""
    return (lab_a - lab_b).norm(dim=-1)


def colour_error(ours: Tensor, truth: Tensor, mask: Tensor) -> float:
    """Mean Delta E*ab (CIE 1976) between ``ours`` and ``truth`` [B, H, W, 3] over the
    pixels where ``mask`` [B, H, W] holds (the object pixels they share); NaN if none."""
    _check_mask(ours, mask)
    _check_mask(truth, mask)
    if not bool(mask.any()):
        return float("nan")
    return float(delta_e76(srgb_to_lab(ours[mask]), srgb_to_lab(truth[mask])).mean())


def speckle_map(images: Tensor, mask: Tensor, window: int = SPECKLE_WINDOW,
                threshold: float = SPECKLE_DELTA_E) -> Tensor:  # -> [B, H, W] bool
    """Interior object pixels whose colour lies more than ``threshold`` Delta E*ab from the
    median of the object pixels in their ``window`` x ``window`` neighbourhood (per L*, a*,
    b* channel). Background pixels take no part in the median, and the silhouette's
    one-pixel rim (antialiased, half background) is not counted: see :func:`interior`."""
    _check_mask(images, mask)
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"speckle window {window} must be an odd number >= 1")
    B, H, W, _ = images.shape
    lab = srgb_to_lab(images).permute(0, 3, 1, 2)  # [B, 3, H, W]
    lab = torch.where(mask[:, None], lab, torch.full_like(lab, float("nan")))
    patches = F.unfold(lab, window, padding=window // 2)  # [B, 3*k*k, H*W] (zeros pad)
    inside = F.unfold(mask[:, None].float(), window, padding=window // 2).bool()  # [B, k*k, H*W]
    patches = patches.view(B, 3, window * window, H * W)
    patches = torch.where(inside[:, None], patches, torch.full_like(patches, float("nan")))
    median = patches.nanmedian(dim=2).values.view(B, 3, H, W)  # [B, 3, H, W]
    far = (lab - median).norm(dim=1) > threshold  # NaN (background) compares False
    return far & interior(mask)


def speckle_fraction(images: Tensor, mask: Tensor, window: int = SPECKLE_WINDOW,
                     threshold: float = SPECKLE_DELTA_E) -> float:
    """Share of the interior object pixels that :func:`speckle_map` marks; NaN if none."""
    inside = interior(mask)
    if not bool(inside.any()):
        return float("nan")
    return float(speckle_map(images, mask, window, threshold).sum() / inside.sum())


def interior(mask: Tensor) -> Tensor:  # [B, H, W] bool -> [B, H, W] bool
    """The mask eroded by one pixel: pixels whose 3x3 neighbourhood is all object."""
    return -F.max_pool2d(-mask[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0.5


# ---------------------------------------------------------------------------- silhouettes


def silhouette_iou(a: Tensor, b: Tensor) -> Tensor:  # [..., V, H, W] bool x2 -> [...]
    """Intersection over union of two silhouette sets, pooled over their V views
    (one number for the object, not a mean of per-view ratios); 1 when both are empty."""
    intersection = (a & b).flatten(-3).sum(-1).float()
    union = (a | b).flatten(-3).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


# ---------------------------------------------------------------------------- judge


def judge_scores(judge, images: Tensor, expected: Mapping[str, str]) -> Dict:
    """The judge's verdict on B views of one object, for each head it has among ``expected``
    (``{"shape": "cone", "colour": "red", "accent": "none"}``): ``<head>_acc``, the fraction
    of views it names as expected; ``both_acc``, shape and colour both right; ``all_acc``,
    every judged head right; ``judged``, its names per view (``"red cone"``, with
    ``" + yellow top"`` where it sees an accent); and ``verdicts``, its class per head and
    view (``{"shape": ["cone", ...], "colour": [...], "accent": [...]}``)."""
    verdicts = judge.verdict(images)  # {head: [B] names}
    heads = [h for h in expected if h in verdicts]
    if "shape" not in heads or "colour" not in heads:
        raise ConfigError(f"the judge's heads {sorted(verdicts)} lack shape or colour")
    n = len(verdicts["shape"])
    right = {h: [verdicts[h][i] == expected[h] for i in range(n)] for h in heads}
    scores = {f"{h}_acc": sum(right[h]) / n for h in heads}
    scores["both_acc"] = sum(s and c for s, c in zip(right["shape"], right["colour"])) / n
    scores["all_acc"] = sum(all(right[h][i] for h in heads) for i in range(n)) / n
    accents = verdicts.get("accent", ["none"] * n)
    scores["judged"] = [f"{c} {s}" + (f" + {a}" if a != "none" else "")
                        for s, c, a in zip(verdicts["shape"], verdicts["colour"], accents)]
    scores["verdicts"] = {h: list(verdicts[h]) for h in verdicts}
    return scores


def appearance_scores(images: Tensor, mask: Tensor) -> Dict[str, float]:
    """Saturation, sharpness, coverage and speckle of B views with their object masks."""
    return {
        "saturation": mean_saturation(images, mask),
        "sharpness": float(laplacian_variance(images).mean()),
        "coverage": float(coverage(mask).mean()),
        "speckle": speckle_fraction(images, mask),
    }



def score_views(judge, images: Tensor, mask: Tensor, expected: Mapping[str, str]) -> Dict:
    """Every metric of B views [B, H, W, 3] with their object mask [B, H, W] (bool) that
    needs no ground truth: the judge's (``expected``: verdict per head) and appearance."""
    return {**judge_scores(judge, images, expected), **appearance_scores(images, mask)}

"""Ground truth: the world's object seen from the evaluation cameras, and the alignment of
a trained object to it.

The world draws every object's scale and yaw (rotation about z) at random, so the prior
knows no canonical size or heading and a trained object has its own. Before comparing
silhouettes and colours we search the ground-truth object's scale and yaw that best
match ours from the evaluation views. The search needs no renders per candidate:

* turning the object by yaw theta is, for its silhouette, the same as moving every camera
  to azimuth ``a - theta`` (only the world-fixed light differs, and a silhouette has none);
* scaling it by s is the same as moving the cameras to radius ``r / s`` (same fov).

So one render of the unit object from Y azimuths per scale (a :class:`SilhouetteBank`,
cached per object) serves every run of that prompt. The best alignment is then rendered
once, exactly (object turned and scaled, world lights), for IoU and colour error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import Tensor

from ..cameras import Cameras, OrbitSampler, orbit_cameras
from ..config import CameraConfig, Config
from ..errors import ConfigError
from ..shapeworld import YAW_PERIOD_DEG, ObjectSpec, render_spec
from .metrics import colour_error, silhouette_iou

#: The alignment grid, one for every judge of the package (the end of a run, the catalogue,
#: the evaluation, ``nfsd_gs.score``): yaw in 5 degree steps, scale geometric over
#: [0.4, 2.5] (~6 % steps).
ALIGN_YAWS = 72
ALIGN_SCALES: Tuple[float, float, int] = (0.4, 2.5, 33)


def eval_cameras(config: Config, views: int) -> Cameras:
    """``views`` cameras at azimuths 0, 360/views, ... on the config's evaluation orbit."""
    return OrbitSampler(config.camera).fixed_views(views, start_azimuth_deg=0.0)


@torch.no_grad()
def render_ground_truth(spec: ObjectSpec, cameras: Cameras, background: Tensor, resolution: int,
                        scale: float = 1.0, yaw_deg: float = 0.0,
                        supersample: int = 2) -> Tuple[Tensor, Tensor]:
    """The world's object from ``cameras`` over ``background`` [B, 3]: rgb [B, R, R, 3] and
    object mask (coverage > 0.5) [B, R, R] bool, on the CPU. Default: unit scale, no yaw
    (what the prior saw on average)."""
    rgb, alpha = render_spec(spec, cameras, background.to(cameras.device), resolution, scale,
                             yaw_deg, supersample)
    return rgb.cpu(), (alpha > 0.5).cpu()


@torch.no_grad()
def render_model(model, cameras: Cameras, background: Tensor,
                 resolution: int) -> Tuple[Tensor, Tensor]:
    """A trained representation's rgb [B, R, R, 3] and mask alpha > 0.5 [B, R, R] (bool),
    on the CPU; any representation (its protocol's ``render``)."""
    out = model.render(cameras, resolution, resolution, background)
    return out.rgb.clamp(0, 1).float().cpu(), (out.alpha[..., 0] > 0.5).cpu()


@dataclass(frozen=True)
class Alignment:
    """The ground truth's scale and yaw (degrees) that best match a trained object, and the
    silhouette IoU there (pooled over the views)."""

    scale: float
    yaw_deg: float
    iou: float


def parse_scales(text: str, where: str = "--align-scales") -> Tuple[float, float, int]:
    """``"LOW,HIGH,COUNT"`` (a command line's alignment scales) -> (low, high, count); a
    ConfigError naming ``where`` if it is not a valid grid."""
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if len(values) != 3 or values[2] != int(values[2]):
        raise ConfigError(f"{where} '{text}' must be LOW,HIGH,COUNT")
    scales = values[0], values[1], int(values[2])
    scale_grid(*scales)
    return scales


def scale_grid(low: float, high: float, count: int) -> Tensor:  # [count]
    """Geometric grid of scales (equal ratios between neighbours)."""
    if not 0 < low <= high or count < 1:
        raise ConfigError(f"alignment scales ({low}, {high}, {count}) must satisfy "
                          f"0 < low <= high and count >= 1")
    return torch.logspace(torch.log10(torch.tensor(low)), torch.log10(torch.tensor(high)), count)


#: Views the bank renders at once (bounds the ray tracer's memory: 256 views x 128^2 rays).
BANK_CHUNK = 256


def distinct_yaws(shape: str, yaws: int) -> int:
    """How many of ``yaws`` equally spaced azimuths give different silhouettes of ``shape``:
    1 for a round shape, 18 of 72 for a cube (its look repeats every 90 degrees); all of
    them when the shape's period is not a whole number of steps."""
    period, step = YAW_PERIOD_DEG[shape], 360.0 / yaws
    if period == 0:
        return 1
    distinct = round(period / step)
    exact = math.isclose(distinct * step, period) and yaws % distinct == 0
    return distinct if exact else yaws


class SilhouetteBank:
    """Silhouettes [S, Y, R, R] of one unit object from Y azimuths (0, 360/Y, ...) on the
    evaluation orbit, the camera at radius ``eval_radius / s`` for each of S scales.

    Only the azimuths that differ are rendered (``distinct_yaws``: one for a round shape),
    every scale in batches of ``BANK_CHUNK`` views; the rest repeat them."""

    def __init__(self, spec: ObjectSpec, camera: CameraConfig, views: int, resolution: int,
                 yaws: int = ALIGN_YAWS, scales: Tuple[float, float, int] = ALIGN_SCALES,
                 device: torch.device | str = "cpu"):
        if yaws < 1 or yaws % views:
            raise ConfigError(f"alignment yaws {yaws} must be a positive multiple of the "
                              f"{views} evaluation views (they must share azimuths)")
        self.spec, self.views, self.yaws = spec, views, yaws
        self.scales = scale_grid(*scales)  # [S]
        distinct = distinct_yaws(spec.shape, yaws)
        S = len(self.scales)
        azimuths = (torch.arange(distinct, dtype=torch.float32) * (360.0 / yaws)).repeat(S)
        radii = (camera.eval_radius / self.scales.float()).repeat_interleave(distinct)  # [S*D]
        full = lambda value: torch.full((S * distinct,), float(value))  # noqa: E731
        cameras = orbit_cameras(azimuths, full(camera.eval_elevation), radii,
                                full(camera.eval_fovy))
        masks = []
        for chunk in torch.arange(S * distinct).split(BANK_CHUNK):
            _, mask = render_ground_truth(self.spec, cameras[chunk].to(device),
                                          torch.ones(len(chunk), 3), resolution)
            masks.append(mask)
        rendered = torch.cat(masks).view(S, distinct, resolution, resolution)
        self.masks = rendered[:, torch.arange(yaws) % distinct]  # [S, Y, R, R] bool
        # View k of the object turned by yaw j*360/Y is the bank's azimuth k*Y/V - j.
        k = torch.arange(views) * (yaws // views)  # [V]
        self.index = (k[None, :] - torch.arange(yaws)[:, None]) % yaws  # [Y, V]

    def align(self, ours: Tensor) -> Alignment:
        """Best (scale, yaw) for our silhouettes ``ours`` [V, R, R] (bool) by pooled IoU."""
        if ours.shape != (self.views, *self.masks.shape[-2:]):
            raise ConfigError(f"silhouettes of shape {tuple(ours.shape)} do not match the bank "
                              f"({self.views} views of {tuple(self.masks.shape[-2:])})")
        iou = torch.stack([silhouette_iou(ours, bank[self.index]) for bank in self.masks])  # [S, Y]
        best = int(iou.flatten().argmax())
        s, j = divmod(best, self.yaws)
        return Alignment(float(self.scales[s]), j * 360.0 / self.yaws, float(iou[s, j]))


def compare_to_truth(spec: ObjectSpec, rgb: Tensor, mask: Tensor, cameras: Cameras,
                     background: Tensor, bank: SilhouetteBank) -> Tuple[Dict, Tensor]:
    """Our views rgb [V, R, R, 3] with masks [V, R, R] against the ground truth aligned to
    them: ``{"iou", "colour_de", "scale", "yaw_deg"}`` and the aligned truth's rgb [V, R, R, 3].

    ``iou``: silhouette IoU (pooled over views) at the best alignment, from an exact render
    of the object turned and scaled (world lights); ``colour_de``: mean CIE 1976 Delta E*ab
    over the pixels inside both silhouettes there.
    """
    found = bank.align(mask)
    truth_rgb, truth_mask = render_ground_truth(spec, cameras, background, rgb.shape[1],
                                                found.scale, found.yaw_deg)
    both = mask & truth_mask
    scores = {"iou": float(silhouette_iou(mask, truth_mask)),
              "colour_de": colour_error(rgb, truth_rgb, both),
              "scale": found.scale, "yaw_deg": found.yaw_deg}
    return scores, truth_rgb

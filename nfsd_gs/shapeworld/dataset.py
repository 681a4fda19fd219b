"""Captioned training images of the procedural world, rendered on the fly.

Scenes come from both splits (half solid, half two-tone by default), views from the
trainer's own :class:`~nfsd_gs.cameras.OrbitSampler` (default
:class:`~nfsd_gs.config.CameraConfig` ranges, plus a tenth raised above 60 degrees so
"overhead view" is a caption the prior knows) and backgrounds from
:func:`~nfsd_gs.background.sample_backgrounds` (default
:class:`~nfsd_gs.config.BackgroundConfig`: random colour with probability 0.5,
else white), so the prior learns the image distribution the trainer renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..background import sample_backgrounds
from ..cameras import Cameras, OrbitSampler, orbit_cameras
from ..config import BackgroundConfig, CameraConfig
from ..errors import ConfigError
from .captions import compose_captions, scene_prompts, scene_view_prompts
from .degrade import degrade, to_device
from .world import SCENE_SOURCES, Scenes, render_scenes, sample_scenes


@dataclass
class DataConfig:
    """What the prior is trained on."""

    resolution: int = 64
    #: Which split(s) the scenes come from: solid, two-tone or both.
    split: str = "both"
    #: With ``split="both"``: the share of two-tone scenes.
    two_tone_share: float = 0.5
    #: Share of views seen from above (elevation in ``overhead_elevation_range``, captioned
    #: "overhead view"): the trainer's default orbit never goes that high, but a user's may,
    #: and the prior should know the words its view-dependent prompts can contain.
    overhead_share: float = 0.1
    overhead_elevation_range: Tuple[float, float] = (62.0, 75.0)
    #: Share of images degraded and captioned with negative-prompt words.
    degrade_probability: float = 0.25
    #: Share of clean images' captions replaced by "" (classifier-free guidance; about
    #: 10 % of all captions, as degraded images keep theirs).
    caption_dropout: float = 0.13
    #: Drop only clean images' captions: "" then means a clean image of the world (see
    #: :func:`~nfsd_gs.shapeworld.captions.compose_captions`).
    dropout_clean_only: bool = True
    #: Share of captions with the view suffix ("..., side view").
    view_probability: float = 0.9
    #: Share of degraded images captioned with their negative words alone.
    negative_only_probability: float = 0.5
    camera: CameraConfig = field(default_factory=CameraConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)


@dataclass
class Views:
    """Clean rendered views and their labels."""

    images: Tensor  # [B, 3, H, W] in [0, 1]
    scenes: Scenes
    view_captions: List[str]  # "a red cone, side view"
    object_captions: List[str]  # "a red cone"


@dataclass
class Batch:
    """One training batch of the prior."""

    images: Tensor  # [B, 3, H, W] in [0, 1], some degraded
    captions: List[str]
    scenes: Scenes
    degraded: Tensor  # [B] bool


def validate_data_config(config: DataConfig) -> None:
    if config.split not in SCENE_SOURCES:
        raise ConfigError(f"data split '{config.split}' is not one of {', '.join(SCENE_SOURCES)}")
    for name in ("two_tone_share", "overhead_share", "degrade_probability", "caption_dropout"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigError(f"data {name}={getattr(config, name)} must be in [0, 1]")


def sample_cameras(count: int, generator: torch.Generator, config: DataConfig) -> Cameras:
    """The trainer's orbit cameras, ``overhead_share`` of them raised above
    ``overhead_elevation_range[0]`` (so their view word is "overhead")."""
    cameras = OrbitSampler(config.camera).sample(count, generator)
    raise_up = torch.rand(count, generator=generator) < config.overhead_share  # [B] bool
    if not bool(raise_up.any()):
        return cameras
    low, high = config.overhead_elevation_range
    elevation = torch.where(raise_up, low + (high - low) * torch.rand(count, generator=generator),
                            cameras.elevation_deg)
    return orbit_cameras(cameras.azimuth_deg, elevation, cameras.radius, cameras.fovy_deg)


def render_views(count: int, generator: torch.Generator, device: torch.device | str = "cpu",
                 config: Optional[DataConfig] = None, supersample: int = 2) -> Views:
    """``count`` random clean views (random scene, trainer camera, trainer background)."""
    config = config or DataConfig()
    validate_data_config(config)
    if count < 1:
        raise ConfigError(f"count={count} must be >= 1")
    cameras = sample_cameras(count, generator, config)
    backgrounds = sample_backgrounds(config.background, count, generator)  # [B, 3]
    scenes = sample_scenes(count, generator, config.split, config.two_tone_share)
    rgb, _ = render_scenes(scenes, cameras.to(device), backgrounds, config.resolution,
                           supersample)  # [B, H, W, 3]
    return Views(rgb.permute(0, 3, 1, 2).contiguous(), scenes,
                 scene_view_prompts(scenes, cameras, config.camera), scene_prompts(scenes))


def make_batch(views: Views, generator: torch.Generator, config: Optional[DataConfig] = None
               ) -> Batch:
    """Degrade a share of ``views`` and caption every image (with dropout)."""
    config = config or DataConfig()
    images, words = degrade(views.images, config.degrade_probability, generator)
    captions = compose_captions(views.view_captions, views.object_captions, words, generator,
                                config.view_probability, config.negative_only_probability,
                                config.caption_dropout, config.dropout_clean_only)
    degraded = torch.tensor([bool(w) for w in words])
    return Batch(images, captions, views.scenes, degraded)


class ViewPool:
    """A fixed pool of clean views rendered once (uint8 on ``device``), drawn from at random.

    Rendering a pool up front keeps the training step free of ray casting;
    degradations and captions are still drawn fresh for every batch.
    """

    def __init__(self, size: int, generator: torch.Generator, device: torch.device | str,
                 config: Optional[DataConfig] = None, chunk: int = 1024,
                 time_limit_s: Optional[float] = None):
        self.config = config or DataConfig()
        images, scenes, view_caps, object_caps = [], [], [], []
        start, rendered = time.perf_counter(), 0
        while rendered < size:
            n = min(chunk, size - rendered)
            views = render_views(n, generator, device, self.config)
            images.append((views.images * 255).round().to(torch.uint8))
            scenes.append(views.scenes)
            view_caps += views.view_captions
            object_caps += views.object_captions
            rendered += n
            if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
                break
        self.images = torch.cat(images)  # [N, 3, H, W] uint8
        self.scenes = Scenes.cat(scenes)
        self.view_captions, self.object_captions = view_caps, object_caps
        self.render_seconds = time.perf_counter() - start

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        index = torch.randint(len(self), (batch_size,), generator=generator)
        views = Views(self.images[to_device(index, self.images.device)].float() / 255,
                      self.scenes[index],
                      [self.view_captions[i] for i in index.tolist()],
                      [self.object_captions[i] for i in index.tolist()])
        return make_batch(views, generator, self.config)

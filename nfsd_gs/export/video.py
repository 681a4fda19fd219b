"""Turntable videos: a 360-degree orbit rendered with the run's own renderer.

``turntable.mp4`` (H.264 through imageio-ffmpeg's bundled ffmpeg) and, if asked,
``turntable.gif``.  The cameras are ``nfsd_gs.cameras.OrbitSampler.fixed_views``:
evenly spaced azimuths starting at 0 (the front, +x), at the evaluation radius
and field of view, at ``output.turntable_elevation`` (default: the evaluation
elevation).  Frames are rendered a few at a time over the fixed background.

Also runnable on any ``.ply``: ``python -m nfsd_gs.render model.ply``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from ..background import fixed_backgrounds
from ..cameras import Cameras, OrbitSampler
from ..config import Config, OutputConfig
from ..errors import ConfigError
from ..utils.io import atomic_path

#: Cameras rendered per call (bounds memory; the CPU reference is per-camera anyway).
FRAMES_PER_BATCH = 4


@dataclass
class TurntableSettings:
    frames: int = 60
    resolution: int = 256  # square, even (H.264 with 4:2:0 chroma needs even sides)
    elevation_deg: float = 15.0
    fps: int = 30
    gif: bool = False

    @classmethod
    def from_config(cls, config: Config) -> "TurntableSettings":
        out = config.output
        settings = cls(
            frames=out.turntable_frames,
            resolution=out.turntable_resolution,
            elevation_deg=(config.camera.eval_elevation if out.turntable_elevation is None
                           else out.turntable_elevation),
            fps=out.turntable_fps,
            gif=out.turntable_gif,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Bad values are a :class:`ConfigError` naming the ``output.turntable_*`` key."""
        problems = [
            ("frames", self.frames >= 1, "must be >= 1"),
            ("resolution", self.resolution >= 16 and self.resolution % 2 == 0,
             "must be an even number >= 16"),
            ("elevation", -90.0 <= self.elevation_deg <= 90.0, "must lie in [-90, 90]"),
            ("fps", self.fps >= 1, "must be >= 1"),
        ]
        for name, ok, requirement in problems:
            if not ok:
                value = getattr(self, {"elevation": "elevation_deg"}.get(name, name))
                raise ConfigError(f"config key 'output.turntable_{name}': {value!r} {requirement}")


def check_output_config(output: OutputConfig) -> None:
    """Validate the turntable keys of ``output`` (fail before training, not after)."""
    TurntableSettings(output.turntable_frames, output.turntable_resolution,
                      0.0 if output.turntable_elevation is None else output.turntable_elevation,
                      output.turntable_fps, output.turntable_gif).check()


def turntable_cameras(sampler: OrbitSampler, settings: TurntableSettings) -> Cameras:
    """``settings.frames`` cameras, azimuth 0, 360/F, ... (one full turn, no repeated frame)."""
    return sampler.fixed_views(settings.frames, elevation_deg=settings.elevation_deg)


@torch.no_grad()
def render_turntable(render: Callable[[Cameras, int, int, torch.Tensor], torch.Tensor],
                     cameras: Cameras, resolution: int, background: torch.Tensor,
                     device: torch.device | str = "cpu",
                     progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Frames [F, H, W, 3] uint8 of ``render(cameras, width, height, backgrounds [B, 3]) -> rgb``.

    ``background``: [3] in [0, 1]; ``progress(frames_done)`` is called after each batch.
    """
    frames: List[np.ndarray] = []
    for start in range(0, len(cameras), FRAMES_PER_BATCH):
        batch = cameras[start:start + FRAMES_PER_BATCH].to(device)
        backgrounds = background.to(device).expand(len(batch), 3)
        rgb = render(batch, resolution, resolution, backgrounds)  # [B, H, W, 3]
        frames.append((rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
        if progress is not None:
            progress(start + len(batch))
    return np.concatenate(frames, axis=0)


def model_renderer(model) -> Callable[[Cameras, int, int, torch.Tensor], torch.Tensor]:
    """Adapt a representation's ``render(...) -> RenderOutput`` to a function returning rgb."""
    return lambda cameras, width, height, backgrounds: model.render(
        cameras, width, height, backgrounds).rgb


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """H.264 mp4 (yuv420p, plays everywhere) of frames [F, H, W, 3] uint8; atomic."""
    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                pixelformat="yuv420p", quality=8, macro_block_size=2,
                                ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(frame)
    return Path(path)


def ffmpeg_available() -> bool:
    """Whether imageio can find an ffmpeg (imageio-ffmpeg's bundled one or a system one)."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except (ImportError, RuntimeError):
        return False


def write_gif(path: Path, frames: np.ndarray, fps: int) -> Path:
    """A looping GIF of frames [F, H, W, 3] uint8; atomic."""
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return Path(path)


def write_turntable(model, config: Config, video_path: Path,
                    device: torch.device | str = "cpu",
                    progress: Optional[Callable[[int], None]] = None) -> List[Path]:
    """Render ``model`` around the origin as ``config.output`` says; returns the files written.

    ``model``: any representation (``render(cameras, width, height, background)``),
    e.g. the run's ``GaussianModel``.  ``video_path``: the mp4; the GIF, if
    ``output.turntable_gif``, goes beside it with the suffix ``.gif``.
    """
    settings = TurntableSettings.from_config(config)
    cameras = turntable_cameras(OrbitSampler(config.camera), settings)
    background = fixed_backgrounds(config.background, 1)[0]  # [3]
    frames = render_turntable(model_renderer(model), cameras, settings.resolution, background,
                              device, progress)
    video_path = Path(video_path)
    written = []
    if ffmpeg_available():
        written.append(write_mp4(video_path, frames, settings.fps))
    else:  # the model is saved already: a GIF beats a crash at the very end of a run
        warnings.warn(f"no ffmpeg (pip install imageio-ffmpeg): wrote "
                      f"{video_path.with_suffix('.gif').name} instead of {video_path.name}",
                      stacklevel=2)
    if settings.gif or not written:
        written.append(write_gif(video_path.with_suffix(".gif"), frames, settings.fps))
    return written

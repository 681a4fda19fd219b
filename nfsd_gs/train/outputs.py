"""What a run writes besides its checkpoints and model, and the live viewer: all the trainer
knows of them. The browser preview lives in ``nfsd_gs/viewer/``, the video in
``export/video.py`` and the mesh in ``export/mesh.py`` (each imported only when used)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import torch
from torch import Tensor

from ..background import fixed_backgrounds
from ..config import Config
from ..utils.images import save_image_grid
from .run import Run

#: Snapshots are rendered at most this large (pixels, square).
SNAPSHOT_RESOLUTION = 256


@torch.no_grad()
def render_views(run: Run, count: int, resolution: int) -> Tensor:  # [V, H, W, 3] in [0, 1]
    """``count`` fixed views on the evaluation orbit over the fixed background."""
    cameras = run.sampler.fixed_views(count).to(run.device)
    background = fixed_backgrounds(run.config.background, len(cameras)).to(run.device)
    return run.model.render(cameras, resolution, resolution, background).rgb.clamp(0, 1)


def save_snapshot(run: Run, run_dir: Path, step: int) -> Path:
    """``snapshots/step_XXXXXX.png``: ``camera.eval_views`` views in a row."""
    path = run_dir / "snapshots" / f"step_{step:06d}.png"
    resolution = min(run.config.camera.resolution, SNAPSHOT_RESOLUTION)
    save_image_grid(path, render_views(run, run.config.camera.eval_views, resolution))
    return path


def check_output_config(config: Config) -> None:
    """Refuse, before the first step, turntable and mesh settings that could not be written."""
    if config.output.turntable:
        from ..export.video import check_output_config as check_turntable

        check_turntable(config.output)
    from ..export.mesh import check_output_config as check_mesh

    check_mesh(config.output)


def write_turntable(run: Run, run_dir: Path) -> List[Path]:
    """``turntable.mp4`` (and ``.gif`` if asked) next to the model, with the run's renderer."""
    from ..export.video import write_turntable as render_and_write

    return render_and_write(run.model, run.config, run_dir / "turntable.mp4", run.device)


def write_mesh(run: Run, run_dir: Path) -> Path:
    """``output.mesh``: ``mesh.glb`` by marching cubes (export/mesh.py)."""
    from ..export.mesh import MeshSettings, export_model_mesh

    path = run_dir / "mesh.glb"
    export_model_mesh(run.model, path, MeshSettings.from_output(run.config.output))
    return path


def write_extras(run: Run, run_dir: Path) -> None:
    """After the model: the turntable and the mesh, if ``output`` asks for them."""
    if run.config.output.turntable:
        write_turntable(run, run_dir)
    if run.config.output.mesh:
        write_mesh(run, run_dir)


def open_viewer(run: Run, run_dir: Path, host: Optional[str] = None,
                port: Optional[int] = None):
    """``--viewer``: start the browser preview (viser is imported only here); returns a
    ``nfsd_gs.viewer.training.TrainingViewer`` for :func:`nfsd_gs.train.loop.train`."""
    from ..viewer.training import TrainingViewer

    config = replace(run.config.viewer, host=host or run.config.viewer.host,
                     port=run.config.viewer.port if port is None else port)
    viewer = TrainingViewer(config, run.config.camera, run_dir, run.config.steps, run.step)
    print(f"viewer: {viewer.url}", file=sys.stderr, flush=True)
    return viewer

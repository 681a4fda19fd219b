"""3D representations behind one interface (see base.py): Gaussians, NeRF.

:data:`BACKENDS` maps each value of ``config.representation`` to the class that
builds it, :data:`RESULT_READERS` to how a finished run folder's model is read back
(:func:`load_result`); nothing else in the package names a representation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, get_args

import torch

from ..config import Config, RepresentationName
from .base import RenderOutput, Representation  # noqa: F401
from .gaussians import GaussianModel  # noqa: F401


def _nerf(config: Config, device: torch.device) -> Representation:
    from .nerf import NerfField  # the paper's baseline; imported only when asked for

    return NerfField.from_config(config, device)


#: ``config.representation`` -> a builder ``(config, device) -> Representation``.
BACKENDS: Dict[str, Callable[[Config, torch.device], Representation]] = {
    "gaussians": GaussianModel.from_config,
    "nerf": _nerf,
}
assert set(BACKENDS) == set(get_args(RepresentationName)), "one builder per representation"


def build_representation(config: Config, device: torch.device) -> Representation:
    """The representation named by ``config.representation``, initialised on ``device``."""
    return BACKENDS[config.representation](config, device)


def _gaussians_result(config: Config, run_dir: Path, device: torch.device) -> Representation:
    from ..formats.ply import load_ply

    splats = load_ply(Path(run_dir) / "model.ply")
    return GaussianModel.finished({k: v.to(device) for k, v in splats.items()}, config)


def _checkpoint_result(config: Config, run_dir: Path, device: torch.device) -> Representation:
    from ..checkpoint import Checkpoint

    _, checkpoint = Checkpoint.latest(run_dir)
    model = build_representation(config, device)
    model.load_state_dict(checkpoint.model)
    model.finish()
    return model


#: ``config.representation`` -> how a finished run folder's model is read back from what
#: ``export`` wrote (Gaussians: ``model.ply``); any other backend comes back from the run's
#: newest checkpoint (built as its config says, then loaded).
RESULT_READERS: Dict[str, Callable[[Config, Path, torch.device], Representation]] = {
    "gaussians": _gaussians_result,
}


def load_result(config: Config, run_dir: Path, device: torch.device) -> Representation:
    """The finished model of the run in ``run_dir`` (every schedule at its end state)."""
    return RESULT_READERS.get(config.representation, _checkpoint_result)(config, run_dir, device)

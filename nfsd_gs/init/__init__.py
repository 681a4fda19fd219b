"""Starting points -> initial 3D Gaussians.

One entry point, :func:`initial_splats`, follows the steps every source of starting points shares::

    source points (its own axes) -> world axes (z up, front +x) -> fit into init.radius
      -> GaussianDreamer growth + colour jitter -> Gaussians (scales from neighbours)

Sources: ``sphere`` and other primitives (primitives.py), ``file`` (files.py;
3D Gaussians in any splat file skip every step and are returned as they are), ``shap_e``
(shap_e.py).
"""

from __future__ import annotations

from typing import Dict, Optional, get_args

import torch
from torch import Tensor

from ..config import InitConfig, InitKind
from ..errors import ConfigError
from .gaussians import C0, gaussians_from_points, with_sh_degree  # noqa: F401
from .meshes import GREY
from .points import PointCloud, fit_into_ball, grow_points, jitter_colors, to_world
from .primitives import PRIMITIVES, primitive_points

#: (up, front) of each source when init.up_axis / init.front_axis are null.
FILE_AXES = ("y", "z")  # glTF: y up, +z front
WORLD_AXES = ("z", "x")


def initial_splats(config: InitConfig, sh_degree: int, prompt: str = "",
                   device: Optional[torch.device] = None) -> Dict[str, Tensor]:
    """The initial Gaussians (gsplat's layout, float32, CPU) of ``config``.

    ``prompt`` is needed by ``kind=shap_e`` only; ``device`` is where Shap-E runs.
    """
    if config.kind == "file":
        from ..formats import is_splat_file, load_splats
        from .files import check_init_path

        path = check_init_path(config.path)
        if is_splat_file(path):
            return with_sh_degree(load_splats(path), sh_degree)
    cloud = build_point_cloud(config, prompt, device)
    return gaussians_from_points(cloud, config.initial_opacity, config.scale_factor, sh_degree)


def build_point_cloud(config: InitConfig, prompt: str = "",
                      device: Optional[torch.device] = None) -> PointCloud:
    """The starting points in the world frame, fitted into ``config.radius``, grown and jittered."""
    source, (up, front) = source_points(config, prompt, device)
    cloud = to_world(source, config.up_axis or up, config.front_axis or front)
    cloud = fit_into_ball(cloud, config.radius)
    generator = torch.Generator().manual_seed(config.seed + 1)
    scene_diameter = 2.0 * config.radius
    cloud = grow_points(cloud, config.grow_points, config.grow_radius * scene_diameter, generator)
    return jitter_colors(cloud, config.color_jitter, generator)


def source_points(config: InitConfig, prompt: str, device: Optional[torch.device]):
    """(points in the source's own axes, (up, front) of those axes)."""
    if config.kind in PRIMITIVES:
        cloud = primitive_points(config.kind, config.num_points, config.size, config.color,
                                 config.fill, config.seed)
        return cloud, WORLD_AXES
    if config.kind == "file":
        from .files import check_init_path, read_file_points

        path = check_init_path(config.path)
        cloud = read_file_points(path, config.num_points, config.seed, config.color or GREY)
        return cloud, FILE_AXES
    if config.kind == "shap_e":
        from .shap_e import SHAP_E_FRONT, SHAP_E_UP, shap_e_cloud

        cloud = shap_e_cloud(prompt, config.num_points, config.shap_e_model, config.shap_e_steps,
                             config.shap_e_guidance_scale, config.shap_e_grid_size, config.seed,
                             device, config.local_files_only)
        return cloud, (SHAP_E_UP, SHAP_E_FRONT)
    raise ConfigError(f"config key 'init.kind': {config.kind!r} is not one of "
                      f"{', '.join(get_args(InitKind))}")

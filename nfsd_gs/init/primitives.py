"""Simple shapes as coloured point sets, built directly in the world frame (z up, front +x).

Each primitive has a unit size, scaled along x, y, z by ``init.size``:

=========== =====================================================================
sphere      ball of diameter 1 (volume by default: the first starting points of this project)
ellipsoid   the same ball, surface by default (make it an ellipsoid with ``size``)
box         cube of side 1
cylinder    diameter 1, height 1, axis along z
cone        base diameter 1 at z = -0.5, apex at z = +0.5
pyramid     square base of side 1 at z = -0.5, apex at z = +0.5
torus       outer diameter 1, tube diameter 0.25, lying in the xy-plane
=========== =====================================================================

Surfaces are sampled area-uniformly on a trimesh of the shape; volumes by
rejection sampling against the shape's inside test (then scaled, which keeps
them uniform).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from .meshes import GREY, sample_mesh
from .points import PointCloud

TORUS_MAJOR, TORUS_MINOR = 0.375, 0.125

#: Unit shapes' inside tests on canonical points p [M, 3] in [-0.5, 0.5]^3 -> [M] bool.
INSIDE: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sphere": lambda p: np.linalg.norm(p, axis=1) <= 0.5,
    "ellipsoid": lambda p: np.linalg.norm(p, axis=1) <= 0.5,
    "box": lambda p: np.abs(p).max(axis=1) <= 0.5,
    "cylinder": lambda p: np.hypot(p[:, 0], p[:, 1]) <= 0.5,
    "cone": lambda p: np.hypot(p[:, 0], p[:, 1]) <= 0.5 * (0.5 - p[:, 2]),
    "pyramid": lambda p: np.abs(p[:, :2]).max(axis=1) <= 0.5 * (0.5 - p[:, 2]),
    "torus": lambda p: (np.hypot(p[:, 0], p[:, 1]) - TORUS_MAJOR) ** 2 + p[:, 2] ** 2
    <= TORUS_MINOR ** 2,
}
PRIMITIVES = tuple(INSIDE)


def unit_mesh(kind: str):
    """The unit-size primitive as a closed trimesh centred on the origin."""
    import trimesh
    from trimesh import creation

    if kind in ("sphere", "ellipsoid"):
        return creation.icosphere(subdivisions=4, radius=0.5)
    if kind == "box":
        return creation.box(extents=(1.0, 1.0, 1.0))
    if kind == "cylinder":
        return creation.cylinder(radius=0.5, height=1.0, sections=64)
    if kind == "cone":
        return creation.cone(radius=0.5, height=1.0, sections=64).apply_translation((0, 0, -0.5))
    if kind == "pyramid":
        corners = [(-0.5, -0.5, -0.5), (0.5, -0.5, -0.5), (0.5, 0.5, -0.5), (-0.5, 0.5, -0.5),
                   (0.0, 0.0, 0.5)]
        return trimesh.convex.convex_hull(np.array(corners))
    if kind == "torus":
        return creation.torus(major_radius=TORUS_MAJOR, minor_radius=TORUS_MINOR,
                              major_sections=64, minor_sections=24)
    raise ValueError(f"unknown primitive '{kind}' (known: {', '.join(PRIMITIVES)})")


def primitive_points(kind: str, count: int, size: Tuple[float, float, float] = (1.0, 1.0, 1.0),
                     color: Optional[Tuple[float, float, float]] = None, fill: str = "auto",
                     seed: int = 0) -> PointCloud:
    """``count`` points on (``fill=surface``) or in (``volume``) a primitive scaled by ``size``.

    ``color`` None: random colours for ``sphere``, grey otherwise; ``fill=auto``:
    volume for ``sphere``, surface otherwise.  Units: the unit shape times ``size``.
    """
    if fill == "auto":
        fill = "volume" if kind == "sphere" else "surface"
    scale = np.asarray(size, np.float64)  # [3]
    if fill == "volume":
        positions = volume_samples(kind, count, seed) * scale
    else:
        positions = sample_mesh(unit_mesh(kind).apply_scale(scale), count, seed).positions.numpy()
    colors = primitive_colors(kind, count, color, seed)
    return PointCloud(torch.from_numpy(positions.astype(np.float32)), colors)


def volume_samples(kind: str, count: int, seed: int) -> np.ndarray:  # [count, 3]
    """Uniform points inside the unit primitive, by rejection from the cube [-0.5, 0.5]^3."""
    inside = INSIDE[kind]
    rng = np.random.default_rng(seed)
    kept = []
    remaining = count
    while remaining > 0:
        candidates = rng.uniform(-0.5, 0.5, size=(max(4 * remaining, 64), 3))
        chosen = candidates[inside(candidates)][:remaining]
        kept.append(chosen)
        remaining -= len(chosen)
    return np.concatenate(kept)


def primitive_colors(kind: str, count: int, color: Optional[Tuple[float, float, float]],
                     seed: int) -> torch.Tensor:  # [count, 3]
    if color is not None:
        return torch.tensor(color, dtype=torch.float32).expand(count, 3).clone()
    if kind == "sphere":
        return torch.rand(count, 3, generator=torch.Generator().manual_seed(seed))
    return torch.tensor(GREY, dtype=torch.float32).expand(count, 3).clone()

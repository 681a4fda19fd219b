"""Meshes from a radiance field: marching cubes on its density grid, vertex colours.

``mesh.ply`` (binary, float xyz + uchar rgb per vertex, triangles) opens in
MeshLab, Blender and trimesh; ``mesh.obj`` writes the colours as the common
``v x y z r g b`` extension.  Marching cubes (Lorensen & Cline 1987) comes from
PyMCubes; the sampled grid is padded with empty cells so every surface closes.

``field_to_gaussians`` turns the same surface into Gaussians in gsplat's layout
(one small isotropic Gaussian per mesh vertex, coloured like the vertex) so
the NeRF result also opens in splat viewers as ``model.ply``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..render.sh import rgb_to_sh0
from ..utils.io import write_text, write_with


def grid_points(resolution: int, bound: float, device: torch.device) -> Tensor:  # [G^3, 3]
    """Vertices of a G^3 lattice spanning [-bound, bound]^3, x-major (index i, j, k -> x, y, z)."""
    axis = torch.linspace(-bound, bound, resolution, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).view(-1, 3)


@torch.no_grad()
def sample_grid(fn: Callable[[Tensor], Tensor], points: Tensor, chunk: int = 65536) -> Tensor:
    """``fn`` evaluated on points [N, 3] in chunks (no gradients)."""
    return torch.cat([fn(p) for p in points.split(chunk)])


def marching_cubes(volume: np.ndarray, threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """Iso-surface {volume = threshold} of a [G, G, G] grid: vertices [V, 3] in index units, faces [F, 3].

    The grid is padded with a layer below the threshold so surfaces touching
    the border still close; faces are oriented outwards (density above the
    threshold is inside).
    """
    try:
        import mcubes
    except ImportError as err:  # pragma: no cover - a missing optional dependency
        raise ImportError("mesh export needs PyMCubes: pip install PyMCubes") from err
    padded = np.pad(volume.astype(np.float64), 1, mode="constant",
                    constant_values=min(float(volume.min()), threshold) - 1.0)
    vertices, faces = mcubes.marching_cubes(padded, threshold)
    vertices = vertices - 1.0  # undo the padding
    faces = faces.astype(np.int64)
    if len(faces) and signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    return vertices, faces


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh (positive when faces point outwards)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def extract_mesh(field, resolution: int, threshold: float, bound: float,
                 chunk: int = 65536) -> Dict[str, np.ndarray]:
    """Mesh of {sigma = threshold} of ``field`` (``density``/``color`` methods) in [-bound, bound]^3.

    Returns vertices [V, 3] (scene units), faces [F, 3] int, colors [V, 3] uint8.
    """
    if resolution < 8:
        raise ConfigError(f"config key 'nerf.mesh_resolution': {resolution!r} must be >= 8")
    device = next(field.parameters()).device
    points = grid_points(resolution, bound, device)
    density = sample_grid(field.density, points, chunk).view((resolution,) * 3).cpu().numpy()
    vertices, faces = marching_cubes(density, threshold)
    vertices = (vertices / (resolution - 1) * 2.0 - 1.0) * bound  # index -> world
    colors = np.zeros((len(vertices), 3), dtype=np.uint8)
    if len(vertices):
        rgb = sample_grid(field.color, torch.as_tensor(vertices, dtype=torch.float32, device=device), chunk)
        colors = (rgb.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return {"vertices": vertices.astype(np.float32), "faces": faces, "colors": colors}


def save_mesh_ply(path: Path, mesh: Dict[str, np.ndarray]) -> None:
    """Binary little-endian PLY: vertex (x, y, z float; red, green, blue uchar), face (vertex_indices)."""
    from plyfile import PlyData, PlyElement

    v, c = mesh["vertices"], mesh["colors"]
    vertex = np.empty(len(v), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"),
                                     ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, name in enumerate("xyz"):
        vertex[name] = v[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        vertex[name] = c[:, i]
    face = np.empty(len(mesh["faces"]), dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = mesh["faces"]
    data = PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")])
    write_with(path, data.write)


def save_mesh_obj(path: Path, mesh: Dict[str, np.ndarray]) -> None:
    """Wavefront OBJ with per-vertex colours in [0, 1] (``v x y z r g b``), 1-based faces."""
    rgb = mesh["colors"].astype(np.float32) / 255.0
    lines = [f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}"
             for (x, y, z), (r, g, b) in zip(mesh["vertices"].tolist(), rgb.tolist())]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh["faces"].tolist()]
    write_text(path, "# nfsd_gs NeRF mesh\n" + "\n".join(lines) + "\n")


def mesh_to_gaussians(mesh: Dict[str, np.ndarray], scale: float,
                      opacity: float = 0.95) -> Dict[str, Tensor]:
    """One isotropic Gaussian per mesh vertex (std ``scale``), in gsplat's layout:
    means [N, 3], scales [N, 3] log, quats [N, 4] wxyz, opacities [N] logit, sh0 [N, 1, 3], shN [N, 0, 3]."""
    n = len(mesh["vertices"])
    rgb = torch.as_tensor(mesh["colors"], dtype=torch.float32) / 255.0  # [N, 3]
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    return {
        "means": torch.as_tensor(mesh["vertices"], dtype=torch.float32),
        "scales": torch.full((n, 3), math.log(scale)),
        "quats": quats,
        "opacities": torch.full((n,), math.log(opacity / (1.0 - opacity))),
        "sh0": rgb_to_sh0(rgb)[:, None, :],
        "shN": torch.zeros(n, 0, 3),
    }


def export_field(field, run_dir: Path) -> Path:
    """``mesh.ply`` (+ ``mesh.obj``, + Gaussians ``model.ply``) of a NerfField; returns mesh.ply."""
    c = field.config
    mesh = extract_mesh(field, c.mesh_resolution, c.mesh_threshold, c.bound_radius)
    path = run_dir / "mesh.ply"
    save_mesh_ply(path, mesh)
    if c.export_obj:
        save_mesh_obj(run_dir / "mesh.obj", mesh)
    if c.export_gaussians and len(mesh["vertices"]):
        from ..formats.ply import save_ply

        voxel = 2.0 * c.bound_radius / (c.mesh_resolution - 1)
        save_ply(run_dir / "model.ply", mesh_to_gaussians(mesh, scale=0.6 * voxel))
    return path

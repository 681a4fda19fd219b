"""Coloured points sampled on triangle meshes (trimesh), area-uniformly.

Colours come, in this order of preference, from the mesh's texture (looked up
at each vertex's UV by trimesh, then interpolated), its vertex colours
(interpolated with the sample's barycentric coordinates) or its face colours;
a mesh without any gets ``default_color``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .points import PointCloud

GREY = (0.5, 0.5, 0.5)


def sample_meshes(meshes: Sequence["trimesh.Trimesh"], count: int, seed: int = 0,  # noqa: F821
                  default_color: Tuple[float, float, float] = GREY) -> PointCloud:
    """``count`` points over all ``meshes`` together, each mesh getting a share proportional to its area."""
    meshes = [m for m in meshes if len(m.faces) > 0 and m.area > 0]
    if not meshes:
        return PointCloud(torch.zeros(0, 3), torch.zeros(0, 3))
    areas = np.array([m.area for m in meshes])
    rng = np.random.default_rng(seed)
    shares = rng.multinomial(count, areas / areas.sum())  # points per mesh
    clouds = [sample_mesh(m, int(k), int(rng.integers(2**31)), default_color)
              for m, k in zip(meshes, shares) if k > 0]
    positions = torch.cat([c.positions for c in clouds])
    colors = torch.cat([c.colors for c in clouds])
    return PointCloud(positions, colors)


def sample_mesh(mesh, count: int, seed: int,
                default_color: Tuple[float, float, float] = GREY) -> PointCloud:
    """``count`` area-uniform surface points of one mesh with their colours."""
    import trimesh

    points, faces, barycentric = trimesh.sample.sample_surface(
        mesh, count, return_barycentric=True, seed=seed)  # [M, 3], [M], [M, 3]
    vertex_rgb = vertex_colors(mesh)  # [V, 3] or None
    if vertex_rgb is not None:
        corners = vertex_rgb[mesh.faces[faces]]  # [M, 3 corners, 3 channels]
        colors = np.einsum("mc,mcd->md", barycentric, corners)
    else:
        face_rgb = face_colors(mesh)
        colors = face_rgb[faces] if face_rgb is not None else np.tile(default_color, (len(faces), 1))
    return PointCloud(torch.from_numpy(np.asarray(points, np.float32)),
                      torch.from_numpy(np.clip(colors, 0.0, 1.0).astype(np.float32)))


def vertex_colors(mesh) -> Optional[np.ndarray]:  # [V, 3] in [0, 1]
    """Per-vertex RGB from a texture (via its UVs) or explicit vertex colours, else None."""
    visual = mesh.visual
    if visual is None:
        return None
    if visual.kind == "texture":
        try:
            visual = visual.to_color()  # samples the texture image at each vertex's UV
        except Exception:  # a material without an image: trimesh falls back badly
            return None
    if visual.kind == "vertex":
        return np.asarray(visual.vertex_colors, np.float64)[:, :3] / 255.0
    return None


def face_colors(mesh) -> Optional[np.ndarray]:  # [F, 3] in [0, 1]
    visual = mesh.visual
    if visual is not None and visual.kind == "face":
        return np.asarray(visual.face_colors, np.float64)[:, :3] / 255.0
    return None

"""Meshes from both representations: a scalar field on a grid, marching cubes, one surface.

One path for the Gaussians and the NeRF field::

    field on a grid -> marching cubes (PyMCubes; Lorensen & Cline 1987)
      -> the main connected component (trimesh) -> decimation to a face budget
      (fast-simplification's quadric decimation, through trimesh; by default the budget
      comes from the object: :func:`face_budget`) -> vertex colours
      -> optionally a UV atlas and a texture baked from the Gaussians' renders (texture.py)
      -> .glb / .obj / .ply (trimesh), written atomically

The Gaussians' field is DreamGaussian's stage-2 opacity field (Tang et al.,
ICLR 2024, Sec. 3.3 "Mesh Extraction"): with opacities o_i, means mu_i and
covariances Sigma_i = R_i S_i S_i^T R_i^T (3DGS, Kerbl et al. 2023, eq. 6),

    d(x) = sum_i o_i exp(-1/2 (x - mu_i)^T Sigma_i^-1 (x - mu_i)),

splatted onto the grid: each Gaussian adds its term to the samples inside its
3-sigma box, Gaussians of similar box size a group at a time (one vectorised
pass a group, on the GPU when there is one).  Vertex colours are the Gaussians'
base colour (SH DC -> RGB) of the nearest Gaussians, each weighted by its term
of d at the vertex.
The NeRF's field is its density sigma(x) and its colours are ``field.color``.
The grid is padded with empty cells, so every surface is closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..config import OutputConfig
from ..errors import ConfigError, NfsdError
from ..render.reference import quats_to_rotmats
from ..render.sh import SH_C0, rgb_to_sh0
from ..utils.device import auto_device_type
from ..utils.io import write_with
from ..utils.timing import NO_TIMER
from .texture import bake_texture, check_texture_size

#: What ``save_mesh`` writes, chosen by the file's suffix.
MESH_SUFFIXES = (".glb", ".obj", ".ply")
#: Gaussians fainter than this (gsplat's alpha threshold) add nothing to the field.
MIN_OPACITY = 1.0 / 255.0
#: A Gaussian reaches this many standard deviations (the 3-sigma box).
SIGMAS = 3.0
#: Grid samples (Gaussians x their padded boxes) evaluated at once when splatting the field:
#: bounds the memory (a few tens of bytes a sample) and keeps the kernel launches few.
SPLAT_CHUNK = {"cuda": 1 << 24, "cpu": 1 << 21}
#: The face budget from the object (:func:`face_budget`) stays within these bounds.
MIN_AUTO_FACES, MAX_AUTO_FACES = 2_000, 200_000
#: A field without a scale of its own (the NeRF's) gets triangle edges of this many grid cells.
AUTO_EDGE_CELLS = 2.0
#: The bake's visibility test: a view sees a texel unless the Gaussians' depth there is in
#: front of the texel's by more than this many Gaussian scales (or AUTO_EDGE_CELLS cells).
DEPTH_TOLERANCE_SCALES = 3.0


class EmptyMeshError(NfsdError):
    """The field never reaches the iso level: there is no surface to write."""


# --------------------------------------------------------------------------- settings


@dataclass
class MeshSettings:
    """How a mesh is extracted; ``output.mesh_*`` for runs, the export command's options."""

    #: Grid samples along the longest side of the box.
    resolution: int = OutputConfig.mesh_resolution
    #: Iso level of the field (opacity for Gaussians).
    iso: float = OutputConfig.mesh_iso
    #: Decimate to at most this many faces; 0 keeps every face; None: :func:`face_budget`.
    faces: Optional[int] = OutputConfig.mesh_faces
    #: Texture size in texels (texture.py); 0: vertex colours.
    texture: int = OutputConfig.mesh_texture

    @classmethod
    def from_output(cls, output) -> "MeshSettings":
        settings = cls(output.mesh_resolution, output.mesh_iso, output.mesh_faces,
                       output.mesh_texture)
        settings.check()
        return settings

    def check(self, where: str = "config key 'output.mesh_{}'") -> None:
        """Bad values are a :class:`ConfigError` naming the key (``where`` formatted with the field)."""
        problems = [("resolution", self.resolution >= 8, "must be >= 8"),
                    ("iso", math.isfinite(self.iso) and self.iso > 0, "must be > 0"),
                    ("faces", self.faces is None or self.faces == 0 or self.faces >= 4,
                     "must be 0 (keep all), >= 4, or left out (a budget from the object)")]
        for name, ok, requirement in problems:
            if not ok:
                raise ConfigError(f"{where.format(name)}: {getattr(self, name)!r} {requirement}")
        check_texture_size(self.texture, where.format("texture"))


def check_output_config(output) -> None:
    """Validate the ``output.mesh*`` keys before a run starts (when ``output.mesh`` is on)."""
    if output.mesh:
        MeshSettings.from_output(output)


def check_mesh_path(path: Path, texture: int = 0) -> Path:
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise NfsdError(f"'{path}': a mesh is written as {', '.join(MESH_SUFFIXES)}, "
                        f"not '{Path(path).suffix or 'no suffix'}'")
    if texture and suffix != ".glb":
        raise NfsdError(f"'{path}': a textured mesh is written as .glb (the texture inside), "
                        f"not {suffix}; or use vertex colours (texture size 0)")
    return Path(path)


def face_count(text: str) -> Optional[int]:
    """A face budget option: ``auto`` (None: :func:`face_budget`) or a whole number."""
    import argparse

    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'auto'") from None


def face_budget(area: float, edge: float) -> int:
    """Faces of a mesh of ``area`` whose triangles are equilateral with side ``edge``
    (area / (sqrt(3)/4 edge^2)), within [MIN_AUTO_FACES, MAX_AUTO_FACES].

    With ``edge`` the Gaussians' typical scale (:attr:`GaussianField.scale`), triangles are
    as fine as the finest detail the Gaussians hold and no finer."""
    faces = area / (math.sqrt(3.0) / 4.0 * edge * edge)
    return int(min(max(faces, MIN_AUTO_FACES), MAX_AUTO_FACES))


# --------------------------------------------------------------------------- grids


@dataclass
class Grid:
    """Sample points origin + cell * (i, j, k), 0 <= (i, j, k) < shape (x-major)."""

    origin: np.ndarray  # [3] world position of sample (0, 0, 0)
    cell: float  # spacing in scene units
    shape: Tuple[int, int, int]

    @classmethod
    def cube(cls, resolution: int, bound: float) -> "Grid":
        """``resolution``^3 samples spanning [-bound, bound]^3."""
        return cls(np.full(3, -bound), 2.0 * bound / (resolution - 1), (resolution,) * 3)

    @classmethod
    def box(cls, lo: np.ndarray, hi: np.ndarray, resolution: int) -> "Grid":
        """Samples covering [lo, hi], ``resolution`` along the longest side, cubic cells."""
        cell = float((hi - lo).max()) / (resolution - 1)
        shape = tuple(int(math.ceil(s / cell)) + 1 for s in (hi - lo))
        return cls(np.asarray(lo, np.float64), cell, shape)

    def points(self, start: Tuple[int, int, int], stop: Tuple[int, int, int],
               device: torch.device) -> Tensor:  # [P, 3], x-major
        axes = [torch.arange(a, b, device=device, dtype=torch.float32) * self.cell + float(o)
                for a, b, o in zip(start, stop, self.origin)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).view(-1, 3)

    def blocks(self, size: int) -> Iterator[Tuple[Tuple[int, int, int], Tuple[int, int, int]]]:
        """(start, stop) index ranges of the blocks of at most ``size``^3 samples."""
        nx, ny, nz = self.shape
        for i in range(0, nx, size):
            for j in range(0, ny, size):
                for k in range(0, nz, size):
                    yield (i, j, k), (min(i + size, nx), min(j + size, ny), min(k + size, nz))

    def sample(self, fn: Callable[[Tensor], Tensor], device: torch.device,
               block: int = 32) -> np.ndarray:  # [nx, ny, nz] float32
        """``fn(points [P, 3]) -> [P]`` on every sample, one block at a time (no gradients)."""
        volume = np.zeros(self.shape, np.float32)
        with torch.no_grad():
            for start, stop in self.blocks(block):
                values = fn(self.points(start, stop, device))
                volume[tuple(slice(a, b) for a, b in zip(start, stop))] = (
                    values.view(*(b - a for a, b in zip(start, stop))).float().cpu().numpy())
        return volume


# --------------------------------------------------------------------------- the shared path


def marching_cubes(volume: np.ndarray, threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """Iso-surface {volume = threshold} of a grid: vertices [V, 3] in index units, faces [F, 3].

    The grid is padded with a layer below the threshold so surfaces touching
    the border still close; faces are oriented outwards (values above the
    threshold are inside).
    """
    import mcubes

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


def surface_mesh(volume: np.ndarray, grid: Grid, iso: float, max_faces: Optional[int],
                 colors_at: Callable[[np.ndarray], np.ndarray], what: str = "field",
                 edge: Optional[float] = None, timer=NO_TIMER):
    """The main component of {volume = iso}, decimated to ``max_faces`` (0: all; None:
    :func:`face_budget` with triangle sides ``edge``, default AUTO_EDGE_CELLS cells), coloured.

    ``colors_at(vertices [V, 3] world) -> [V, 3] uint8``.  Returns a ``trimesh.Trimesh``
    in world units; nothing above ``iso`` is an :class:`EmptyMeshError`.  ``timer`` (a
    ``PhaseTimer``) gets the phases ``marching_cubes``, ``simplify`` and ``bake`` (the colours).
    """
    import trimesh

    peak = float(volume.max()) if volume.size else 0.0
    if not peak > iso:
        raise EmptyMeshError(f"the {what} never exceeds the iso level {iso:g} (its maximum is "
                             f"{peak:.3g}): no surface; lower the iso level")
    with timer.phase("marching_cubes"):
        vertices, faces = marching_cubes(volume, iso)
        mesh = main_component(trimesh.Trimesh(grid.origin + vertices * grid.cell, faces,
                                              process=True))
    with timer.phase("simplify"):
        if max_faces is None:
            max_faces = face_budget(float(mesh.area), edge or AUTO_EDGE_CELLS * grid.cell)
        if 0 < max_faces < len(mesh.faces):
            mesh = main_component(decimate(mesh, max_faces))  # collapses can pinch off slivers
    with timer.phase("bake"):
        mesh.visual.vertex_colors = colors_at(np.asarray(mesh.vertices))
    return mesh


def main_component(mesh):
    """The connected component with the most faces (floaters and slivers dropped)."""
    parts = mesh.split(only_watertight=False)
    return max(parts, key=lambda part: len(part.faces)) if len(parts) > 1 else mesh


def decimate(mesh, max_faces: int):
    """Quadric edge-collapse decimation (Garland & Heckbert 1997) by fast-simplification.

    Collapses keep the surface closed in most cases, not all: a strong reduction can
    leave a few non-manifold edges (see BENCHMARKS.md)."""
    try:
        import fast_simplification  # noqa: F401  (trimesh imports it inside)
    except ImportError:
        raise NfsdError("decimating a mesh needs fast-simplification (pip install "
                        "fast-simplification), or keep every face with a face budget of 0") from None
    return mesh.simplify_quadric_decimation(face_count=max_faces)


def save_mesh(path: Path, mesh) -> Path:
    """Write ``mesh`` (its vertex colours, or its texture in a .glb) as .glb, .obj or .ply,
    by suffix, atomically."""
    path = check_mesh_path(path, textured(mesh))
    data = mesh.export(file_type=path.suffix.lower()[1:])
    write_with(path, lambda handle: handle.write(data.encode() if isinstance(data, str) else data))
    return path


def textured(mesh) -> bool:
    """Whether ``mesh`` carries a UV texture (texture.py) rather than vertex colours."""
    return getattr(mesh.visual, "kind", None) == "texture"


# --------------------------------------------------------------------------- Gaussians


@dataclass
class GaussianField:
    """What the opacity field needs of Gaussians in gsplat's layout (no gradients)."""

    means: Tensor  # [N, 3]
    inverse_covariances: Tensor  # [N, 3, 3] Sigma^-1 = R S^-2 R^T
    reach: Tensor  # [N, 3] half-size of the axis-aligned 3-sigma box
    opacities: Tensor  # [N] in (0, 1)
    rgb: Tensor  # [N, 3] base colour (SH DC) in [0, 1]
    #: Typical size: the median over Gaussians of the middle of their three scales (a
    #: surface's Gaussians are flat: their middle axis is their smaller extent along it).
    scale: float

    @classmethod
    def from_splats(cls, splats: Mapping[str, Tensor], device: torch.device) -> "GaussianField":
        opacities = torch.sigmoid(splats["opacities"].detach().float().to(device))
        keep = opacities >= MIN_OPACITY
        rotations = quats_to_rotmats(splats["quats"].detach().float().to(device)[keep])  # [N, 3, 3]
        scales = torch.exp(splats["scales"].detach().float().to(device)[keep])  # [N, 3]
        inverse = rotations @ torch.diag_embed(scales.pow(-2)) @ rotations.transpose(1, 2)
        variances = (rotations.square() * scales.square()[:, None, :]).sum(-1)  # diag Sigma [N, 3]
        sh0 = splats["sh0"].detach().float().to(device)[keep]  # [N, 1, 3]
        scale = float(scales.sort(-1).values[:, 1].median()) if len(scales) else 0.0
        return cls(splats["means"].detach().float().to(device)[keep], inverse,
                   SIGMAS * variances.sqrt(), opacities[keep],
                   (sh0[:, 0, :] * SH_C0 + 0.5).clamp(0.0, 1.0), scale)

    def __len__(self) -> int:
        return len(self.means)

    def volume(self, grid: Grid, chunk: Optional[int] = None) -> np.ndarray:  # [nx, ny, nz]
        """d on every sample of ``grid`` (module docstring): each Gaussian adds
        o_i exp(-1/2 (x - mu_i)^T Sigma_i^-1 (x - mu_i)) to the samples x inside its 3-sigma box.

        Gaussians are taken in order of box volume, a group at a time; a group's boxes are
        padded to the group's largest sides (the padding adds zeros), so the quadratic form is
        a sum of broadcast products over a dense [G, bx, by, bz] block and the sums go into
        the grid by one ``index_add_``.  A group holds at most ``chunk`` samples (memory).
        Beyond its box a Gaussian is left out: at most exp(-4.5) of its opacity.
        """
        device = self.means.device
        chunk = chunk or SPLAT_CHUNK["cuda" if device.type == "cuda" else "cpu"]
        origin = torch.as_tensor(grid.origin, dtype=torch.float32, device=device)
        sides = torch.tensor(grid.shape, device=device)
        first = ((self.means - self.reach - origin) / grid.cell).ceil().long().clamp(min=0)  # [N, 3]
        last = torch.minimum(((self.means + self.reach - origin) / grid.cell).floor().long(), sides - 1)
        box = (last - first + 1).clamp(min=0)  # [N, 3] samples per side of each 3-sigma box
        order = torch.argsort(box.prod(-1))
        order = order[box[order].prod(-1) > 0]  # boxes outside the grid add nothing
        a = self.inverse_covariances
        quadratic = torch.stack([a[:, 0, 0], a[:, 1, 1], a[:, 2, 2],
                                 2 * a[:, 0, 1], 2 * a[:, 0, 2], 2 * a[:, 1, 2]], -1)  # [N, 6]
        volume = torch.zeros(math.prod(grid.shape), device=device)
        with torch.no_grad():
            for group in padded_groups(box[order], chunk):
                self._splat(volume, grid, order[group], first, box, quadratic, origin)
        return volume.view(grid.shape).cpu().numpy()

    def _splat(self, volume: Tensor, grid: Grid, group: Tensor, first: Tensor, box: Tensor,
               quadratic: Tensor, origin: Tensor) -> None:
        """Add the terms of the Gaussians ``group`` [G] over their boxes to ``volume`` [nx*ny*nz]."""
        shape = box[group].amax(0).tolist()  # the group's padded box
        axes = []  # per axis: grid index [G, n] and offset from the mean [G, n]; 0 outside the box
        for axis, n in enumerate(shape):
            step = torch.arange(n, device=volume.device)
            index = first[group, axis, None] + step  # [G, n]
            offset = origin[axis] + index * grid.cell - self.means[group, axis, None]
            inside = step < box[group, axis, None]
            axes.append((index.clamp(max=grid.shape[axis] - 1), offset, inside))
        (ix, x, in_x), (iy, y, in_y), (iz, z, in_z) = axes
        q = quadratic[group]  # [G, 6]
        qx = q[:, 0, None] * x * x  # [G, nx] the terms in x alone, and so on
        qy = q[:, 1, None] * y * y
        qz = q[:, 2, None] * z * z
        xy = (q[:, 3, None] * x)[:, :, None] * y[:, None, :]  # [G, nx, ny]
        xz = (q[:, 4, None] * x)[:, :, None, None] * z[:, None, None, :]  # [G, nx, 1, nz]
        yz = (q[:, 5, None] * y)[:, :, None] * z[:, None, :]  # [G, ny, nz]
        plane = (qx[:, :, None] + qy[:, None, :] + xy)[..., None]  # [G, nx, ny, 1]
        mahalanobis = plane + (qz[:, None, :] + yz)[:, None] + xz  # [G, nx, ny, nz]
        weight = (self.opacities[group, None, None] * (in_x[:, :, None] & in_y[:, None, :]))
        values = torch.exp(mahalanobis.clamp_(min=0).mul_(-0.5)).mul_(weight[..., None])
        values.mul_(in_z[:, None, None, :])
        flat = ((ix * grid.shape[1])[:, :, None] + iy[:, None, :]) * grid.shape[2]  # [G, nx, ny]
        flat = flat[..., None] + iz[:, None, None, :]  # [G, nx, ny, nz]
        volume.index_add_(0, flat.view(-1), values.view(-1))

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:  # 2x [3]
        """The box holding every Gaussian's 3-sigma box."""
        lo = (self.means - self.reach).amin(0).double().cpu().numpy()
        hi = (self.means + self.reach).amax(0).double().cpu().numpy()
        return lo, hi

    def colors_at(self, vertices: np.ndarray, neighbours: int = 16,
                  chunk: int = 65536) -> np.ndarray:  # [V, 3] world -> [V, 3] uint8
        """Base colours of the ``neighbours`` nearest Gaussians, each weighted by o_i exp(-maha/2)."""
        from scipy.spatial import cKDTree

        field = self.to("cpu")
        k = min(neighbours, len(field))
        _, nearest = cKDTree(field.means.double().numpy()).query(vertices, k=k)
        nearest = torch.as_tensor(nearest.reshape(len(vertices), k))  # [V, k]
        points = torch.as_tensor(vertices, dtype=torch.float32)  # [V, 3]
        rgb = torch.empty(len(vertices), 3)
        for rows in torch.arange(len(vertices)).split(chunk):
            index = nearest[rows]  # [v, k]
            offset = points[rows, None, :] - field.means[index]  # [v, k, 3]
            mahalanobis = torch.einsum("vki,vkij,vkj->vk", offset, field.inverse_covariances[index],
                                       offset)
            weights = field.opacities[index] * torch.exp(-0.5 * mahalanobis) + 1e-12  # [v, k]
            rgb[rows] = (weights[..., None] * field.rgb[index]).sum(1) / weights.sum(1, keepdim=True)
        return (rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)

    def to(self, device) -> "GaussianField":
        return GaussianField(*(t.to(device) for t in (self.means, self.inverse_covariances,
                                                      self.reach, self.opacities, self.rgb)),
                             self.scale)


def padded_groups(box: Tensor, chunk: int) -> Iterator[slice]:
    """Consecutive slices of ``box`` [N, 3] (boxes in order of volume) whose count times
    their largest sides stays within ``chunk`` samples (a single box may exceed it)."""
    start, count = 0, len(box)
    while start < count:
        size = max(1, chunk // max(1, int(box[start].prod())))
        while size > 1 and size * math.prod(box[start:start + size].amax(0).tolist()) > chunk:
            size = (size + 1) // 2
        yield slice(start, min(start + size, count))
        start += size


def gaussians_mesh(splats: Mapping[str, Tensor], settings: MeshSettings = MeshSettings(),
                   device: torch.device | str | None = None, timer=NO_TIMER, **bake):
    """The surface {d = iso} of Gaussians in gsplat's layout (means [N, 3], scales [N, 3] log,
    quats [N, 4] wxyz, opacities [N] logit, sh0 [N, 1, 3], shN [N, K-1, 3]) as a
    ``trimesh.Trimesh`` with vertex colours, or with a baked texture when ``settings.texture``.

    ``device``: where the field is evaluated and the texture baked (default: CUDA when there
    is one); ``timer``: a ``PhaseTimer`` for the phases ``field``, ``marching_cubes``,
    ``simplify``, ``unwrap`` and ``bake``; ``bake``: ``views``/``resolution`` of
    :func:`~nfsd_gs.export.texture.bake_texture`.
    """
    settings.check()
    device = torch.device(device or auto_device_type())
    with timer.phase("field"):
        field = GaussianField.from_splats(splats, device)
        if len(field) == 0:
            raise EmptyMeshError(f"no Gaussian is more opaque than {MIN_OPACITY:.3g}: no surface")
        grid = Grid.box(*field.bounds(), settings.resolution)
        volume = field.volume(grid)
    mesh = surface_mesh(volume, grid, settings.iso, settings.faces, field.colors_at,
                        what="Gaussians' opacity field", edge=field.scale, timer=timer)
    if not settings.texture:
        return mesh
    tolerance = max(DEPTH_TOLERANCE_SCALES * field.scale, AUTO_EDGE_CELLS * grid.cell)
    on_device = {key: value.detach().to(device) for key, value in splats.items()}
    return bake_texture(mesh, on_device, settings.texture, tolerance, timer=timer, **bake)


def export_mesh(splats: Mapping[str, Tensor], path: Path, settings: MeshSettings = MeshSettings(),
                device: torch.device | str | None = None, timer=NO_TIMER, **bake):
    """Write the Gaussians' mesh (:func:`gaussians_mesh`) to ``path`` (.glb, .obj or .ply;
    .glb only when textured); returns the mesh.  Nothing is written when there is no surface."""
    check_mesh_path(path, settings.texture)
    mesh = gaussians_mesh(splats, settings, device, timer, **bake)
    with timer.phase("write"):
        save_mesh(path, mesh)
    return mesh


def export_model_mesh(model, path: Path, settings: MeshSettings):
    """``output.mesh``: the mesh of a trained representation, whichever it is; returns it.

    Gaussians: their opacity field at ``settings.iso``; the NeRF field: its density at
    ``nerf.mesh_threshold`` in its bounding cube."""
    check_mesh_path(path, settings.texture)
    mesh = model.mesh(settings)
    save_mesh(path, mesh)
    return mesh


# --------------------------------------------------------------------------- NeRF


def extract_mesh(field, resolution: int, threshold: float, bound: float,
                 max_faces: Optional[int] = 0):
    """Mesh of {sigma = threshold} of ``field`` (``density``/``color`` methods) in [-bound, bound]^3,
    as a coloured ``trimesh.Trimesh`` (scene units); ``max_faces``: 0 keeps all, None a
    :func:`face_budget` with triangles AUTO_EDGE_CELLS cells wide."""
    if resolution < 8:
        raise ConfigError(f"config key 'nerf.mesh_resolution': {resolution!r} must be >= 8")
    device = next(field.parameters()).device
    grid = Grid.cube(resolution, bound)
    volume = grid.sample(field.density, device)

    def colors_at(vertices: np.ndarray) -> np.ndarray:
        points = torch.as_tensor(vertices, dtype=torch.float32, device=device)
        with torch.no_grad():
            rgb = torch.cat([field.color(p) for p in points.split(65536)])
        return (rgb.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)

    return surface_mesh(volume, grid, threshold, max_faces, colors_at, what="NeRF density")


def mesh_to_gaussians(mesh, scale: float, opacity: float = 0.95) -> Dict[str, Tensor]:
    """One isotropic Gaussian per mesh vertex (std ``scale``), in gsplat's layout:
    means [N, 3], scales [N, 3] log, quats [N, 4] wxyz, opacities [N] logit, sh0 [N, 1, 3], shN [N, 0, 3]."""
    n = len(mesh.vertices)
    rgb = torch.as_tensor(np.asarray(mesh.visual.vertex_colors)[:, :3], dtype=torch.float32) / 255.0
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    return {
        "means": torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32),
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
    path = save_mesh(run_dir / "mesh.ply", mesh)
    if c.export_obj:
        save_mesh(run_dir / "mesh.obj", mesh)
    if c.export_gaussians:
        from ..formats.ply import save_ply

        voxel = 2.0 * c.bound_radius / (c.mesh_resolution - 1)
        save_ply(run_dir / "model.ply", mesh_to_gaussians(mesh, scale=0.6 * voxel))
    return path

"""Priors from files: point clouds, meshes, and 3DGS ``.ply`` files to continue optimizing.

* 3D Gaussians (a 3DGS or compressed ``.ply``, a ``.splat``, a ``.spz``):
  :func:`nfsd_gs.formats.load_splats`, kept as they are;
* a ``.ply`` without faces: a point cloud ``x y z`` [+ ``red green blue``,
  uchar 0-255 or float 0-1], randomly subsampled to ``init.num_points``;
* a mesh (``.ply`` with faces, ``.obj``, ``.glb``/``.gltf``, ``.stl``, ``.off``)
  through trimesh, every part placed by the file's scene graph, sampled
  area-uniformly on the surface with texture, vertex or face colours.

Files come in their own axes; :func:`nfsd_gs.init.points.to_world` turns them
into the trainer's (the default assumes glTF's: y up, +z front).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError, NfsdError, PlyFormatError
from ..formats import SPLAT_SUFFIXES, is_splat_file
from ..formats.ply import element, read_ply_header, read_vertex_table
from .meshes import GREY, sample_meshes
from .points import PointCloud

MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off")
FILE_SUFFIXES = tuple(dict.fromkeys(MESH_SUFFIXES + SPLAT_SUFFIXES))
COLOR_NAMES = (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue"),
               ("r", "g", "b"))


def check_init_path(path: Optional[str]) -> Path:
    """``init.path`` as an existing file of a supported type, else a :class:`ConfigError`."""
    if not path:
        raise ConfigError("config key 'init.path': init.kind=file needs a file")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"config key 'init.path': '{path}' does not exist or is not a file")
    if file.suffix.lower() not in FILE_SUFFIXES:
        raise ConfigError(f"config key 'init.path': '{path}' has an unsupported type "
                          f"(supported: {', '.join(FILE_SUFFIXES)})")
    return file


def read_file_points(path: Path, count: int, seed: int = 0,
                     default_color: Tuple[float, float, float] = GREY) -> PointCloud:
    """Up to ``count`` coloured points from a point cloud or a mesh file, in the file's axes."""
    if path.suffix.lower() == ".ply":
        header = read_ply_header(path)
        faces = element(header, "face")
        if faces is None or faces.count == 0:
            cloud = read_point_cloud_ply(path, header, default_color)
            return random_points(cloud, count, seed)
    return read_mesh_points(path, count, seed, default_color)


def read_point_cloud_ply(path: Path, header,
                         default_color: Tuple[float, float, float] = GREY) -> PointCloud:
    """``x y z`` [+ colours] of a point cloud ``.ply``; :class:`PlyFormatError` if unusable."""
    table = read_vertex_table(path, header)
    names = table.dtype.names or ()
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise PlyFormatError(f"{path}: point cloud lacks vertex properties {', '.join(missing)}")
    if len(table) == 0:
        raise PlyFormatError(f"{path}: the point cloud has zero points")
    positions = np.stack([table[a].astype(np.float32) for a in "xyz"], axis=1)  # [N, 3]
    if not np.isfinite(positions).all():
        raise PlyFormatError(f"{path}: the point cloud has non-finite coordinates")
    colors = ply_colors(table, default_color)  # [N, 3]
    return PointCloud(torch.from_numpy(positions), torch.from_numpy(colors))


def ply_colors(table: np.ndarray, default_color: Tuple[float, float, float]) -> np.ndarray:
    """[N, 3] RGB in [0, 1] from integer (0..type max) or float (0..1) colour properties."""
    names = table.dtype.names or ()
    for triple in COLOR_NAMES:
        if all(name in names for name in triple):
            channels = np.stack([table[name] for name in triple], axis=1)  # [N, 3]
            if np.issubdtype(channels.dtype, np.integer):
                rgb = channels.astype(np.float64) / np.iinfo(channels.dtype).max
            else:
                rgb = np.nan_to_num(channels.astype(np.float64), nan=0.5)
            return np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return np.tile(np.asarray(default_color, np.float32), (len(table), 1))


def random_points(cloud: PointCloud, count: int, seed: int) -> PointCloud:
    if len(cloud) <= count:
        return cloud
    keep = torch.randperm(len(cloud), generator=torch.Generator().manual_seed(seed))[:count]
    return cloud.subset(keep)


def read_mesh_points(path: Path, count: int, seed: int,
                     default_color: Tuple[float, float, float] = GREY) -> PointCloud:
    """Surface samples of every mesh in the file (scene-graph transforms applied) + any bare points."""
    geometries = load_geometries(path)
    meshes = [g for g in geometries if hasattr(g, "faces") and len(g.faces) > 0]
    cloud = sample_meshes(meshes, count, seed, default_color)
    if len(cloud) == 0:
        cloud = random_points(bare_points(geometries, default_color), count, seed)
    if len(cloud) == 0:
        raise file_error(path, "has no triangles or points")
    if not torch.isfinite(cloud.positions).all():
        raise file_error(path, "has non-finite vertex coordinates")
    return cloud


def load_geometries(path: Path) -> List:
    """All geometries of a mesh file, each moved by its scene-graph transform (trimesh)."""
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene")
        return list(scene.dump(concatenate=False))
    except NfsdError:
        raise
    except Exception as err:  # trimesh raises many kinds; the user needs one line
        reason = (str(err).splitlines() or [""])[0][:120]
        raise file_error(path, f"cannot be read as a mesh ({type(err).__name__}: {reason})") from None


def bare_points(geometries: List, default_color: Tuple[float, float, float]) -> PointCloud:
    """Vertices of point-cloud geometries (no faces), with their colours if any."""
    positions, colors = [], []
    for geometry in geometries:
        vertices = np.asarray(getattr(geometry, "vertices", np.zeros((0, 3))), np.float32)
        if len(vertices) == 0 or len(getattr(geometry, "faces", ())) > 0:
            continue
        rgba = getattr(geometry, "colors", None)
        if rgba is not None and len(rgba) == len(vertices):
            rgb = np.asarray(rgba, np.float32)[:, :3] / 255.0
        else:
            rgb = np.tile(np.asarray(default_color, np.float32), (len(vertices), 1))
        positions.append(vertices)
        colors.append(rgb)
    if not positions:
        return PointCloud(torch.zeros(0, 3), torch.zeros(0, 3))
    return PointCloud(torch.from_numpy(np.concatenate(positions)),
                      torch.from_numpy(np.concatenate(colors)))


def file_error(path: Path, what: str) -> NfsdError:
    """PlyFormatError for ``.ply`` files, ConfigError (naming init.path) for other types."""
    if path.suffix.lower() == ".ply":
        return PlyFormatError(f"{path}: {what}")
    return ConfigError(f"config key 'init.path': '{path}' {what}")

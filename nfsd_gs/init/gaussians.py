"""Coloured points -> initial 3D Gaussians in gsplat's layout (Kerbl et al. 2023, Sec. 5).

As in 3DGS, each Gaussian starts isotropic with a standard deviation equal to
the mean distance to its 3 nearest neighbours (here times ``scale_factor``),
the identity rotation, one opacity for all, and its colour in the degree-0
spherical-harmonic coefficient.  The neighbours come from
``scipy.spatial.cKDTree`` (3DGS uses its CUDA ``simple_knn``; no pytorch3d).
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from ..render.sh import SH_C0 as C0  # noqa: F401 -- rgb = 0.5 + C0 * sh0
from ..render.sh import rgb_to_sh0
from .points import PointCloud

#: Nearest neighbours averaged for the initial scale.
NEIGHBOURS = 3
#: Floor of the neighbour distance (scene units), so duplicated points get a finite log-scale.
MIN_DISTANCE = 1e-7


def nearest_neighbours(positions: Tensor, k: int) -> Tuple[np.ndarray, np.ndarray]:  # [N, k'] x2
    """Distances and indices of each point's ``k`` nearest other points (cKDTree), k' =
    min(k, N - 1) columns, nearest first."""
    points = positions.detach().cpu().double().numpy()  # [N, 3]
    k = min(k, len(points) - 1)
    if k < 1:
        return np.zeros((len(points), 0)), np.zeros((len(points), 0), dtype=np.int64)
    distances, indices = cKDTree(points).query(points, k=k + 1)  # [N, k+1], column 0: itself
    return distances[:, 1:], indices[:, 1:]


def mean_neighbour_distance(positions: Tensor, k: int = NEIGHBOURS) -> Tensor:  # [N, 3] -> [N]
    """Mean Euclidean distance of each point to its ``k`` nearest other points (cKDTree).

    With fewer than ``k + 1`` points, the available neighbours are used; a
    single point gets distance 1.
    """
    distances, _ = nearest_neighbours(positions, k)
    if distances.shape[1] == 0:
        return torch.ones(len(distances))
    mean = np.maximum(distances.mean(axis=1), MIN_DISTANCE)
    return torch.from_numpy(mean).float()


def gaussians_from_points(cloud: PointCloud, initial_opacity: float, scale_factor: float,
                          sh_degree: int) -> Dict[str, Tensor]:
    """Initial splats: means [N,3], scales [N,3] (log), quats [N,4] (wxyz), opacities [N]
    (logit), sh0 [N,1,3], shN [N,(sh_degree+1)^2-1,3] (zeros); float32 on the CPU."""
    n = len(cloud)
    distance = mean_neighbour_distance(cloud.positions) * scale_factor  # [N]
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0  # identity, w first
    logit = math.log(initial_opacity / (1.0 - initial_opacity))
    return {
        "means": cloud.positions.float().clone(),  # [N, 3]
        "scales": torch.log(distance)[:, None].repeat(1, 3),  # [N, 3]
        "quats": quats,  # [N, 4]
        "opacities": torch.full((n,), logit),  # [N]
        "sh0": rgb_to_sh0(cloud.colors.float().clamp(0.0, 1.0))[:, None, :],  # [N, 1, 3]
        "shN": torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3),  # [N, K-1, 3]
    }


def with_sh_degree(splats: Dict[str, Tensor], sh_degree: int) -> Dict[str, Tensor]:
    """``shN`` zero-padded or truncated to ``sh_degree`` (for a 3DGS file of another degree)."""
    shN = splats["shN"]  # [N, K-1, 3]
    wanted = (sh_degree + 1) ** 2 - 1
    if shN.shape[1] >= wanted:
        shN = shN[:, :wanted]
    else:
        shN = torch.cat([shN, shN.new_zeros(shN.shape[0], wanted - shN.shape[1], 3)], dim=1)
    return {**splats, "shN": shN.contiguous()}

"""Multi-resolution hash encoding in pure PyTorch (Instant-NGP, Müller et al. 2022, Sec. 3).

A point x in the unit cube [0, 1]^3 is looked up in L grids of growing
resolution N_l = floor(N_min * b^l), b = exp((ln N_max - ln N_min) / (L - 1))
(eq. 2-3 of the paper).  Each grid stores F features per vertex in a table of
T entries; the 8 vertices of the cell holding x are found by

* a dense index when the level has at most T vertices ((N_l + 1)^3 <= T), as
  Instant-NGP does for its coarse levels, otherwise
* the spatial hash h(v) = (v_x * 1  XOR  v_y * 2654435761  XOR  v_z * 805459861) mod T
  (eq. 4; T is a power of two, so the int64 products taken mod T agree with
  the paper's uint32 arithmetic),

and their features are blended trilinearly.  The output concatenates the
levels: [N, L * F].  Runs on CPU and GPU; no custom kernels.

A dense level stores only its (N_l + 1)^3 vertices, not T rows: like
tiny-cuda-nn's grid encoding (which sizes each level min(T, (N_l + 1)^3)),
the table holds only what can be learned, so parameters, Adam state and
checkpoints are the size of the field.  All levels live in one flat
parameter [sum_l T_l, F], level l starting at row ``offsets[l]``.
"""

from __future__ import annotations

import math
from typing import List

import torch
from torch import Tensor

from ..errors import ConfigError

#: Instant-NGP's primes, one per axis (pi_1 = 1 keeps the first axis coherent in memory).
HASH_PRIMES = (1, 2654435761, 805459861)

#: The 8 corners of a unit cell, [8, 3] in {0, 1}.
_CORNERS = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=torch.int64)


def level_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> List[int]:
    """N_l = floor(N_min * b^l) with b chosen so that N_{L-1} = N_max (Instant-NGP eq. 2-3)."""
    if num_levels < 1:
        raise ConfigError(f"config key 'nerf.num_levels': {num_levels!r} must be >= 1")
    if not 1 <= base_resolution <= max_resolution:
        raise ConfigError(
            f"config key 'nerf.base_resolution': {base_resolution!r} must satisfy "
            f"1 <= base_resolution <= nerf.max_resolution ({max_resolution!r})")
    if num_levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
    # The small epsilon keeps N_{L-1} == N_max despite rounding of growth ** (L - 1).
    return [int(math.floor(base_resolution * growth ** level + 1e-6)) for level in range(num_levels)]


def spatial_hash(vertices: Tensor, table_size: int) -> Tensor:  # [..., 3] int64 -> [...]
    """Instant-NGP eq. 4: XOR of the coordinates times per-axis primes, mod ``table_size`` (2^k)."""
    result = vertices[..., 0] * HASH_PRIMES[0]
    result = torch.bitwise_xor(result, vertices[..., 1] * HASH_PRIMES[1])
    result = torch.bitwise_xor(result, vertices[..., 2] * HASH_PRIMES[2])
    return result & (table_size - 1)


def dense_index(vertices: Tensor, resolution: int) -> Tensor:  # [..., 3] int64 -> [...]
    """Row-major index of a vertex of an (N+1)^3 grid: x + y (N+1) + z (N+1)^2."""
    side = resolution + 1
    return vertices[..., 0] + side * (vertices[..., 1] + side * vertices[..., 2])


class HashGrid(torch.nn.Module):
    """Learned features on L hashed grids; ``forward(x [N, 3] in [0,1]) -> [N, L * F]``."""

    def __init__(self, num_levels: int = 16, features_per_level: int = 2,
                 log2_table_size: int = 19, base_resolution: int = 16,
                 max_resolution: int = 2048, init_scale: float = 1e-4):
        super().__init__()
        if features_per_level < 1:
            raise ConfigError(
                f"config key 'nerf.features_per_level': {features_per_level!r} must be >= 1")
        if not 4 <= log2_table_size <= 30:
            raise ConfigError(
                f"config key 'nerf.log2_table_size': {log2_table_size!r} must lie in [4, 30]")
        self.resolutions = level_resolutions(num_levels, base_resolution, max_resolution)
        self.table_size = 2 ** log2_table_size
        self.features_per_level = features_per_level
        dense = [(n + 1) ** 3 <= self.table_size for n in self.resolutions]
        self.level_sizes = [(n + 1) ** 3 if d else self.table_size
                            for n, d in zip(self.resolutions, dense)]
        # Instant-NGP initialises the tables uniformly in [-1e-4, 1e-4].
        table = (torch.rand(sum(self.level_sizes), features_per_level) * 2 - 1) * init_scale
        self.table = torch.nn.Parameter(table)  # [sum_l T_l, F]
        self.register_buffer("_scales", torch.tensor(self.resolutions, dtype=torch.float32),
                             persistent=False)  # [L]
        self.register_buffer("_dense", torch.tensor(dense), persistent=False)  # [L] bool
        offsets = [sum(self.level_sizes[:level]) for level in range(num_levels)]
        self.register_buffer("_offsets", torch.tensor(offsets), persistent=False)  # [L] int64

    @property
    def num_levels(self) -> int:
        return len(self.resolutions)

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def level_table(self, level: int) -> Tensor:  # [T_l, F], a view of ``table``
        start = sum(self.level_sizes[:level])
        return self.table[start:start + self.level_sizes[level]]

    def vertex_indices(self, vertices: Tensor) -> Tensor:  # [L, ..., 3] int64 -> [L, ...]
        """Row of each grid vertex in its level's table: dense on coarse levels, hashed on fine ones."""
        hashed = spatial_hash(vertices, self.table_size)
        side = self._scales.long() + 1  # [L]
        shape = (-1,) + (1,) * (vertices.dim() - 2)
        side = side.view(shape)
        dense = vertices[..., 0] + side * (vertices[..., 1] + side * vertices[..., 2])
        return torch.where(self._dense.view(shape), dense, hashed)

    def forward(self, x: Tensor) -> Tensor:  # [N, 3] in [0, 1] -> [N, L * F]
        """Trilinearly interpolated features of every level, concatenated level by level."""
        n = x.shape[0]
        scaled = x.clamp(0.0, 1.0)[None] * self._scales[:, None, None]  # [L, N, 3]
        cell = torch.floor(scaled).clamp(max=self._scales[:, None, None] - 1)  # [L, N, 3]
        frac = scaled - cell  # [L, N, 3] in [0, 1]
        corners = cell.long()[:, :, None, :] + _CORNERS.to(x.device)  # [L, N, 8, 3]
        rows = self.vertex_indices(corners)  # [L, N, 8]
        corner_bits = _CORNERS.to(x.device, x.dtype)  # [8, 3]
        # Trilinear weight of corner c: prod_axes (frac if bit else 1 - frac).
        weights = torch.where(corner_bits.bool(), frac[:, :, None, :], 1.0 - frac[:, :, None, :])
        weights = weights.prod(dim=-1)  # [L, N, 8]
        features = self.table[(rows + self._offsets[:, None, None]).view(-1)].view(
            self.num_levels, n, 8, self.features_per_level)  # [L, N, 8, F]
        blended = (weights[..., None] * features).sum(dim=2)  # [L, N, F]
        return blended.permute(1, 0, 2).reshape(n, self.output_dim)

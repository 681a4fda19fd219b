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
    """Instant-NGP eq. 4: XOR of the coordinates times per-axis primes, mod ``table_size`` (2^k),
    of single vertices (``HashGrid.corner_rows`` computes it for a cell's 8 corners at once)."""
    result = vertices[..., 0] * HASH_PRIMES[0]
    result = torch.bitwise_xor(result, vertices[..., 1] * HASH_PRIMES[1])
    result = torch.bitwise_xor(result, vertices[..., 2] * HASH_PRIMES[2])
    return result & (table_size - 1)


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
        #: The levels stored densely: the first ones, as the resolutions grow.
        self.dense_levels = sum(dense)
        assert dense == [True] * self.dense_levels + [False] * (num_levels - self.dense_levels)
        self.level_sizes = [(n + 1) ** 3 if d else self.table_size
                            for n, d in zip(self.resolutions, dense)]
        # Instant-NGP initialises the tables uniformly in [-1e-4, 1e-4].
        table = (torch.rand(sum(self.level_sizes), features_per_level) * 2 - 1) * init_scale
        self.table = torch.nn.Parameter(table)  # [sum_l T_l, F]
        self.register_buffer("_scales", torch.tensor(self.resolutions, dtype=torch.float32),
                             persistent=False)  # [L]
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

    def corner_rows(self, low: Tensor) -> Tensor:  # [L, N, 3] int64 -> [L, N, 8]
        """Table row (within its level) of each corner of the cells whose lowest vertex is
        ``low``: dense, x + (N+1) y + (N+1)^2 z, on the coarse levels, hashed (eq. 4) on the
        fine ones. Corner c = 4 b_x + 2 b_y + b_z takes b_a = 1 for the upper end of axis a.
        Each axis gives its two ends' terms, [L, N, 2], combined by broadcasting: no
        [L, N, 8, 3] tensor of corners."""
        x, y, z = (torch.stack([low[..., a], low[..., a] + 1], dim=-1) for a in range(3))
        d = self.dense_levels
        side = (self._scales[:d].long() + 1)[:, None, None]  # [D, 1, 1]
        dense = outer(torch.add, x[:d], side * y[:d], side * side * z[:d])  # [D, N, 2, 2, 2]
        hashed = outer(torch.bitwise_xor, x[d:] * HASH_PRIMES[0], y[d:] * HASH_PRIMES[1],
                       z[d:] * HASH_PRIMES[2]) & (self.table_size - 1)  # [L - D, N, 2, 2, 2]
        return torch.cat([dense, hashed]).flatten(-3)

    def forward(self, x: Tensor) -> Tensor:  # [N, 3] in [0, 1] -> [N, L * F]
        """Trilinearly interpolated features of every level, concatenated level by level."""
        n = x.shape[0]
        scaled = x.clamp(0.0, 1.0)[None] * self._scales[:, None, None]  # [L, N, 3]
        cell = torch.floor(scaled).clamp(max=self._scales[:, None, None] - 1)  # [L, N, 3]
        frac = scaled - cell  # [L, N, 3] in [0, 1]
        rows = self.corner_rows(cell.long())  # [L, N, 8]
        # Trilinear weight of a corner: the product over the axes of (1 - frac) at the lower
        # end and frac at the upper one.
        wx, wy, wz = (torch.stack([1.0 - frac[..., a], frac[..., a]], dim=-1) for a in range(3))
        weights = outer(torch.mul, wx, wy, wz).flatten(-3)  # [L, N, 8]
        features = self.table[(rows + self._offsets[:, None, None]).view(-1)].view(
            self.num_levels, n, 8, self.features_per_level)  # [L, N, 8, F]
        blended = (weights[..., None] * features).sum(dim=2)  # [L, N, F]
        return blended.permute(1, 0, 2).reshape(n, self.output_dim)


def outer(op, x: Tensor, y: Tensor, z: Tensor) -> Tensor:  # 3 x [..., 2] -> [..., 2, 2, 2]
    """op(op(x_i, y_j), z_k) for every i, j, k: the 8 corners' values from the axes' ends."""
    return op(op(x[..., :, None, None], y[..., None, :, None]), z[..., None, None, :])

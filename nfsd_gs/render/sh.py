"""Real spherical harmonics up to degree 3, in gsplat's (and the INRIA 3DGS) convention.

The basis is the one of Sloan, "Efficient Spherical Harmonic Evaluation" (JCGT
2013) as written in gsplat 1.5.3 (``cuda/_torch_impl.py::_eval_sh_bases_fast``
and ``SphericalHarmonicsCUDA.cu``): same constants, same signs
(``Y_1 = -C1 y, Y_2 = C1 z, Y_3 = -C1 x``, ...), same coefficient order.  A
colour is ``clamp_min(sum_k Y_k(d) c_k + 0.5, 0)`` (3DGS, Kerbl et al. 2023,
section 4: "spherical harmonics represent the colour"; the +0.5 offset is the
INRIA code's, which gsplat reproduces).
"""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from ..errors import ConfigError

SH_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
SH_C1 = 0.48860251190292  # sqrt(3) / (2 sqrt(pi))
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients up to ``degree`` inclusive: (degree + 1)^2."""
    return (degree + 1) ** 2


def check_sh_degree(degree: int, num_coeffs: int) -> None:
    """Raise :class:`ConfigError` unless 0 <= degree <= 3 and ``num_coeffs`` covers it."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ConfigError(f"sh_degree={degree} is outside [0, {MAX_SH_DEGREE}]")
    if num_sh_bases(degree) > num_coeffs:
        raise ConfigError(
            f"sh_degree={degree} needs {num_sh_bases(degree)} SH coefficients, got {num_coeffs}")


def sh_bases(degree: int, directions: Tensor) -> Tensor:  # [..., 3] unit -> [..., (degree+1)^2]
    """Real SH basis functions Y_k evaluated at unit ``directions`` (gsplat's constants and signs)."""
    x, y, z = directions.unbind(-1)
    bases: List[Tensor] = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        z2 = z * z
        cos_2phi = x * x - y * y  # fC1
        sin_2phi = 2 * x * y  # fS1
        bases += [
            0.5462742152960395 * sin_2phi,
            -1.092548430592079 * z * y,
            0.9461746957575601 * z2 - 0.3153915652525201,
            -1.092548430592079 * z * x,
            0.5462742152960395 * cos_2phi,
        ]
    if degree >= 3:
        cos_3phi = x * cos_2phi - y * sin_2phi  # fC2
        sin_3phi = x * sin_2phi + y * cos_2phi  # fS2
        band3_c = -2.285228997322329 * z2 + 0.4570457994644658
        band3_b = 1.445305721320277 * z
        bases += [
            -0.5900435899266435 * sin_3phi,
            band3_b * sin_2phi,
            band3_c * y,
            z * (1.865881662950577 * z2 - 1.119528997770346),
            band3_c * x,
            band3_b * cos_2phi,
            -0.5900435899266435 * cos_3phi,
        ]
    return torch.stack(bases, dim=-1)


def spherical_harmonics(degree: int, directions: Tensor, coeffs: Tensor) -> Tensor:
    """Raw SH radiance sum_k Y_k(d) c_k, like ``gsplat.spherical_harmonics``.

    Args:
        degree: active SH degree in [0, 3]; only the first (degree+1)^2 coefficients are read.
        directions: [..., 3] view directions (need not be unit length; normalized here).
        coeffs: [..., K, 3] SH coefficients, K >= (degree+1)^2.

    Returns:
        [..., 3] radiance before the +0.5 offset.
    """
    check_sh_degree(degree, coeffs.shape[-2])
    if degree == 0:  # direction-free: skip the normalization
        return SH_C0 * coeffs[..., 0, :]
    unit = torch.nn.functional.normalize(directions, dim=-1)  # [..., 3]
    bases = sh_bases(degree, unit)  # [..., B]
    used = coeffs[..., : num_sh_bases(degree), :]  # [..., B, 3]
    return (bases[..., None] * used).sum(dim=-2)


def sh_to_rgb(degree: int, directions: Tensor, coeffs: Tensor) -> Tensor:
    """Colour of Gaussians seen along ``directions``: clamp_min(SH + 0.5, 0), shape [..., 3]."""
    return torch.clamp_min(spherical_harmonics(degree, directions, coeffs) + 0.5, 0.0)


def rgb_to_sh0(rgb: Tensor) -> Tensor:  # [..., 3] in [0, 1] -> [..., 3]
    """Inverse of the degree-0 colour map ``rgb = 0.5 + C0 sh0``: (rgb - 0.5) / C0, element by
    element (any shape; gsplat's ``sh0`` [N, 1, 3] is ``rgb_to_sh0(rgb)[:, None, :]``). The one
    home of this map: initialization, meshes and tests use it."""
    return (rgb - 0.5) / SH_C0

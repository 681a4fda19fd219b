"""Backend choice for Gaussian rasterization (TO BE IMPLEMENTED by the render helper)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from torch import Tensor


def resolve_backend(backend: str, device) -> str:
    """``auto`` -> ``gsplat`` on CUDA, ``reference`` elsewhere; ``gsplat`` on CPU is a clear error."""
    raise NotImplementedError


def rasterize_gaussians(
    means: Tensor,  # [N, 3] world space
    quats: Tensor,  # [N, 4] wxyz, not necessarily normalized
    scales: Tensor,  # [N, 3] linear (already exp'd)
    opacities: Tensor,  # [N] in (0, 1) (already sigmoid'ed)
    sh_coeffs: Tensor,  # [N, K, 3], K = (max_degree + 1) ** 2
    sh_degree: int,  # active degree <= max_degree
    viewmats: Tensor,  # [C, 4, 4] world-to-camera, OpenCV
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    backgrounds: Tensor,  # [C, 3]
    near_plane: float = 0.01,
    far_plane: float = 100.0,
    eps2d: float = 0.3,
    backend: str = "auto",
) -> Tuple[Tensor, Tensor, Tensor, Dict[str, Any]]:
    """Returns rgb [C,H,W,3], alpha [C,H,W,1], expected depth [C,H,W,1], info."""
    raise NotImplementedError

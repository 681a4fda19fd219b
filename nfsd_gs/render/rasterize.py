"""Backend choice for Gaussian rasterization: gsplat's CUDA kernels or the PyTorch reference.

Both backends implement gsplat 1.5.3's classic 3DGS model (EWA splatting, Zwicker et
al. 2001; 3DGS, Kerbl et al. 2023, eq. 3/5/6) and agree on where the background goes:
``rgb = sum_i w_i c_i + (1 - alpha) * background``; the expected depth never sees it.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple, get_args

import torch
from torch import Tensor

from ..config import RenderBackend
from ..errors import ConfigError
from .reference import rasterize_reference
from .sh import check_sh_degree

BACKENDS = get_args(RenderBackend)


def resolve_backend(backend: str, device) -> str:
    """``auto`` -> ``gsplat`` on CUDA, ``reference`` elsewhere; ``gsplat`` on CPU is a clear error."""
    if backend not in BACKENDS:
        raise ConfigError(f"render.backend={backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
    on_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        return "gsplat" if on_cuda else "reference"
    if backend == "gsplat" and not on_cuda:
        raise ConfigError("render.backend=gsplat needs CUDA; use auto or reference")
    return backend


def load_kernels(backend: str, device) -> None:
    """Load gsplat's CUDA extension now if ``backend`` resolves to gsplat on ``device`` (it
    is built once per machine; each process then checks the build and loads it), so a
    start-up profile can name its cost instead of the first render paying it unseen."""
    if resolve_backend(backend, device) == "gsplat":
        from gsplat.cuda._backend import _C  # noqa: F401


def check_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                 sh_coeffs: Tensor, sh_degree: int, viewmats: Tensor, Ks: Tensor,
                 width: int, height: int, backgrounds: Tensor) -> None:
    """Raise :class:`ConfigError` naming the first argument whose shape or value is wrong."""
    n, c = means.shape[0], viewmats.shape[0]
    expected = {
        "means": (means, (n, 3)), "quats": (quats, (n, 4)), "scales": (scales, (n, 3)),
        "opacities": (opacities, (n,)), "viewmats": (viewmats, (c, 4, 4)),
        "Ks": (Ks, (c, 3, 3)), "backgrounds": (backgrounds, (c, 3)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ConfigError(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
    if sh_coeffs.dim() != 3 or sh_coeffs.shape[0] != n or sh_coeffs.shape[2] != 3:
        raise ConfigError(f"sh_coeffs has shape {tuple(sh_coeffs.shape)}, expected ({n}, K, 3)")
    check_sh_degree(sh_degree, sh_coeffs.shape[1])
    if width <= 0 or height <= 0:
        raise ConfigError(f"image size {width}x{height} must be positive")


def rasterize_gsplat(means, quats, scales, opacities, sh_coeffs, sh_degree, viewmats, Ks,
                     width, height, backgrounds, near_plane, far_plane, eps2d):
    """gsplat's fused CUDA rasterization in RGB+ED mode; background composited here."""
    import gsplat

    render, alpha, meta = gsplat.rasterization(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=sh_coeffs,
        viewmats=viewmats, Ks=Ks, width=width, height=height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
        backgrounds=None, render_mode="RGB+ED", packed=False, rasterize_mode="classic",
        radius_clip=0.0, camera_model="pinhole",
    )  # render [C, H, W, 4] (rgb, expected depth), alpha [C, H, W, 1]
    rgb = render[..., :3] + (1.0 - alpha) * backgrounds[:, None, None, :]
    return rgb, alpha, render[..., 3:4], meta


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
    """Render C views of N 3D Gaussians (3DGS, Kerbl et al. 2023) with the chosen backend.

    Returns rgb [C,H,W,3] (``sum w_i c_i + (1 - alpha) * background``), alpha [C,H,W,1],
    expected camera-z depth [C,H,W,1] (``sum w_i z_i / alpha``, 0 where nothing is drawn)
    and ``info``: gsplat's meta dict (``means2d`` [C,N,2] for ``retain_grad``, ``radii``
    [C,N,2] int32, ``depths`` [C,N], ``width``, ``height``, ``n_cameras``, ...), which
    gsplat's ``DefaultStrategy`` reads with ``packed=False``.
    """
    chosen = resolve_backend(backend, means.device)
    check_inputs(means, quats, scales, opacities, sh_coeffs, sh_degree, viewmats, Ks,
                 width, height, backgrounds)
    args = (means, quats, scales, opacities, sh_coeffs, sh_degree, viewmats, Ks,
            width, height, backgrounds, near_plane, far_plane, eps2d)
    if chosen == "gsplat":
        return rasterize_gsplat(*args)
    return rasterize_reference(*args)

"""Rasterization of 3D Gaussians: gsplat's CUDA kernels, or a PyTorch reference.

:func:`rasterize_gaussians` is the one entry point; it chooses the backend.
"""

from .rasterize import rasterize_gaussians, resolve_backend  # noqa: F401

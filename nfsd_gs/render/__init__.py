"""Rasterization of 3D Gaussians: gsplat's CUDA kernels, or a PyTorch reference.

:func:`rasterize_gaussians` is the one entry point; it chooses the backend.
"""

from .rasterize import BACKENDS, rasterize_gaussians, resolve_backend  # noqa: F401
from .reference import rasterize_reference  # noqa: F401
from .sh import SH_C0, rgb_to_sh0, sh_to_rgb, spherical_harmonics  # noqa: F401

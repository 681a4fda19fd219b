"""Text-to-3D starting points: Shap-E (Jun & Nichol 2023) through diffusers' ``ShapEPipeline``.

As in GaussianDreamer (Yi et al. 2024, Sec. 3.2), the prompt goes through a
3D diffusion model first and its output seeds the Gaussians.  The steps:

1. the pipeline's prior (a ``PriorTransformer``) denoises a latent from the
   prompt's CLIP embedding (``output_type="latent"``);
2. ``ShapERenderer.decode_to_mesh`` turns the latent into the weights of an
   SDF/colour MLP, evaluates the SDF on a ``grid_size``^3 grid over the box
   [-1, 1]^3 and runs marching cubes; vertex colours come from the MLP's
   colour head (diffusers returns them *linear*; they are converted back to
   sRGB here, the space the 2D prior sees);
3. the mesh is sampled area-uniformly on its surface (nfsd_gs/init/meshes.py).

**Coordinate convention.**  The decoder's grid is indexed (x, y, z) directly
in the world of its training renders, which is **z up**: diffusers'
``create_pan_cameras`` (pipelines/shap_e/camera.py) puts every camera's image
"down" axis along -z, and its first view (theta = 0, the one the examples show
as the object's front) sits at (0, -4, 2)/|.|*4, i.e. on **-y**, looking
towards +y.  So Shap-E is (up, front) = (+z, -y), mapped to the trainer's
(+z, +x) by :func:`nfsd_gs.init.points.to_world`: world = (-y, x, z).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import PriorLoadError, PromptError
from ..utils.hub import cache_only
from .meshes import sample_mesh
from .points import PointCloud

#: Shap-E's axes (see the module docstring): up, front.
SHAP_E_UP, SHAP_E_FRONT = "z", "-y"
FALLBACK_KINDS = "init.kind=sphere|box|cylinder|cone|torus|pyramid|ellipsoid|file"


def load_shap_e_pipeline(model: str, device: torch.device, local_files_only: bool = False):
    """``ShapEPipeline.from_pretrained(model)`` (hub id or local folder) on ``device``, fp32.

    Any failure (no network, no cache, a wrong folder) is a :class:`PriorLoadError`
    naming the model and the fallback kinds; a hub the network cannot reach is said at
    once (``utils.hub``), not after half a minute of retries.
    """
    local_files_only = cache_only(model, "init.shap_e_model", "model_index.json", None,
                                  local_files_only)
    try:
        from diffusers import ShapEPipeline

        pipeline = ShapEPipeline.from_pretrained(model, local_files_only=local_files_only)
    except Exception as err:  # OSError, HTTP errors, missing files, bad configs ...
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise PriorLoadError(
            f"cannot load the Shap-E model '{model}' for init.kind=shap_e ({reason}); "
            f"set init.shap_e_model to a local diffusers folder, or start from "
            f"{FALLBACK_KINDS} instead") from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


@torch.no_grad()
def shap_e_points(pipeline, prompt: str, count: int, steps: int = 64,
                  guidance_scale: float = 15.0, grid_size: int = 128, seed: int = 0) -> PointCloud:
    """``count`` coloured surface points of Shap-E's mesh for ``prompt``, in Shap-E's axes
    (z up, front -y) and units (inside the box [-1, 1]^3)."""
    if not prompt.strip():
        raise PromptError("init.kind=shap_e needs a non-empty prompt")
    device = pipeline.device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    latents = pipeline(prompt, num_inference_steps=steps, guidance_scale=guidance_scale,
                       generator=generator, output_type="latent").images  # [1, E, D]
    mesh = decode_mesh(pipeline, latents[:1].to(device), grid_size, prompt)
    return sample_mesh(mesh, count, seed)


def decode_mesh(pipeline, latent: torch.Tensor, grid_size: int, prompt: str):
    """Step 2: latent [1, E, D] -> a trimesh with sRGB vertex colours."""
    import trimesh

    try:
        decoded = pipeline.shap_e_renderer.decode_to_mesh(latent, latent.device, grid_size=grid_size)
    except (ValueError, RuntimeError, IndexError) as err:  # marching cubes found no surface
        raise PromptError(f"Shap-E produced no surface for '{prompt}' "
                          f"({(str(err).splitlines() or [''])[0][:80]}); try another "
                          f"init.seed or prompt, or {FALLBACK_KINDS}") from None
    vertices = decoded.verts.float().cpu().numpy()  # [V, 3]
    faces = decoded.faces.long().cpu().numpy()  # [F, 3]
    if len(vertices) == 0 or len(faces) == 0:
        raise PromptError(f"Shap-E produced an empty mesh for '{prompt}'; try another "
                          f"init.seed or prompt, or {FALLBACK_KINDS}")
    linear = torch.stack([decoded.vertex_channels[c] for c in "RGB"], dim=-1)  # [V, 3]
    srgb = linear_to_srgb(linear.float().cpu().clamp(0.0, 1.0)).numpy()
    rgba = np.concatenate([srgb, np.ones((len(srgb), 1))], axis=1)
    return trimesh.Trimesh(vertices, faces, vertex_colors=(rgba * 255).round().astype(np.uint8),
                           process=False)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function (IEC 61966-2-1), inverse of diffusers' ``_convert_srgb_to_linear``."""
    return torch.where(linear <= 0.0031308, 12.92 * linear,
                       1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def shap_e_cloud(prompt: str, count: int, model: str, steps: int, guidance_scale: float,
                 grid_size: int, seed: int, device: Optional[torch.device] = None,
                 local_files_only: bool = False) -> PointCloud:
    """Load the pipeline and sample its mesh for ``prompt`` (Shap-E axes; see :func:`shap_e_points`)."""
    if not prompt.strip():
        raise PromptError("init.kind=shap_e needs a non-empty prompt")
    pipeline = load_shap_e_pipeline(model, device or torch.device("cpu"), local_files_only)
    return shap_e_points(pipeline, prompt, count, steps, guidance_scale, grid_size, seed)

"""3D Gaussians in gsplat's parameter layout (Kerbl et al. 2023, 3DGS).

Parameters live in one ``torch.nn.ParameterDict`` with gsplat's names and one
Adam optimizer per key, so gsplat's densification strategies work on them
unmodified:

=========== ============= =================================================
key          shape         meaning
=========== ============= =================================================
means        [N, 3]        centres, world space (z up)
scales       [N, 3]        log of the standard deviations along local axes
quats        [N, 4]        rotations, w x y z (normalized when rendering)
opacities    [N]           logits of the opacity
sh0          [N, 1, 3]     degree-0 spherical-harmonic (DC) colour coefficients
shN          [N, K-1, 3]   higher-order SH coefficients, K = (degree + 1)^2
=========== ============= =================================================
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch
from torch import Tensor

from ..cameras import Cameras
from ..config import Config, DensifyConfig, GaussianConfig, OutputConfig, RenderConfig
from ..render import rasterize_gaussians
from ..render.sh import SH_C0 as C0
from .base import RenderOutput

SPLAT_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
#: Steps between two searches of the colour term's neighbours (also whenever N changed).
NEIGHBOUR_REFRESH = 25
#: The colour term's Charbonnier eps (colours in [0, 1]): quadratic below, L1 above.
CHARBONNIER_EPS = 0.01


def log_linear(start: float, end: float, progress: float) -> float:
    """exp((1 - p) log start + p log end) at progress p clamped to [0, 1]: 3DGS's decay of a
    learning rate; ``start`` itself when either end is not positive."""
    if start <= 0 or end <= 0:
        return start
    p = min(max(progress, 0.0), 1.0)
    return math.exp((1 - p) * math.log(start) + p * math.log(end))


class GaussianModel(torch.nn.Module):
    """A set of N 3D Gaussians and how to render and optimize them."""

    def __init__(self, splats: Mapping[str, Tensor], config: GaussianConfig,
                 render_config: RenderConfig, scene_extent: float = 1.0):
        super().__init__()
        missing = [key for key in SPLAT_KEYS if key not in splats]
        if missing:
            raise ValueError(f"splats lack {missing}")
        self.splats = torch.nn.ParameterDict(
            {key: torch.nn.Parameter(splats[key].float().contiguous()) for key in SPLAT_KEYS})
        self.config = config
        self.render_config = render_config
        self.scene_extent = scene_extent
        self.max_sh_degree = sh_degree_of(self.splats["shN"])
        self.active_sh_degree = 0
        self.colour_neighbours: Optional[Tensor] = None  # [N, k] int64, the colour term's

    @classmethod
    def from_config(cls, config: Config, device: torch.device) -> "GaussianModel":
        """Gaussians at the starting points of ``config.init`` (see ``nfsd_gs/init``)."""
        from ..init import initial_splats

        splats = initial_splats(config.init, config.gaussians.sh_degree, config.prompt, device)
        return cls({k: v.to(device) for k, v in splats.items()}, config.gaussians,
                   config.render, scene_extent=2.0 * config.init.radius)

    @classmethod
    def finished(cls, splats: Mapping[str, Tensor], config: Config) -> "GaussianModel":
        """A trained model to look at (a loaded ``.ply``): every SH degree active."""
        model = cls(splats, config.gaussians, config.render)
        model.finish()
        return model

    count_name = "gaussians"

    @property
    def num_primitives(self) -> int:
        return self.splats["means"].shape[0]

    def gaussians(self) -> Mapping[str, Tensor]:
        return self.splats

    def render(self, cameras: Cameras, width: int, height: int,
               background: Tensor) -> RenderOutput:
        """Rasterize B cameras (gsplat on CUDA, the reference on CPU) over ``background`` [B, 3]."""
        s = self.splats
        sh_coeffs = torch.cat([s["sh0"], s["shN"]], dim=1)  # [N, K, 3]
        rgb, alpha, depth, info = rasterize_gaussians(
            means=s["means"],
            quats=s["quats"],
            scales=torch.exp(s["scales"]),
            opacities=torch.sigmoid(s["opacities"]),
            sh_coeffs=sh_coeffs,
            sh_degree=self.active_sh_degree,
            viewmats=cameras.world_to_camera,
            Ks=cameras.intrinsics(width, height),
            width=width,
            height=height,
            backgrounds=background,
            near_plane=self.render_config.near_plane,
            far_plane=self.render_config.far_plane,
            eps2d=self.render_config.eps2d,
            backend=self.render_config.backend,
        )
        return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, info=info)

    def learning_rates(self) -> Dict[str, float]:
        c = self.config
        means_scale = self.scene_extent if c.scale_means_lr_by_extent else 1.0
        return {
            "means": c.means_lr * means_scale,
            "scales": c.scales_lr,
            "quats": c.quats_lr,
            "opacities": c.opacities_lr,
            "sh0": c.sh0_lr,
            "shN": c.shN_lr,
        }

    def make_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """One Adam per parameter key (what gsplat's strategies expect), fused: one kernel
        per key and step instead of a dozen (the GPU's launches bound a pool's step)."""
        return {
            key: torch.optim.Adam([{"params": [self.splats[key]], "lr": lr, "name": key}],
                                  eps=1e-15, fused=True)
            for key, lr in self.learning_rates().items()
        }

    def means_learning_rate(self, step: int, total_steps: int) -> float:
        """Log-linear decay of the position learning rate from its initial to its final value."""
        c = self.config
        start = self.learning_rates()["means"]
        end = c.means_lr_final * (start / c.means_lr) if c.means_lr > 0 else 0.0
        return log_linear(start, end, step / max(total_steps, 1))

    def update(self, step: int, total_steps: int,
               optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Per-step schedules: the position (and, if asked, colour) learning rates and the
        active SH degree."""
        c = self.config
        progress = step / max(total_steps, 1)
        for group in optimizers["means"].param_groups:
            group["lr"] = self.means_learning_rate(step, total_steps)
        if c.sh0_lr_final > 0:
            for group in optimizers["sh0"].param_groups:
                group["lr"] = log_linear(c.sh0_lr, c.sh0_lr_final, progress)
        interval = max(c.sh_degree_interval, 1)
        self.active_sh_degree = min(step // interval, self.max_sh_degree)

    def finish(self) -> None:
        self.active_sh_degree = self.max_sh_degree

    def regularization(self, step: int, total_steps: int) -> Dict[str, Tensor]:
        """The geometry terms of ``config`` (weights > 0) to add to the loss at ``step``:
        ``{name: weighted 0-d tensor}``, ``{}`` when all are off or before
        ``regularize_from`` x ``total_steps``. Means over the N Gaussians; s_k the standard
        deviations exp(scales) [N, 3], a = sigmoid(opacities) [N], E the scene extent:

        * ``opacity_binarize``: mean(min(a, 1 - a)) (GaussianDreamerPro): its gradient
          lowers a below 1/2 and raises it above, towards hard, opaque surfaces;
        * ``scale``: mean(max_k s_k) / E: shrinks each Gaussian's widest axis;
        * ``flatten``: mean(min_k s_k) / E (PGSR's flattening loss): shrinks the thinnest
          axis, making surfels (2DGS, Huang et al. 2024) of 3D Gaussians;
        * ``colour_smooth``: mean over i and its k nearest j of rho(c_i - c_j), c = 0.5 +
          C0 sh0 the base colour, rho(d) = sqrt(|d|^2 + eps^2) - eps (Charbonnier): total
          variation of the colours over the neighbour graph.
        """
        c = self.config
        if step < c.regularize_from * total_steps:
            return {}
        s = self.splats
        terms: Dict[str, Tensor] = {}
        if c.opacity_binarize_weight > 0:
            alpha = torch.sigmoid(s["opacities"])  # [N]
            terms["opacity_binarize"] = c.opacity_binarize_weight * torch.minimum(
                alpha, 1.0 - alpha).mean()
        if c.scale_weight > 0 or c.flatten_weight > 0:
            sigma = torch.exp(s["scales"]) / self.scene_extent  # [N, 3]
            if c.scale_weight > 0:
                terms["scale"] = c.scale_weight * sigma.amax(dim=-1).mean()
            if c.flatten_weight > 0:
                terms["flatten"] = c.flatten_weight * sigma.amin(dim=-1).mean()
        if c.colour_smooth_weight > 0 and self.num_primitives > 1:
            neighbours = self.neighbours(step)  # [N, k]
            base = C0 * s["sh0"][:, 0, :]  # [N, 3], the colour up to its constant 0.5
            difference = base[:, None, :] - base[neighbours]  # [N, k, 3]
            rho = torch.sqrt(difference.pow(2).sum(-1) + CHARBONNIER_EPS ** 2) - CHARBONNIER_EPS
            terms["colour_smooth"] = c.colour_smooth_weight * rho.mean()
        return terms

    def neighbours(self, step: int) -> Tensor:  # -> [N, k] int64
        """The ``colour_smooth_neighbours`` nearest Gaussians of each, searched anew every
        ``NEIGHBOUR_REFRESH`` steps and whenever N changed (kept in the checkpoint, so a
        resumed run searches at the same steps as an uninterrupted one)."""
        cached = self.colour_neighbours
        if cached is None or cached.shape[0] != self.num_primitives or step % NEIGHBOUR_REFRESH == 0:
            from ..init.gaussians import nearest_neighbours  # scipy: only where the term is on

            means = self.splats["means"]
            _, index = nearest_neighbours(means, self.config.colour_smooth_neighbours)
            cached = self.colour_neighbours = torch.from_numpy(index).to(means.device)
        return cached

    def make_densifier(self, config: DensifyConfig,
                       optimizers: Mapping[str, torch.optim.Optimizer]):
        """gsplat's strategy named by ``config.strategy`` (None for ``none``) on these splats."""
        from ..densify import Densifier

        if config.strategy == "none":
            return None
        return Densifier(config, self.splats, optimizers, scene_scale=self.scene_extent)

    def mesh(self, settings):
        """The opacity field's iso-surface (DreamGaussian's stage 2, export/mesh.py)."""
        from ..export.mesh import gaussians_mesh

        return gaussians_mesh(self.splats, settings, self.splats["means"].device)

    def export(self, run_dir: Path, output: OutputConfig) -> Path:
        """``model.ply`` in the INRIA 3DGS layout, and ``model.<suffix>`` per ``output.formats``."""
        from ..formats import save_model

        return save_model(run_dir, {k: v.detach() for k, v in self.splats.items()},
                          output.formats)[0]

    def state_dict(self, *args, **kwargs) -> Dict[str, Any]:
        return {
            "splats": {key: value.detach().clone() for key, value in self.splats.items()},
            "active_sh_degree": self.active_sh_degree,
            "scene_extent": self.scene_extent,
            "colour_neighbours": self.colour_neighbours,
        }

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Replace the parameters (N may differ from the current one)."""
        for key in SPLAT_KEYS:
            self.splats[key] = torch.nn.Parameter(
                state["splats"][key].to(self.splats[key].device).float().contiguous())
        self.active_sh_degree = int(state["active_sh_degree"])
        self.scene_extent = float(state["scene_extent"])
        self.max_sh_degree = sh_degree_of(self.splats["shN"])
        neighbours = state.get("colour_neighbours")  # absent in checkpoints before the term
        self.colour_neighbours = None if neighbours is None else neighbours.to(
            self.splats["means"].device)


def sh_degree_of(shN: Tensor) -> int:  # [N, K-1, 3] -> degree
    degree = math.isqrt(shN.shape[1] + 1) - 1
    if (degree + 1) ** 2 != shN.shape[1] + 1:
        raise ValueError(f"shN has {shN.shape[1]} coefficients per channel, not (d+1)^2-1")
    return degree

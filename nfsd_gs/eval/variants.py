"""The methods the evaluation compares: named variants (a preset and dotted overrides)
and the ``--variant name=key=value,...`` form for ad-hoc ones."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import NFSD_NEGATIVE_PROMPT
from ..errors import ConfigError
from .prompts import ObjectSpec, placeholder_values

_NFSD = ("guidance.method=nfsd", "guidance.cfg_scale=7.5")
_PAPER_NEGATIVE = f'guidance.negative_prompt="{NFSD_NEGATIVE_PROMPT}"'
#: The paper's negative words that the bundled prior learned from blur and resolution loss
#: (nfsd_gs/shapeworld/degrade.py): configs/default.yaml's since issue 21.
_BLUR_NEGATIVE = 'guidance.negative_prompt="blurry, out of focus, low-resolution, low quality"'
_VSD = ("guidance.method=vsd", "guidance.cfg_scale=7.5")

#: Named variants: overrides on top of ``--config`` (a ``config=<preset>`` entry picks
#: another preset). Placeholders, filled per prompt: ``{shape}`` (world name, "cube"),
#: ``{primitive}`` (its ``init.kind``, "box"), ``{colour}`` and ``{colour_rgb}``
#: ("[0.85,0.1,0.08]", the world's albedo).
VARIANTS: Dict[str, Tuple[str, ...]] = {
    "nfsd@7.5": _NFSD,
    "sds@7.5": ("guidance.method=sds", "guidance.cfg_scale=7.5"),
    "sds@100": ("guidance.method=sds", "guidance.cfg_scale=100"),
    # NFSD without the negative-prompt term: delta_D = eps(z_t; empty) at every t, as the
    # paper's small-t branch (eq. 8) is taken whenever t < negative_threshold_t, and no
    # prior has a million training timesteps. (The negative branch is still evaluated.)
    "nfsd-no-neg@7.5": _NFSD + ("guidance.negative_threshold_t=1000000",),
    # the negative term weighted (guidance.negative_scale, 1 in the paper): half, and none
    # (above the threshold only the condition term is left: noise-free, no domain pull)
    "nfsd-neg0.5@7.5": _NFSD + ("guidance.negative_scale=0.5",),
    "nfsd-neg0@7.5": _NFSD + ("guidance.negative_scale=0",),
    # the paper's negative prompt split by what the bundled prior learned its words from
    # (nfsd_gs/shapeworld/degrade.py): blur and resolution only, or darkness and contrast only
    "nfsd-negblur@7.5": _NFSD + (_BLUR_NEGATIVE,),
    "nfsd-negdark@7.5": _NFSD + ('guidance.negative_prompt="dark, dull, low contrast, gloomy"',),
    # the paper's own negative prompt (section 4), whatever the preset's
    "nfsd-paperneg@7.5": _NFSD + (_PAPER_NEGATIVE,),
    # the NeRF toggle as its baseline was measured on the H100: 4 views, t_max annealed to
    # 0.5 and threestudio's grid (the Gaussians' 8 views and 0.3, and the smaller CPU grid,
    # of configs/default.yaml were chosen for Gaussians and for CPU runs)
    "nerf": _NFSD + ("representation=nerf", "camera.batch_size=4", "guidance.t_max_end=0.5",
                     "nerf.log2_table_size=19", "nerf.max_resolution=2048",
                     "nerf.chunk_rays=8192"),
    # VSD (ProlificDreamer) with the schema's LoRA (guidance.vsd.*), and issue 26's
    # candidates: ProlificDreamer's own LoRA recipe (lr 1e-4, one view a step, t ~ U[0, 1)
    # T, a zero camera one step in ten), one view alone (the cheap lever), the lr alone,
    # and CFG against the negative prompt (the term VSD lacks against NFSD's delta_D).
    "vsd@7.5": _VSD,
    "vsd-neg@7.5": _VSD + ("guidance.vsd.negative=true",),
    "vsd-domain@7.5": _VSD + ("guidance.vsd.domain_scale=1",),
    # the LoRA's timesteps over the whole range, as before the bundled preset's t_max 0.3
    "vsd-lorat0.98@7.5": _VSD + ("guidance.vsd.t_max=0.98",),
    "vsd-pd@7.5": _VSD + ("guidance.vsd.lr=1e-4", "guidance.vsd.views=1", "guidance.vsd.t_min=0",
                          "guidance.vsd.t_max=1", "guidance.vsd.camera_dropout=0.1"),
    "vsd-1view@7.5": _VSD + ("guidance.vsd.views=1",),
    "vsd-lr1e-4@7.5": _VSD + ("guidance.vsd.lr=1e-4",),
    "shape-init": _NFSD + ("init.kind={primitive}",),
    "shape-colour-init": _NFSD + ("init.kind={primitive}", "init.color={colour_rgb}"),
}

#: The bundled preset's background and colour term before issue 21's background schedule and
#: colour smoothing became its default (2026-12-05): every lever measured before then keeps it.
_BEFORE_SCHEDULE = ("background.random_until=1.0", "gaussians.colour_smooth_weight=0")
#: The bundled preset's settings before issue 21 moved them (the paper's negative prompt, t_max
#: annealed to 0.3, a constant colour rate, splits from step 150, views rendered at the
#: prior's 64 px, random backgrounds to the end, no colour term): the baseline the lever
#: screenings below were measured against, kept so that their names mean what they meant.
_BEFORE_21 = (_PAPER_NEGATIVE, "guidance.t_max_end=0.3", "gaussians.sh0_lr_final=0",
              "densify.default.refine_start_iter=100", "camera.resolution=64") + _BEFORE_SCHEDULE
#: The default as issue 21's later levers were measured on it (calm-bg0.5 is that default;
#: a variant's later override of the same key wins)
_CALM_BASE = _NFSD + _BEFORE_SCHEDULE

#: Issue 21's levers on the Gaussians, one variant each (NFSD@7.5 on ``--config`` as it was
#: before issue 21; see docs/eval/levers.md for why each and its CPU evidence) and the
#: combinations screened:
_LEVERS: Dict[str, Tuple[str, ...]] = {
    "gs-base": (),
    # gsplat 1.5.3 never resets opacity (nfsd_gs/densify.py); reset at steps 100 and 200
    "gs-reset": ("densify.default.reset_every=100",),
    # up to the prior's "overhead view" (its data: 10 % of views at 62-75 degrees), where a
    # cylinder's round top and a cube's square one differ most
    "gs-elev75": ("camera.elevation_range=[-10,75]",),
    # NFSD's 2D gradients (a loss summed over pixels) are ~64x64 times those of a per-pixel
    # mean loss: 2e-4 grows every Gaussian (all split at steps 150 and 200). 0.8 = gsplat's
    # 2e-4 x 64 x 64, about the 90th percentile: only the top ~10 % grow
    "gs-grad": ("densify.default.grow_grad2d=0.8",),
    # the other way: one more round of (uniform) splitting, at steps 100, 150, 200: 16k
    "gs-dense": ("densify.default.refine_start_iter=50",),
    # geometry terms over the second half of the run
    "gs-binarize": ("gaussians.opacity_binarize_weight=50", "gaussians.regularize_from=0.5"),
    # the same from a half-opaque start: at init.initial_opacity 0.1 and opacities_lr 0.01,
    # 95 % of a default run's opacities end in [0.05, 0.5], and the binarization pushes
    # those to 0 (73 % below 0.05 on the CPU run), not to 1
    "gs-bin-opa0.5": ("gaussians.opacity_binarize_weight=50", "gaussians.regularize_from=0.5",
                      "init.initial_opacity=0.5"),
    "gs-scale": ("gaussians.scale_weight=100", "gaussians.regularize_from=0.5"),
    "gs-flat": ("gaussians.flatten_weight=100", "gaussians.regularize_from=0.5"),
    # random backgrounds more often (DreamGaussian, LucidDreamer: 0.5-0.66; ours 0.5)
    "gs-bg0.8": ("background.random_probability=0.8",),
    # the end of the t_max annealing the other Gaussian repos use (issue 18 chose 0.3)
    "gs-tend0.5": ("guidance.t_max_end=0.5",),
    # every lever expected to sharpen or to show the caps, together
    "gs-combo": ("camera.elevation_range=[-10,75]", "densify.default.refine_start_iter=50",
                 "gaussians.opacity_binarize_weight=50", "init.initial_opacity=0.5",
                 "gaussians.flatten_weight=100", "gaussians.regularize_from=0.5"),
}
VARIANTS.update({name: _NFSD + _BEFORE_21 + overrides for name, overrides in _LEVERS.items()})
#: The lever screening of issue 21 (scripts/gpu_levers.sh), the baseline first.
LEVER_VARIANTS: Tuple[str, ...] = tuple(_LEVERS)

#: Issue 21's second screening: the sharpening levers on top of the blur-and-resolution
#: negative prompt, which keeps the objects near their size (the paper's negative words
#: bloat them 2-3x on the bundled prior: docs/eval/paper_comparison_2026-12-04.md). A
#: default run ends with 95 % of its opacities in [0.05, 0.5] (docs/eval/levers.md): soft,
#: layered silhouettes, hence the opaque start.
_NEGBLUR = _NFSD + _BEFORE_21 + (_BLUR_NEGATIVE,)
_TEND02 = ("guidance.t_max_end=0.2",)
_SHARPENING: Dict[str, Tuple[str, ...]] = {
    "nb-base": (),
    "nb-opa0.5": ("init.initial_opacity=0.5",),
    "nb-dense": _LEVERS["gs-dense"],
    "nb-flat": _LEVERS["gs-flat"],
    "nb-bin-opa0.5": _LEVERS["gs-bin-opa0.5"],
    "nb-tend0.2": _TEND02,
    "nb-combo": ("init.initial_opacity=0.5",) + _LEVERS["gs-dense"] + _LEVERS["gs-flat"],
}
# The first pass of this screening (H200, 3 prompts, docs/eval/sharpening_2026-12-04.md): the
# denser split and the combination reach the ground truth's sharpness with 4-7x its speckle;
# a lower end of the t annealing and colours that settle (sh0's rate decayed 10x) are the
# calming levers.
_CALM = _TEND02 + ("gaussians.sh0_lr_final=0.002",)
_SHARPENING.update({
    "nb-dense-tend0.2": _LEVERS["gs-dense"] + _TEND02,
    "nb-dense-calm": _LEVERS["gs-dense"] + _CALM,
    "nb-combo-calm": _SHARPENING["nb-combo"] + _CALM,
})
VARIANTS.update({name: _NEGBLUR + overrides for name, overrides in _SHARPENING.items()})
# Issue 21's next leads, on the default since the screening (the calming levers in it): the
# opaque start and the opacity binarization reached the truth's sharpness with 5-6x its
# speckle before the colours settled
VARIANTS["calm-opa0.5"] = _CALM_BASE + ("init.initial_opacity=0.5",)
VARIANTS["calm-bin-opa0.5"] = _CALM_BASE + _LEVERS["gs-bin-opa0.5"]
# renders above the prior's size, averaged down to it (the encoder's antialiased resize):
# the prior sees supersampled edges, as the ground truth's, and the Gaussians grow smaller.
# 96 (1.5x: 2.25x the pixels, not 4x) is the default since; calm-res64, the default before
# it (at the colour rate of its day).
VARIANTS["calm-res128"] = _CALM_BASE + ("camera.resolution=128",)
VARIANTS["calm-res96"] = _CALM_BASE + ("camera.resolution=96",)
VARIANTS["calm-res64"] = _CALM_BASE + ("camera.resolution=64", "gaussians.sh0_lr_final=0.002")
# the colours' rate decayed 10x (0.002: the default until 2026-12-05), 20x (0.001: the default
# since) and 40x (0.0005) from 0.02: the slower the colours move at the end, the less speckle
# (12 of 12 CPU prompts at 40x), at some sharpness on the solid split (0.98 -> 0.93 of the
# truth's at 40x, 0.97 at 20x; docs/eval/sharpening_2026-12-04.md)
VARIANTS.update({f"calm-colour{rate}": _CALM_BASE + (f"gaussians.sh0_lr_final={rate}",)
                 for rate in ("0.0005", "0.001", "0.002")})
# how often a training view's background is a random colour instead of white (0.5, the
# default, is the share the prior saw): on the CPU's two softest cones of the H200's 48 x 3
# table (cyan, yellow), the more random backgrounds, the softer the base (sharpness / GT
# 0.77 always white, 0.62 at 0.5, 0.32 always random; docs/eval/world_48x3_2026-12-05.md)
VARIANTS.update({f"calm-bg{share}": _CALM_BASE + (f"background.random_probability={share}",)
                 for share in ("0.0", "0.2", "0.5", "0.8", "1.0")})
# ... and never random with the colours' rate decayed 40x: the sharpness of the first with
# the speckle of the second (CPU, 8 prompts: solid 0.96 of the truth's, two-tone speckle below
# the default's)
VARIANTS["calm-bg0.0-colour0.0005"] = VARIANTS["calm-bg0.0"] + ("gaussians.sh0_lr_final=0.0005",)
# random backgrounds while the shape forms, white after (background.random_until): never
# random sharpened the cones and cylinders (0.84 -> 0.93 of the truth's on 10 solid CPU
# prompts with the colour rate 40x) and rounded every cube (IoU -0.01 to -0.07 on all 5)
VARIANTS["calm-bguntil0.5"] = _CALM_BASE + ("background.random_until=0.5",)
# the colours' total variation over the Gaussians' neighbour graph
# (gaussians.colour_smooth_weight): a pull on the lone off-colour Gaussian, where the colour
# rate slows every colour alike. Weight 1 gives a Gaussian ~4e-5 of gradient late in a CPU
# run, NFSD ~1e-4 to 5e-4 (median): 10 and 30 bracket a pull that matters
VARIANTS.update({f"calm-tv{weight}": _CALM_BASE + (f"gaussians.colour_smooth_weight={weight}",)
                 for weight in (10, 30)})
# ... and with the background schedule beside it: the sharpness of the one, the speckle of
# the other. It won (H100, 48 x 3 solid, 12 x 2 two-tone: sharpness 0.90 -> 0.96 of the
# truth's, two-tone speckle 0.164 -> 0.141, IoU and ΔE better on both splits;
# docs/eval/world_48x3_2026-12-05.md) and is the default since
VARIANTS["calm-bguntil0.5-tv30"] = _NFSD + ("background.random_until=0.5",
                                            "gaussians.colour_smooth_weight=30")
# The two-tone speckle left on that default (0.141 against the truth's 0.116): a heavier
# colour term, more neighbours in it, and the colours' rate decayed 40x on top
VARIANTS.update({f"sched-tv{weight}": _NFSD + (f"gaussians.colour_smooth_weight={weight}",)
                 for weight in (60, 100)})
VARIANTS["sched-knn16"] = _NFSD + ("gaussians.colour_smooth_neighbours=16",)
VARIANTS["sched-colour0.0005"] = _NFSD + ("gaussians.sh0_lr_final=0.0005",)
# ... and the denser split with the calming levers under the paper's own negative prompt
VARIANTS["gs-dense-calm"] = _NFSD + _BEFORE_21 + _LEVERS["gs-dense"] + _CALM
#: The second screening, its two baselines (the paper's negative prompt and the blur one, on
#: the settings before issue 21) first. Its winner, nb-dense-calm, is the bundled preset's
#: default since (configs/default.yaml; docs/eval/sharpening_2026-12-04.md).
SHARPENING_VARIANTS: Tuple[str, ...] = ("gs-base",) + tuple(_SHARPENING)
#: The paper's comparison (NFSD at 7.5 vs SDS at 7.5 and at 100).
DEFAULT_VARIANTS: Tuple[str, ...] = ("nfsd@7.5", "sds@7.5", "sds@100")
#: Issue 18's comparison: the paper's three, NFSD without its negative term, and the NeRF.
COMPARISON_VARIANTS: Tuple[str, ...] = ("nfsd@7.5", "sds@7.5", "sds@100", "nfsd-no-neg@7.5",
                                        "nerf")

#: Applied to every run: no turntable, and no snapshots or checkpoints but the final ones.
EVAL_OVERRIDES: Tuple[str, ...] = (
    "output.turntable=false", "output.snapshot_every=1000000000",
    "output.checkpoint_every=1000000000",
)


@dataclass(frozen=True)
class Variant:
    """A named method: an optional preset and dotted overrides (may hold placeholders)."""

    name: str
    overrides: Tuple[str, ...]
    config: Optional[str] = None  # preset; None: the evaluation's --config

    def describe(self) -> Dict:
        return {"name": self.name, "config": self.config, "overrides": list(self.overrides)}


def split_overrides(text: str) -> List[str]:
    """Split ``"a=1,b=[1,2] c=x"`` on commas and spaces outside brackets and quotes.

    OmegaConf parses each ``key=value`` (``from_dotlist``) but takes the list already
    split, and a comma inside ``[0.5,0.5,0.5]`` must not split it: no library call does
    that split, hence these lines.
    """
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char in ", " and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


def parse_variant(spec: str) -> Variant:
    """``"name=key=value,key=value"`` (``config=<preset>`` picks a preset) -> Variant."""
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"--variant '{spec}' must look like name=key=value[,key=value...]")
    overrides, preset = [], None
    for item in split_overrides(rest):
        if "=" not in item:
            raise ConfigError(f"--variant '{name}': override '{item}' is not of the form key=value")
        key, value = item.split("=", 1)
        if key == "config":
            preset = value
        else:
            overrides.append(item)
    return Variant(name, tuple(overrides), preset)


def select_variants(names: Sequence[str], custom: Sequence[str]) -> List[Variant]:
    """Named variants (``--variants``) followed by ad-hoc ones (``--variant``)."""
    variants = []
    for name in names:
        if name not in VARIANTS:
            raise ConfigError(f"variant '{name}' is not one of {', '.join(VARIANTS)} "
                              f"(or define it: --variant '{name}=key=value,...')")
        variants.append(Variant(name, VARIANTS[name]))
    variants += [parse_variant(spec) for spec in custom]
    seen = Counter(v.name for v in variants)
    twice = [n for n, k in seen.items() if k > 1]
    if twice:
        raise ConfigError(f"variant '{twice[0]}' is given more than once")
    if not variants:
        raise ConfigError("no variants to evaluate (--variants or --variant)")
    return variants


def fill_placeholders(override: str, spec: ObjectSpec) -> str:
    """Replace ``{shape}``, ``{primitive}``, ``{colour}``, ``{colour_rgb}`` in one override."""
    values = placeholder_values(spec)
    try:
        return override.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"override '{override}': unknown placeholder {err} (known: "
                          f"{', '.join('{' + k + '}' for k in values)})") from None

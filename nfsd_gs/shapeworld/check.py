"""Prior check: sample the prior for every prompt of a split and let the judge score it.

Sampling is DDIM (eta 0) with classifier-free guidance from its one home,
:func:`nfsd_gs.guidance.cfg.classifier_free_guidance`, at ``s = 7.5`` by default (for a
v-prediction prior the same combination of v, which is the same combination of eps).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, PriorLoadError
from ..guidance.cfg import classifier_free_guidance
from ..utils.images import save_image_grid
from .judge import Judge
from ..utils.device import resolve_device
from .prior import encode_prompts
from .vocabulary import object_prompt, split_specs


@dataclass
class PriorModels:
    unet: object
    text_encoder: object
    tokenizer: object
    scheduler: object


def load_prior(folder: Path | str, device: torch.device) -> PriorModels:
    """The four components with the same ``from_pretrained`` calls as the project's loader."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    folder = Path(folder)
    if not (folder / "unet").is_dir():
        raise PriorLoadError(f"'{folder}' holds no prior (no unet/ folder); train one with "
                             f"`python -m nfsd_gs.shapeworld train-prior --out {folder}`")
    return PriorModels(
        UNet2DConditionModel.from_pretrained(folder, subfolder="unet").to(device).float().eval(),
        CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").to(device).float().eval(),
        AutoTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        DDPMScheduler.from_pretrained(folder, subfolder="scheduler"))


#: The check's samplers (:func:`sample`); the first is the default.
SAMPLERS = ("ddim-glide", "ddim")


@torch.no_grad()
def sample(models: PriorModels, prompts: Sequence[str], generator: torch.Generator,
           steps: int = 50, cfg_scale: float = 7.5, device: torch.device | str = "cpu",
           thresholding: Optional[float] = None, sampler: str = "ddim-glide") -> Tensor:
    """DDIM samples [B, H, W, 3] in [0, 1], one per prompt, with CFG against the empty prompt.

    The x0 estimate of every step is clipped to [-1, 1] (the prior's scheduler), or, with
    ``thresholding`` = p, dynamically thresholded (Imagen, Saharia et al. 2022, sec. 2.3):
    s = max(1, p-th percentile of |x0|) per image, x0 <- clamp(x0, -s, s) / s.

    ``sampler`` (:data:`SAMPLERS`): DDIM's step (Song et al. 2021, eq. 12) is
    z_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps. "ddim-glide" re-derives eps from the
    clipped x0, eps = (z_t - sqrt(a_t) x0) / sqrt(1 - a_t), as GLIDE does (diffusers'
    ``use_clipped_model_output``), so the step stays on the line from z_t to the x0 it
    keeps; "ddim" (diffusers' default) keeps the unclipped prediction's eps, which at CFG
    7.5 still carries the out-of-range x0 the clip removed, and the error compounds step
    after step (the bundled prior's check: 23 % shape at CFG 7.5 with "ddim", 100 % on the
    same 48 prompts with "ddim-glide"; docs/eval/prior_experiments.md).
    """
    from diffusers import DDIMScheduler

    if steps < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler '{sampler}' is not one of {', '.join(SAMPLERS)}")
    if thresholding is not None and not 0.5 <= thresholding < 1:
        raise ConfigError(f"thresholding={thresholding} must be a percentile in [0.5, 1)")
    overrides = {} if thresholding is None else dict(
        thresholding=True, dynamic_thresholding_ratio=thresholding, clip_sample=False,
        sample_max_value=float("inf"))
    scheduler = DDIMScheduler.from_config(models.scheduler.config, **overrides)
    scheduler.set_timesteps(steps)
    B = len(prompts)
    size = models.unet.config.sample_size
    embeddings = encode_prompts(models.tokenizer, models.text_encoder,
                                list(prompts) + [""] * B, device)  # [2B, L, D]
    z = torch.randn((B, 3, size, size), generator=generator).to(device)
    for t in scheduler.timesteps:
        out = models.unet(torch.cat([z, z]), t.to(device).expand(2 * B),
                          encoder_hidden_states=embeddings).sample  # eps or v, per the scheduler
        cond, uncond = out.chunk(2)
        guided = classifier_free_guidance(cond, uncond, cfg_scale)
        z = scheduler.step(guided, t, z, eta=0.0,
                           use_clipped_model_output=sampler == "ddim-glide").prev_sample
    return ((z + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


def check_views(count: int, seed: int) -> List[str]:
    """``count`` view words drawn like the prior's training views (the trainer's orbit, a
    tenth from above): the check asks for the captions the prior was trained on."""
    from ..cameras import view_direction
    from .dataset import DataConfig, sample_cameras

    config = DataConfig()
    cameras = sample_cameras(count, torch.Generator().manual_seed(seed), config)
    return [view_direction(a, e, config.camera)
            for a, e in zip(cameras.azimuth_deg.tolist(), cameras.elevation_deg.tolist())]


def check_prior(prior: Path | str, judge_folder: Optional[Path | str] = None,
                per_prompt: Optional[int] = None, steps: int = 50, cfg_scale: float = 7.5,
                seed: int = 0, device: str = "auto", split: str = "solid",
                batch_size: int = 96, save_grid: Optional[Path] = None,
                thresholding: Optional[float] = None, sampler: str = SAMPLERS[0]) -> Dict:
    """Sample ``per_prompt`` images for every prompt of ``split`` (default: 192 images in
    all), each with a view suffix drawn like the training views, and let the judge score them.

    Returns {"rows": [...per prompt...], "shape_accuracy", "colour_accuracy",
    "accent_accuracy" (judges with an accent head), "all_accuracy", ...}.
    """
    start = time.perf_counter()
    torch_device = resolve_device(device)
    models = load_prior(prior, torch_device)
    judge = Judge.load(judge_folder, torch_device) if judge_folder else Judge.load(device=torch_device)
    specs = split_specs(split)
    per_prompt = per_prompt or max(1, 192 // len(specs))
    views = check_views(len(specs) * per_prompt, seed)
    items = [(spec, f"{object_prompt(spec)}, {views[i * per_prompt + k]} view")
             for i, spec in enumerate(specs) for k in range(per_prompt)]
    generator = torch.Generator().manual_seed(seed)
    images: List[Tensor] = []
    for first in range(0, len(items), batch_size):
        chunk = items[first:first + batch_size]
        images.append(sample(models, [p for _, p in chunk], generator, steps, cfg_scale,
                             torch_device, thresholding, sampler))
    images_t = torch.cat(images)  # [N, H, W, 3]
    verdict = judge.verdict(images_t)
    heads = judge.heads
    rows: Dict[str, Dict] = {}
    for i, (spec, _) in enumerate(items):
        truth = {"shape": spec.shape, "colour": spec.colour, "accent": spec.accent_label}
        prompt = object_prompt(spec)
        row = rows.setdefault(prompt, {"prompt": prompt, "n": 0, "all_hits": 0, "judged": [],
                                       **{f"{h}_hits": 0 for h in heads}})
        hits = {h: verdict[h][i] == truth[h] for h in heads}
        row["n"] += 1
        for h in heads:
            row[f"{h}_hits"] += hits[h]
        row["all_hits"] += all(hits.values())
        row["judged"].append(" ".join(verdict[h][i] for h in heads))
    n = len(items)
    result = {
        "prior": str(prior), "split": split, "cfg_scale": cfg_scale, "ddim_steps": steps,
        "sampler": sampler,
        "thresholding": thresholding,
        "seed": seed, "per_prompt": per_prompt, "images": n, "heads": list(heads),
        **{f"{h}_accuracy": sum(r[f"{h}_hits"] for r in rows.values()) / n
           for h in heads + ("all",)},
        "per_shape": _share(rows, specs, "shape", lambda spec: spec.shape),
        "per_colour": _share(rows, specs, "colour", lambda spec: spec.colour),
        "rows": list(rows.values()),
        "wall_s": round(time.perf_counter() - start, 1),
        "device": str(torch_device),
    }
    if save_grid is not None:
        save_image_grid(save_grid, images_t, columns=16)
    return result


def _share(rows: Dict[str, Dict], specs, head: str, key) -> Dict[str, float]:
    """Accuracy of ``head`` per value of ``key(spec)`` (e.g. per shape)."""
    hits: Dict[str, List[int]] = {}
    for spec in specs:
        row = rows[object_prompt(spec)]
        total = hits.setdefault(key(spec), [0, 0])
        total[0] += row[f"{head}_hits"]
        total[1] += row["n"]
    return {name: h / n for name, (h, n) in hits.items()}


def format_table(result: Dict) -> str:
    """Markdown table: one row per prompt, then the totals."""
    heads = result["heads"]
    lines = ["| prompt | " + " | ".join(f"{h} acc" for h in heads) + " | judged as |",
             "|---" * (len(heads) + 2) + "|"]
    for row in result["rows"]:
        lines.append(f"| {row['prompt']} | "
                     + " | ".join(f"{row[f'{h}_hits']}/{row['n']}" for h in heads)
                     + f" | {', '.join(row['judged'])} |")
    lines.append(f"| **{result['split']}: all ({result['images']} images, CFG "
                 f"{result['cfg_scale']}, {result.get('sampler', 'ddim')})** | "
                 + " | ".join(f"**{result[f'{h}_accuracy']:.1%}**" for h in heads)
                 + f" | all heads {result['all_accuracy']:.1%} |")
    lines.append("")
    lines.append("per shape: " + ", ".join(f"{k} {v:.0%}" for k, v in result["per_shape"].items()))
    lines.append("per colour: " + ", ".join(f"{k} {v:.0%}" for k, v in result["per_colour"].items()))
    return "\n".join(lines)


def write_result(result: Dict, path: Path) -> None:
    from ..utils.io import write_json

    write_json(path, result)
    print(f"wrote {path}", file=sys.stderr)

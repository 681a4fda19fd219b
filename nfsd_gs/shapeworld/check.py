"""Prior check: sample the prior for every prompt of the world and let the judge score it.

Sampling is DDIM (eta 0) with classifier-free guidance written the project's one way,
``eps = eps_uncond + s * (eps_cond - eps_uncond)`` with ``s = 7.5`` by default.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, PriorLoadError
from ..utils.images import image_grid, save_png
from .captions import object_prompt
from .judge import Judge
from .prior import encode_prompts, resolve_device
from .world import COLOUR_NAMES, SHAPES


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


@torch.no_grad()
def sample(models: PriorModels, prompts: Sequence[str], generator: torch.Generator,
           steps: int = 50, cfg_scale: float = 7.5, device: torch.device | str = "cpu") -> Tensor:
    """DDIM samples [B, H, W, 3] in [0, 1], one per prompt, with CFG against the empty prompt."""
    from diffusers import DDIMScheduler

    if steps < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    scheduler = DDIMScheduler.from_config(models.scheduler.config)
    scheduler.set_timesteps(steps)
    B = len(prompts)
    size = models.unet.config.sample_size
    embeddings = encode_prompts(models.tokenizer, models.text_encoder,
                                list(prompts) + [""] * B, device)  # [2B, L, D]
    z = torch.randn((B, 3, size, size), generator=generator).to(device)
    for t in scheduler.timesteps:
        eps = models.unet(torch.cat([z, z]), t.to(device).expand(2 * B),
                          encoder_hidden_states=embeddings).sample
        eps_cond, eps_uncond = eps.chunk(2)
        eps_cfg = eps_uncond + cfg_scale * (eps_cond - eps_uncond)
        z = scheduler.step(eps_cfg, t, z, eta=0.0).prev_sample
    return ((z + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


def check_prior(prior: Path | str, judge_folder: Optional[Path | str] = None,
                per_prompt: int = 4, steps: int = 50, cfg_scale: float = 7.5, seed: int = 0,
                device: str = "auto", views: Sequence[str] = ("front", "side", "back", "overhead"),
                batch_size: int = 96, save_grid: Optional[Path] = None) -> Dict:
    """Sample ``per_prompt`` images for each shape x colour (view suffixes cycled) and score them.

    Returns {"rows": [...per prompt...], "shape_accuracy", "colour_accuracy", "both_accuracy", ...}.
    """
    start = time.perf_counter()
    torch_device = resolve_device(device)
    models = load_prior(prior, torch_device)
    judge = Judge.load(judge_folder, torch_device) if judge_folder else Judge.load(device=torch_device)
    items = [(s, c, f"{object_prompt(s, c)}, {views[k % len(views)]} view")
             for s in SHAPES for c in COLOUR_NAMES for k in range(per_prompt)]
    generator = torch.Generator().manual_seed(seed)
    images: List[Tensor] = []
    for first in range(0, len(items), batch_size):
        chunk = items[first:first + batch_size]
        images.append(sample(models, [p for _, _, p in chunk], generator, steps, cfg_scale,
                             torch_device))
    images_t = torch.cat(images)  # [N, H, W, 3]
    shapes, colours, _, _ = judge.classify(images_t)
    rows: Dict[str, Dict] = {}
    for (s, c, _), got_s, got_c in zip(items, shapes, colours):
        row = rows.setdefault(object_prompt(s, c), {"prompt": object_prompt(s, c), "n": 0,
                                                    "shape_hits": 0, "colour_hits": 0,
                                                    "both_hits": 0, "judged": []})
        row["n"] += 1
        row["shape_hits"] += got_s == s
        row["colour_hits"] += got_c == c
        row["both_hits"] += (got_s == s) and (got_c == c)
        row["judged"].append(f"{got_c} {got_s}")
    n = len(items)
    result = {
        "prior": str(prior), "cfg_scale": cfg_scale, "ddim_steps": steps, "seed": seed,
        "per_prompt": per_prompt, "images": n,
        "shape_accuracy": sum(r["shape_hits"] for r in rows.values()) / n,
        "colour_accuracy": sum(r["colour_hits"] for r in rows.values()) / n,
        "both_accuracy": sum(r["both_hits"] for r in rows.values()) / n,
        "per_shape": {s: sum(r["shape_hits"] for r in rows.values() if r["prompt"].endswith(s))
                      / sum(r["n"] for r in rows.values() if r["prompt"].endswith(s))
                      for s in SHAPES},
        "per_colour": {c: sum(r["colour_hits"] for r in rows.values() if f" {c} " in r["prompt"])
                       / sum(r["n"] for r in rows.values() if f" {c} " in r["prompt"])
                       for c in COLOUR_NAMES},
        "rows": list(rows.values()),
        "wall_s": round(time.perf_counter() - start, 1),
        "device": str(torch_device),
    }
    if save_grid is not None:
        save_image_grid(images_t, save_grid, columns=per_prompt * len(COLOUR_NAMES))
    return result


def save_image_grid(images: Tensor, path: Path, columns: int) -> None:
    """images [N, H, W, 3] in [0, 1] -> one PNG, ``columns`` per row."""
    save_png(path, image_grid(images, columns))


def format_table(result: Dict) -> str:
    """Markdown table: one row per prompt, then the totals."""
    lines = ["| prompt | shape acc | colour acc | judged as |", "|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['prompt']} | {row['shape_hits']}/{row['n']} | "
                     f"{row['colour_hits']}/{row['n']} | {', '.join(row['judged'])} |")
    lines.append(f"| **all ({result['images']} images, CFG {result['cfg_scale']})** | "
                 f"**{result['shape_accuracy']:.1%}** | **{result['colour_accuracy']:.1%}** | "
                 f"both {result['both_accuracy']:.1%} |")
    lines.append("")
    lines.append("per shape: " + ", ".join(f"{k} {v:.0%}" for k, v in result["per_shape"].items()))
    lines.append("per colour: " + ", ".join(f"{k} {v:.0%}" for k, v in result["per_colour"].items()))
    return "\n".join(lines)


def write_result(result: Dict, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)

"""Evaluation: train a fixed prompt set with several methods and score every result.

``python -m nfsd_gs.eval`` (``--help`` for the options) runs, for every variant
(a config preset + overrides, e.g. ``nfsd@7.5``, ``sds@100``) and every prompt
of the bundled world ("a red cone", ...):

1. train (seeded; the prior is loaded once and shared by all runs);
2. render 8 views around the object (azimuths 0, 45, ..., 315 at the config's
   evaluation elevation, radius and fov) over the fixed background, and the
   ground-truth object (:func:`nfsd_gs.shapeworld.world.render_object`'s
   ray caster) from the same cameras over the same background;
3. score both: the judge's shape and colour accuracy (fraction of the views
   classified as the prompt's shape / colour), the mean HSV saturation of
   object pixels, a sharpness statistic (variance of the Laplacian of the
   luminance) and the object's coverage of the frame; plus training wall time.

Results go to ``--out`` as ``results.json`` and ``results.md`` (rewritten
atomically after every run, so an interrupted evaluation keeps what it did and
is continued by running the same command with the same ``--out``), and one
PNG strip per run (our 8 views above the ground truth's) under ``strips/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .background import fixed_backgrounds
from .cameras import Cameras, OrbitSampler
from .cli import add_override_arguments, parse_command_line
from .config import Config, config_to_dict, load_config
from .errors import ConfigError, NfsdError, TrainingInterrupted
from .utils.images import image_grid, save_png
from .utils.io import create_run_dir, finite_or_none, slugify, write_text
from .utils.timing import synchronize

# ---------------------------------------------------------------------------- prompts and variants

#: The fixed prompt set: every shape twice, every colour at least once, no pair repeated.
PROMPT_SET: Tuple[Tuple[str, str], ...] = (
    ("cone", "red"), ("cube", "blue"), ("sphere", "green"), ("cylinder", "yellow"),
    ("torus", "purple"), ("pyramid", "orange"), ("cube", "cyan"), ("sphere", "pink"),
    ("cone", "orange"), ("torus", "green"), ("pyramid", "blue"), ("cylinder", "purple"),
)

#: The point-prior primitive (``init.kind``) that matches each shape of the world.
PRIMITIVE_OF_SHAPE: Dict[str, str] = {
    "sphere": "sphere", "cube": "box", "cylinder": "cylinder", "cone": "cone",
    "torus": "torus", "pyramid": "pyramid",
}

_NFSD = ("guidance.method=nfsd", "guidance.cfg_scale=7.5")

#: Named variants: overrides on top of ``--config`` (a ``config=<preset>`` entry picks
#: another preset). Placeholders, filled per prompt: ``{shape}`` (world name, "cube"),
#: ``{primitive}`` (its ``init.kind``, "box"), ``{colour}`` and ``{colour_rgb}``
#: ("[0.85,0.1,0.08]", the world's albedo).
VARIANTS: Dict[str, Tuple[str, ...]] = {
    "nfsd@7.5": _NFSD,
    "sds@7.5": ("guidance.method=sds", "guidance.cfg_scale=7.5"),
    "sds@100": ("guidance.method=sds", "guidance.cfg_scale=100"),
    "nerf": _NFSD + ("representation=nerf",),
    "shape-init": _NFSD + ("init.kind={primitive}",),
    "shape-colour-init": _NFSD + ("init.kind={primitive}", "init.color={colour_rgb}"),
}
#: The paper's comparison (NFSD at 7.5 vs SDS at 7.5 and at 100).
DEFAULT_VARIANTS: Tuple[str, ...] = ("nfsd@7.5", "sds@7.5", "sds@100")

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


def world_names() -> Tuple[Tuple[str, ...], Dict[str, Tuple[float, float, float]]]:
    """The world's shape names and colour albedos (imported lazily)."""
    from .shapeworld.world import COLOURS, SHAPES

    return SHAPES, COLOURS


def default_prompts() -> List[str]:
    """The fixed prompt set as text: ``["a red cone", "a blue cube", ...]``."""
    from .shapeworld.captions import object_prompt

    return [object_prompt(shape, colour) for shape, colour in PROMPT_SET]


def all_prompts() -> List[str]:
    """Every shape x colour of the world (48 prompts)."""
    from .shapeworld.captions import all_object_prompts

    return all_object_prompts()


def parse_prompt(prompt: str) -> Tuple[str, str]:
    """``"a red cone"`` -> ``("cone", "red")``; anything else is a ConfigError naming it."""
    shapes, colours = world_names()
    words = re.findall(r"[a-z]+", prompt.lower())
    found_shapes = [w for w in words if w in shapes]
    found_colours = [w for w in words if w in colours]
    if len(found_shapes) != 1 or len(found_colours) != 1:
        raise ConfigError(
            f"prompt '{prompt}' must name one shape ({', '.join(shapes)}) and one colour "
            f"({', '.join(colours)}) of the bundled world, e.g. 'a red cone'")
    return found_shapes[0], found_colours[0]


def split_overrides(text: str) -> List[str]:
    """Split ``"a=1,b=[1,2] c=x"`` on commas and spaces outside brackets and quotes."""
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


def fill_placeholders(override: str, shape: str, colour: str) -> str:
    """Replace ``{shape}``, ``{primitive}``, ``{colour}``, ``{colour_rgb}`` in one override."""
    _, colours = world_names()
    rgb = "[" + ",".join(f"{v:g}" for v in colours[colour]) + "]"
    values = {"shape": shape, "primitive": PRIMITIVE_OF_SHAPE[shape], "colour": colour,
              "color": colour, "colour_rgb": rgb, "color_rgb": rgb}
    try:
        return override.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"override '{override}': unknown placeholder {err} (known: "
                          f"{', '.join('{' + k + '}' for k in values)})") from None


# ---------------------------------------------------------------------------- metrics


def luminance(images: Tensor) -> Tensor:  # [B, H, W, 3] -> [B, H, W]
    """Rec. 601 luma of images in [0, 1]."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return images @ weights


def saturation_map(images: Tensor) -> Tensor:  # [B, H, W, 3] -> [B, H, W]
    """HSV saturation (max - min) / max per pixel; 0 where the pixel is black."""
    high = images.amax(dim=-1)
    low = images.amin(dim=-1)
    return torch.where(high > 1e-6, (high - low) / high.clamp(min=1e-6), torch.zeros_like(high))


def mean_saturation(images: Tensor, mask: Tensor) -> float:
    """Mean HSV saturation of the pixels where ``mask`` [B, H, W] (bool) holds; NaN if none."""
    if mask.shape != images.shape[:-1]:
        raise ConfigError(f"mask of shape {tuple(mask.shape)} does not match images "
                          f"{tuple(images.shape)}")
    if not bool(mask.any()):
        return float("nan")
    return float(saturation_map(images)[mask].mean())


def laplacian_variance(images: Tensor) -> Tensor:  # [B, H, W, 3] -> [B]
    """Variance of the 4-neighbour Laplacian of the luminance (valid pixels), per image.

    The classic focus measure: blur lowers it, crisp edges and fine texture raise it.
    Only comparable between images of the same size (here: ours vs the ground truth).
    """
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
                          dtype=images.dtype, device=images.device).view(1, 1, 3, 3)
    response = F.conv2d(luminance(images)[:, None], kernel)  # [B, 1, H-2, W-2]
    return response.flatten(1).var(dim=1)


def coverage(mask: Tensor) -> Tensor:  # [B, H, W] bool -> [B]
    """Fraction of the frame the object covers."""
    return mask.flatten(1).float().mean(dim=1)


def judge_scores(judge, images: Tensor, shape: str, colour: str) -> Dict:
    """The judge's verdict on B views of one object: accuracies and the names it gave."""
    shapes, colours, _, _ = judge.classify(images)
    n = len(shapes)
    return {
        "shape_acc": sum(s == shape for s in shapes) / n,
        "colour_acc": sum(c == colour for c in colours) / n,
        "both_acc": sum(s == shape and c == colour for s, c in zip(shapes, colours)) / n,
        "judged": [f"{c} {s}" for s, c in zip(shapes, colours)],
    }


def score_views(judge, images: Tensor, mask: Tensor, shape: str, colour: str) -> Dict:
    """Every metric of B views [B, H, W, 3] with their object mask [B, H, W] (bool)."""
    return {
        **judge_scores(judge, images, shape, colour),
        "saturation": mean_saturation(images, mask),
        "sharpness": float(laplacian_variance(images).mean()),
        "coverage": float(coverage(mask).mean()),
    }


# ---------------------------------------------------------------------------- views


def eval_cameras(config: Config, views: int) -> Cameras:
    """``views`` cameras at azimuths 0, 360/views, ... on the config's evaluation orbit."""
    return OrbitSampler(config.camera).fixed_views(views, start_azimuth_deg=0.0)


@torch.no_grad()
def render_ground_truth(shape: str, colour: str, cameras: Cameras, background: Tensor,
                        resolution: int) -> Tuple[Tensor, Tensor]:
    """The world's object from ``cameras``: rgb [B, R, R, 3] and object mask [B, R, R] (bool).

    ``background`` [B, 3]; unit scale, no yaw (what the prior saw on average).
    """
    from .shapeworld.world import object_scenes, render_scenes

    scenes = object_scenes(shape, colour, len(cameras))
    rgb, alpha = render_scenes(scenes, cameras, background.to(cameras.device), resolution)
    return rgb.cpu(), (alpha > 0.5).cpu()


@torch.no_grad()
def render_model(model, cameras: Cameras, background: Tensor,
                 resolution: int) -> Tuple[Tensor, Tensor]:
    """A trained representation's rgb [B, R, R, 3] and mask alpha > 0.5 [B, R, R] (bool)."""
    out = model.render(cameras, resolution, resolution, background)
    return out.rgb.clamp(0, 1).float().cpu(), (out.alpha[..., 0] > 0.5).cpu()


def save_strip(path: Path, ours: Tensor, truth: Tensor) -> None:
    """One PNG: our V views [V, H, W, 3] in a row above the ground truth's."""
    save_png(path, image_grid(torch.cat([ours, truth]), columns=len(ours)))


# ---------------------------------------------------------------------------- one run


@dataclass
class Settings:
    """What every run of one evaluation shares."""

    config: str = "default"
    overrides: Tuple[str, ...] = ()  # applied to every variant, before the variant's own
    steps: Optional[int] = None
    seed: int = 0
    views: int = 8
    resolution: int = 64
    out: Path = Path("outputs/eval")
    progress: bool = False
    #: Keep each run's final checkpoint (model.ply, metrics.jsonl and the snapshot stay anyway).
    keep_checkpoints: bool = False


def run_config(settings: Settings, variant: Variant, prompt: str, run_root: Path) -> Config:
    """The resolved config of one (variant, prompt) run."""
    shape, colour = parse_prompt(prompt)
    overrides = list(settings.overrides)
    overrides += [fill_placeholders(o, shape, colour) for o in variant.overrides]
    if settings.steps is not None:
        overrides.append(f"steps={settings.steps}")
    overrides += [*EVAL_OVERRIDES, f"seed={settings.seed}", f"prompt={json.dumps(prompt)}",
                  f"output.root={json.dumps(str(run_root))}"]
    return load_config(variant.config or settings.config, overrides)


def config_signature(config: Config) -> str:
    """A short hash of everything that shapes a run's result (not where it writes)."""
    data = config_to_dict(config)
    data.pop("output", None)
    data.pop("viewer", None)
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


class PriorCache:
    """One loaded prior per (prior config, device), shared by every run that needs it."""

    def __init__(self):
        self._priors: Dict[str, object] = {}

    def get(self, config: Config, device: torch.device):
        from .guidance.prior import DiffusionPrior

        key = json.dumps([config_to_dict(config)["prior"], str(device)], sort_keys=True)
        if key not in self._priors:
            self._priors[key] = DiffusionPrior.load(config.prior, device)
        return self._priors[key]


def train_run(config: Config, priors: PriorCache, progress: bool = False):
    """Build and train one run; returns (run, run_dir, timing dict)."""
    from .train import resolve_device, start_run, train

    device = resolve_device(config.device)
    prior = priors.get(config, device)
    start = time.perf_counter()
    run, run_dir = start_run(config, prior)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    built = time.perf_counter()
    train(run, run_dir, progress=progress)
    synchronize(device)
    done = time.perf_counter()
    timing = {"build_s": built - start, "train_s": done - built,
              "steps_per_s": config.steps / max(done - built, 1e-9)}
    if device.type == "cuda":
        timing["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return run, run_dir, timing


def ground_truth_scores(judge, config: Config, shape: str, colour: str, settings: Settings,
                        cache: Dict) -> Tuple[Dict, Tensor]:
    """Scores and rgb [V, R, R, 3] of the ground truth (cached per prompt and camera set)."""
    cameras = eval_cameras(config, settings.views)
    background = fixed_backgrounds(config.background, len(cameras))
    key = json.dumps([shape, colour, config_to_dict(config)["camera"],
                      list(config.background.color)])
    if key not in cache:
        rgb, mask = render_ground_truth(shape, colour, cameras, background, settings.resolution)
        cache[key] = (score_views(judge, rgb, mask, shape, colour), rgb)
    return cache[key]


def evaluate_one(settings: Settings, variant: Variant, prompt: str, judge,
                 priors: PriorCache, gt_cache: Dict) -> Dict:
    """Train and score one (variant, prompt); returns its result row."""
    shape, colour = parse_prompt(prompt)
    config = run_config(settings, variant, prompt, settings.out / "runs" / slugify(variant.name))
    truth, truth_rgb = ground_truth_scores(judge, config, shape, colour, settings, gt_cache)
    run, run_dir, timing = train_run(config, priors, settings.progress)
    cameras = eval_cameras(config, settings.views).to(run.device)
    background = fixed_backgrounds(config.background, len(cameras)).to(run.device)
    rgb, mask = render_model(run.model, cameras, background, settings.resolution)
    ours = score_views(judge, rgb, mask, shape, colour)
    strip = settings.out / "strips" / slugify(variant.name) / f"{slugify(prompt)}.png"
    save_strip(strip, rgb, truth_rgb)
    if not settings.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {
        "variant": variant.name, "prompt": prompt, "shape": shape, "colour": colour,
        "ours": ours, "truth": truth, **timing, "steps": config.steps,
        "representation": config.representation,
        "num_primitives": run.model.num_primitives,
        "signature": config_signature(config), "run_dir": str(run_dir), "strip": str(strip),
        "error": None,
    }


def error_row(variant: Variant, prompt: str, err: BaseException,
              signature: Optional[str] = None) -> Dict:
    return {"variant": variant.name, "prompt": prompt, "signature": signature,
            "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}


def warm_up(settings: Settings, variant: Variant, prompt: str, priors: PriorCache) -> None:
    """A short untimed run, so kernel compilation and CUDA-graph capture are not timed."""
    steps = 3 if settings.steps is None else max(1, min(3, settings.steps))
    warm = replace(settings, steps=steps, out=settings.out / "warmup")
    config = run_config(warm, variant, prompt, warm.out)
    try:
        train_run(config, priors)
    finally:
        shutil.rmtree(warm.out, ignore_errors=True)


# ---------------------------------------------------------------------------- tables


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def summarize(rows: Sequence[Dict], variants: Sequence[str]) -> List[Dict]:
    """One summary per variant: means over its prompts that trained without error."""
    summaries = []
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        ok = [r for r in mine if not r.get("error")]
        summary = {"variant": name, "prompts": len(ok), "errors": len(mine) - len(ok)}
        for side in ("ours", "truth"):
            for metric in ("shape_acc", "colour_acc", "both_acc", "saturation", "sharpness",
                           "coverage"):
                summary[f"{metric}_{side}"] = _mean([r[side][metric] for r in ok])
        for metric in ("train_s", "steps_per_s"):
            summary[metric] = _mean([r[metric] for r in ok])
        summaries.append(summary)
    return summaries


def _fmt(value: Optional[float], spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def summary_table(summaries: Sequence[Dict]) -> str:
    """Markdown: one row per variant."""
    lines = ["| variant | prompts | errors | shape acc ours / GT | colour acc ours / GT | both "
             "| saturation ours / GT | sharpness ours / GT | coverage ours / GT | train s "
             "| steps/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(
            f"| {s['variant']} | {s['prompts']} | {s['errors']} "
            f"| {_pct(s['shape_acc_ours'])} / {_pct(s['shape_acc_truth'])} "
            f"| {_pct(s['colour_acc_ours'])} / {_pct(s['colour_acc_truth'])} "
            f"| {_pct(s['both_acc_ours'])} "
            f"| {_fmt(s['saturation_ours'])} / {_fmt(s['saturation_truth'])} "
            f"| {_fmt(s['sharpness_ours'])} / {_fmt(s['sharpness_truth'])} "
            f"| {_fmt(s['coverage_ours'])} / {_fmt(s['coverage_truth'])} "
            f"| {_fmt(s['train_s'], '.1f')} | {_fmt(s['steps_per_s'], '.1f')} |")
    return "\n".join(lines)


def prompt_table(rows: Sequence[Dict]) -> str:
    """Markdown: one row per (variant, prompt), errors included."""
    lines = ["| variant | prompt | shape acc ours / GT | colour acc ours / GT "
             "| judged as (most often) | saturation ours / GT | sharpness ours / GT | train s "
             "| error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['variant']} | {r['prompt']} | – | – | – | – | – | – "
                         f"| {r['error'].replace('|', '/')} |")
            continue
        o, t = r["ours"], r["truth"]
        judged, count = Counter(o["judged"]).most_common(1)[0]
        lines.append(
            f"| {r['variant']} | {r['prompt']} | {_pct(o['shape_acc'])} / {_pct(t['shape_acc'])} "
            f"| {_pct(o['colour_acc'])} / {_pct(t['colour_acc'])} "
            f"| {judged} ({count}/{len(o['judged'])}) "
            f"| {_fmt(o['saturation'])} / {_fmt(t['saturation'])} "
            f"| {_fmt(o['sharpness'])} / {_fmt(t['sharpness'])} | {_fmt(r['train_s'], '.1f')} | |")
    return "\n".join(lines)


def format_markdown(result: Dict) -> str:
    """The whole report: settings, the per-variant table and the per-prompt table."""
    meta = result["meta"]
    head = (f"# Evaluation ({meta['status']})\n\n"
            f"config `{meta['config']}`, overrides `{' '.join(meta['overrides']) or '-'}`, "
            f"seed {meta['seed']}, {meta['views']} views at {meta['resolution']} px, "
            f"device {meta['device']}, judge `{meta['judge']}`.\n"
            f"Accuracies: fraction of views the judge names as the prompt's shape / colour "
            f"(GT: the judge on ground-truth renders of the same views); saturation: mean HSV "
            f"S of object pixels; sharpness: variance of the Laplacian of the luminance; "
            f"coverage: object's share of the frame.\n")
    variants = "\n".join(f"- `{v['name']}`: `{v['config'] or meta['config']}` + "
                         f"`{' '.join(v['overrides']) or '-'}`" for v in meta["variants"])
    return (f"{head}\n{variants}\n\n## Per variant\n\n{summary_table(result['summary'])}\n\n"
            f"## Per prompt\n\n{prompt_table(result['rows'])}\n")


def write_results(out: Path, result: Dict) -> None:
    """``results.json`` and ``results.md`` in ``out``, each atomically."""
    write_text(out / "results.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_text(out / "results.md", format_markdown(result))


def previous_result(out: Path) -> Dict:
    """An earlier evaluation in ``out``: its successful rows and its variants' definitions."""
    path = out / "results.json"
    if not path.is_file():
        return {"rows": [], "variants": []}
    try:
        data = json.loads(path.read_text())
        rows, variants = data["rows"], data["meta"]["variants"]
    except (ValueError, KeyError, TypeError):
        raise NfsdError(f"'{path}' is not an evaluation result; pick another --out") from None
    return {"rows": [r for r in rows if not r.get("error")], "variants": variants}


def merge_rows(earlier: Sequence[Dict], rows: Sequence[Dict], order: Sequence[str]) -> List[Dict]:
    """This invocation's rows plus the earlier ones of other (variant, prompt) pairs,
    grouped by variant in ``order`` (prompts keep their order within a variant)."""
    done = {(r["variant"], r["prompt"]) for r in rows}
    carried = [r for r in earlier if (r["variant"], r["prompt"]) not in done]
    rank = {name: i for i, name in enumerate(order)}
    return sorted([*carried, *rows], key=lambda r: rank.get(r["variant"], len(rank)))


# ---------------------------------------------------------------------------- CLI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nfsd_gs.eval",
        description="Train a fixed prompt set of the bundled world with several methods and "
                    "score each result from 8 views with the judge, against ground-truth renders.",
        epilog="Variants: " + "; ".join(f"{k} = {' '.join(v)}" for k, v in VARIANTS.items())
               + ". Placeholders in overrides: {shape} {primitive} {colour} {colour_rgb}. "
               "Running again with the same --out continues: finished runs whose config is "
               "unchanged are kept, and so are the rows of variants and prompts not asked for "
               "this time (a long evaluation can be split over several commands).")
    parser.add_argument("--config", "-c", default="default",
                        help="preset every variant starts from (default: default)")
    parser.add_argument("--variants", action="append", default=None, metavar="A,B",
                        help="named variants, comma separated (default: "
                             f"{','.join(DEFAULT_VARIANTS)}); 'none' for only --variant ones")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,K=V",
                        help="an ad-hoc variant, e.g. nerf=representation=nerf or "
                             "box-init=init.kind={primitive}; config=<preset> picks a preset")
    parser.add_argument("--prompts", action="append", default=None, metavar="P,P",
                        help="prompts, comma separated, or 'all' for the whole world "
                             "(default: a fixed set of 12)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every run")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    parser.add_argument("--views", type=int, default=8, help="views per object (default 8)")
    parser.add_argument("--resolution", type=int, default=64,
                        help="evaluation render size in pixels (default 64, the judge's)")
    parser.add_argument("--judge", default=None, help="judge folder (default: the shipped judge)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: outputs/eval/<timestamp>); an existing "
                             "one is continued (its rows of other variants or "
                             "prompts stay in the tables)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the config's)")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="an untimed 3-step run per variant first (default: on CUDA)")
    parser.add_argument("--progress", action="store_true", help="progress bar per run")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep every run's final checkpoint (default: model.ply only)")
    add_override_arguments(parser, help="dotted config overrides for every variant "
                                        "(before, between or after the flags)")
    return parse_command_line(parser, argv)


def _comma_list(values: Optional[Sequence[str]]) -> Optional[List[str]]:
    if values is None:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def settings_from_args(args: argparse.Namespace) -> Tuple[Settings, List[Variant], List[str]]:
    """Validate the command line -> (settings, variants, prompts)."""
    for name, value, low in (("--views", args.views, 1), ("--resolution", args.resolution, 8),
                             ("--steps", args.steps, 0), ("--limit", args.limit, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{name} {value} must be >= {low}")
    names = _comma_list(args.variants)
    names = list(DEFAULT_VARIANTS) if names is None else [n for n in names if n != "none"]
    variants = select_variants(names, args.variant)
    prompts = _comma_list(args.prompts) or ["default"]
    if prompts == ["all"]:
        prompts = all_prompts()
    elif prompts == ["default"]:
        prompts = default_prompts()
    for prompt in prompts:
        parse_prompt(prompt)
    prompts = prompts[:args.limit] if args.limit else prompts
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    out = Path(args.out) if args.out else None
    settings = Settings(config=args.config, overrides=tuple(overrides), steps=args.steps,
                        seed=args.seed, views=args.views, resolution=args.resolution,
                        out=out or Path("outputs/eval"), progress=args.progress,
                        keep_checkpoints=args.keep_checkpoints)
    return settings, variants, prompts


def load_judge(folder: Optional[str], device: torch.device):
    from .shapeworld.judge import Judge

    return Judge.load(folder, device) if folder else Judge.load(device=device)


def _is_stop(err: BaseException) -> bool:
    """Ctrl-C here, or a SIGINT / SIGTERM that train() turned into TrainingInterrupted."""
    return isinstance(err, (KeyboardInterrupt, TrainingInterrupted))


def evaluate(settings: Settings, variants: Sequence[Variant], prompts: Sequence[str],
             judge, warmup: bool, meta: Dict) -> Dict:
    """Every (variant, prompt), results rewritten after each; stops cleanly on Ctrl-C."""
    earlier = previous_result(settings.out)
    kept = {(r["variant"], r["prompt"], r.get("signature")): r for r in earlier["rows"]}
    current = {v.name for v in variants}
    definitions = [d for d in earlier["variants"] if d["name"] not in current] + meta["variants"]
    meta["variants"] = definitions
    order = [d["name"] for d in definitions]
    rows: List[Dict] = []
    priors, gt_cache = PriorCache(), {}
    result = {"meta": meta, "summary": [], "rows": []}

    def publish(status: str) -> None:
        meta["status"] = status
        result["rows"] = merge_rows(earlier["rows"], rows, order)
        present = {r["variant"] for r in result["rows"]}
        result["summary"] = summarize(result["rows"], [n for n in order if n in present])
        write_results(settings.out, finite_or_none(result))

    try:
        for variant in variants:
            cold = warmup
            for prompt in prompts:
                signature = None
                try:
                    signature = config_signature(run_config(settings, variant, prompt,
                                                            settings.out / "runs"))
                    if (variant.name, prompt, signature) in kept:
                        rows.append(kept[(variant.name, prompt, signature)])
                        print(f"[{variant.name}] {prompt}: kept from an earlier run",
                              file=sys.stderr)
                        continue
                    if cold:
                        cold = False
                        warm_up(settings, variant, prompt, priors)
                    rows.append(evaluate_one(settings, variant, prompt, judge, priors, gt_cache))
                    r = rows[-1]
                    print(f"[{variant.name}] {prompt}: shape {r['ours']['shape_acc']:.0%} colour "
                          f"{r['ours']['colour_acc']:.0%} in {r['train_s']:.1f} s",
                          file=sys.stderr, flush=True)
                except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - recorded, not raised
                    rows.append(error_row(variant, prompt, err, signature))
                    if _is_stop(err):
                        raise KeyboardInterrupt from None
                    print(f"[{variant.name}] {prompt}: error: {rows[-1]['error']}",
                          file=sys.stderr, flush=True)
                publish("running")
    except KeyboardInterrupt:
        publish("interrupted")
        return result
    publish("complete")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .train import resolve_device

    args = parse_args(argv)
    try:
        settings, variants, prompts = settings_from_args(args)
        probe = run_config(settings, variants[0], prompts[0], settings.out / "runs")
        device = resolve_device(probe.device)
        judge = load_judge(args.judge, device)
        if args.out is None:
            settings = replace(settings, out=create_run_dir(
                "outputs/eval", time.strftime("%Y%m%d_%H%M%S")))
        settings.out.mkdir(parents=True, exist_ok=True)
        meta = {"status": "running", "config": settings.config,
                "overrides": list(settings.overrides), "steps": settings.steps,
                "seed": settings.seed, "views": settings.views, "resolution": settings.resolution,
                "device": str(device), "judge": args.judge or "shipped",
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "variants": [{"name": v.name, "config": v.config, "overrides": list(v.overrides)}
                             for v in variants],
                "prompts": list(prompts), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        warmup = device.type == "cuda" if args.warmup is None else args.warmup
        result = evaluate(settings, variants, prompts, judge, warmup, meta)
    except NfsdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_table(result["summary"]))
    print(f"\nwrote {settings.out / 'results.md'} and results.json "
          f"({result['meta']['status']})", file=sys.stderr)
    return 130 if result["meta"]["status"] == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m nfsd_gs.eval``: the command line of the evaluation (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

from ..cli import add_override_arguments, fail, parse_command_line
from ..errors import ConfigError, NfsdError
from ..score import ALIGN_SCALES, ALIGN_YAWS, WorldJudge, load_judge, parse_scales
from ..train.batched import DEFAULT_ASSETS_CPU, DEFAULT_ASSETS_GPU, default_assets
from ..utils.device import resolve_device
from ..utils.io import create_run_dir, make_folder
from .prompts import SPLITS, all_prompts, parse_prompt, split_prompts
from .report import summary_table
from .runner import Settings, evaluate, run_config
from .variants import (COMPARISON_VARIANTS, DEFAULT_VARIANTS, VARIANTS, Variant,
                       select_variants)
from .worst import WORST_BY, write_worst

#: Seeds of a --comparison unless --seeds says otherwise.
COMPARISON_SEEDS: Tuple[int, ...] = (0, 1, 2)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nfsd_gs.eval",
        description="Train a fixed prompt set of the bundled world with several methods and "
                    "score each result from 8 views with the judge and against the "
                    "ground-truth object (silhouette IoU, CIELAB colour error, speckle).",
        epilog="Variants: " + "; ".join(f"{k} = {' '.join(v)}" for k, v in VARIANTS.items())
               + ". Placeholders in overrides: {shape} {primitive} {colour} {colour_rgb}. "
               "Running again with the same --out continues: finished runs whose config is "
               "unchanged are kept, and so are the rows of variants, prompts and seeds not "
               "asked for this time (a long evaluation can be split over several commands).")
    parser.add_argument("--config", "-c", default="default",
                        help="preset every variant starts from (default: default)")
    parser.add_argument("--comparison", action="store_true",
                        help=f"issue 18's comparison: variants {','.join(COMPARISON_VARIANTS)} "
                             f"(unless --variants/--variant), seeds "
                             f"{','.join(map(str, COMPARISON_SEEDS))} (unless --seeds), "
                             "every evaluation prompt of --split")
    parser.add_argument("--variants", action="append", default=None, metavar="A,B",
                        help="named variants, comma separated (default: "
                             f"{','.join(DEFAULT_VARIANTS)}); 'none' for only --variant ones")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,K=V",
                        help="an ad-hoc variant, e.g. nerf=representation=nerf or "
                             "box-init=init.kind={primitive}; config=<preset> picks a preset")
    parser.add_argument("--split", default="solid",
                        help=f"world split whose prompt set is evaluated: "
                             f"{', '.join(SPLITS)} or all (default: solid)")
    parser.add_argument("--prompts", action="append", default=None, metavar="P,P",
                        help="prompts, comma separated, or 'all' for every object of the split "
                             "(default: the split's fixed evaluation set, 12 for solid)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every run")
    parser.add_argument("--seed", type=int, default=None, help="one seed for every run (default 0)")
    parser.add_argument("--seeds", default=None, metavar="S,S",
                        help="seeds, comma separated: every (variant, prompt, seed) is a run")
    parser.add_argument("--views", type=int, default=8, help="views per object (default 8)")
    parser.add_argument("--resolution", type=int, default=64,
                        help="evaluation render size in pixels (default 64, the judge's)")
    parser.add_argument("--align-yaws", type=int, default=ALIGN_YAWS,
                        help=f"yaws tried when aligning the ground truth, a multiple of "
                             f"--views (default {ALIGN_YAWS}: 5 degree steps)")
    parser.add_argument("--align-scales", default=",".join(map(str, ALIGN_SCALES)),
                        metavar="LOW,HIGH,COUNT",
                        help="geometric grid of ground-truth scales tried (default "
                             f"{','.join(map(str, ALIGN_SCALES))})")
    parser.add_argument("--judge", default=None, help="judge folder (default: the shipped judge)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: outputs/eval/<timestamp>); an existing "
                             "one is continued (its rows of other variants, prompts or seeds "
                             "stay in the tables)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the config's)")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="an untimed 3-step run per variant first (default: on CUDA)")
    parser.add_argument("--assets-per-process", type=int, default=None, metavar="M",
                        help="runs trained at once on a shared prior, one U-Net call per step "
                             f"for all of them (default {DEFAULT_ASSETS_GPU} on CUDA, "
                             f"{DEFAULT_ASSETS_CPU} on a CPU); a run's scores do not depend on it")
    parser.add_argument("--progress", action="store_true",
                        help="progress bar per run (with --assets-per-process 1)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep every run's final checkpoint (default: model.ply only)")
    parser.add_argument("--worst", type=int, default=0, metavar="N",
                        help="also write worst.png and worst.md in --out at the end: each "
                             "variant's N worst runs, their strips side by side (default 0: "
                             "none; scripts/merge_eval.py --worst does it for merged folders)")
    parser.add_argument("--worst-by", choices=WORST_BY, default=WORST_BY[0],
                        help="ranking of --worst, worst first after the errors (default "
                             "all_acc: the judge, then sharpness / GT, then IoU; colour_de and "
                             "speckle: the largest first)")
    add_override_arguments(parser, help="dotted config overrides for every variant "
                                        "(before, between or after the flags)")
    return parse_command_line(parser, argv)


def _comma_list(values: Optional[Sequence[str]]) -> Optional[List[str]]:
    if values is None:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _numbers(flag: str, text: str, kind=int) -> List:
    try:
        return [kind(item) for item in _comma_list([text])]
    except ValueError:
        raise ConfigError(f"{flag} '{text}' must be comma-separated numbers") from None


def _seeds(args: argparse.Namespace) -> Tuple[int, ...]:
    if args.seeds is not None and args.seed is not None:
        raise ConfigError("give --seed or --seeds, not both")
    if args.seeds is not None:
        seeds = _numbers("--seeds", args.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds '{args.seeds}' must list distinct seeds")
        return tuple(seeds)
    if args.seed is not None:
        return (args.seed,)
    return COMPARISON_SEEDS if args.comparison else (0,)


def select_prompts(args: argparse.Namespace) -> List[str]:
    """The prompts of the command line, the split's fixed set by default."""
    prompts = _comma_list(args.prompts) or ["default"]
    if prompts == ["all"]:
        prompts = all_prompts(args.split)
    elif prompts == ["default"]:
        prompts = split_prompts(args.split)
    for prompt in prompts:
        parse_prompt(prompt)
    return prompts[:args.limit] if args.limit else prompts


def settings_from_args(args: argparse.Namespace) -> Tuple[Settings, List[Variant], List[str]]:
    """Validate the command line -> (settings, variants, prompts)."""
    for name, value, low in (("--views", args.views, 1), ("--resolution", args.resolution, 8),
                             ("--steps", args.steps, 0), ("--limit", args.limit, 1),
                             ("--assets-per-process", args.assets_per_process, 1),
                             ("--worst", args.worst, 0)):
        if value is not None and value < low:
            raise ConfigError(f"{name} {value} must be >= {low}")
    if args.align_yaws < 1 or args.align_yaws % args.views:
        raise ConfigError(f"--align-yaws {args.align_yaws} must be a positive multiple of "
                          f"--views {args.views}")
    names = _comma_list(args.variants)
    if names is None:
        names = list(COMPARISON_VARIANTS if args.comparison and not args.variant
                     else DEFAULT_VARIANTS)
    names = [n for n in names if n != "none"]
    variants = select_variants(names, args.variant)
    prompts = select_prompts(args)
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    settings = Settings(config=args.config, overrides=tuple(overrides), steps=args.steps,
                        seeds=_seeds(args), views=args.views, resolution=args.resolution,
                        out=Path(args.out) if args.out else Path("outputs/eval"),
                        progress=args.progress, keep_checkpoints=args.keep_checkpoints,
                        align_yaws=args.align_yaws, align_scales=parse_scales(args.align_scales))
    return settings, variants, prompts


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        settings, variants, prompts = settings_from_args(args)
        probe = run_config(settings, variants[0], prompts[0], settings.seeds[0],
                           settings.out / "runs")
        device = resolve_device(probe.device)
        assets = args.assets_per_process or default_assets(device.type == "cuda")
        settings = replace(settings, assets=assets)
        judge = WorldJudge(load_judge(args.judge, device), settings.judging, device)
        if args.out is None:
            settings = replace(settings, out=create_run_dir(
                "outputs/eval", time.strftime("%Y%m%d_%H%M%S")))
        make_folder(settings.out)
        meta = {"status": "running", "config": settings.config,
                "overrides": list(settings.overrides), "steps": settings.steps,
                "seeds": list(settings.seeds), "split": args.split, "views": settings.views,
                "resolution": settings.resolution, "align_yaws": settings.align_yaws,
                "align_scales": list(settings.align_scales),
                "device": str(device), "judge": args.judge or "shipped",
                "assets_per_process": settings.assets,
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "variants": [v.describe() for v in variants],
                "prompts": list(prompts), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        warmup = device.type == "cuda" if args.warmup is None else args.warmup
        result = evaluate(settings, variants, prompts, judge, warmup, meta)
        if args.worst:
            write_worst(settings.out, result["rows"], args.worst, args.worst_by,
                        status=result["meta"]["status"])
    except NfsdError as err:
        return fail(err)
    print(summary_table(result["summary"]))
    print(f"\nwrote {settings.out / 'results.md'}, results.json"
          f"{', worst.png, worst.md' if args.worst else ''} "
          f"({result['meta']['status']})", file=sys.stderr)
    return 130 if result["meta"]["status"] == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())

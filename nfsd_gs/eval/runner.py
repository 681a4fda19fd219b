"""Train and score runs: one (variant, prompt, seed) at a time, results rewritten after each.

A run's row is keyed by its config signature (a hash of everything that shapes its
result), so running the same command again with the same ``--out`` keeps the finished
rows and trains only what is missing or changed; rows of variants, prompts or seeds not
asked for this time stay in the tables.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..config import Config, config_signature, resolve_config
from ..errors import NfsdError, TrainingInterrupted
from ..guidance.prior import PriorCache
from ..score import ALIGN_SCALES, ALIGN_YAWS, JudgeSettings, WorldJudge
from ..utils.device import resolve_device
from ..utils.images import save_image_grid
from ..utils.io import finite_or_none, slugify
from ..utils.timing import synchronize
from .prompts import parse_prompt
from .report import summarize, write_results
from .variants import EVAL_OVERRIDES, Variant, fill_placeholders


@dataclass
class Settings:
    """What every run of one evaluation shares."""

    config: str = "default"
    overrides: Tuple[str, ...] = ()  # applied to every variant, before the variant's own
    steps: Optional[int] = None
    seeds: Tuple[int, ...] = (0,)
    views: int = 8
    resolution: int = 64
    out: Path = Path("outputs/eval")
    progress: bool = False
    #: Keep each run's final checkpoint (model.ply, metrics.jsonl and the snapshot stay anyway).
    keep_checkpoints: bool = False
    #: Alignment search: yaws (a multiple of ``views``) and scales (low, high, count).
    align_yaws: int = ALIGN_YAWS
    align_scales: Tuple[float, float, int] = ALIGN_SCALES

    @property
    def judging(self) -> JudgeSettings:
        """How the judge sees every run (``nfsd_gs.score``; its default grid unless asked)."""
        return JudgeSettings(self.views, self.resolution, self.align_yaws, self.align_scales)


def run_config(settings: Settings, variant: Variant, prompt: str, seed: int,
               run_root: Path) -> Config:
    """The resolved config of one (variant, prompt, seed) run."""
    spec = parse_prompt(prompt)
    overrides = list(settings.overrides)
    overrides += [fill_placeholders(o, spec) for o in variant.overrides]
    if settings.steps is not None:
        overrides.append(f"steps={settings.steps}")
    overrides += EVAL_OVERRIDES
    return resolve_config(variant.config or settings.config, prompt, overrides, seed=seed,
                          output_root=run_root)


def train_run(config: Config, priors: PriorCache, progress: bool = False):
    """Build and train one run; returns (run, run_dir, timing dict)."""
    from ..train.loop import train
    from ..train.run import start_run

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


def save_strip(path: Path, ours: Tensor, truth: Tensor) -> None:
    """One PNG: our V views [V, H, W, 3] in a row above the ground truth's."""
    save_image_grid(path, torch.cat([ours, truth]), columns=len(ours))


def evaluate_one(settings: Settings, variant: Variant, prompt: str, seed: int,
                 judge: WorldJudge, priors: PriorCache) -> Dict:
    """Train and score one (variant, prompt, seed) with the one judge; returns its result row."""
    spec = parse_prompt(prompt)
    root = settings.out / "runs" / slugify(variant.name) / f"seed{seed}"
    config = run_config(settings, variant, prompt, seed, root)
    truth, _ = judge.truth(config)
    run, run_dir, timing = train_run(config, priors, settings.progress)
    judged = judge.score(run.model, config)
    strip = settings.out / "strips" / slugify(variant.name) / f"{slugify(prompt)}_seed{seed}.png"
    save_strip(strip, judged.rgb, judged.truth_rgb)
    if not settings.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {
        "variant": variant.name, "prompt": prompt, "seed": seed, **asdict(spec),
        "ours": judged.scores, "truth": truth, "alignment": judged.alignment,
        **timing, "steps": config.steps, "representation": config.representation,
        "num_primitives": int(run.model.num_primitives),
        "signature": config_signature(config), "run_dir": str(run_dir), "strip": str(strip),
        "error": None,
    }


def error_row(variant: Variant, prompt: str, seed: int, err: BaseException,
              signature: Optional[str] = None) -> Dict:
    return {"variant": variant.name, "prompt": prompt, "seed": seed, "signature": signature,
            "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}


def warm_up(settings: Settings, variant: Variant, prompt: str, priors: PriorCache) -> None:
    """A short untimed run, so kernel compilation and CUDA-graph capture are not timed."""
    steps = 3 if settings.steps is None else max(1, min(3, settings.steps))
    warm = replace(settings, steps=steps, out=settings.out / "warmup")
    config = run_config(warm, variant, prompt, settings.seeds[0], warm.out)
    try:
        train_run(config, priors)
    finally:
        shutil.rmtree(warm.out, ignore_errors=True)


# ---------------------------------------------------------------------------- resume


def row_key(row: Dict) -> Tuple:
    """What one run is: (variant, prompt, seed)."""
    return row["variant"], row["prompt"], row.get("seed")


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
    """This invocation's rows plus the earlier ones of other (variant, prompt, seed) runs,
    grouped by variant in ``order`` (runs keep their order within a variant)."""
    done = {row_key(r) for r in rows}
    carried = [r for r in earlier if row_key(r) not in done]
    rank = {name: i for i, name in enumerate(order)}
    return sorted([*carried, *rows], key=lambda r: rank.get(r["variant"], len(rank)))


def _is_stop(err: BaseException) -> bool:
    """Ctrl-C here, or a SIGINT / SIGTERM that train() turned into TrainingInterrupted."""
    return isinstance(err, (KeyboardInterrupt, TrainingInterrupted))


def evaluate(settings: Settings, variants: Sequence[Variant], prompts: Sequence[str],
             judge: WorldJudge, warmup: bool, meta: Dict) -> Dict:
    """Every (prompt, seed, variant), results rewritten after each; stops cleanly on Ctrl-C.
    ``judge``: the one judge (its settings: ``settings.judging``); ``warmup``: one short
    untimed run before a variant's first timed one."""
    earlier = previous_result(settings.out)
    kept = {(*row_key(r), r.get("signature")): r for r in earlier["rows"]}
    current = {v.name for v in variants}
    definitions = [d for d in earlier["variants"] if d["name"] not in current] + meta["variants"]
    meta["variants"] = definitions
    order = [d["name"] for d in definitions]
    rows: List[Dict] = []
    priors = PriorCache()
    result = {"meta": meta, "summary": [], "rows": []}

    def publish(status: str) -> None:
        meta["status"] = status
        result["rows"] = merge_rows(earlier["rows"], rows, order)
        present = {r["variant"] for r in result["rows"]}
        result["summary"] = summarize(result["rows"], [n for n in order if n in present])
        write_results(settings.out, finite_or_none(result))

    warm = set() if warmup else {v.name for v in variants}
    try:
        # Prompt-major: a stopped evaluation has every variant of the runs it finished.
        for prompt in prompts:
            for seed in settings.seeds:
                for variant in variants:
                    tag = f"[{variant.name}] {prompt} (seed {seed})"
                    signature = None
                    try:
                        signature = config_signature(run_config(settings, variant, prompt, seed,
                                                                settings.out / "runs"))
                        if (variant.name, prompt, seed, signature) in kept:
                            rows.append(kept[(variant.name, prompt, seed, signature)])
                            print(f"{tag}: kept from an earlier run", file=sys.stderr)
                            continue
                        if variant.name not in warm:
                            warm.add(variant.name)
                            warm_up(settings, variant, prompt, priors)
                        rows.append(evaluate_one(settings, variant, prompt, seed, judge, priors))
                        o = rows[-1]["ours"]
                        print(f"{tag}: shape {o['shape_acc']:.0%} colour {o['colour_acc']:.0%} "
                              f"IoU {o['iou']:.2f} in {rows[-1]['train_s']:.1f} s",
                              file=sys.stderr, flush=True)
                    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - recorded
                        rows.append(error_row(variant, prompt, seed, err, signature))
                        if _is_stop(err):
                            raise KeyboardInterrupt from None
                        print(f"{tag}: error: {rows[-1]['error']}", file=sys.stderr, flush=True)
                    publish("running")
    except KeyboardInterrupt:
        publish("interrupted")
        return result
    publish("complete")
    return result

"""Train and score runs: (variant, prompt, seed) runs trained ``--assets-per-process`` at
once on a shared prior (the trainer's ``nfsd_gs.train.batched``), each scored by the one
judge as it finishes, results rewritten after each.

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
from ..errors import NfsdError, TrainingInterrupted, error_summary
from ..guidance.prior import PriorCache, prior_key
from ..score import ALIGN_SCALES, ALIGN_YAWS, JudgeSettings, WorldJudge
from ..utils.device import resolve_device
from ..utils.images import save_image_grid
from ..utils.io import finite_or_none, slugify
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
    #: Runs trained at once in the process on one prior (one U-Net call per step for all).
    assets: int = 1

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


@dataclass
class Pending:
    """One (variant, prompt, seed) run to train, at ``index`` in the evaluation's order."""

    index: int
    variant: Variant
    prompt: str
    seed: int
    config: Config


def run_asset(pending: Pending, priors: PriorCache):
    """The trainer's asset of one run (``nfsd_gs.train.batched``): a fresh run folder on the
    run's prior, shared through ``priors``."""
    from ..train.batched import Asset
    from ..train.run import start_run

    config = pending.config

    def open_run():
        return start_run(config, priors.get(config, resolve_device(config.device)))

    return Asset(config, open_run, key=pending)


def train_runs(pendings: Sequence[Pending], priors: PriorCache, assets: int, stop=None,
               progress: bool = False):
    """Train the runs, ``assets`` at once on each prior (one U-Net call per step for all of
    them: ``nfsd_gs.train.batched``); yields each ``Outcome`` as its run leaves. Runs of
    different priors are trained one prior after the other."""
    from ..train.batched import train_assets

    groups: Dict[str, List[Pending]] = {}
    for pending in pendings:
        config = pending.config
        groups.setdefault(prior_key(config, resolve_device(config.device)), []).append(pending)
    for group in groups.values():
        yield from train_assets([run_asset(p, priors) for p in group], assets, stop, progress)


def timing_of(outcome, config: Config) -> Dict[str, float]:
    """A trained run's times: opening it, training it (shared with the runs beside it when
    several train at once), its steps per second, the process's peak CUDA memory."""
    steps = config.steps - (outcome.start_step or 0)
    timing = {"build_s": outcome.open_s, "train_s": outcome.train_s,
              "steps_per_s": steps / max(outcome.train_s, 1e-9)}
    if outcome.peak_mem_mib is not None:
        timing["peak_mem_mb"] = outcome.peak_mem_mib
    return timing


def strip_path(out: Path, variant: str, prompt: str, seed: int) -> Path:
    """Where a run's strip lies in the evaluation folder ``out``:
    ``strips/<variant>/<prompt>_seed<N>.png``, names slugified."""
    return out / "strips" / slugify(variant) / f"{slugify(prompt)}_seed{seed}.png"


def save_strip(path: Path, ours: Tensor, truth: Tensor) -> None:
    """One PNG: our V views [V, H, W, 3] in a row above the ground truth's."""
    save_image_grid(path, torch.cat([ours, truth]), columns=len(ours))


def judged_row(settings: Settings, pending: Pending, outcome, judge: WorldJudge,
              assets: int = 1) -> Dict:
    """The result row of a trained run: the one judge's scores, the ground truth's, the
    alignment, a strip, the timing (``assets``: runs trained at once in the process)."""
    config, variant, prompt, seed = pending.config, pending.variant, pending.prompt, pending.seed
    started = time.perf_counter()
    truth, _ = judge.truth(config)
    run, run_dir = outcome.run, outcome.run_dir
    judged = judge.score(run.model, config)
    judge_s = time.perf_counter() - started
    strip = strip_path(settings.out, variant.name, prompt, seed)
    save_strip(strip, judged.rgb, judged.truth_rgb)
    if not settings.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {
        "variant": variant.name, "prompt": prompt, "seed": seed, **asdict(parse_prompt(prompt)),
        "ours": judged.scores, "truth": truth, "alignment": judged.alignment,
        **timing_of(outcome, config), "judge_s": judge_s, "assets_at_once": assets,
        "steps": config.steps, "representation": config.representation,
        "num_primitives": int(run.model.num_primitives),
        "signature": config_signature(config), "run_dir": str(run_dir), "strip": str(strip),
        "error": None,
    }


def pending_run(settings: Settings, variant: Variant, prompt: str, seed: int,
                index: int = 0) -> Pending:
    root = settings.out / "runs" / slugify(variant.name) / f"seed{seed}"
    return Pending(index, variant, prompt, seed, run_config(settings, variant, prompt, seed, root))


def evaluate_one(settings: Settings, variant: Variant, prompt: str, seed: int,
                 judge: WorldJudge, priors: PriorCache) -> Dict:
    """Train and score one (variant, prompt, seed) with the one judge; returns its result row
    (a failure raises its error)."""
    from ..train.batched import DONE

    pending = pending_run(settings, variant, prompt, seed)
    (outcome,) = train_runs([pending], priors, 1, progress=settings.progress)
    if outcome.status != DONE:
        raise outcome.error
    return judged_row(settings, pending, outcome, judge)


def error_row(variant: Variant, prompt: str, seed: int, err: BaseException,
              signature: Optional[str] = None) -> Dict:
    return {"variant": variant.name, "prompt": prompt, "seed": seed, "signature": signature,
            "error": error_summary(err)}


def warm_up(settings: Settings, variant: Variant, prompt: str, priors: PriorCache) -> None:
    """A short untimed run, so kernel compilation and CUDA-graph capture are not timed."""
    steps = 3 if settings.steps is None else max(1, min(3, settings.steps))
    warm = replace(settings, steps=steps, out=settings.out / "warmup")
    pending = Pending(0, variant, prompt, settings.seeds[0],
                      run_config(warm, variant, prompt, settings.seeds[0], warm.out))
    try:
        for outcome in train_runs([pending], priors, 1):
            if outcome.error is not None:
                raise outcome.error
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
    untimed run of each variant first. Runs are trained ``settings.assets`` at once on each
    prior (``nfsd_gs.train.batched``); the rows keep the prompt-major order whatever order
    they finish in, and a run's scores do not depend on ``settings.assets`` beyond the
    floating-point noise of a batched U-Net call."""
    from ..train.batched import DONE, STOPPED
    from ..utils.signals import StopSignals

    earlier = previous_result(settings.out)
    kept = {(*row_key(r), r.get("signature")): r for r in earlier["rows"]}
    current = {v.name for v in variants}
    definitions = [d for d in earlier["variants"] if d["name"] not in current] + meta["variants"]
    meta["variants"] = definitions
    order = [d["name"] for d in definitions]
    rows: Dict[int, Dict] = {}
    priors = PriorCache()
    result = {"meta": meta, "summary": [], "rows": []}

    def publish(status: str) -> None:
        meta["status"] = status
        result["rows"] = merge_rows(earlier["rows"], [rows[i] for i in sorted(rows)], order)
        present = {r["variant"] for r in result["rows"]}
        result["summary"] = summarize(result["rows"], [n for n in order if n in present])
        write_results(settings.out, finite_or_none(result))

    def tag(p: Pending) -> str:
        return f"[{p.variant.name}] {p.prompt} (seed {p.seed})"

    # Prompt-major: a stopped evaluation has every variant of the runs it finished first.
    pendings: List[Pending] = []
    for prompt in prompts:
        for seed in settings.seeds:
            for variant in variants:
                index = len(rows) + len(pendings)
                try:
                    pending = pending_run(settings, variant, prompt, seed, index)
                except NfsdError as err:
                    rows[index] = error_row(variant, prompt, seed, err)
                    print(f"[{variant.name}] {prompt} (seed {seed}): error: {rows[index]['error']}",
                          file=sys.stderr, flush=True)
                    continue
                signature = config_signature(pending.config)
                if (variant.name, prompt, seed, signature) in kept:
                    rows[index] = kept[(variant.name, prompt, seed, signature)]
                    print(f"{tag(pending)}: kept from an earlier run", file=sys.stderr)
                    continue
                pendings.append(pending)
    try:
        if warmup:
            for variant in variants:
                first = next((p for p in pendings if p.variant is variant), None)
                if first is not None:
                    try:
                        warm_up(settings, variant, first.prompt, priors)
                    except Exception:  # noqa: BLE001 -- its runs will record the error
                        pass
        with StopSignals() as stop:
            for outcome in train_runs(pendings, priors, settings.assets, stop, settings.progress):
                pending = outcome.asset.key
                if outcome.status == STOPPED and outcome.run is None:
                    continue  # stopped before it started: no row
                try:
                    if outcome.status != DONE:  # failed, or stopped (TrainingInterrupted)
                        raise outcome.error
                    rows[pending.index] = judged_row(settings, pending, outcome, judge,
                                                     settings.assets)
                    o = rows[pending.index]["ours"]
                    print(f"{tag(pending)}: shape {o['shape_acc']:.0%} colour "
                          f"{o['colour_acc']:.0%} IoU {o['iou']:.2f} in "
                          f"{rows[pending.index]['train_s']:.1f} s", file=sys.stderr, flush=True)
                except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - recorded
                    rows[pending.index] = error_row(pending.variant, pending.prompt,
                                                    pending.seed, err,
                                                    config_signature(pending.config))
                    if isinstance(err, KeyboardInterrupt):
                        raise
                    if not _is_stop(err):
                        print(f"{tag(pending)}: error: {rows[pending.index]['error']}",
                              file=sys.stderr, flush=True)
                publish("running")
            if stop.received:  # every live run saved its checkpoint and is an error row
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        publish("interrupted")
        return result
    publish("complete")
    return result

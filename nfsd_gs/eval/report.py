"""Summaries and Markdown tables of an evaluation's rows.

Every metric is summarised per variant as its mean, its spread over all runs (sample
standard deviation over prompts x seeds) and the seed-to-seed spread (standard deviation
of the per-seed means over the prompts), so a difference between two variants can be
read against the noise of training again with another seed.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..utils.io import write_text

#: Judge heads a row may carry (``<head>_acc``); the tables show those present.
JUDGE_HEADS: Tuple[str, ...] = ("shape", "colour", "accent")
#: Metrics of our renders ("ours") and of the ground truth ("truth") that are summarised.
OURS_METRICS: Tuple[str, ...] = tuple(f"{h}_acc" for h in JUDGE_HEADS) + (
    "both_acc", "all_acc", "iou", "colour_de", "speckle", "saturation", "sharpness", "coverage")
TRUTH_METRICS: Tuple[str, ...] = tuple(f"{h}_acc" for h in JUDGE_HEADS) + (
    "both_acc", "all_acc", "speckle", "saturation", "sharpness", "coverage")
TIMING_METRICS: Tuple[str, ...] = ("train_s", "steps_per_s")


def _finite(values: Sequence[Optional[float]]) -> List[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    finite = _finite(values)
    return sum(finite) / len(finite) if finite else None


def _std(values: Sequence[Optional[float]]) -> Optional[float]:
    """Sample standard deviation of the finite values; None for fewer than two."""
    finite = _finite(values)
    return statistics.stdev(finite) if len(finite) >= 2 else None


def spread(runs: Sequence[Tuple[int, Optional[float]]]) -> Dict[str, Optional[float]]:
    """(seed, value) per run -> mean, std over runs, and std of the per-seed means."""
    by_seed: Dict[int, List[Optional[float]]] = {}
    for seed, value in runs:
        by_seed.setdefault(seed, []).append(value)
    values = [value for _, value in runs]
    return {"mean": _mean(values), "std": _std(values),
            "seed_std": _std([_mean(v) for v in by_seed.values()])}


def _metric(scores: Dict, name: str) -> Optional[float]:
    """One metric of a row's side; rows written before ``all_acc`` existed had two heads."""
    if name == "all_acc" and name not in scores:
        return scores.get("both_acc")
    return scores.get(name)


def summarize(rows: Sequence[Dict], variants: Sequence[str]) -> List[Dict]:
    """One summary per variant over its runs that trained without error:
    ``<metric>_<side>`` (mean), ``..._std`` and ``..._seed_std``; likewise the timings."""
    summaries = []
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        ok = [r for r in mine if not r.get("error")]
        summary = {"variant": name, "runs": len(ok), "errors": len(mine) - len(ok),
                   "prompts": len({r["prompt"] for r in ok}),
                   "seeds": sorted({r.get("seed") for r in ok}, key=str)}
        columns = [(f"{m}_ours", lambda r, m=m: _metric(r["ours"], m)) for m in OURS_METRICS]
        columns += [(f"{m}_truth", lambda r, m=m: _metric(r["truth"], m)) for m in TRUTH_METRICS]
        columns += [(m, lambda r, m=m: r.get(m)) for m in TIMING_METRICS]
        for key, read in columns:
            stats = spread([(r.get("seed"), read(r)) for r in ok])
            summary[key] = stats["mean"]
            summary[f"{key}_std"] = stats["std"]
            summary[f"{key}_seed_std"] = stats["seed_std"]
        summaries.append(summary)
    return summaries


# ---------------------------------------------------------------------------- formatting


def _fmt(value: Optional[float], spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _with_spread(summary: Dict, key: str, percent: bool = False, spec: str = ".3g") -> str:
    """``mean ±std (±seed std)``; the spreads only where there are two runs / seeds."""
    show = (lambda v: f"{100 * v:.0f}") if percent else (lambda v: _fmt(v, ".2g"))
    text = _pct(summary[key]) if percent else _fmt(summary[key], spec)
    if summary.get(f"{key}_std") is not None:
        text += f" ±{show(summary[f'{key}_std'])}"
    if summary.get(f"{key}_seed_std") is not None:
        text += f" (±{show(summary[f'{key}_seed_std'])})"
    return text


def _heads(summaries_or_rows: Sequence[Dict], present) -> List[str]:
    return [h for h in JUDGE_HEADS if any(present(x, h) for x in summaries_or_rows)]


def summary_table(summaries: Sequence[Dict]) -> str:
    """Markdown: one row per variant, every metric as mean ±std over runs (±std of the
    per-seed means); ground-truth values after a slash."""
    heads = _heads(summaries, lambda s, h: s.get(f"{h}_acc_ours") is not None)
    header = (["variant", "runs (prompts x seeds)", "errors"]
              + [f"{h} acc ours / GT" for h in heads]
              + ["all heads", "IoU", "Delta E", "speckle ours / GT", "saturation ours / GT",
                 "sharpness ours / GT", "coverage ours / GT", "train s", "steps/s"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        cells = [s["variant"], f"{s['runs']} ({s['prompts']} x {len(s['seeds'])})",
                 str(s["errors"])]
        cells += [f"{_with_spread(s, f'{h}_acc_ours', True)} / {_pct(s[f'{h}_acc_truth'])}"
                  for h in heads]
        cells += [_with_spread(s, "all_acc_ours", True), _with_spread(s, "iou_ours"),
                  _with_spread(s, "colour_de_ours")]
        cells += [f"{_with_spread(s, f'{m}_ours')} / {_fmt(s[f'{m}_truth'])}"
                  for m in ("speckle", "saturation", "sharpness", "coverage")]
        cells += [_with_spread(s, "train_s", spec=".1f"), _fmt(s["steps_per_s"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prompt_table(rows: Sequence[Dict]) -> str:
    """Markdown: one row per (variant, prompt, seed), errors included."""
    ok = [r for r in rows if not r.get("error")]
    heads = _heads(ok, lambda r, h: f"{h}_acc" in r["ours"])
    header = (["variant", "prompt", "seed"] + [f"{h} acc ours / GT" for h in heads]
              + ["judged as (most often)", "IoU", "Delta E", "speckle ours / GT",
                 "saturation ours / GT", "sharpness ours / GT", "train s", "error"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["variant"], r["prompt"], str(r.get("seed", "–"))]
        if r.get("error"):
            cells += ["–"] * (len(header) - 4) + [r["error"].replace("|", "/")]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        o, t = r["ours"], r["truth"]
        judged, count = Counter(o["judged"]).most_common(1)[0]
        cells += [f"{_pct(o[f'{h}_acc'])} / {_pct(t[f'{h}_acc'])}" for h in heads]
        cells += [f"{judged} ({count}/{len(o['judged'])})", _fmt(o.get("iou")),
                  _fmt(o.get("colour_de")),
                  f"{_fmt(o.get('speckle'))} / {_fmt(t.get('speckle'))}",
                  f"{_fmt(o['saturation'])} / {_fmt(t['saturation'])}",
                  f"{_fmt(o['sharpness'])} / {_fmt(t['sharpness'])}",
                  _fmt(r["train_s"], ".1f"), ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


METRICS_LEGEND = (
    "Accuracies: fraction of views the judge names as the prompt's shape / colour / accent "
    "(GT: the judge on ground-truth renders of the same views; all heads: every head the "
    "judge has right). IoU: "
    "silhouette intersection over union, pooled over the views, against the ground-truth "
    "object at the scale and yaw that fit ours best. Delta E: mean CIE 1976 Delta E*ab "
    "(CIELAB, D65) between ours and that aligned ground truth on the pixels inside both "
    "silhouettes. Speckle: share of interior object pixels more than Delta E 10 from the "
    "median of the object pixels in their 5x5 neighbourhood. Saturation: mean HSV S of "
    "object pixels; sharpness: variance of the Laplacian of the luminance; coverage: the "
    "object's share of the frame. Per variant: mean ±std over runs (prompts x seeds) "
    "(±std of the per-seed means). Image strips: our views above the aligned ground truth.")


def format_markdown(result: Dict) -> str:
    """The whole report: settings, the per-variant table and the per-run table."""
    meta = result["meta"]
    seeds = meta.get("seeds", [meta.get("seed")])
    head = (f"# Evaluation ({meta['status']})\n\n"
            f"config `{meta['config']}`, overrides `{' '.join(meta['overrides']) or '-'}`, "
            f"split {meta.get('split', 'solid')}, seeds {', '.join(map(str, seeds))}, "
            f"{meta['views']} views at {meta['resolution']} px, device {meta['device']}"
            f"{' (' + meta['gpu'] + ')' if meta.get('gpu') else ''}, judge `{meta['judge']}`.\n"
            f"{METRICS_LEGEND}\n")
    variants = "\n".join(f"- `{v['name']}`: `{v['config'] or meta['config']}` + "
                         f"`{' '.join(v['overrides']) or '-'}`" for v in meta["variants"])
    return (f"{head}\n{variants}\n\n## Per variant\n\n{summary_table(result['summary'])}\n\n"
            f"## Per run\n\n{prompt_table(result['rows'])}\n")


def write_results(out: Path, result: Dict) -> None:
    """``results.json`` and ``results.md`` in ``out``, each atomically."""
    write_text(out / "results.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_text(out / "results.md", format_markdown(result))


# ---------------------------------------------------------------------------- steps to quality

#: Variant names of a steps-to-quality curve: ``steps<N>`` = the config with ``steps=N``.
STEPS_VARIANT_PREFIX = "steps"


def steps_curve(summaries: Sequence[Dict], metric: str = "all_acc_ours"
                ) -> Tuple[List[Dict], Optional[int]]:
    """The summaries of variants ``steps<N>`` as a curve, and the fewest steps that reach the
    longest run's score.

    Returns rows sorted by N (steps, the metric's mean and seed-to-seed spread, train s)
    and the smallest N whose mean is at least the reference's (the largest N) less the
    larger of the two seed spreads (one seed: less nothing): "the same score, within
    what training again with another seed changes". None if no variant scored."""
    rows = []
    for s in summaries:
        name = s["variant"]
        if name.startswith(STEPS_VARIANT_PREFIX) and name[len(STEPS_VARIANT_PREFIX):].isdigit():
            rows.append({"steps": int(name[len(STEPS_VARIANT_PREFIX):]), "variant": name,
                         "runs": s["runs"], "mean": s.get(metric),
                         "seed_std": s.get(f"{metric}_seed_std"), "train_s": s.get("train_s")})
    rows.sort(key=lambda r: r["steps"])
    scored = [r for r in rows if r["mean"] is not None]
    if not scored:
        return rows, None
    reference = scored[-1]
    for row in scored:
        slack = max(reference["seed_std"] or 0.0, row["seed_std"] or 0.0)
        if row["mean"] >= reference["mean"] - slack:
            return rows, row["steps"]
    return rows, reference["steps"]


def steps_curve_table(rows: Sequence[Dict], fewest: Optional[int],
                      metric: str = "all_acc_ours") -> str:
    """Markdown of :func:`steps_curve`, with its verdict."""
    lines = [f"| steps | runs | {metric} (± seed spread) | train s |", "|---:|---:|---|---:|"]
    for r in rows:
        spread_text = f" (±{100 * r['seed_std']:.0f})" if r["seed_std"] is not None else ""
        lines.append(f"| {r['steps']} | {r['runs']} | {_pct(r['mean'])}{spread_text} | "
                     f"{_fmt(r['train_s'], '.1f')} |")
    if fewest is None:
        return "\n".join(lines + ["", "No variant scored."])
    longest = max(r["steps"] for r in rows)
    verdict = (f"The fewest steps within the seed spread of {longest} steps: **{fewest}**."
               if fewest < longest else
               f"No shorter run reaches the score of {longest} steps within the seed spread.")
    return "\n".join(lines + ["", verdict])

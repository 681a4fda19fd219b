"""Summaries and Markdown tables of an evaluation's rows.

Every metric is summarised per variant as its mean, its spread over all runs (sample
standard deviation over prompts x seeds) and the seed-to-seed spread (standard deviation
of the per-seed means over the prompts), so a difference between two variants can be
read against the noise of training again with another seed.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..utils.io import write_json, write_text

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


def _pairs(rows: Sequence[Dict], variant: str) -> Dict[Tuple, Dict]:
    """(prompt, seed) -> row of ``variant``'s runs that trained without error."""
    return {(r["prompt"], r.get("seed")): r for r in rows
            if r["variant"] == variant and not r.get("error")}


def lever_rows(rows: Sequence[Dict], variants: Sequence[str], base: Optional[str] = None,
               focus_shape: str = "cylinder") -> List[Dict]:
    """Issue 21's lever table as data, one dict per variant over its finished runs:
    judge accuracies (and shape accuracy on ``focus_shape`` prompts, the failures),
    IoU, Delta E, speckle (ours and the ground truth's), sharpness as a share of the
    ground truth's (ratio of the means over the runs), train seconds per asset, and,
    against ``base`` on the (prompt, seed) runs both finished, the paired differences
    in shape accuracy and in sharpness / GT (same prompts, same seeds: far less noisy
    than comparing the unpaired means)."""
    table = []
    reference = _pairs(rows, base) if base else {}
    for name in variants:
        mine = _pairs(rows, name)
        ok = list(mine.values())
        errors = sum(1 for r in rows if r["variant"] == name and r.get("error"))
        ours = lambda key, runs=ok: _mean([r["ours"].get(key) for r in runs])  # noqa: E731
        truth = lambda key, runs=ok: _mean([r["truth"].get(key) for r in runs])  # noqa: E731
        focus = [r for r in ok if r.get("shape") == focus_shape]
        sharp_truth = truth("sharpness")
        entry = {"variant": name, "runs": len(ok), "errors": errors,
                 "shape_acc": ours("shape_acc"), "focus_shape": focus_shape,
                 "focus_runs": len(focus), "focus_shape_acc": ours("shape_acc", focus),
                 "colour_acc": ours("colour_acc"), "iou": ours("iou"),
                 "colour_de": ours("colour_de"), "speckle": ours("speckle"),
                 "speckle_truth": truth("speckle"),
                 "sharpness_vs_truth": (ours("sharpness") / sharp_truth
                                        if ours("sharpness") is not None and sharp_truth else None),
                 "train_s": _mean([r.get("train_s") for r in ok])}
        shared = sorted(set(mine) & set(reference), key=str) if base and name != base else []
        if shared:
            a, b = [mine[k] for k in shared], [reference[k] for k in shared]
            shared_truth = truth("sharpness", a)
            entry["paired_runs"] = len(shared)
            entry["paired_shape_diff"] = ours("shape_acc", a) - ours("shape_acc", b)
            entry["paired_sharpness_diff"] = ((ours("sharpness", a) - ours("sharpness", b))
                                              / shared_truth if shared_truth else None)
        table.append(entry)
    return table


def lever_table(entries: Sequence[Dict]) -> str:
    """Markdown of :func:`lever_rows`."""
    focus = entries[0]["focus_shape"] if entries else "cylinder"
    header = ["variant", "runs", "shape", f"shape ({focus}s)", "colour", "IoU", "Delta E",
              "speckle (GT)", "sharpness / GT", "s per asset", "vs base, same runs: "
              "shape, sharpness / GT"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for e in entries:
        runs = str(e["runs"]) + (f" (+{e['errors']} errors)" if e["errors"] else "")
        paired = "–"
        if e.get("paired_runs"):
            paired = (f"{100 * e['paired_shape_diff']:+.0f} pts, "
                      f"{_fmt(e['paired_sharpness_diff'], '+.2f')} ({e['paired_runs']} runs)")
        cells = [e["variant"], runs, _pct(e["shape_acc"]),
                 f"{_pct(e['focus_shape_acc'])} ({e['focus_runs']})", _pct(e["colour_acc"]),
                 _fmt(e["iou"], ".3f"), _fmt(e["colour_de"], ".1f"),
                 f"{_fmt(e['speckle'], '.3f')} ({_fmt(e['speckle_truth'], '.3f')})",
                 _fmt(e["sharpness_vs_truth"], ".2f"), _fmt(e["train_s"], ".1f"), paired]
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
    write_json(out / "results.json", result, allow_nan=False)
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

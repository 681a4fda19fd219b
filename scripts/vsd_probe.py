"""Why does VSD speckle? A CPU-cheap probe of the LoRA on the bundled prior (issue 26).

    python scripts/vsd_probe.py --out DIR [--steps 160] [--views 4] [--prompt "a red cone"]
        [--setting NAME | NAME=K=V,K=V ...]      (default: SETTINGS below)

Each setting trains one run through the library's own step parts (render_and_encode,
perturb, predict_branches, loss_from_predictions, apply_gradients: the same trajectory as
``nfsd_gs.train``) and records, per step and view, before the LoRA's own update:

* ``noise_share`` m = <eps_phi - eps_c, eps - eps_c> / ||eps - eps_c||^2, with eps_c the
  frozen prior's conditional prediction and eps the noise that made z_t. VSD's direction is
  eps_cfg - eps_phi: m = 0 is the untrained LoRA (eps_phi = eps_c: the direction is
  (s - 1)(eps_c - eps_u), free of the noise), m = 1 a LoRA that has learnt the noise itself
  (the direction is SDS's eps_cfg - eps, the noisy one);
* ``grad_hf``: the share of the step's distillation gradient w(t)(...) in its finest
  detail (the gradient minus its 3x3 box blur; squared norms);
* ``detail_pull`` = <g, d> / ||d||^2 with d = x0 - box3(x0), the render's own finest detail
  (a speckle is such detail) and g the gradient: the share of that detail one unit step
  (x0 <- x0 - g) removes; > 0 smooths speckles away, 0 leaves them;

and at the end the judge's scores (speckle, IoU, colour error) of the model. A setting is
an evaluation variant (nfsd_gs/eval/variants.py: its name, the same overrides after the
shared ones) or an ad-hoc ``NAME=K=V,K=V``. Writes
DIR/steps.jsonl, DIR/summary.json and DIR/summary.md (m and grad_hf per third of the run).
``--dry-run``: a tiny random prior, 2 steps, no judge.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
import torch.nn.functional as F

from nfsd_gs.cli import fail
from nfsd_gs.config import resolve_config
from nfsd_gs.errors import ConfigError
from nfsd_gs.eval.variants import Variant, parse_variant, select_variants
from nfsd_gs.guidance.schedule import timestep_weights
from nfsd_gs.score import JudgeSettings, WorldJudge, load_judge
from nfsd_gs.score.judging import judges
from nfsd_gs.train.run import build_run
from nfsd_gs.train.step import apply_gradients, render_and_encode
from nfsd_gs.utils.io import write_json, write_text

#: The evaluation's variants probed by default (vsd@7.5: the schema's LoRA, lr 1e-3, every
#: view, t ~ U[0.02, 0.98]; the others: issue 26's candidates).
SETTINGS = ["nfsd@7.5", "sds@7.5", "vsd@7.5", "vsd-neg@7.5", "vsd-lr1e-4@7.5", "vsd-1view@7.5",
            "vsd-pd@7.5"]


def setting(spec: str) -> Variant:
    """A variant's name, or ``NAME=K=V,K=V``."""
    return parse_variant(spec) if "=" in spec else select_variants([spec], [])[0]


def noise_share(eps_phi: torch.Tensor, eps_cond: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:  # [B]
    """m per view: eps_phi's projection on the noise, measured from the frozen prediction."""
    towards = (noise - eps_cond).flatten(1)
    return ((eps_phi - eps_cond).flatten(1) * towards).sum(1) / towards.pow(2).sum(1)


def high_frequency_share(grad: torch.Tensor) -> torch.Tensor:  # [B]
    """||g - box3(g)||^2 / ||g||^2 per view (g [B, C, h, w]; replicate padding)."""
    blurred = F.avg_pool2d(F.pad(grad, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (grad - blurred).flatten(1).pow(2).sum(1) / grad.flatten(1).pow(2).sum(1)


def detail_pull(grad: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:  # [B]
    """<g, d> / ||d||^2 per view, d = x0 - box3(x0) (x0, g [B, C, h, w])."""
    detail = x0 - F.avg_pool2d(F.pad(x0, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (grad * detail).flatten(1).sum(1) / detail.flatten(1).pow(2).sum(1)


def probe(name: str, overrides: List[str], args: argparse.Namespace, out: Path) -> Dict:
    """Train one setting, recording the probe's numbers per step; returns its summary."""
    base = [f"steps={args.steps}", f"camera.batch_size={args.views}", "output.turntable=false",
            f"device={args.device}", *args.overrides, *overrides]
    config = resolve_config(args.config, args.prompt, base, seed=args.seed)
    run = build_run(config)
    guidance, prior = run.guidance, run.prior
    vsd = config.guidance.method == "vsd"
    records = []
    start = time.perf_counter()
    for step in range(config.steps):
        rendered = render_and_encode(run, step)
        prompts, cameras = rendered.views.prompts, rendered.views.cameras
        noised = guidance.perturb(rendered.x0, step)
        eps = guidance.predict_branches(noised.z_t, noised.t, prompts)
        record = {"setting": name, "step": step, "t": noised.t.float().mean().item()}
        probe_eps = dict(eps)
        active = vsd and step / config.steps >= config.guidance.vsd.start
        if active:  # eps_phi before the LoRA's update of this step (no random draws)
            eps_phi = guidance.method.lora.predict_noise(noised.z_t, noised.t,
                                                         prior.embed(prompts), cameras)
            probe_eps["lora"] = eps_phi
            record["noise_share"] = noise_share(eps_phi, eps["cond"], noised.noise).tolist()
        weights = timestep_weights(config.guidance.weighting, prior.alphas_cumprod,
                                   noised.t).view(-1, 1, 1, 1)
        grad = weights * guidance.direction(probe_eps, noised.noise, noised.t)
        record["grad_hf"] = high_frequency_share(grad).tolist()
        record["detail_pull"] = detail_pull(grad, rendered.x0.detach()).tolist()
        record["grad_norm"] = grad.flatten(1).norm(dim=1).mean().item()
        loss, stats = guidance.loss_from_predictions(rendered.x0, noised, eps, prompts,
                                                     cameras=cameras)
        apply_gradients(run, step, rendered, loss, stats)
        records.append(record)
    seconds = time.perf_counter() - start
    with open(out / "steps.jsonl", "a") as lines:
        for record in records:
            lines.write(json.dumps(record) + "\n")
    summary = {"setting": name, "overrides": overrides, "steps": config.steps,
               "seconds": seconds, **thirds(records)}
    if not args.dry_run and judges(config):
        judge = WorldJudge(load_judge(None, run.device), JudgeSettings(), run.device)
        scores = judge.score(run.model, config).scores
        summary.update({k: scores.get(k) for k in ("speckle", "iou", "colour_de", "all_acc")})
    return summary


def thirds(records: List[Dict]) -> Dict:
    """Each measure's mean over the views of each third of the run (None where absent)."""
    out = {}
    n = len(records)
    for part, (lo, hi) in enumerate(((0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n))):
        chunk = records[lo:hi] or records[-1:]
        for key, name in (("noise_share", "m"), ("grad_hf", "grad_hf"),
                          ("detail_pull", "pull")):
            values = [v for r in chunk for v in r.get(key, [])]
            out[f"{name}_{part + 1}"] = sum(values) / len(values) if values else None
    return out


def summary_table(rows: List[Dict]) -> str:
    columns = ["setting", "m_1", "m_2", "m_3", "pull_1", "pull_2", "pull_3", "grad_hf_1",
               "grad_hf_2", "grad_hf_3", "speckle", "iou", "colour_de", "seconds"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c))
                 for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="default")
    parser.add_argument("--prompt", default="a red cone")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--setting", action="append", default=None,
                        metavar="NAME | NAME=K=V,K=V")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every setting")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.steps, args.overrides = 2, [*args.overrides, "prior.model=random:tiny",
                                         "camera.resolution=16", "init.num_points=50"]
        args.setting = args.setting or [SETTINGS[0], SETTINGS[-1]]
    try:
        variants = [setting(spec) for spec in args.setting or SETTINGS]
    except ConfigError as err:
        return fail(err)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "steps.jsonl").unlink(missing_ok=True)
    rows = []
    for variant in variants:
        rows.append(probe(variant.name, list(variant.overrides), args, args.out))
        print(summary_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        write_json(args.out / "summary.json", rows)
        write_text(args.out / "summary.md", summary_table(rows) + "\n")
    print(summary_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

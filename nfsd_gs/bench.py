"""GPU benchmark of the training step, and of its floor, in the same run.

``python -m nfsd_gs.bench`` builds the prior with random weights of Stable
Diffusion 2.1-base's shapes (``random:sd21-base``), runs the real
:func:`nfsd_gs.train.training_step` at 512x512 for each combination of views,
guidance method and Gaussian count, and prints a table: ms per step split by
phase (render, encode, U-Net, guidance, backward, optimizer, densify), peak
memory, and the floor measured on the same inputs:

* the U-Net call replayed as a CUDA graph (batch = views x branches),
* the encoder forward + backward,
* the rasterizer forward + backward,

with the ratio step / floor.  Meant for the GPU; on the CPU use a tiny prior
(``--prior random:tiny --resolution 64``) for a smoke run.

``--asset`` times one whole asset instead, as a user pays for it, in one
process: start-up (process start to the first training step: imports, loading
the prior, building the run), the training loop (``--asset-steps``, 1,200 by
default), the outputs after it (checkpoint, ``model.ply``, turntable), the
end-to-end time, and the step's floor on the same run.  ``--save-prior DIR``
writes the random prior to DIR first (then time ``--asset --prior DIR``: the
weights on local disk, as a real model would be).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .cli import add_override_arguments, parse_command_line
from .config import load_config
from .guidance import ScoreDistillation
from .guidance.graph import GraphedCall
from .guidance.prior import DiffusionPrior
from .train import Run, build_run, resolve_device, training_step
from .utils.timing import PhaseTimer, synchronize

PHASES = ("render", "encode", "unet", "guidance", "lora", "backward", "optimizer", "densify")


def time_ms(function: Callable[[], object], device: torch.device, repeats: int,
            warmup: int = 3) -> float:
    """Mean wall milliseconds of ``function`` (device synchronised around the loop)."""
    for _ in range(warmup):
        function()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3 / repeats


def bench_config(args: argparse.Namespace, views: int, method: str, gaussians: int,
                 resolution: int):
    cfg_scale = 100.0 if method == "sds" else 7.5  # VSD: ProlificDreamer's 7.5
    overrides = [
        'prompt="a DSLR photo of a corgi"', f"prior.model={args.prior}",
        f"prior.encoder={args.encoder}", f"prior.cuda_graph={str(not args.eager).lower()}",
        f"guidance.method={method}", f"guidance.cfg_scale={cfg_scale}",
        f"camera.batch_size={views}", f"camera.resolution={resolution}",
        f"init.num_points={gaussians}", f"densify.max_gaussians={gaussians}",
        f"steps={args.steps + args.warmup}",
        # densify state is updated every step; refinement itself every 100 steps
        "densify.default.refine_start_iter=100000",
    ] + list(args.overrides)
    return load_config(args.config, overrides)


def measure_floor(run: Run, repeats: int) -> Dict[str, float]:
    """The irreducible parts of a step at this size, each timed alone."""
    c, device, prior = run.config, run.device, run.prior
    views, res = c.camera.batch_size, c.camera.resolution
    cameras = run.sampler.sample(generator=torch.Generator().manual_seed(0)).to(device)
    background = torch.ones(views, 3, device=device)

    def render_fb():
        out = run.model.render(cameras, res, res, background)
        out.rgb.sum().backward()
        for optimizer in run.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    rgb = torch.rand(views, res, res, 3, device=device, requires_grad=True)

    def encode_fb():
        prior.encode(rgb).sum().backward()

    guidance: ScoreDistillation = run.guidance
    k = len(guidance.branches)
    x0 = prior.encode(rgb.detach())
    z = x0.repeat(k, 1, 1, 1).to(prior.dtype)
    t = torch.full((views * k,), 500, device=device, dtype=torch.long)
    embeddings = guidance.branch_embeddings([c.prompt] * views)
    graphed = GraphedCall(prior._eager_unet) if device.type == "cuda" else prior._eager_unet

    def unet_graph():
        with torch.no_grad():
            graphed(z, t, embeddings)

    floor = {"floor_unet_graph": time_ms(unet_graph, device, repeats),
             "floor_encode_fb": time_ms(encode_fb, device, repeats),
             "floor_render_fb": time_ms(render_fb, device, repeats)}
    floor["floor_total"] = sum(floor.values())
    return floor


def bench_one(args, prior: DiffusionPrior, views: int, method: str, gaussians: int,
              resolution: int) -> dict:
    config = bench_config(args, views, method, gaussians, resolution)
    device = resolve_device(config.device)
    run = build_run(config, device=device, prior=prior)
    for step in range(args.warmup):  # includes CUDA-graph capture and cuDNN autotuning
        training_step(run, step)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
        training_step(run, step)
    synchronize(device)
    step_ms = (time.perf_counter() - start) * 1e3 / args.steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")

    timer = PhaseTimer(device)  # a separate pass: the events themselves cost a little
    for step in range(args.warmup + args.steps, args.warmup + args.steps + args.timed_steps):
        training_step(run, step, timer)
    phases = timer.collect()
    floor = measure_floor(run, args.floor_repeats)
    row = {"representation": config.representation, "views": views, "method": method,
           "gaussians": run.model.num_primitives,
           "resolution": config.camera.resolution, "encoder": config.prior.encoder,
           "step_ms": step_ms, **{f"{p}_ms": phases.get(p, 0.0) for p in PHASES},
           **floor, "ratio": step_ms / floor["floor_total"], "peak_gib": peak}
    del run
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def format_table(rows: Sequence[dict]) -> str:
    columns = (["representation", "resolution", "views", "method", "gaussians", "encoder",
                "step_ms"]
               + [f"{p}_ms" for p in PHASES]
               + ["floor_unet_graph", "floor_encode_fb", "floor_render_fb", "floor_total",
                  "ratio", "peak_gib"])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.1f}" if isinstance(row[c], float) and c != "ratio"
                 else f"{row[c]:.2f}" if c == "ratio" else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc), or since this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def bench_asset(args: argparse.Namespace) -> dict:
    """One asset end to end (see the module docstring); returns the row of the table."""
    import tempfile

    from .train import start_run, train

    overrides = ['prompt="a DSLR photo of a corgi"', f"prior.model={args.prior}",
                 f"prior.encoder={args.encoder}", f"steps={args.asset_steps}",
                 f"output.root={tempfile.mkdtemp(prefix='nfsd_asset_')}", *args.overrides]
    config = load_config(args.config, overrides)
    run, run_dir = start_run(config)
    startup_s = process_age_s()
    before_train = time.perf_counter()
    train(run, run_dir, progress=False)
    synchronize(run.device)
    train_s = time.perf_counter() - before_train
    end_to_end_s = process_age_s()
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    loop_s = float(last["elapsed_s"])
    floor = measure_floor(run, args.floor_repeats)
    step_ms = loop_s * 1e3 / max(config.steps, 1)
    return {"encoder": config.prior.encoder, "steps": config.steps, "startup_s": startup_s,
            "loop_s": loop_s, "step_ms": step_ms, "outputs_s": train_s - loop_s,
            "end_to_end_s": end_to_end_s, **floor, "ratio": step_ms / floor["floor_total"],
            "device": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else "cpu"}


def format_asset_table(row: dict) -> str:
    columns = ["encoder", "steps", "startup_s", "loop_s", "step_ms", "floor_total", "ratio",
               "outputs_s", "end_to_end_s", "device"]
    cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                      "| " + " | ".join(cells) + " |"])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nfsd_gs")
    parser.add_argument("--prior", default="random:sd21-base")
    parser.add_argument("--encoder", default="vae", choices=["vae", "taesd"])
    parser.add_argument("--eager", action="store_true", help="no CUDA graph for the U-Net")
    parser.add_argument("--resolution", type=int, nargs="+", default=[512])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--methods", nargs="+", default=["nfsd", "sds"])
    parser.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per combination")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timed-steps", type=int, default=5, help="steps of the phase split")
    parser.add_argument("--floor-repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--asset", action="store_true",
                        help="time one whole asset end to end instead (see above)")
    parser.add_argument("--asset-steps", type=int, default=1200)
    parser.add_argument("--save-prior", type=Path, default=None, metavar="DIR",
                        help="write the random prior (--prior random:...) to DIR and exit")
    add_override_arguments(parser)
    return parse_command_line(parser, argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.save_prior is not None:
        from .guidance.architectures import random_components, save_components

        save_components(random_components(args.prior.split(":", 1)[1]), args.save_prior)
        print(f"wrote {args.save_prior}", file=sys.stderr)
        return 0
    if args.asset:
        row = bench_asset(args)
        print(format_asset_table(row))
        if args.json is not None:
            args.json.write_text(json.dumps(row, indent=2) + "\n")
        return 0
    first = bench_config(args, args.views[0], args.methods[0], args.gaussians[0],
                         args.resolution[0])
    device = resolve_device(first.device)
    start = time.perf_counter()
    prior = DiffusionPrior.load(first.prior, device)
    print(f"prior {args.prior} ({args.encoder}) loaded in {time.perf_counter() - start:.1f} s "
          f"on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}",
          file=sys.stderr)
    rows: List[dict] = []
    combinations = itertools.product(args.resolution, args.views, args.methods, args.gaussians)
    for resolution, views, method, gaussians in combinations:
        rows.append(bench_one(args, prior, views, method, gaussians, resolution))
        print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the NeRF toggle costs on the CPU: seconds per training step and checkpoint MB.

    python scripts/nerf_cpu_cost.py [--steps 4] [--threads N] [--dry-run] [VARIANT ...]

Runs real training steps (``nfsd_gs.train.step.training_step``: render, prior, NFSD,
backward, Adam) of ``--prompt "a red cone" representation=nerf`` on the default
(bundled-prior) config, for each variant: ``default`` (the preset as shipped),
``threestudio`` (the NeRF defaults of NerfConfig: 2^19-entry tables up to
resolution 2048, as threestudio) and the Gaussians for comparison.  One
untimed step first; then the median wall and CPU seconds (the process's, all
threads) per step of ``--steps`` steps, and the size of the checkpoint the
trainer writes after them.  On a shared machine the wall time follows the
load; with ``--threads 1`` the CPU time is what one free core would take.  Prints a
Markdown table (for BENCHMARKS.md).  ``--dry-run``: one view of 16 pixels and tiny fields,
to check the script itself (CI).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nfsd_gs.cli import add_threads_argument, parse_command_line
from nfsd_gs.config import resolve_config
from nfsd_gs.train.run import build_run, write_checkpoint
from nfsd_gs.train.step import training_step

#: The default preset's ``nerf:`` section against NerfConfig's own (threestudio's) sizes.
VARIANTS = {
    "default": ["representation=nerf"],
    "threestudio": ["representation=nerf", "nerf.log2_table_size=19", "nerf.max_resolution=2048",
                    "nerf.chunk_rays=8192"],
    "gaussians": [],
}
#: --dry-run: the smallest sizes (the variants' own overrides come before and lose).
DRY_RUN = ["camera.batch_size=1", "camera.resolution=16", "init.num_points=50",
           "nerf.num_levels=2", "nerf.log2_table_size=8", "nerf.max_resolution=16",
           "nerf.hidden_dim=8", "nerf.samples_per_ray=8", "nerf.occupancy_resolution=8",
           "nerf.chunk_rays=256"]


def measure(name: str, steps: int, extra=()) -> dict:
    config = resolve_config("default", "a red cone", [*VARIANTS[name], *extra])
    run = build_run(config)
    parameters = sum(p.numel() for o in run.optimizers.values()
                     for g in o.param_groups for p in g["params"])
    wall, cpu = [], []
    for step in range(steps + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        training_step(run, step)
        if step:  # the first step is the warm-up
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    run.step = steps + 1
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_checkpoint(run, Path(folder))
        megabytes = checkpoint.stat().st_size / 1e6
    return {"variant": name, "parameters": parameters, "s_per_step": statistics.median(wall),
            "cpu_s_per_step": statistics.median(cpu),
            "checkpoint_mb": megabytes}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/nerf_cpu_cost.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes: check the script, measure nothing")
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help=f"any of {', '.join(VARIANTS)} (default: all)")
    add_threads_argument(parser)
    args = parse_command_line(parser, argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    rows = []
    for name in args.variants or VARIANTS:
        rows.append(measure(name, args.steps, DRY_RUN if args.dry_run else ()))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"\ntorch threads: {torch.get_num_threads()}, {args.steps} timed steps each\n")
    print("| variant | learned parameters | wall s / step | CPU s / step "
          "| 400 steps at CPU s / step (extrapolated) | checkpoint MB |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['parameters']:,} | {row['s_per_step']:.2f} | "
              f"{row['cpu_s_per_step']:.2f} | {row['cpu_s_per_step'] * 400 / 60:.1f} min | "
              f"{row['checkpoint_mb']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

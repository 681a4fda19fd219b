"""Checkpoint cost at 100k and 500k Gaussians: ms to save and load, and MB on disk.

    python scripts/checkpoint_cost.py [--counts 100000 500000] [--sh-degrees 0 3]

Builds the checkpoint a real run saves (:class:`nfsd_gs.checkpoint.Checkpoint`:
Gaussians, Adam states after one step, the default strategy's state, RNGs, config) and
times ``Checkpoint.save`` (atomic, fsync'ed by the OS rename) and ``Checkpoint.load``,
median of 3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nfsd_gs.checkpoint import Checkpoint, capture_rng_state, checkpoint_path
from nfsd_gs.config import config_to_dict, load_config
from nfsd_gs.densify import Densifier
from nfsd_gs.representations import GaussianModel


def random_splats(count: int, sh_degree: int) -> dict:
    k = (sh_degree + 1) ** 2
    return {"means": torch.randn(count, 3), "scales": torch.randn(count, 3) - 4,
            "quats": torch.randn(count, 4), "opacities": torch.randn(count),
            "sh0": torch.randn(count, 1, 3), "shN": torch.randn(count, k - 1, 3)}


def run_checkpoint(count: int, sh_degree: int) -> Checkpoint:
    config = load_config("nfsd_gs", [f"gaussians.sh_degree={sh_degree}"])
    model = GaussianModel(random_splats(count, sh_degree), config.gaussians, config.render)
    optimizers = model.make_optimizers()
    loss = sum(p.square().sum() for p in model.splats.values())
    loss.backward()
    for optimizer in optimizers.values():
        optimizer.step()
    densifier = Densifier(config.densify, model.splats, optimizers, scene_scale=1.0)
    densifier.state.update(grad2d=torch.zeros(count), count=torch.zeros(count))
    return Checkpoint(step=1, config=config_to_dict(config), representation="gaussians",
                      model=model.state_dict(),
                      optimizers={k: o.state_dict() for k, o in optimizers.items()},
                      densifier=densifier.state_dict(), rng=capture_rng_state(torch.Generator()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/checkpoint_cost.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--sh-degrees", type=int, nargs="+", default=[0, 3])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print("| Gaussians | SH degree | save ms | load ms | MB |")
    print("|---|---|---|---|---|")
    for count in args.counts:
        for sh_degree in args.sh_degrees:
            checkpoint = run_checkpoint(count, sh_degree)
            with tempfile.TemporaryDirectory() as folder:
                path = checkpoint_path(Path(folder), 1)
                saves, loads = [], []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    checkpoint.save(path)
                    saves.append((time.perf_counter() - start) * 1e3)
                    start = time.perf_counter()
                    loaded = Checkpoint.load(path)
                    loads.append((time.perf_counter() - start) * 1e3)
                size = path.stat().st_size / 2**20
            assert loaded.step == checkpoint.step and loaded.model.keys() == checkpoint.model.keys()
            print(f"| {count:,} | {sh_degree} | {statistics.median(saves):.0f} | "
                  f"{statistics.median(loads):.0f} | {size:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

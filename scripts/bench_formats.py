"""File size and export/read time per splat format at 100k and 500k Gaussians, SH degree 3.

    OMP_NUM_THREADS=1 python scripts/bench_formats.py [--counts 100000 500000] [--repeats 3]

Gaussians like a run's (an object of radius 0.5, colours in [0, 1], log-scales
around -4, small higher SH); each format written with ``nfsd_gs.formats.save_splats``
(atomic write included) and read back with ``load_splats``: median of
``--repeats`` after one warm-up export of 1,000 splats per format (Numba, behind
gsply, compiles or loads its kernels once per process).  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nfsd_gs.formats import FORMATS, format_suffix, load_splats, save_splats
from nfsd_gs.render.sh import SH_C0


def object_splats(n: int, sh_degree: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(n, 3, generator=g)
    return {"means": torch.rand(n, 3, generator=g) - 0.5,
            "scales": torch.rand(n, 3, generator=g) * 2 - 5,
            "quats": torch.randn(n, 4, generator=g),
            "opacities": torch.randn(n, generator=g) * 2,
            "sh0": ((rgb - 0.5) / SH_C0)[:, None, :],
            "shN": torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=g) * 0.1}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in FORMATS:  # warm-up
            path = save_splats(Path(folder) / f"w{format_suffix(name)}", object_splats(1000), name)
            load_splats(path)
        for count in args.counts:
            splats = object_splats(count)
            for name in FORMATS:
                path = Path(folder) / f"m{count}{format_suffix(name)}"
                write_s = timed(lambda: save_splats(path, splats, name), args.repeats)
                read_s = timed(lambda: load_splats(path), args.repeats)
                rows.append((count, name, path.stat().st_size, write_s, read_s))
    plain = {count: size for count, name, size, _, _ in rows if name == "ply"}
    print("| Gaussians | format | file | vs .ply | export | read back |")
    print("|---:|---|---:|---:|---:|---:|")
    for count, name, size, write_s, read_s in rows:
        print(f"| {count:,} | {name} | {size / 1e6:.1f} MB | {size / plain[count]:.2f}x | "
              f"{write_s:.2f} s | {read_s:.2f} s |")


if __name__ == "__main__":
    main()

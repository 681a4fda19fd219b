"""``python -m nfsd_gs.bench``: the command line of the benchmark.

Step mode (default) builds the prior with random weights of Stable Diffusion 2.1-base's
shapes (``random:sd21-base``), runs the real training step at 512x512 for each combination
of views, guidance method and Gaussian count, and prints a table: ms per step split by
phase, peak memory, and the floor measured on the same inputs (U-Net as a CUDA graph,
encoder and rasterizer forward + backward), with the ratio step / floor.  Meant for the
GPU; on the CPU use a tiny prior (``--prior random:tiny --resolution 64``) for a smoke run.
``--variant NAME=guidance.method=M,K=V,...`` adds rows of a method with overrides (a lever
of it, e.g. VSD's ``guidance.vsd.views=1``); ``--baseline NAME`` adds each row's step time
over that row's and prints the short table of rows (step ms, of which the LoRA's, peak GiB).

``--asset`` times one whole asset instead, as a user pays for it, in one process: start-up
(process start to the first training step: imports, loading the prior, building the run)
and its profile by phase, the training loop (``--asset-steps``, 1,200 by default), the
outputs after it (checkpoint, ``model.ply``, turntable), the end-to-end time, and the
step's floor on the same run. ``--levers [NAME ...]`` measures issue 25's levers one at a
time over the baseline in one process (all of them by default) and prints the lever table.
``--save-prior DIR`` writes the random prior to DIR first (then time ``--asset --prior
DIR``: the weights on local disk, as a real model would be): float32 files, their fp16
variant and, for latent priors, a random TAESD in ``DIR/taesd``. The measurements are in
:mod:`nfsd_gs.bench.measure` and :mod:`nfsd_gs.bench.asset`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import traceback
from dataclasses import fields
from pathlib import Path
from typing import List, Optional, Sequence

from ..cli import add_override_arguments, fail, parse_command_line
from ..errors import NfsdError, error_summary
from ..utils.io import write_json
from .asset import LEVER_NAMES, bench_asset, bench_levers, format_asset_table, format_lever_table
from .measure import (BenchSettings, bench_config, bench_one, compare_to, format_table,
                      format_variant_table, method_row, process_age_s, variant_row)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nfsd_gs")
    parser.add_argument("--prior", default="random:sd21-base")
    parser.add_argument("--encoder", default="vae", choices=["vae", "taesd"])
    parser.add_argument("--eager", action="store_true", help="no CUDA graph for the U-Net")
    parser.add_argument("--resolution", type=int, nargs="+", default=[512])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--methods", nargs="*", default=["nfsd", "sds"])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,K=V",
                        help="a row of its own after the methods: a method and overrides, e.g. "
                             "vsd-eager=guidance.method=vsd,guidance.vsd.cuda_graph=false")
    parser.add_argument("--baseline", default=None, metavar="NAME",
                        help="add each row's step time over this row's (a method or variant "
                             "name) and print the short variant table too")
    parser.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per combination")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timed-steps", type=int, default=5, help="steps of the phase split")
    parser.add_argument("--floor-repeats", type=int, default=10)
    parser.add_argument("--prompt", default=None,
                        help="the prompt of every run (default: 'a red cone' on the bundled "
                             "prior, else 'a DSLR photo of a corgi')")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--asset", action="store_true",
                        help="time one whole asset end to end instead (see above)")
    parser.add_argument("--asset-steps", type=int, default=1200)
    parser.add_argument("--levers", nargs="*", default=None, metavar="NAME",
                        help="measure issue 25's levers (default: all of "
                             f"{', '.join(LEVER_NAMES)}) and print the lever table")
    parser.add_argument("--sample-steps", type=int, default=30,
                        help="--levers: steps timed per lever, spread over the schedule")
    parser.add_argument("--save-prior", type=Path, default=None, metavar="DIR",
                        help="write the random prior (--prior random:...) to DIR and exit")
    add_override_arguments(parser)
    return parse_command_line(parser, argv)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    values = {f.name: getattr(args, f.name) for f in fields(BenchSettings)}
    return BenchSettings(**{**values, "gaussians": args.gaussians[0],
                            "overrides": tuple(args.overrides)})


def main(argv: Optional[Sequence[str]] = None) -> int:
    entry_s = process_age_s()  # the interpreter and this command's imports
    args = parse_args(argv)
    try:
        return run_benchmark(args, entry_s)
    except NfsdError as err:
        return fail(err)


def write_json_if(path: Optional[Path], data) -> None:
    if path is not None:
        write_json(path, data)


def run_benchmark(args: argparse.Namespace, entry_s: float = 0.0) -> int:
    import torch

    from ..guidance.prior import DiffusionPrior
    from ..utils.device import device_name, resolve_device

    settings = settings_from_args(args)
    if args.save_prior is not None:
        from ..guidance.architectures import save_random_prior
        from ..guidance.prior import quiet_model_libraries

        quiet_model_libraries()
        save_random_prior(args.prior, args.save_prior)
        print(f"wrote {args.save_prior}", file=sys.stderr)
        return 0
    if args.asset:
        row = bench_asset(settings, entry_s)
        print(format_asset_table(row))
        write_json_if(args.json, row)
        return 0
    if args.levers is not None:
        result = bench_levers(settings, args.levers or LEVER_NAMES, entry_s)
        print(format_lever_table(result))
        write_json_if(args.json, result)
        return 0
    kinds = [method_row(m) for m in args.methods] + [variant_row(v) for v in args.variant]
    if not kinds:
        raise NfsdError("nothing to measure: give --methods or --variant")
    if args.baseline is not None and args.baseline not in {k.name for k in kinds}:
        raise NfsdError(f"--baseline '{args.baseline}' is none of the rows "
                        f"({', '.join(k.name for k in kinds)})")
    first = bench_config(settings, args.views[0], kinds[0].method, args.gaussians[0],
                         args.resolution[0], kinds[0].overrides)
    device = resolve_device(first.device)
    start = time.perf_counter()
    prior = DiffusionPrior.load(first.prior, device)
    print(f"prior {args.prior} ({args.encoder}) loaded in {time.perf_counter() - start:.1f} s "
          f"on {device_name(device)}",
          file=sys.stderr)
    rows: List[dict] = []
    failed: List[dict] = []  # a row that raises is reported and the next one runs
    combinations = itertools.product(args.resolution, args.views, kinds, args.gaussians)
    for resolution, views, kind, gaussians in combinations:
        try:
            rows.append(bench_one(settings, prior, views, kind, gaussians, resolution))
            print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        except Exception as err:  # noqa: BLE001 -- one broken lever must not hide the others
            traceback.print_exc()
            failed.append({"variant": kind.name, "method": kind.method, "views": views,
                           "resolution": resolution, "gaussians": gaussians,
                           "error": error_summary(err, 300)})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        write_json_if(args.json, rows + failed)  # after every row: a run stopped at its limit keeps them
    if args.baseline is not None:
        compare_to(rows, args.baseline)
    print(format_table(rows))
    if args.baseline is not None:
        print("\n" + format_variant_table(rows))
    for row in failed:
        print(f"| {row['variant']} | {row['views']} | failed: {row['error']} |")
    write_json_if(args.json, rows + failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

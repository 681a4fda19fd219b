"""Judge a finished run of the bundled prior: ``python -m nfsd_gs.score RUN_DIR``.

Reads the run's ``config.yaml`` and its model (through the representation protocol),
renders 8 views around the object on the evaluation orbit and prints what the judge calls
each view, with the shape and colour accuracy against the run's prompt ("a red cone"), and
the metrics against the ground-truth object aligned to it (silhouette IoU, CIELAB colour
error) and its speckle: the same judge as ``nfsd_gs.eval`` and the catalogue.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..cli import add_threads_argument, fail, parse_command_line, positive_int
from ..errors import NfsdError


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from .ground_truth import ALIGN_SCALES, ALIGN_YAWS

    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--views", type=positive_int, default=8, help="views to judge (default 8)")
    parser.add_argument("--align-yaws", type=positive_int, default=ALIGN_YAWS,
                        help=f"yaws tried when aligning the ground truth, a multiple of --views "
                             f"(default {ALIGN_YAWS}, the evaluation's; a minute or two on a CPU)")
    parser.add_argument("--align-scales", default=",".join(map(str, ALIGN_SCALES)),
                        metavar="LOW,HIGH,COUNT",
                        help=f"geometric grid of ground-truth scales (default "
                             f"{','.join(map(str, ALIGN_SCALES))}, the evaluation's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto (default cpu)")
    add_threads_argument(parser)
    return parse_command_line(parser, argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..utils.device import resolve_device
    from .ground_truth import parse_scales
    from .judging import JudgeSettings, score_run

    args = parse_args(argv)
    try:
        settings = JudgeSettings(args.views, align_yaws=args.align_yaws,
                                 align_scales=parse_scales(args.align_scales))
        result = score_run(args.run_dir, settings, device=resolve_device(args.device))
    except NfsdError as err:
        return fail(err)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Judge a finished run of the bundled prior: ``python -m nfsd_gs.score RUN_DIR``.

Loads the run's ``config.yaml`` and ``model.ply``, renders 8 views around the
object on the evaluation orbit and prints what the judge calls each view,
with the shape and colour accuracy against the run's prompt ("a red cone"),
and the evaluation's metrics against the ground-truth object aligned to it
(silhouette IoU, CIELAB colour error) and its speckle (``nfsd_gs.eval``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from .background import fixed_backgrounds
from .cli import positive_int
from .config import load_config
from .errors import NfsdError
from .eval import (SilhouetteBank, compare_to_truth, eval_cameras, expected_verdicts, load_judge,
                   parse_prompt, render_model, score_views)
from .formats.ply import load_ply
from .representations import GaussianModel


def score_run(run_dir: Path, views: int = 8, resolution: int = 64,
              against_truth: bool = True) -> dict:
    """Judge scores and metrics against the ground truth of the Gaussians in ``run_dir``
    for its own prompt (``against_truth=False``: the judge's alone, without rendering the
    aligned ground truth)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise NfsdError(f"'{run_dir}' is not a run folder (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    spec = parse_prompt(config.prompt)
    model = GaussianModel.finished(load_ply(run_dir / "model.ply"), config)
    cameras = eval_cameras(config, views)
    background = fixed_backgrounds(config.background, views)
    images, mask = render_model(model, cameras, background, resolution)
    judge = load_judge(None, torch.device("cpu"))
    scores = score_views(judge, images, mask, expected_verdicts(spec))
    if not against_truth:
        return {"run": str(run_dir), "prompt": config.prompt, **scores}
    # A coarser alignment grid than the evaluation's (10 degrees, 15 scales): seconds on a CPU.
    bank = SilhouetteBank(spec, config.camera, views, resolution, yaws=views * max(1, 36 // views),
                          scales=(0.5, 2.5, 15))
    against, _ = compare_to_truth(spec, images, mask, cameras, background, bank)
    return {"run": str(run_dir), "prompt": config.prompt, **scores, **against}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.score", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--views", type=positive_int, default=8, help="views to judge (default 8)")
    args = parser.parse_args(argv)
    try:
        result = score_run(args.run_dir, args.views)
    except NfsdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

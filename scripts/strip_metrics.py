"""Issue 18's ground-truth metrics on saved evaluation strips (e.g. an older GPU run's strips.tgz).

    python scripts/strip_metrics.py STRIPS_DIR [--config default]

A strip (``strips/<variant>/<prompt>[_seedN].png``) holds our V views of R x R pixels in its
top row and the ground truth's below; the strip keeps no alpha, so object masks are taken
from the image: pixels more than 0.15 (max over channels) from the background colour.
Prints, per variant, the means over its strips of: IoU against the unit ground truth as
drawn, IoU and CIE 1976 Delta E after aligning the ground truth's scale and yaw, the scale
found, and the speckle of ours and of the drawn ground truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nfsd_gs.background import fixed_backgrounds
from nfsd_gs.config import load_config
from nfsd_gs.score import (ALIGN_SCALES, ALIGN_YAWS, SilhouetteBank, compare_to_truth,
                           eval_cameras, silhouette_iou, speckle_fraction)
from nfsd_gs.shapeworld import parse_prompt


def read_strip(path: Path, resolution: int):  # -> ours, truth [V, R, R, 3]
    image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).float() / 255
    views = image.shape[1] // resolution
    rows = image.view(2, resolution, views, resolution, 3).permute(0, 2, 1, 3, 4)
    return rows[0], rows[1]


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strips", type=Path)
    parser.add_argument("--config", default="default")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--align-yaws", type=int, default=ALIGN_YAWS,
                        help=f"yaws of the alignment grid (default {ALIGN_YAWS}, the judge's)")
    parser.add_argument("--align-scales", type=float, nargs=3, default=ALIGN_SCALES,
                        metavar=("LOW", "HIGH", "COUNT"), help="scales of the alignment grid")
    args = parser.parse_args(argv)
    scales = (args.align_scales[0], args.align_scales[1], int(args.align_scales[2]))
    config = load_config(args.config)
    background = fixed_backgrounds(config.background, 1)[0]
    mask_of = lambda v: (v - background).abs().amax(-1) > 0.15  # noqa: E731
    banks, table = {}, {}
    for path in sorted(args.strips.glob("*/*.png")):
        prompt = path.stem.split("_seed")[0].replace("_", " ")
        spec = parse_prompt(prompt)
        ours, truth = read_strip(path, args.resolution)
        views = len(ours)
        cameras = eval_cameras(config, views)
        if spec not in banks:
            banks[spec] = SilhouetteBank(spec, config.camera, views, args.resolution,
                                         args.align_yaws, scales)
        mask = mask_of(ours)
        aligned, _ = compare_to_truth(spec, ours, mask, cameras, background.expand(views, 3),
                                      banks[spec])
        table.setdefault(path.parent.name, []).append(
            [float(silhouette_iou(mask, mask_of(truth))), aligned["iou"], aligned["colour_de"],
             aligned["scale"], speckle_fraction(ours, mask),
             speckle_fraction(truth, mask_of(truth))])
    print("| variant | strips | IoU as drawn | IoU aligned | Delta E aligned | scale "
          "| speckle ours / GT |\n|---|---|---|---|---|---|---|")
    for variant, rows in table.items():
        m = np.nanmean(np.array(rows), axis=0)
        print(f"| {variant} | {len(rows)} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.1f} | {m[3]:.2f} "
              f"| {m[4]:.3f} / {m[5]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

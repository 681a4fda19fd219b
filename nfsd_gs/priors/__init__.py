"""Priors trained and shipped by this project (no network needed).

``shapes``: the procedural world, its pixel-space diffusion prior (weights in
``nfsd_gs/assets/priors/shapes``, loaded like Stable Diffusion with
``from_pretrained``) and the judge (``nfsd_gs/assets/judge``).
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SHAPES_PRIOR_DIR = ASSETS_DIR / "priors" / "shapes"
JUDGE_DIR = ASSETS_DIR / "judge"

"""Where the shipped weights of the bundled world live."""

from pathlib import Path

#: Shipped weights: the diffusion prior (loaded as ``prior.model=bundled:shapes``) and the judge.
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SHAPES_PRIOR_DIR = ASSETS_DIR / "priors" / "shapes"
JUDGE_DIR = ASSETS_DIR / "judge"

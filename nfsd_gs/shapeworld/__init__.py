"""The bundled "shapes" prior: a procedural world of coloured objects, a small pixel-space
text-to-image diffusion model trained on it, and an independent judge (shape and colour
classifier) that scores renders. ``python -m nfsd_gs.shapeworld --help`` lists the commands.
"""

from pathlib import Path

#: Shipped weights: the diffusion prior (loaded as ``prior.model=bundled:shapes``) and the judge.
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SHAPES_PRIOR_DIR = ASSETS_DIR / "priors" / "shapes"
JUDGE_DIR = ASSETS_DIR / "judge"

from .world import COLOUR_NAMES, COLOURS, SHAPES, Scenes, render_object, render_scenes, sample_scenes

__all__ = ["ASSETS_DIR", "JUDGE_DIR", "SHAPES_PRIOR_DIR", "COLOUR_NAMES", "COLOURS", "SHAPES", "Scenes", "render_object", "render_scenes",
           "sample_scenes"]

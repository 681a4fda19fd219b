"""The bundled "shapes" prior: a procedural world of coloured objects, a small pixel-space
text-to-image diffusion model trained on it, and an independent judge (shape and colour
classifier) that scores renders. ``python -m nfsd_gs.priors.shapes --help`` lists the commands.
"""

from .world import COLOUR_NAMES, COLOURS, SHAPES, Scenes, render_object, render_scenes, sample_scenes

__all__ = ["COLOUR_NAMES", "COLOURS", "SHAPES", "Scenes", "render_object", "render_scenes",
           "sample_scenes"]

"""The bundled "shapes" world: a procedural world of coloured objects, a small pixel-space
text-to-image diffusion model trained on it, and an independent judge that scores renders.
``python -m nfsd_gs.shapeworld --help`` lists the commands.

Public API (stable; the evaluation builds on it)::

    from nfsd_gs import shapeworld as sw

    sw.SPLITS                          # ("solid", "two-tone")
    sw.split_prompts("two-tone")       # every prompt of a split (solid 48, two-tone 192)
    sw.split_specs("solid")            # the same as ObjectSpecs
    sw.eval_prompts("solid")           # the fixed 12-prompt evaluation set of a split
    sw.EVAL_SPECS["two-tone"]          # the same as ObjectSpecs

    spec = sw.parse_prompt("A Brown Cube with a yellow stripe!")
    # ObjectSpec(shape="cube", colour="brown", accent="yellow", pattern="band"); PromptError
    # (one line naming the world's shapes, colours and patterns) if not an object of the world
    sw.object_prompt(spec)             # "a brown cube with a yellow band" ("an" where due)
    sw.shipped_prior_splits()          # ("solid",): the splits the shipped prior's vocabulary
                                       # covers (its prompts are checked against those only)
    spec.split, spec.accent_label      # "two-tone", "yellow band" ("none" for solid objects)

    rgb, alpha = sw.render_spec(spec, cameras, backgrounds, resolution=64,
                                scale=1.0, yaw_deg=0.0)  # [B, R, R, 3], [B, R, R]
    sw.PALETTE["olive"]                # albedo (RGB in [0, 1]) of every colour name

    judge = sw.Judge.load()            # the shipped judge
    judge.verdict(images)              # images [B, H, W, 3] in [0, 1] ->
    # {"shape": ["cube", ...], "colour": ["brown", ...], "accent": ["yellow band", ...]}
    judge.probabilities(images)        # {head: [B, classes]}; judge.classes: {head: names}

The solid split is the original world, unchanged (its renders, its 48 prompts and its
12-prompt evaluation set). The two-tone split paints a second colour (black, red, blue,
yellow) on the ``top`` or a horizontal ``band`` of a muted body (brown, olive, beige,
slate): detail that over-smoothing blurs away and colours that over-saturation shifts.
Older names still work: ``world.object_scenes``/``render_scenes``/``COLOURS``/``SHAPES``,
``captions.object_prompt(shape, colour)``/``all_object_prompts()`` (the solid split)
and ``Judge.classify``.
"""

from .paths import ASSETS_DIR, JUDGE_DIR, SHAPES_PRIOR_DIR
from .vocabulary import (ACCENT_LABELS, EVAL_SPECS, SPLITS, ObjectSpec, eval_prompts,
                         object_prompt, parse_prompt, prompt_guide, shipped_prior_splits,
                         split_prompts, split_specs, splits_known_to, world_words)
from .world import (ACCENT_COLOURS, COLOUR_NAMES, COLOURS, MUTED_COLOURS, PALETTE,
                    PATTERNS, SHAPES, SOLID_COLOURS, Scenes, render_object, render_scenes,
                    YAW_PERIOD_DEG, render_spec, sample_scenes)
from .judge import HEADS, Judge

__all__ = ["ASSETS_DIR", "JUDGE_DIR", "SHAPES_PRIOR_DIR", "SPLITS", "EVAL_SPECS", "ObjectSpec",
           "parse_prompt", "object_prompt", "split_prompts", "split_specs", "eval_prompts",
           "world_words", "splits_known_to", "shipped_prior_splits", "prompt_guide",
           "ACCENT_LABELS", "ACCENT_COLOURS", "COLOUR_NAMES", "COLOURS",
           "MUTED_COLOURS", "PALETTE", "PATTERNS", "SHAPES", "SOLID_COLOURS", "Scenes", "render_object",
           "render_scenes", "render_spec", "sample_scenes", "YAW_PERIOD_DEG", "HEADS", "Judge"]

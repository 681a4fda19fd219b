"""What the evaluation asks for: the world's splits and their fixed prompt sets, and the
object each prompt names (an :class:`~nfsd_gs.shapeworld.ObjectSpec`: shape, colour and,
on the two-tone split, an accent on a pattern), read back from the prompt text.

A thin layer over :mod:`nfsd_gs.shapeworld`'s public API: the world owns its words; this
module adds what the evaluation needs on top (``all`` splits, the placeholders of variant
overrides).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from .. import shapeworld as sw
from ..errors import ConfigError
from ..shapeworld import ObjectSpec, object_prompt, parse_prompt

__all__ = ["SPLITS", "ObjectSpec", "all_prompts", "check_split", "object_prompt", "parse_prompt",
           "placeholder_values", "split_prompts"]

#: The world's splits (``--split`` also takes ``all``: every split, one after the other).
SPLITS: Tuple[str, ...] = sw.SPLITS

#: The point-prior primitive (``init.kind``) that matches each shape of the world.
PRIMITIVE_OF_SHAPE: Dict[str, str] = {
    "sphere": "sphere", "cube": "box", "cylinder": "cylinder", "cone": "cone",
    "torus": "torus", "pyramid": "pyramid",
}


def check_split(split: str) -> Tuple[str, ...]:
    """``--split`` -> the splits it means; a ConfigError naming it if it is none."""
    if split == "all":
        return SPLITS
    if split not in SPLITS:
        raise ConfigError(f"--split '{split}' is not one of {', '.join(SPLITS)} or all")
    return (split,)


def split_prompts(split: str) -> List[str]:
    """The fixed evaluation prompt set of ``split`` (12 per split; ``all``: each in turn)."""
    return [prompt for name in check_split(split) for prompt in sw.eval_prompts(name)]


def all_prompts(split: str) -> List[str]:
    """Every object of ``split`` (solid 48, two-tone 192)."""
    return [prompt for name in check_split(split) for prompt in sw.split_prompts(name)]


def placeholder_values(spec: ObjectSpec) -> Dict[str, str]:
    """What ``{shape}``, ``{primitive}``, ``{colour}``, ``{colour_rgb}`` stand for in a
    variant's overrides (``colour_rgb``: the body's albedo, ``"[0.85,0.1,0.08]"``)."""
    rgb = "[" + ",".join(f"{v:g}" for v in sw.COLOURS[spec.colour]) + "]"
    return {"shape": spec.shape, "primitive": PRIMITIVE_OF_SHAPE[spec.shape],
            "colour": spec.colour, "color": spec.colour, "colour_rgb": rgb, "color_rgb": rgb}

"""What the evaluation asks for: the prompt sets of the bundled world, per split, and the
object each prompt names (its spec: shape and colour), read back from the prompt text.

The only module of the evaluation that knows the world's vocabulary; ground truth and the
judge receive a spec, never words.
"""

from __future__ import annotations

import re
from typing import Dict, List, NamedTuple, Tuple

from ..errors import ConfigError

#: Splits of the world the evaluation knows.
SPLITS: Tuple[str, ...] = ("solid",)

#: The fixed prompt set of the solid split: every shape twice, every colour at least once,
#: no pair repeated (shape, colour).
SOLID_PROMPT_SET: Tuple[Tuple[str, str], ...] = (
    ("cone", "red"), ("cube", "blue"), ("sphere", "green"), ("cylinder", "yellow"),
    ("torus", "purple"), ("pyramid", "orange"), ("cube", "cyan"), ("sphere", "pink"),
    ("cone", "orange"), ("torus", "green"), ("pyramid", "blue"), ("cylinder", "purple"),
)

#: The point-prior primitive (``init.kind``) that matches each shape of the world.
PRIMITIVE_OF_SHAPE: Dict[str, str] = {
    "sphere": "sphere", "cube": "box", "cylinder": "cylinder", "cone": "cone",
    "torus": "torus", "pyramid": "pyramid",
}


class ObjectSpec(NamedTuple):
    """One object of the world: what a prompt names and what the judge's heads check."""

    shape: str
    colour: str

    def heads(self) -> Dict[str, str]:
        """The judge's expected verdict per head: ``{"shape": "cone", "colour": "red"}``."""
        return {"shape": self.shape, "colour": self.colour}


def world_names() -> Tuple[Tuple[str, ...], Dict[str, Tuple[float, float, float]]]:
    """The world's shape names and colour albedos (imported lazily)."""
    from ..shapeworld.world import COLOURS, SHAPES

    return SHAPES, COLOURS


def check_split(split: str) -> str:
    if split not in SPLITS and split != "all":
        raise ConfigError(f"--split '{split}' is not one of {', '.join(SPLITS)} or all")
    return split


def object_prompt(spec: ObjectSpec) -> str:
    """``ObjectSpec("cone", "red")`` -> ``"a red cone"`` (the world's caption)."""
    from ..shapeworld.captions import object_prompt as caption

    return caption(spec.shape, spec.colour)


def split_prompts(split: str) -> List[str]:
    """The fixed evaluation prompt set of ``split`` (``all``: every split's, in order)."""
    check_split(split)
    return [object_prompt(ObjectSpec(*pair)) for pair in SOLID_PROMPT_SET]


def all_prompts(split: str = "solid") -> List[str]:
    """Every object of ``split`` (solid: every shape x colour, 48 prompts)."""
    check_split(split)
    from ..shapeworld.captions import all_object_prompts

    return all_object_prompts()


def parse_prompt(prompt: str) -> ObjectSpec:
    """``"a red cone"`` -> ``ObjectSpec("cone", "red")``; anything else is a ConfigError naming it."""
    shapes, colours = world_names()
    words = re.findall(r"[a-z]+", prompt.lower())
    found_shapes = [w for w in words if w in shapes]
    found_colours = [w for w in words if w in colours]
    if len(found_shapes) != 1 or len(found_colours) != 1:
        raise ConfigError(
            f"prompt '{prompt}' must name one shape ({', '.join(shapes)}) and one colour "
            f"({', '.join(colours)}) of the bundled world, e.g. 'a red cone'")
    return ObjectSpec(found_shapes[0], found_colours[0])


def placeholder_values(spec: ObjectSpec) -> Dict[str, str]:
    """What ``{shape}``, ``{primitive}``, ``{colour}``, ``{colour_rgb}`` stand for in a
    variant's overrides (``colour_rgb``: the world's albedo, ``"[0.85,0.1,0.08]"``)."""
    _, colours = world_names()
    rgb = "[" + ",".join(f"{v:g}" for v in colours[spec.colour]) + "]"
    return {"shape": spec.shape, "primitive": PRIMITIVE_OF_SHAPE[spec.shape],
            "colour": spec.colour, "color": spec.colour, "colour_rgb": rgb, "color_rgb": rgb}

"""Captions of the procedural world, in the trainer's own words.

* object: ``"a red cone"``, ``"a brown cube with a yellow top"``
  (:func:`nfsd_gs.shapeworld.vocabulary.object_prompt`);
* view: the trainer's suffix from :func:`nfsd_gs.cameras.view_prompts`
  (``"a red cone, side view"``) for most images, so the prior and the trainer agree;
* degraded images: their negative-prompt words appended
  (``"a red cone, side view, blurry, dark"``) or alone (``"blurry, dark"``),
  the form NFSD's ``eps(z; p_neg)`` is queried with;
* caption dropout: the empty prompt ``""`` (classifier-free guidance's unconditional).
"""

from __future__ import annotations

from typing import List, Sequence

import torch

from ..cameras import VIEW_NAMES, Cameras, view_prompts
from ..config import NFSD_NEGATIVE_PROMPT, CameraConfig
from ..utils.tokenizer import split_words
from . import vocabulary as words
from .world import ACCENT_COLOURS, COLOUR_NAMES, PATTERNS, SHAPES, Scenes


def object_prompt(shape: str, colour: str) -> str:
    """``"a red cone"``, ``"an orange pyramid"`` (a solid object; see
    :func:`nfsd_gs.shapeworld.vocabulary.object_prompt` for any object)."""
    return words.object_prompt(words.ObjectSpec(shape, colour))


def all_object_prompts() -> List[str]:
    """Every prompt of the solid split, shape-major: ``a red sphere, an orange sphere, ...``."""
    return words.split_prompts("solid")


def scene_specs(scenes: Scenes) -> List[words.ObjectSpec]:
    """The object of each scene."""
    specs = []
    for s, c, a, p in zip(scenes.shape.tolist(), scenes.colour.tolist(), scenes.accent.tolist(),
                          scenes.pattern.tolist()):
        accent, pattern = (ACCENT_COLOURS[a], PATTERNS[p]) if a >= 0 else (None, None)
        specs.append(words.ObjectSpec(SHAPES[s], COLOUR_NAMES[c], accent, pattern))
    return specs


def scene_prompts(scenes: Scenes) -> List[str]:
    """One object prompt per scene."""
    return [words.object_prompt(spec) for spec in scene_specs(scenes)]


def scene_view_prompts(scenes: Scenes, cameras: Cameras, camera_config: CameraConfig) -> List[str]:
    """``"a red cone, side view"`` per scene, with the trainer's view rule."""
    suffixed = view_prompts("", cameras, camera_config)  # [", side view", ...]
    return [prompt + suffix for prompt, suffix in zip(scene_prompts(scenes), suffixed)]


def vocabulary() -> List[str]:
    """Every word (and punctuation mark) a caption can contain after the tokenizer's
    normalisation ("an" reads as "a"), sorted."""
    known = {"a", "with", ",", "view"} | set(SHAPES) | set(COLOUR_NAMES) | set(ACCENT_COLOURS)
    known |= set(PATTERNS) | set(VIEW_NAMES) | set(split_words(NFSD_NEGATIVE_PROMPT))
    return sorted(known)


def compose_captions(view_captions: Sequence[str], object_captions: Sequence[str],
                     degradation_words: Sequence[Sequence[str]], generator: torch.Generator,
                     view_probability: float = 0.9, negative_only_probability: float = 0.5,
                     dropout: float = 0.1, dropout_clean_only: bool = True) -> List[str]:
    """The training caption of each image.

    view_captions / object_captions: per image, with and without the view suffix;
    degradation_words: per image, the negative words of its degradations (empty if clean).
    ``dropout_clean_only``: only clean images get the empty caption, so the unconditional
    model is the world's clean images and ``eps_cond - eps_uncond`` carries the object
    alone; with degraded images in "" it also carried "undo the degradations" (brighter,
    more contrast, more saturated), which CFG 7.5 multiplies into over-exposed,
    over-saturated samples.
    """
    B = len(view_captions)
    use_view = (torch.rand(B, generator=generator) < view_probability).tolist()
    negative_only = (torch.rand(B, generator=generator) < negative_only_probability).tolist()
    drop = (torch.rand(B, generator=generator) < dropout).tolist()
    captions = []
    for i in range(B):
        base = view_captions[i] if use_view[i] else object_captions[i]
        words_i = list(degradation_words[i])
        if drop[i] and not (dropout_clean_only and words_i):
            captions.append("")
        elif words_i and negative_only[i]:
            captions.append(", ".join(words_i))
        else:
            captions.append(", ".join([base] + words_i))
    return captions

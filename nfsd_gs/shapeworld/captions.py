"""Captions of the procedural world, in the trainer's own words.

* object: ``"a red cone"``;
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
from ..guidance.tokenizer import split_words
from .world import COLOUR_NAMES, SHAPES, Scenes


def object_prompt(shape: str, colour: str) -> str:
    """``"a red cone"``."""
    return f"a {colour} {shape}"


def all_object_prompts() -> List[str]:
    """Every prompt of the world, shape-major: ``a red sphere, a orange sphere, ...``."""
    return [object_prompt(s, c) for s in SHAPES for c in COLOUR_NAMES]


def scene_prompts(scenes: Scenes) -> List[str]:
    """One ``"a <colour> <shape>"`` per scene."""
    return [object_prompt(SHAPES[s], COLOUR_NAMES[c])
            for s, c in zip(scenes.shape.tolist(), scenes.colour.tolist())]


def scene_view_prompts(scenes: Scenes, cameras: Cameras, camera_config: CameraConfig) -> List[str]:
    """``"a red cone, side view"`` per scene, with the trainer's view rule."""
    suffixed = view_prompts("", cameras, camera_config)  # [", side view", ...]
    return [prompt + suffix for prompt, suffix in zip(scene_prompts(scenes), suffixed)]


def vocabulary() -> List[str]:
    """Every word (and punctuation mark) a caption can contain, sorted."""
    words = {"a", ",", "view"} | set(SHAPES) | set(COLOUR_NAMES) | set(VIEW_NAMES)
    words |= set(split_words(NFSD_NEGATIVE_PROMPT))
    return sorted(words)


def compose_captions(view_captions: Sequence[str], object_captions: Sequence[str],
                     degradation_words: Sequence[Sequence[str]], generator: torch.Generator,
                     view_probability: float = 0.9, negative_only_probability: float = 0.5,
                     dropout: float = 0.1) -> List[str]:
    """The training caption of each image.

    view_captions / object_captions: per image, with and without the view suffix;
    degradation_words: per image, the negative words of its degradations (empty if clean).
    """
    B = len(view_captions)
    use_view = (torch.rand(B, generator=generator) < view_probability).tolist()
    negative_only = (torch.rand(B, generator=generator) < negative_only_probability).tolist()
    drop = (torch.rand(B, generator=generator) < dropout).tolist()
    captions = []
    for i in range(B):
        base = view_captions[i] if use_view[i] else object_captions[i]
        words = list(degradation_words[i])
        if drop[i]:
            captions.append("")
        elif words and negative_only[i]:
            captions.append(", ".join(words))
        else:
            captions.append(", ".join([base] + words))
    return captions

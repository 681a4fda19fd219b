"""The bundled world's words: object specs, their prompts, the two splits, parsing what people type.

A prompt names one object of the world:

* solid split:    ``"a red cone"``                      (``a|an <colour> <shape>``)
* two-tone split: ``"a brown cube with a yellow top"``  (``... with a <accent> <top|band>``)

:func:`parse_prompt` accepts what people type -- any case, a trailing ``!``/``.``/``?``,
"a" or "an" or no article, the synonyms of :data:`SYNONYMS`, and an optional view
suffix (``", side view"``) -- and names the world's words in one line when the text is
not one of its objects. :func:`object_prompt` writes the canonical form (with "an"
where English says it). The prior's tokenizer applies the same normalisation
(:func:`tokenizer_normalizer`), so the prior reads what people type the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..cameras import VIEW_NAMES
from ..errors import PromptError
from .world import (ACCENT_COLOURS, COLOUR_NAMES, MUTED_COLOURS, PATTERNS, SHAPES,
                    SOLID_COLOURS)

#: The world's splits: ``solid`` is the original world (48 prompts), ``two-tone`` the new one.
SPLITS: Tuple[str, ...] = ("solid", "two-tone")

#: Other words people type for the world's words (lower case; the value is the world's word).
SYNONYMS: Dict[str, str] = {
    "violet": "purple",
    "grey-blue": "slate",
    "gray-blue": "slate",
    "stripe": "band",
}

_EXAMPLE = (ACCENT_COLOURS[0], PATTERNS[0])  # an accent for examples in messages

#: Punctuation that carries no meaning in a prompt and is dropped.
_IGNORED_PUNCTUATION = "!?.;:\"'"


@dataclass(frozen=True)
class ObjectSpec:
    """One object of the world: a shape, a body colour and, on the two-tone split, an
    accent colour painted on a pattern (``top`` or ``band``); solid objects have neither."""

    shape: str
    colour: str
    accent: Optional[str] = None
    pattern: Optional[str] = None

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise PromptError(f"shape '{self.shape}' is not one of {', '.join(SHAPES)}")
        if self.colour not in COLOUR_NAMES:
            raise PromptError(f"colour '{self.colour}' is not one of {', '.join(COLOUR_NAMES)}")
        if (self.accent is None) != (self.pattern is None):
            raise PromptError(f"accent={self.accent!r} and pattern={self.pattern!r}: "
                              "give both or neither")
        if self.accent is not None and self.accent not in ACCENT_COLOURS:
            raise PromptError(f"accent colour '{self.accent}' is not one of "
                              f"{', '.join(ACCENT_COLOURS)}")
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise PromptError(f"pattern '{self.pattern}' is not one of {', '.join(PATTERNS)}")
        if self.accent is None and self.colour not in SOLID_COLOURS:
            raise PromptError(f"{self.colour} objects wear an accent "
                              f"('{object_prompt(ObjectSpec(self.shape, self.colour, *_EXAMPLE))}')")
        if self.accent is not None and self.colour not in MUTED_COLOURS:
            raise PromptError(f"{self.colour} objects wear no accent (two-tone bodies are "
                              f"{', '.join(MUTED_COLOURS)})")

    @property
    def split(self) -> str:
        return "solid" if self.accent is None else "two-tone"

    @property
    def accent_label(self) -> str:
        """The judge's accent class: ``"none"`` or ``"<accent> <pattern>"`` (``"yellow top"``)."""
        return "none" if self.accent is None else f"{self.accent} {self.pattern}"


#: The judge's accent classes: "none" (solid), then every accent colour x pattern.
ACCENT_LABELS: Tuple[str, ...] = ("none",) + tuple(f"{a} {p}" for a in ACCENT_COLOURS
                                                   for p in PATTERNS)


def article(word: str) -> str:
    """``"an"`` before a vowel sound (every colour name of the world is regular), else ``"a"``."""
    return "an" if word[:1] in "aeiou" else "a"


def object_prompt(spec: ObjectSpec) -> str:
    """``"a red cone"``, ``"an orange pyramid"``, ``"an olive cube with a black band"``."""
    text = f"{article(spec.colour)} {spec.colour} {spec.shape}"
    if spec.accent is not None:
        text += f" with {article(spec.accent)} {spec.accent} {spec.pattern}"
    return text


def split_specs(split: str) -> List[ObjectSpec]:
    """Every object of a split, shape-major (solid: ``red sphere, orange sphere, ...``)."""
    if split == "solid":
        return [ObjectSpec(s, c) for s in SHAPES for c in SOLID_COLOURS]
    if split == "two-tone":
        return [ObjectSpec(s, c, a, p) for s in SHAPES for c in MUTED_COLOURS
                for a in ACCENT_COLOURS for p in PATTERNS]
    raise PromptError(f"split '{split}' is not one of {', '.join(SPLITS)}")


def split_prompts(split: str) -> List[str]:
    """Every prompt of a split (solid: 48, two-tone: 192), in :func:`split_specs` order."""
    return [object_prompt(spec) for spec in split_specs(split)]


#: The fixed evaluation sets. Solid: the original 12-prompt set (every shape twice, every
#: colour at least once). Two-tone: every shape twice (once per pattern), every muted
#: colour and every accent three times.
EVAL_SPECS: Dict[str, Tuple[ObjectSpec, ...]] = {
    "solid": tuple(ObjectSpec(s, c) for s, c in (
        ("cone", "red"), ("cube", "blue"), ("sphere", "green"), ("cylinder", "yellow"),
        ("torus", "purple"), ("pyramid", "orange"), ("cube", "cyan"), ("sphere", "pink"),
        ("cone", "orange"), ("torus", "green"), ("pyramid", "blue"), ("cylinder", "purple"))),
    "two-tone": tuple(ObjectSpec(*args) for args in (
        ("cube", "brown", "yellow", "top"), ("cylinder", "slate", "red", "band"),
        ("sphere", "olive", "black", "band"), ("cone", "beige", "blue", "top"),
        ("torus", "brown", "blue", "top"), ("pyramid", "slate", "yellow", "band"),
        ("cube", "olive", "red", "band"), ("sphere", "beige", "red", "top"),
        ("cone", "slate", "black", "band"), ("torus", "beige", "yellow", "band"),
        ("pyramid", "brown", "black", "top"), ("cylinder", "olive", "blue", "top"))),
}


def eval_prompts(split: str) -> List[str]:
    """The split's fixed evaluation prompts (12 each)."""
    if split not in EVAL_SPECS:
        raise PromptError(f"split '{split}' is not one of {', '.join(SPLITS)}")
    return [object_prompt(spec) for spec in EVAL_SPECS[split]]


def world_words() -> str:
    """The world's words in one line (for errors and the README)."""
    return (f"shapes {', '.join(SHAPES)}; colours {', '.join(SOLID_COLOURS)} ('a red cone'); "
            f"two-tone: {', '.join(MUTED_COLOURS)} with a {', '.join(ACCENT_COLOURS)} "
            f"{' or '.join(PATTERNS)} ('a brown cube with a yellow top')")


# ---------------------------------------------------------------------------- parsing


def normalize_text(text: str) -> str:
    """Lower case, ignored punctuation dropped, synonyms replaced, "an" -> "a", single spaces."""
    text = text.lower()
    text = re.sub(f"[{re.escape(_IGNORED_PUNCTUATION)}]", " ", text)
    for word, canonical in SYNONYMS.items():
        text = re.sub(rf"\b{re.escape(word)}\b", canonical, text)
    text = re.sub(r"\ban\b", "a", text)
    return " ".join(text.replace(",", " , ").split())


_VIEW_SUFFIX = re.compile(rf" , (?:{'|'.join(VIEW_NAMES)}) view$")
_GRAMMAR = re.compile(r"^(?:a )?(?P<colour>\S+) (?P<shape>\S+)"
                      r"(?: with (?:a )?(?P<accent>\S+) (?P<pattern>\S+))?$")


def parse_prompt(text: str) -> ObjectSpec:
    """What people type -> the object it names; PromptError (one line) if it is not one.

    ``"A Red Cone!"`` -> ObjectSpec("cone", "red"); ``"an olive torus with a black
    stripe, side view"`` -> ObjectSpec("torus", "olive", "black", "band").
    """
    if not text or not text.strip():
        raise PromptError(f"the prompt is empty; the bundled world knows {world_words()}")
    words = _VIEW_SUFFIX.sub("", normalize_text(text))
    known = set(SHAPES) | set(COLOUR_NAMES) | set(ACCENT_COLOURS) | set(PATTERNS) | {"a", "with"}
    unknown = sorted(set(words.split()) - known)
    if unknown:
        listed = ", ".join(f"'{w}'" for w in unknown)
        raise PromptError(f"'{text}' has word{'s' if len(unknown) > 1 else ''} {listed} that "
                          f"the bundled world does not know; it knows {world_words()}")
    match = _GRAMMAR.match(words)
    if (match is None or match["shape"] not in SHAPES
            or (match["accent"] is not None and match["pattern"] not in PATTERNS)):
        raise PromptError(f"'{text}' is not of the form 'a <colour> <shape>[ with a <colour> "
                          f"<top|band>]'; the bundled world knows {world_words()}")
    try:
        return ObjectSpec(match["shape"], match["colour"], match["accent"], match["pattern"])
    except PromptError as err:
        raise PromptError(f"'{text}': {err}; the bundled world knows {world_words()}") from None


def tokenizer_normalizer():
    """The prior tokenizer's normaliser: :func:`normalize_text`'s rules as a ``tokenizers``
    normalizer (saved in tokenizer.json), so the prior reads "An Orange Pyramid!" as
    "a orange pyramid". Commas and hyphens are kept (view suffix, negative prompt)."""
    from tokenizers import Regex, normalizers

    steps = [normalizers.Lowercase(),
             normalizers.Replace(Regex(f"[{re.escape(_IGNORED_PUNCTUATION)}]"), " ")]
    steps += [normalizers.Replace(Regex(rf"\b{re.escape(word)}\b"), canonical)
              for word, canonical in SYNONYMS.items()]
    steps.append(normalizers.Replace(Regex(r"\ban\b"), "a"))
    return normalizers.Sequence(steps)

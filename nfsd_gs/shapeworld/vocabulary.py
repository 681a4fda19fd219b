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

A prior may know fewer splits than the world: :func:`splits_known_to` reads them off its
vocabulary (the words of its tokenizer), and :func:`shipped_prior_splits` off the shipped
prior's ``prior_info.json``. That vocabulary is the one source of what the prior's errors
suggest (``parse_prompt(text, splits)``) and of the README's list of words
(:func:`prompt_guide`, ``python -m nfsd_gs.shapeworld words``).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from ..cameras import VIEW_NAMES
from ..errors import PriorLoadError, PromptError
from .paths import SHAPES_PRIOR_DIR
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

#: The form of each split's prompts, as messages and the README write it.
FORMS: Dict[str, str] = {"solid": "a|an <colour> <shape>",
                         "two-tone": "a|an <body> <shape> with a <accent> <top|band>"}

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


#: Two example objects per split (messages, the README): the second shows "an".
EXAMPLES: Dict[str, Tuple[ObjectSpec, ...]] = {
    "solid": (ObjectSpec("cone", "red"), ObjectSpec("pyramid", "orange")),
    "two-tone": (ObjectSpec("cube", "brown", "yellow", "top"),
                 ObjectSpec("torus", "olive", "black", "band")),
}


@functools.lru_cache(maxsize=None)
def words_of_split(split: str) -> FrozenSet[str]:
    """Every word of the split's prompts as the tokenizer reads them ("an" as "a")."""
    return frozenset(w for prompt in split_prompts(split) for w in normalize_text(prompt).split())


def splits_known_to(vocabulary: Iterable[str]) -> Tuple[str, ...]:
    """The splits a closed-vocabulary prior can read: those whose every word is in its
    ``vocabulary`` (its tokenizer's words). A prior trained on the solid split only has no
    ``with``, ``brown`` or ``top``, so it knows ``("solid",)``."""
    known = set(vocabulary)
    return tuple(split for split in SPLITS if words_of_split(split) <= known)


def shipped_prior_splits(folder: Path = SHAPES_PRIOR_DIR) -> Tuple[str, ...]:
    """The splits the prior in ``folder`` (default: the shipped one, ``bundled:shapes``)
    knows, from the vocabulary its ``prior_info.json`` records (its tokenizer's words)."""
    path = Path(folder) / "prior_info.json"
    try:
        vocabulary = json.loads(path.read_text())["vocabulary"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PriorLoadError(f"cannot read the vocabulary of '{path}' ({err})") from None
    return splits_known_to(vocabulary)


def _examples(split: str) -> str:
    return ", ".join(f"'{object_prompt(spec)}'" for spec in EXAMPLES[split])


def world_words(splits: Sequence[str] = SPLITS) -> str:
    """The words of ``splits`` (default: the whole world) in one line, for errors."""
    parts = [f"shapes {', '.join(SHAPES)}"]
    if "solid" in splits:
        parts.append(f"solid '{FORMS['solid']}' with colours {', '.join(SOLID_COLOURS)} "
                     f"(e.g. {_examples('solid')})")
    if "two-tone" in splits:
        parts.append(f"two-tone '{FORMS['two-tone']}' with bodies {', '.join(MUTED_COLOURS)}, "
                     f"accents {', '.join(ACCENT_COLOURS)} (e.g. {_examples('two-tone')})")
    return "; ".join(parts)


def prompt_guide(splits: Sequence[str]) -> str:
    """The README's account (markdown) of the prompts a prior that knows ``splits`` reads:
    the forms, examples, a table of the words, the synonyms, and the splits it lacks."""
    def phrase(split: str) -> str:
        examples = ", ".join(f"`{object_prompt(spec)}`" for spec in EXAMPLES[split])
        return (f"the **{split}** split, {len(split_prompts(split))} prompts of the form "
                f"`{FORMS[split]}` (e.g. {examples})")

    if not splits:
        return "The shipped prior knows none of the world's splits."
    lines = [f"The shipped prior knows {' and '.join(phrase(s) for s in splits)}:", "",
             "| | words |", "| --- | --- |", f"| shapes | {', '.join(SHAPES)} |"]
    two_tone = "two-tone" in splits
    if "solid" in splits:
        lines.append(f"| colours{' (solid)' if two_tone else ''} | {', '.join(SOLID_COLOURS)} |")
    if two_tone:
        lines += [f"| body colours (two-tone) | {', '.join(MUTED_COLOURS)} |",
                  f"| accent colours (two-tone) | {', '.join(ACCENT_COLOURS)} |",
                  f"| patterns (two-tone) | {', '.join(PATTERNS)} |"]
    known = set().union(*(words_of_split(s) for s in splits))
    synonyms: Dict[str, List[str]] = {}
    for word, canonical in SYNONYMS.items():
        if canonical in known:
            synonyms.setdefault(canonical, []).append(word)
    if synonyms:
        lines.append("| also read as | " + ", ".join(f"{' / '.join(words)} = {canonical}"
                                                   for canonical, words in synonyms.items())
                     + " |")
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        lines += ["", f"The world's {' and '.join(f'**{s}**' for s in missing)} split "
                  f"({', '.join(str(len(split_prompts(s))) for s in missing)} prompts) is "
                  "known to the judge and the evaluation, not to the shipped prior: it refuses "
                  "those prompts in one line, naming the words it knows."]
    return "\n".join(lines)


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


def parse_prompt(text: str, splits: Sequence[str] = SPLITS,
                 knower: str = "the bundled world") -> ObjectSpec:
    """What people type -> the object it names; PromptError (one line) if it is not one.

    ``"A Red Cone!"`` -> ObjectSpec("cone", "red"); ``"an olive torus with a black
    stripe, side view"`` -> ObjectSpec("torus", "olive", "black", "band"). ``splits``: the
    splits that count (a prior's, :func:`splits_known_to`); ``knower`` names who knows them
    in the message (``"prior 'bundled:shapes'"``), which lists their words only.
    """
    knows = f"{knower} knows {world_words(splits)}"
    if not text or not text.strip():
        raise PromptError(f"the prompt is empty; {knows}")
    words = _VIEW_SUFFIX.sub("", normalize_text(text))
    known = set().union(*(words_of_split(s) for s in splits))
    unknown = sorted(set(words.split()) - known)
    if unknown:
        other = _object_of_another_split(words, splits)
        if other is not None:
            raise PromptError(f"'{text}' is an object of the world's {other} split, which "
                              f"{knower} does not know; it knows {world_words(splits)}")
        listed = ", ".join(f"'{w}'" for w in unknown)
        raise PromptError(f"'{text}' has word{'s' if len(unknown) > 1 else ''} {listed} that "
                          f"{knower} does not know; it knows {world_words(splits)}")
    match = _GRAMMAR.match(words)
    if (match is None or match["shape"] not in SHAPES
            or (match["accent"] is not None and match["pattern"] not in PATTERNS)):
        raise PromptError(f"'{text}' is not of the form "
                          f"{' or '.join(repr(FORMS[s]) for s in splits)}; {knows}")
    try:
        spec = ObjectSpec(match["shape"], match["colour"], match["accent"], match["pattern"])
    except PromptError as err:
        raise PromptError(f"'{text}': {err}; {knows}") from None
    if spec.split not in splits:
        raise PromptError(f"'{text}' is an object of the world's {spec.split} split, which "
                          f"{knower} does not know; it knows {world_words(splits)}")
    return spec


def _object_of_another_split(words: str, splits: Sequence[str]) -> Optional[str]:
    """The split (outside ``splits``) of the world object that normalised ``words`` name,
    or None when they name none."""
    others = [s for s in SPLITS if s not in splits]
    if not others or not set(words.split()) <= set().union(*(words_of_split(s) for s in others)):
        return None
    try:
        spec = parse_prompt(words, others)
    except PromptError:
        return None
    return spec.split


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

"""The PROMPTS file: one line per asset, read and checked before any work starts.

Two kinds of line, mixed freely (blank lines and lines starting with ``#`` are skipped):

- plain text: the prompt itself (``a red cone``); its run folder is the prompt's slug;
- a JSON object: ``{"prompt": "a red cone", "seed": 3, "name": "cone_3",
  "overrides": {"guidance.cfg_scale": 7.5}}`` (only ``prompt`` is required).

Each line's config is what ``python -m nfsd_gs.train --config C --prompt P KEY=VALUE...``
would use (:func:`nfsd_gs.config.resolve_config`): the catalogue's ``--config`` and
overrides, then the line's overrides, its seed and its folder name (``run_name``, the
trainer's one rule for it).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import Config, resolve_config
from ..errors import NfsdError
from ..train.run import run_name

#: The record of the catalogue, next to the run folders (so no line may be named so).
MANIFEST_NAME = "manifest.jsonl"
JSON_KEYS = ("prompt", "seed", "name", "overrides")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class CatalogueError(NfsdError):
    """An unreadable PROMPTS file, a malformed line or a duplicate name."""


@dataclass(frozen=True)
class Line:
    """One asset of the catalogue."""

    number: int  # 1-based line number in the PROMPTS file
    prompt: str
    name: str  # the run folder under the output root
    seed: Optional[int] = None  # None: the config's seed
    overrides: Tuple[str, ...] = ()  # dotted key=value, for this line only


@dataclass(frozen=True)
class Defaults:
    """What applies to every line: ``--config``, the command line's overrides, the output root."""

    config: Optional[str]
    overrides: Tuple[str, ...]
    root: Path


def read_catalogue(path: Path) -> List[Line]:
    """Every line of the PROMPTS file; :class:`CatalogueError` (one line) if any is malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise CatalogueError(f"cannot read the PROMPTS file '{path}': {reason}") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("{"):
            lines.append(parse_json_line(stripped, f"{path}:{number}", number))
        else:
            lines.append(Line(number, stripped, run_name(stripped)))
    if not lines:
        raise CatalogueError(f"the PROMPTS file '{path}' holds no prompt")
    check_unique_names(lines, path)
    return lines


def parse_json_line(text: str, where: str, number: int) -> Line:
    """``{"prompt": ..., "seed": ..., "name": ..., "overrides": {key: value}}`` -> Line."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as err:
        raise CatalogueError(f"{where}: not a JSON object ({err.msg} at column {err.colno})") from None
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: not a JSON object")
    unknown = [key for key in entry if key not in JSON_KEYS]
    if unknown:
        raise CatalogueError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(JSON_KEYS)})")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str):
        raise CatalogueError(f"{where}: \"prompt\" must be a string, got {prompt!r}")
    seed = entry.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise CatalogueError(f"{where}: \"seed\" must be an integer, got {seed!r}")
    name = entry.get("name", run_name(prompt))
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name == MANIFEST_NAME:
        raise CatalogueError(f"{where}: \"name\" {name!r} must be a folder name of letters, "
                             f"digits, '.', '_' and '-'")
    return Line(number, prompt, name, seed, overrides_of(entry.get("overrides", {}), where))


def overrides_of(value, where: str) -> Tuple[str, ...]:
    """A line's ``"overrides"``: ``{"key": value}`` (values as JSON) or ``["key=value", ...]``."""
    if isinstance(value, dict):
        return tuple(f"{key}={json.dumps(item)}" for key, item in value.items())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise CatalogueError(f"{where}: \"overrides\" must be an object {{\"key\": value}} or a "
                         f"list of \"key=value\" strings")


def check_unique_names(lines: Sequence[Line], path: Path) -> None:
    first: Dict[str, int] = {}
    for line in lines:
        if line.name in first:
            raise CatalogueError(
                f"duplicate name '{line.name}' (lines {first[line.name]} and {line.number} of "
                f"'{path}'): give one of them its own \"name\" in a JSON line")
        first[line.name] = line.number


def line_config(line: Line, defaults: Defaults) -> Config:
    """The resolved config of one line, exactly as ``nfsd_gs.train``'s command line resolves
    it (:class:`~nfsd_gs.errors.ConfigError` naming a bad override); its run folder is
    ``defaults.root / line.name``."""
    return resolve_config(defaults.config, line.prompt, [*defaults.overrides, *line.overrides],
                          seed=line.seed, output_root=defaults.root, name=line.name)


def request_signature(line: Line, defaults: Defaults) -> str:
    """A short hash of what a line asks for (used when its config cannot be resolved)."""
    data = [line.prompt, line.seed, line.name, list(line.overrides), defaults.config,
            list(defaults.overrides)]
    return "request:" + hashlib.sha1(json.dumps(data).encode()).hexdigest()[:12]

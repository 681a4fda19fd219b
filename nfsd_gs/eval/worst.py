"""The worst runs of each variant as one contact sheet: issues 21 and 22's "strips of the
worst prompts of each", made by the evaluation itself.

Per variant the runs are ranked worst first: a run that failed (its row has an ``error``
and no strip) before any that finished, then by the ranking key, its ties broken by the
rest of the default order, then by prompt and seed. The default order is the judge first
(all heads' accuracy, ascending), then the ground-truth metrics the issues target: our
sharpness (variance of the Laplacian) as a share of the ground truth's, ascending, then
silhouette IoU, ascending. ``colour_de`` ranks the largest CIELAB error first and
``speckle`` the largest excess over the ground truth's speckle (ours minus truth's).

``worst.png`` holds, per variant, a caption and its N worst strips side by side (each our
V views above the aligned ground truth's, at their own size), each under a label with the
numbers that put it there; ``worst.md`` lists the same runs and links the PNG.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..utils.io import write_text, write_with
from .report import _metric
from .runner import strip_path

#: Spacing of the sheet in pixels.
MARGIN, GAP = 8, 10
#: Longest error text a label keeps.
ERROR_CHARS = 120


def _number(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def sharpness_ratio(row: Dict) -> Optional[float]:
    """Our sharpness as a share of the ground truth's (None without both, or a flat truth)."""
    ours = _number((row.get("ours") or {}).get("sharpness"))
    truth = _number((row.get("truth") or {}).get("sharpness"))
    return ours / truth if ours is not None and truth else None


def _ours(name: str) -> Callable[[Dict], Optional[float]]:
    return lambda row: _number(_metric(row.get("ours") or {}, name))


def _speckle_excess(row: Dict) -> Optional[float]:
    mine = _number((row.get("ours") or {}).get("speckle"))
    theirs = _number((row.get("truth") or {}).get("speckle"))
    return None if mine is None or theirs is None else mine - theirs


def _judge_text(row: Dict, accuracy: float) -> str:
    views = len((row.get("ours") or {}).get("judged") or ())
    return f"judge {round(accuracy * views)}/{views}" if views else f"judge {100 * accuracy:.0f}%"


@dataclass(frozen=True)
class Measure:
    """One ranking key: how a caption names it, its value in a row (None: missing), whether
    a larger value is worse, and the label of a present value (``row``, ``value``)."""

    name: str
    describe: str
    value: Callable[[Dict], Optional[float]]
    larger_is_worse: bool
    text: Callable[[Dict, float], str]


#: The ranking keys of ``--worst-by``; the first three, in this order, are the default ranking.
MEASURES: Dict[str, Measure] = {
    "all_acc": Measure("judge", "the judge (all heads right, lowest first)", _ours("all_acc"),
                       False, _judge_text),
    "sharpness": Measure("sharpness", "sharpness / GT (lowest first)", sharpness_ratio, False,
                         lambda row, v: f"sharpness {v:.2f} GT"),
    "iou": Measure("IoU", "IoU (lowest first)", _ours("iou"), False,
                   lambda row, v: f"IoU {v:.2f}"),
    "colour_de": Measure("Delta E", "Delta E (largest first)", _ours("colour_de"), True,
                         lambda row, v: f"Delta E {v:.1f}"),
    "speckle": Measure("speckle", "speckle ours - GT (largest first)", _speckle_excess, True,
                       lambda row, v: f"speckle {row['ours']['speckle']:.3f} "
                                      f"(GT {row['truth']['speckle']:.3f})"),
}
WORST_BY: Tuple[str, ...] = tuple(MEASURES)
DEFAULT_ORDER: Tuple[str, ...] = WORST_BY[:3]


def badness(row: Dict, key: str) -> Optional[float]:
    """How bad ``row`` is by ``key`` (larger: worse); None where the row lacks the metric."""
    measure = MEASURES[ranking(key)[0]]
    value = measure.value(row)
    return None if value is None else (value if measure.larger_is_worse else -value)


def ranking(by: str) -> Tuple[str, ...]:
    """The keys a ranking by ``by`` compares, in order: ``by``, then the default order."""
    if by not in MEASURES:
        raise ConfigError(f"--worst-by '{by}' must be one of {', '.join(WORST_BY)}")
    return (by,) + tuple(key for key in DEFAULT_ORDER if key != by)


def rank_key(row: Dict, by: str = "all_acc") -> Tuple:
    """Sort key, worst first: errors, then each key of :func:`ranking` (larger badness
    first; a missing metric after every present one), then prompt and seed."""
    parts: List = [not row.get("error")]
    for key in ranking(by):
        value = badness(row, key)
        parts += [value is None, -(value or 0.0)]
    seed = row.get("seed")
    return (*parts, row["prompt"], seed is None, seed if isinstance(seed, int) else 0)


def worst_runs(rows: Sequence[Dict], count: int, by: str = "all_acc") -> Dict[str, List[Dict]]:
    """Per variant (in the order they first appear), its ``count`` worst rows, worst first."""
    if count < 1:
        raise ConfigError(f"--worst {count} must be >= 1")
    ranking(by)  # one error naming a bad key, even without rows
    variants: Dict[str, List[Dict]] = {}
    for row in rows:
        variants.setdefault(row["variant"], []).append(row)
    return {name: sorted(mine, key=lambda r: rank_key(r, by))[:count]
            for name, mine in variants.items()}


def worst_label(row: Dict, by: str = "all_acc") -> str:
    """The numbers that ranked ``row``, in the ranking's order, e.g. ``judge 4/8 · sharpness
    0.61 GT · IoU 0.82`` (an error row: its error)."""
    if row.get("error"):
        error = str(row["error"])
        return "error: " + (error if len(error) <= ERROR_CHARS else error[:ERROR_CHARS] + "…")
    texts = []
    for key in ranking(by):
        measure = MEASURES[key]
        value = measure.value(row)
        texts.append(f"{measure.name} –" if value is None else measure.text(row, value))
    return " · ".join(texts)


def run_name(row: Dict) -> str:
    return f"{row['prompt']}, seed {row.get('seed', '–')}"


# ---------------------------------------------------------------------------- strips


def strip_folders(folder: Path) -> List[Path]:
    """``folder`` and the evaluation folders merged into it (its results' ``merged_from``,
    followed down), each found where it was written or, moved with it, beside it: the
    folders that may hold the strips of ``folder/results.json``'s rows."""
    found: List[Path] = []
    queue = [Path(folder)]
    while queue:
        current = queue.pop(0)
        if any(current.resolve() == f.resolve() for f in found):
            continue
        found.append(current)
        results = current / "results.json"
        merged = json.loads(results.read_text())["meta"].get("merged_from", []) \
            if results.is_file() else []
        for source in map(Path, merged):
            for candidate in (source, current.parent / source.name):
                if candidate.is_dir():
                    queue.append(candidate)
                    break
    return found


def find_strip(row: Dict, folders: Sequence[Path]) -> Optional[Path]:
    """The strip of ``row``: ``strips/<variant>/<prompt>_seed<N>.png`` in the folder its
    stored path names (``.../<folder>/strips/...``), else in any of ``folders``, else the
    stored path itself (relative to the device's work tree, where the rows were written;
    tried last, as a work tree here may hold another run's file of the same name). None:
    an error row, or no such file."""
    if row.get("error"):
        return None
    stored = Path(row["strip"]) if row.get("strip") else None
    tail = strip_path(Path(), row["variant"], row["prompt"], row.get("seed"))
    parts = stored.parts if stored is not None else ()
    at = [i for i, part in enumerate(parts) if part == "strips" and i > 0]
    owner = parts[at[-1] - 1] if at else None  # <owner>/strips/<variant>/<file>
    for folder in sorted(folders, key=lambda f: Path(f).name != owner):  # stable
        if (Path(folder) / tail).is_file():
            return Path(folder) / tail
    return stored if stored is not None and stored.is_file() else None


# ---------------------------------------------------------------------------- the sheet


@dataclass
class Tile:
    """One strip of the sheet and the lines above it."""

    lines: List[str]
    image: Any  # a PIL.Image.Image, RGB: our V views above the ground truth's [V*W x 2H]


@dataclass
class Block:
    """One variant: its caption lines and its tiles, left to right."""

    lines: List[str]
    tiles: List[Tile]


def contact_sheet(title: Sequence[str], blocks: Sequence[Block]):
    """One RGB PIL image, white: the title lines, then per block its caption lines and its
    tiles in a row (every tile in a cell as wide as the widest strip or label, strips at
    their own size), blocks one under another, a grey rule between them. PIL's default
    font."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    ascent, descent = font.getmetrics()
    line = ascent + descent + 2
    tiles = [tile for block in blocks for tile in block.tiles]
    cell = max([t.image.width for t in tiles] + [font.getlength(s) for t in tiles
                                                 for s in t.lines] + [1])
    cell = int(math.ceil(cell))
    columns = max([len(block.tiles) for block in blocks] + [1])
    width = 2 * MARGIN + columns * cell + (columns - 1) * GAP
    texts = list(title) + [s for block in blocks for s in block.lines]
    width = max(width, 2 * MARGIN + int(math.ceil(max([font.getlength(s) for s in texts] + [0]))))

    def block_height(block: Block) -> int:
        label = max([len(t.lines) for t in block.tiles] + [0]) * line
        strip = max([t.image.height for t in block.tiles] + [0])
        return len(block.lines) * line + (label + strip + GAP // 2 if block.tiles else 0)

    height = 2 * MARGIN + len(title) * line + sum(GAP + block_height(b) for b in blocks)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = MARGIN
    for text in title:
        draw.text((MARGIN, y), text, fill="black", font=font)
        y += line
    for block in blocks:
        draw.line([(MARGIN, y + GAP // 2), (width - MARGIN, y + GAP // 2)], fill=(190, 190, 190))
        y += GAP
        top = y
        for text in block.lines:
            draw.text((MARGIN, y), text, fill="black", font=font)
            y += line
        label = max([len(t.lines) for t in block.tiles] + [0]) * line
        for index, tile in enumerate(block.tiles):
            x = MARGIN + index * (cell + GAP)
            for k, text in enumerate(tile.lines):
                draw.text((x, y + k * line), text, fill=(60, 60, 60), font=font)
            sheet.paste(tile.image, (x, y + label))
        y = top + block_height(block)
    return sheet


# ---------------------------------------------------------------------------- the files


def _load(path: Optional[Path]):
    """The strip at ``path`` as an RGB PIL image [V*W x 2H]; None if absent or unreadable."""
    from PIL import Image

    if path is None:
        return None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError:
        return None


def _where(row: Dict, path: Optional[Path], out: Path) -> str:
    """How the list names a run's strip: its path (relative to ``out`` when under it)."""
    if row.get("error"):
        return "no strip"
    if path is None:
        return "strip not found"
    try:
        return f"`{path.resolve().relative_to(out.resolve())}`"
    except ValueError:
        return f"`{path}`"


def write_worst(out: Path, rows: Sequence[Dict], count: int, by: str = "all_acc",
                folders: Optional[Sequence[Path]] = None, status: str = "") -> Tuple[Path, Path]:
    """``out/worst.png`` (the sheet of each variant's ``count`` worst runs by ``by``) and
    ``out/worst.md`` (the same runs, linking ``worst.png``), each atomically. ``folders``:
    where the strips may be (default :func:`strip_folders` of ``out``); a run without a
    readable strip, like an error row, is named in its variant's caption instead."""
    picked = worst_runs(rows, count, by)
    folders = strip_folders(out) if folders is None else list(folders)
    totals: Dict[str, int] = {}
    for row in rows:
        totals[row["variant"]] = totals.get(row["variant"], 0) + 1
    order = ", then ".join(MEASURES[key].describe for key in ranking(by))
    status = f" ({status})" if status else ""
    title = [f"The {count} worst runs of each variant{status}: our views above the aligned "
             "ground truth's.", f"Ranked worst first: errors, then {order}."]
    blocks, entries = [], []
    for variant, worst in picked.items():
        paths = [find_strip(row, folders) for row in worst]
        images = [_load(path) for path in paths]
        paths = [path if image is not None else None for path, image in zip(paths, images)]
        heading = f"{variant}: the worst {len(worst)} of {totals[variant]} runs"
        caption = [f"{run_name(row)}: {worst_label(row, by)}"
                   + ("" if row.get("error") else " (strip not found)")
                   for row, image in zip(worst, images) if image is None]
        tiles = [Tile([run_name(row), worst_label(row, by)], image)
                 for row, image in zip(worst, images) if image is not None]
        blocks.append(Block([heading] + caption, tiles))
        entries.append(f"\n## {heading.replace(': the', ' (the')})\n")
        entries += [f"{rank}. {run_name(row)}: {worst_label(row, by)} ({_where(row, path, out)})"
                    for rank, (row, path) in enumerate(zip(worst, paths), 1)]
    sheet = contact_sheet(title, blocks)
    png, markdown = out / "worst.png", out / "worst.md"
    write_with(png, lambda handle: sheet.save(handle, format="PNG", optimize=True))
    write_text(markdown, f"# The worst runs of each variant{status}\n\n"
               f"The {count} worst runs of each variant, ranked worst first: errors (they have "
               f"no strip), then {order}. Each strip: our views above the aligned ground "
               f"truth's.\n\n![The worst runs of each variant](worst.png)\n"
               + "\n".join(entries) + "\n")
    return png, markdown

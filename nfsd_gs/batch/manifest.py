"""``manifest.jsonl``: one row per catalogue line, rewritten atomically after every change.

A row's ``status`` is ``done``, ``failed`` (with ``error``) or ``skipped`` (the catalogue
stopped before the line finished; ``error`` says whether a checkpoint was kept) once the
command has ended; while it runs, lines not finished yet read ``pending`` or ``running``.
Running the same command again skips ``done`` rows (and ``failed`` ones whose line did not
change) and continues the others from their checkpoints.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ..utils.io import finite_or_none, write_text

FINAL = ("done", "failed", "skipped")


@dataclass
class Row:
    line: int
    name: str
    prompt: str
    seed: Optional[int]
    status: str = "pending"
    run_dir: str = ""
    seconds: Optional[float] = None  # wall time of every attempt (this invocation), summed
    num_gaussians: Optional[int] = None
    #: The bundled judge's verdict (shape_acc, colour_acc, both_acc, ...); None for other priors.
    score: Optional[dict] = None
    error: Optional[str] = None
    attempts: int = 0  # attempts in this invocation (> 1: a worker died and it was retried)
    retried: Optional[str] = None  # why: each death of its worker process, in order
    start_step: Optional[int] = None  # the step the last attempt started from (> 0: resumed)
    end_step: Optional[int] = None  # the step it reached (done: the last; stopped: saved there)
    worker: Optional[str] = None  # host:pid of the worker process that made it
    peak_mem_mib: Optional[float] = None  # that process's peak CUDA memory during the asset
    signature: str = ""  # what the line asked for: a changed line is made again


class Manifest:
    """The rows of one output root, in catalogue order (rows of lines no longer in the
    PROMPTS file are kept after them)."""

    def __init__(self, path: Path, rows: Iterable[Row] = ()):
        self.path = Path(path)
        self.rows: Dict[str, Row] = {row.name: row for row in rows}

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        """The manifest an earlier invocation wrote (empty if none; a damaged one is ignored
        with a warning: the run folders' checkpoints are what resuming needs)."""
        path = Path(path)
        if not path.exists():
            return cls(path)
        names = {f.name for f in fields(Row)}
        try:
            rows = [Row(**{k: v for k, v in json.loads(text).items() if k in names})
                    for text in path.read_text(encoding="utf-8").splitlines() if text.strip()]
        except (ValueError, TypeError, OSError) as err:
            warnings.warn(f"'{path}' cannot be read ({err}); it is written anew", stacklevel=2)
            return cls(path)
        return cls(path, rows)

    def write(self) -> None:
        text = "".join(json.dumps(finite_or_none(asdict(row)), allow_nan=False) + "\n"
                       for row in self.rows.values())
        write_text(self.path, text)

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows.values())

    def finish_unfinished(self) -> None:
        """At exit: lines still pending or running become ``skipped`` (they continue next time)."""
        for row in self.rows.values():
            if row.status == "running":
                row.error = "aborted while running: continues from its last checkpoint"
            elif row.status not in FINAL:
                row.error = row.error or "not started: the catalogue stopped first"
            row.status = row.status if row.status in FINAL else "skipped"


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(rows: Iterable[Row]) -> str:
    """The manifest (every line, this invocation's and earlier ones): per status the count,
    mean seconds, Gaussians and judge accuracy; then the failed lines and why."""
    rows = list(rows)
    out = ["| status | lines | mean s | mean Gaussians | judge shape | judge colour |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for status in FINAL:
        chosen = [r for r in rows if r.status == status]
        scores = [r.score for r in chosen if r.score]
        out.append("| {} | {} | {} | {} | {} | {} |".format(
            status, len(chosen),
            _fmt(_mean([r.seconds for r in chosen if r.seconds is not None]), ".1f"),
            _fmt(_mean([r.num_gaussians for r in chosen if r.num_gaussians is not None]), ".0f"),
            _fmt(_mean([s["shape_acc"] for s in scores if "shape_acc" in s]), ".0%"),
            _fmt(_mean([s["colour_acc"] for s in scores if "colour_acc" in s]), ".0%")))
    for row in rows:
        if row.status == "failed":
            out.append(f"failed: line {row.line} '{row.name}': {row.error}")
    return "\n".join(out)


def invocation_summary(to_make: int, made: int, failed: int, wall_s: float) -> str:
    """This invocation in one line: of the lines it set out to make, how many it made,
    how many failed and how many are left, in how long (assets made per hour)."""
    left = to_make - made - failed
    rate = 3600.0 * made / wall_s if wall_s > 0 else 0.0
    return (f"this time: {made} of {to_make} line{'s' if to_make != 1 else ''} made, "
            f"{failed} failed, {left} not finished, in {wall_s:.1f} s ({rate:.0f} assets/hour)")

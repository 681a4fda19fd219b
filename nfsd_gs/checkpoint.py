"""Checkpoints: everything needed to continue a run exactly where it stopped.

A :class:`Checkpoint` holds the representation (whatever its current size after
densification), every optimizer's state, the densification strategy's state, the
guidance method's own state (VSD's LoRA), the random number generators, the step and
the resolved config.  It is the one checkpoint type: the trainer saves and restores it
(``nfsd_gs.train.run``), ``scripts/checkpoint_cost.py`` times it.  Files are written
atomically (``nfsd_gs.utils.io``).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .errors import NfsdError
from .utils.io import write_with

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:06d}.pt"


def list_checkpoints(run_dir: Path) -> List[Path]:
    """Checkpoints of a run, oldest first."""
    return sorted((Path(run_dir) / CHECKPOINT_DIR).glob("step_*.pt"))


def capture_rng_state(generator: torch.Generator) -> Dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    """One run's state after a whole step (file format :data:`FORMAT_VERSION`).

    Saved as a plain dict (``torch.save``), ``format_version`` first, so a file never depends
    on where this class lives; :meth:`load` checks the version and the keys."""

    step: int
    config: Dict[str, Any]  # the resolved config (nfsd_gs.config.config_to_dict)
    representation: str  # config.representation, for a reader that has no config class
    model: Dict[str, Any]  # the representation's state_dict (its size after densification)
    optimizers: Dict[str, Dict[str, Any]]  # per parameter group
    densifier: Optional[Dict[str, Any]]  # the strategy's external state, or None
    rng: Dict[str, Any]  # capture_rng_state()
    guidance: Dict[str, Any] = field(default_factory=dict)  # VSD's LoRA; {} for NFSD and SDS
    nonfinite_total: int = 0  # non-finite steps skipped so far

    #: Keys in the order a file holds them (the same bytes as before this class existed).
    ORDER = ("step", "config", "representation", "model", "optimizers", "densifier", "guidance",
             "rng", "nonfinite_total")

    def to_dict(self) -> Dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **{key: getattr(self, key) for key in self.ORDER}}

    @classmethod
    def from_dict(cls, state: Any, where: Path | str = "<state>") -> "Checkpoint":
        """A saved dict -> Checkpoint; a foreign or incomplete one is a :class:`NfsdError`."""
        if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
            raise NfsdError(f"'{where}' is not an nfsd_gs checkpoint (format {FORMAT_VERSION})")
        required = [f.name for f in fields(cls) if f.default is MISSING
                    and f.default_factory is MISSING]
        missing = [key for key in required if key not in state]
        if missing:
            raise NfsdError(f"checkpoint '{where}' lacks {', '.join(missing)}")
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})

    def save(self, path: Path, keep: Optional[int] = None) -> Path:
        """Write atomically; with ``keep``, delete all but the newest ``keep`` checkpoints of
        the run.  Temporary files that a killed writer left beside it (SIGKILL mid-write:
        ``.step_*.tmp*``) are removed too: one run writes its checkpoints one at a time."""
        path = Path(path)
        write_with(path, lambda handle: torch.save(self.to_dict(), handle))
        for stray in path.parent.glob(".*.tmp*"):
            stray.unlink(missing_ok=True)
        if keep is not None and keep > 0:
            for old in list_checkpoints(path.parent.parent)[:-keep]:
                old.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: Path, map_location: Any = "cpu") -> "Checkpoint":
        """The checkpoint saved at ``path``; an unreadable or foreign file is a :class:`NfsdError`."""
        try:
            state = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as err:  # noqa: BLE001 -- pickle/zip errors have no common base
            raise NfsdError(f"checkpoint '{path}' cannot be read ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:120] if str(err) else 'corrupt'})") from None
        return cls.from_dict(state, path)

    @classmethod
    def latest(cls, run_dir: Path) -> Tuple[Path, "Checkpoint"]:
        """The newest readable checkpoint of a run (an unreadable newest one falls back to
        the one before, with a warning); :class:`NfsdError` if there is none."""
        candidates = list_checkpoints(run_dir)
        if not Path(run_dir).is_dir():
            raise NfsdError(f"--resume: '{run_dir}' is not a run folder")
        if not candidates:
            raise NfsdError(f"no checkpoint in '{Path(run_dir) / CHECKPOINT_DIR}' to resume from")
        errors = []
        for path in reversed(candidates):
            try:
                checkpoint = cls.load(path)
            except NfsdError as err:
                errors.append(str(err))
                continue
            for message in errors:
                warnings.warn(f"{message}; using the earlier {path.name}", stacklevel=2)
            return path, checkpoint
        raise NfsdError(errors[0])

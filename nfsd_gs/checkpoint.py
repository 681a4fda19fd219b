"""Checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the representation (whatever its current size after
densification), every optimizer's state, the densification strategy's state,
the random number generators, the step and the resolved config.  Files are
written atomically (``nfsd_gs.utils.io``).
"""

from __future__ import annotations

import random
from pathlib import Path
import warnings
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


def save_checkpoint(path: Path, state: Dict[str, Any], keep: Optional[int] = None) -> Path:
    """Write ``state`` atomically; with ``keep``, delete all but the newest ``keep`` siblings.

    Temporary files that a killed writer left beside it (SIGKILL mid-write: ``.step_*.tmp*``)
    are removed too: one run writes its checkpoints one at a time."""
    path = Path(path)
    write_with(path, lambda handle: torch.save({"format_version": FORMAT_VERSION, **state}, handle))
    for stray in path.parent.glob(".*.tmp*"):
        stray.unlink(missing_ok=True)
    if keep is not None and keep > 0:
        for old in list_checkpoints(path.parent.parent)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """The state saved at ``path``; an unreadable or foreign file is a :class:`NfsdError`."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 -- pickle/zip errors have no common base
        raise NfsdError(f"checkpoint '{path}' cannot be read ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:120] if str(err) else 'corrupt'})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise NfsdError(f"'{path}' is not an nfsd_gs checkpoint (format {FORMAT_VERSION})")
    return state


def load_latest_checkpoint(run_dir: Path) -> Tuple[Path, Dict[str, Any]]:
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
            state = load_checkpoint(path)
        except NfsdError as err:
            errors.append(str(err))
            continue
        for message in errors:
            warnings.warn(f"{message}; using the earlier {path.name}", stacklevel=2)
        return path, state
    raise NfsdError(errors[0])

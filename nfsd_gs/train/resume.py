"""Continuing a run: what ``--resume`` may change, how a run comes back from its newest
checkpoint, and the catalogue's rule (continue a line's folder, or start afresh in it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..checkpoint import Checkpoint, list_checkpoints
from ..config import Config, config_from_dict, config_signature, config_to_yaml, load_config
from ..errors import NfsdError
from ..guidance.prior import DiffusionPrior
from ..utils.io import write_text
from .run import Run, build_run, restore_run, run_folder, start_run

#: What --resume can change without changing the optimization it continues: how long
#: it runs (``steps``) and how it writes and shows its outputs (``output.*``, ``viewer.*``)...
RESUME_KEYS, RESUME_SECTIONS = ("steps",), ("output.", "viewer.")
#: ... except which folder it is: the run continues where it is.
RESUME_FIXED = ("output.root", "output.name")


def check_resume_overrides(overrides: Sequence[str]) -> None:
    """Refuse, in one line, an override that would change the run it continues."""
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key in RESUME_FIXED or not (key in RESUME_KEYS or key.startswith(RESUME_SECTIONS)):
            raise NfsdError(f"--resume: '{override}' would change the run it continues; with "
                            f"--resume only steps=N, output.* (but output.root and output.name) "
                            f"and viewer.* apply (start a new run to change '{key}')")


def resume_run(run_dir: Path, overrides: Sequence[str] = (),
               prior: Optional[DiffusionPrior] = None) -> Tuple[Run, Path]:
    """Rebuild a run from its newest checkpoint; metrics logged after it are dropped
    (the resumed run logs those steps again).

    A run folder with a config but no checkpoint yet (killed in its first
    ``checkpoint_every`` steps) starts again from step 0.  ``overrides`` may set
    ``steps`` (to train on past the saved total; schedules that depend on the total,
    such as the timestep annealing, stretch to it from here on), ``output.*`` and
    ``viewer.*`` (:func:`check_resume_overrides`); the run's ``config.yaml`` then records them.
    """
    check_resume_overrides(overrides)
    if run_dir.suffix == ".ply" and run_dir.is_file():
        from ..formats.ply import load_ply

        load_ply(run_dir)  # a corrupt or foreign file: its one-line PlyFormatError
        raise NfsdError(f"--resume takes a run folder; to continue optimizing '{run_dir}' "
                        f"start a run from it: --prompt \"...\" init.kind=file "
                        f"init.path={run_dir}")
    if not list_checkpoints(run_dir) and (run_dir / "config.yaml").is_file():
        run = build_run(load_config(run_dir / "config.yaml", overrides), prior=prior)
        print(f"no checkpoint in {run_dir} yet: starting it again from step 0", file=sys.stderr)
    else:
        _, checkpoint = Checkpoint.latest(run_dir)
        config = config_from_dict(checkpoint.config, overrides)
        if config.steps < checkpoint.step:
            raise NfsdError(f"--resume: steps={config.steps} is below step {checkpoint.step}, "
                            f"where the checkpoint of {run_dir} stands")
        run = build_run(config, prior=prior)
        restore_run(run, checkpoint)
    truncate_metrics(run_dir / "metrics.jsonl", run.step)
    if overrides:
        write_text(run_dir / "config.yaml", config_to_yaml(run.config))
    return run, run_dir


def open_run(config: Config, prior: Optional[DiffusionPrior] = None) -> Tuple[Run, Path]:
    """The run of ``config`` in its own folder (:func:`~nfsd_gs.train.run.run_folder`):
    continued from its newest checkpoint when the folder holds one (of the same config,
    else :class:`NfsdError`), or started afresh there (a folder without a checkpoint holds
    no saved step). The catalogue makes each line this way, so a retried or re-run line
    picks up where it stopped."""
    folder = run_folder(config)
    if not list_checkpoints(folder):
        return start_run(config, prior, folder=folder)
    saved = load_config(folder / "config.yaml")
    if config_signature(saved) != config_signature(config):
        raise NfsdError(f"run folder '{folder}' holds a run with another config (prompt "
                        f"'{saved.prompt}', seed {saved.seed}); delete it or give this "
                        f"line another \"name\"")
    return resume_run(folder, (), prior=prior)


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the records of steps <= ``step`` (atomically)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines()
             if line.strip() and _record_step(line) <= step]
    write_text(path, "".join(line + "\n" for line in lines))


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line: dropped

"""One optimization's components, how they are built, where their run folder is, and their
checkpoint (:class:`~nfsd_gs.checkpoint.Checkpoint`), captured and restored."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from ..cameras import OrbitSampler
from ..checkpoint import (Checkpoint, capture_rng_state, checkpoint_path, restore_rng_state)
from ..config import Config, config_to_dict, config_to_yaml
from ..densify import Densifier
from ..guidance import ScoreDistillation
from ..guidance.prior import DiffusionPrior
from ..representations import Representation, build_representation
from ..utils.device import init_device, resolve_device
from ..utils.io import create_run_dir, make_folder, slugify, write_text
from ..utils.rng import GlobalRng, own_stream
from ..utils.timing import NO_TIMER


@dataclass
class Run:
    """The components of one optimization; :func:`nfsd_gs.train.loop.train` drives them."""

    config: Config
    device: torch.device
    prior: DiffusionPrior
    guidance: ScoreDistillation
    model: Representation
    optimizers: Dict[str, torch.optim.Optimizer]
    densifier: Optional[Densifier]
    sampler: OrbitSampler
    generator: torch.Generator  # CPU: cameras and backgrounds
    step: int = 0
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0
    #: This run's stream of torch's global generators (guidance t and noise, densification,
    #: NeRF samples), as they stood after building or restoring it: see :meth:`own_rng`.
    global_rng: Optional[GlobalRng] = None

    def own_rng(self):
        """``with run.own_rng():`` the global generators are this run's own stream
        (``nfsd_gs.utils.rng``): what a process training several runs at once wraps around
        each run's part of a step. A process training one run needs none."""
        return own_stream(self)


def build_run(config: Config, device: Optional[torch.device] = None,
              prior: Optional[DiffusionPrior] = None, timer=NO_TIMER) -> Run:
    """Load the prior (unless one is given), check the prompt, initialise the
    representation; no files are written. ``timer`` (a
    :class:`~nfsd_gs.utils.timing.WallTimer`) gets the start-up phases."""
    device = device or resolve_device(config.device)
    with timer.phase("CUDA context"):
        init_device(device)
    torch.manual_seed(config.seed)
    prior = prior or DiffusionPrior.load(config.prior, device, timer)
    with timer.phase("text encoding"):
        guidance = ScoreDistillation(prior, config.guidance, config.steps)
        guidance.prepare(config.prompt)
    with timer.phase("representation"):
        model = build_representation(config, device)
    with timer.phase("optimizers, densifier"):
        optimizers = model.make_optimizers()
        densifier = model.make_densifier(config.densify, optimizers)
    generator = torch.Generator().manual_seed(config.seed)
    return Run(config, device, prior, guidance, model, optimizers, densifier,
               OrbitSampler(config.camera), generator, global_rng=GlobalRng.capture(device))


# --------------------------------------------------------------------------- run folders


def run_name(prompt: str, name: str = "") -> str:
    """A run folder's name: ``name`` (``output.name``, a catalogue line's ``"name"``) if
    given, else the prompt's slug (``"a red cone"`` -> ``a_red_cone``). The one rule."""
    return name or slugify(prompt)


def run_folder(config: Config) -> Path:
    """Where ``config``'s run lives: ``output.root / run_name(prompt, output.name)``."""
    return Path(config.output.root) / run_name(config.prompt, config.output.name)


def start_run(config: Config, prior: Optional[DiffusionPrior] = None,
              folder: Optional[Path] = None, timer=NO_TIMER) -> Tuple[Run, Path]:
    """Build everything first, then create the run folder: a failure leaves no folder behind.

    ``folder=None``: a new folder for :func:`run_folder`, never an existing one
    (``a_red_cone``, ``a_red_cone_001``...: the command line). ``folder``: exactly that
    folder, which holds no checkpoint (a leftover of a run killed before its first one is
    replaced: it holds no saved step; the catalogue's rule, see ``resume.open_run``).
    ``prior``: an already loaded prior to share (the evaluation and the catalogue train
    many runs on one)."""
    run = build_run(config, prior=prior, timer=timer)
    if folder is None:
        run_dir = create_run_dir(config.output.root, run_name(config.prompt, config.output.name))
    else:
        run_dir = Path(folder)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        make_folder(run_dir)
    write_text(run_dir / "config.yaml", config_to_yaml(config))
    return run, run_dir


# --------------------------------------------------------------------------- checkpoints


def capture_checkpoint(run: Run) -> Checkpoint:
    """Everything needed to continue ``run`` exactly after its current step."""
    return Checkpoint(
        step=run.step,
        config=config_to_dict(run.config),
        representation=run.config.representation,
        model=run.model.state_dict(),
        optimizers={k: o.state_dict() for k, o in run.optimizers.items()},
        densifier=run.densifier.state_dict() if run.densifier else None,
        guidance=run.guidance.state_dict(),
        rng=capture_rng_state(run.generator),
        nonfinite_total=run.nonfinite_total,
    )


def write_checkpoint(run: Run, run_dir: Path) -> Path:
    """``checkpoints/step_XXXXXX.pt`` of the current step (the newest ``keep_checkpoints`` stay)."""
    return capture_checkpoint(run).save(checkpoint_path(run_dir, run.step),
                                        keep=run.config.output.keep_checkpoints)


def restore_run(run: Run, checkpoint: Checkpoint) -> None:
    """Load a checkpoint into freshly built components (N may differ from the init's)."""
    run.model.load_state_dict(checkpoint.model)
    run.optimizers = run.model.make_optimizers()
    for key, optimizer in run.optimizers.items():
        optimizer.load_state_dict(checkpoint.optimizers[key])
    run.densifier = run.model.make_densifier(run.config.densify, run.optimizers)
    if run.densifier is not None:
        run.densifier.load_state_dict(checkpoint.densifier)
    run.guidance.load_state_dict(checkpoint.guidance)
    restore_rng_state(checkpoint.rng, run.generator)
    run.global_rng = GlobalRng.capture(run.device)
    run.step = int(checkpoint.step)
    run.nonfinite_total = int(checkpoint.nonfinite_total)

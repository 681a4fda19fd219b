"""The training loop: steps from ``run.step`` to ``config.steps``, with the log, snapshots,
checkpoints, the live viewer and stop requests between two steps.

:class:`Training` is an asset's life around its steps (the one place it is defined);
:func:`train` makes the steps of one asset, ``nfsd_gs.train.batched`` those of several."""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import Tensor

from ..errors import TrainingDiverged, TrainingInterrupted
from ..guidance.schedule import max_timestep_fraction
from ..utils.io import append_line, finite_or_none
from ..utils.signals import StopSignals
from .outputs import check_output_config, save_snapshot, write_extras
from .run import Run, write_checkpoint
from .step import training_step


#: Steps whose median loss the progress bar shows (README, "The progress bar").
LOSS_WINDOW = 50


class LossWindow:
    """The losses of the last ``size`` steps, kept on the device (no sync until read).

    One step's loss, 0.5 ||grad||^2 / B, is the size of the distillation gradient at that
    step's random timestep t, not a measure of quality: with NFSD it is about 100 times
    larger below t = 200 (the domain term is then the whole unconditional prediction), so
    single values swing from 1 to 700 in a healthy run. Their median is what the bar shows."""

    def __init__(self, size: int = LOSS_WINDOW):
        self.values: deque = deque(maxlen=size)

    def add(self, loss: Tensor) -> None:
        self.values.append(loss.detach().float().reshape(()))

    def median(self) -> float:
        return float(torch.stack(list(self.values)).nanmedian()) if self.values else float("nan")


def progress_postfix(run: Run, losses: LossWindow, record: dict) -> Dict[str, str]:
    """What the bar shows after the step's log record: the median loss of the last steps,
    the timestep schedule's upper end now (t_max, a fraction of the prior's T), the count
    of Gaussians (or the field's size) and the speed."""
    c = run.config
    return {"loss": f"{losses.median():.3g}",
            "t_max": f"{max_timestep_fraction(c.guidance, run.step, c.steps):.2f}",
            run.model.count_name: str(record["num_primitives"]),
            "it_s": f"{record['it_per_s']:.2f}"}


class Training:
    """One asset's life around its steps, whoever makes the steps: the log
    (``metrics.jsonl``), the progress bar, the live viewer, snapshots, checkpoints, stop
    requests, the end (final checkpoint, model, turntable, mesh). :func:`train` drives it
    with :func:`~nfsd_gs.train.step.training_step`; the engine of several assets
    (:mod:`nfsd_gs.train.batched`) with its batched step, one ``Training`` per asset.

    ``progress``: a tqdm bar; ``viewer``: a ``nfsd_gs.viewer.training.TrainingViewer`` or
    None. Use as a context manager (closes the bar)."""

    def __init__(self, run: Run, run_dir: Path, progress: bool = True, viewer=None):
        from tqdm import tqdm

        check_output_config(run.config)
        self.run, self.run_dir, self.viewer = run, run_dir, viewer
        self.metrics_path = run_dir / "metrics.jsonl"
        self.bar = tqdm(total=run.config.steps, initial=run.step, disable=not progress,
                        dynamic_ncols=True, desc="nfsd", unit="step")
        now = time.perf_counter()
        self.last_log_time, self.last_log_step, self.start_time = now, run.step, now
        self.losses = LossWindow()

    def __enter__(self) -> "Training":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    @property
    def finished(self) -> bool:
        """Every step is made (a resumed run may start finished)."""
        return self.run.step >= self.run.config.steps

    def after_step(self, step: int, stats: Dict[str, Tensor], stop: Optional[str]) -> None:
        """Everything between step ``step`` and the next: count a skipped non-finite step
        (:class:`~nfsd_gs.errors.TrainingDiverged` after too many in a row), the bar, the
        viewer, the log, snapshots and checkpoints. ``stop``: the name of a stop request
        (``"SIGINT"``) or None; with one, a checkpoint and the model are written and
        :class:`~nfsd_gs.errors.TrainingInterrupted` says where."""
        run, c = self.run, self.run.config
        check_finite(run, step, stats)
        self.losses.add(stats["loss"])
        run.step = step + 1
        self.bar.update(1)
        if self.viewer is not None:  # cheap unless an update is due; blocks while paused
            self.viewer.after_step(run.step, run.model.gaussians(), stats)
        if run.step % c.output.log_every == 0 or run.step == c.steps:
            now = time.perf_counter()
            record = log_record(run, stats, (run.step - self.last_log_step)
                                / (now - self.last_log_time), now - self.start_time)
            append_line(self.metrics_path, json.dumps(finite_or_none(record), allow_nan=False))
            self.bar.set_postfix(progress_postfix(run, self.losses, record))
            self.last_log_time, self.last_log_step = now, run.step
        if run.step % c.output.snapshot_every == 0 or run.step == c.steps:
            save_snapshot(run, self.run_dir, run.step)
        if stop is not None and run.step < c.steps:
            self.bar.close()
            checkpoint = write_checkpoint(run, self.run_dir)
            model_path = run.model.export(self.run_dir, c.output)
            how = "Ctrl-C" if stop == "SIGINT" else stop
            raise TrainingInterrupted(
                f"stopped at step {run.step} ({how}): saved {checkpoint} and {model_path}; "
                f"resume with python -m nfsd_gs.train --resume {self.run_dir}", stop)
        if run.step % c.output.checkpoint_every == 0 and run.step < c.steps:
            write_checkpoint(run, self.run_dir)

    def finish(self) -> Path:
        """The end of a finished run: its last checkpoint, the model and the extras; returns
        the model's path."""
        self.bar.close()
        return write_outputs(self.run, self.run_dir)


def train(run: Run, run_dir: Path, progress: bool = True, viewer=None) -> Path:
    """Optimize from ``run.step`` to ``config.steps``; returns the exported model's path.

    ``viewer``: a ``nfsd_gs.viewer.training.TrainingViewer`` (``--viewer``) or None.
    On SIGINT/SIGTERM the current step finishes, a checkpoint and ``model.ply`` are
    written and :class:`~nfsd_gs.errors.TrainingInterrupted` says where and how to resume
    (the command line prints it, not as an error, and exits with status 2).
    """
    with StopSignals() as signals, Training(run, run_dir, progress, viewer) as life:
        while not life.finished:
            stats = training_step(run, run.step)
            life.after_step(run.step, stats, signals.received)
    return life.finish()


def write_outputs(run: Run, run_dir: Path) -> Path:
    """What a finished run leaves: the last checkpoint, the model and the extras the config
    asks for (turntable, mesh); returns the model's path."""
    write_checkpoint(run, run_dir)
    model_path = run.model.export(run_dir, run.config.output)
    write_extras(run, run_dir)
    return model_path


def check_finite(run: Run, step: int, stats: Dict[str, Tensor]) -> None:
    """Count skipped non-finite steps; too many in a row stop the run (TrainingDiverged)."""
    if "nonfinite" not in stats:
        run.nonfinite_in_row = 0
        return
    run.nonfinite_in_row += 1
    run.nonfinite_total += 1
    bad_group = stats.pop("bad_group")
    if run.nonfinite_in_row >= run.config.max_nonfinite_steps:
        raise TrainingDiverged(
            f"{run.nonfinite_in_row} non-finite steps in a row, the last at step {step} "
            f"(timestep t={int(stats['t'])}, parameter group '{bad_group}'); stopped, the "
            f"last good checkpoint is kept (lower the learning rates or set guidance.grad_clip)")


def log_record(run: Run, stats: Dict[str, Tensor], it_per_s: float, elapsed: float) -> dict:
    """One line of ``metrics.jsonl``."""
    scalars = {k: float(v.float().mean()) for k, v in stats.items() if v.numel() > 0}
    return {
        "step": run.step,
        **scalars,
        "num_primitives": run.model.num_primitives,
        "nonfinite_steps": run.nonfinite_total,
        "it_per_s": it_per_s,
        "elapsed_s": elapsed,
        "lr_means": run.optimizers[next(iter(run.optimizers))].param_groups[0]["lr"],
    }

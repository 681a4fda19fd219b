"""The training loop: steps from ``run.step`` to ``config.steps``, with the log, snapshots,
checkpoints, the live viewer and stop requests between two steps.

:class:`Training` is an asset's life around its steps (the one place it is defined);
:func:`train` makes the steps of one asset, ``nfsd_gs.train.batched`` those of several."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Optional

from torch import Tensor

from ..errors import TrainingDiverged, TrainingInterrupted
from ..utils.io import append_line, finite_or_none
from ..utils.signals import StopSignals
from .outputs import check_output_config, save_snapshot, write_extras
from .run import Run, write_checkpoint
from .step import training_step


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
        run.step = step + 1
        self.bar.update(1)
        if self.viewer is not None:  # cheap unless an update is due; blocks while paused
            self.viewer.after_step(run.step, run.model.gaussians(), stats)
        if run.step % c.output.log_every == 0 or run.step == c.steps:
            now = time.perf_counter()
            record = log_record(run, stats, (run.step - self.last_log_step)
                                / (now - self.last_log_time), now - self.start_time)
            append_line(self.metrics_path, json.dumps(finite_or_none(record), allow_nan=False))
            self.bar.set_postfix(loss=f"{record['loss']:.4g}",
                                 **{run.model.count_name: record["num_primitives"]},
                                 it_s=f"{record['it_per_s']:.2f}")
            self.last_log_time, self.last_log_step = now, run.step
        if run.step % c.output.snapshot_every == 0 or run.step == c.steps:
            save_snapshot(run, self.run_dir, run.step)
        if stop is not None and run.step < c.steps:
            self.bar.close()
            checkpoint = write_checkpoint(run, self.run_dir)
            model_path = run.model.export(self.run_dir, c.output)
            raise TrainingInterrupted(
                f"{stop} at step {run.step}: saved {checkpoint} and "
                f"{model_path}; continue with --resume {self.run_dir}", stop)
        if run.step % c.output.checkpoint_every == 0 and run.step < c.steps:
            write_checkpoint(run, self.run_dir)

    def finish(self) -> Path:
        """The end of a finished run: its last checkpoint, the model and the extras; returns
        the model's path."""
        self.bar.close()
        write_checkpoint(self.run, self.run_dir)
        model_path = self.run.model.export(self.run_dir, self.run.config.output)
        write_extras(self.run, self.run_dir)
        return model_path


def train(run: Run, run_dir: Path, progress: bool = True, viewer=None) -> Path:
    """Optimize from ``run.step`` to ``config.steps``; returns the exported model's path.

    ``viewer``: a ``nfsd_gs.viewer.training.TrainingViewer`` (``--viewer``) or None.
    On SIGINT/SIGTERM the current step finishes, a checkpoint and ``model.ply`` are
    written and :class:`~nfsd_gs.errors.TrainingInterrupted` says where (exit status 2
    from the command line).
    """
    with StopSignals() as signals, Training(run, run_dir, progress, viewer) as life:
        while not life.finished:
            stats = training_step(run, run.step)
            life.after_step(run.step, stats, signals.received)
    return life.finish()


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

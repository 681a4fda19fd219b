"""The training loop: steps from ``run.step`` to ``config.steps``, with the log, snapshots,
checkpoints, the live viewer and stop requests between two steps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict

from torch import Tensor

from ..errors import TrainingDiverged, TrainingInterrupted
from ..utils.io import append_line, finite_or_none
from ..utils.signals import StopSignals
from .outputs import check_output_config, save_snapshot, write_extras
from .run import Run, write_checkpoint
from .step import training_step


def train(run: Run, run_dir: Path, progress: bool = True, viewer=None) -> Path:
    """Optimize from ``run.step`` to ``config.steps``; returns the exported model's path.

    ``viewer``: a ``nfsd_gs.viewer.training.TrainingViewer`` (``--viewer``) or None.
    On SIGINT/SIGTERM the current step finishes, a checkpoint and ``model.ply`` are
    written and :class:`~nfsd_gs.errors.TrainingInterrupted` says where (exit status 2
    from the command line).
    """
    from tqdm import tqdm

    c = run.config
    check_output_config(c)
    metrics_path = run_dir / "metrics.jsonl"
    bar = tqdm(total=c.steps, initial=run.step, disable=not progress, dynamic_ncols=True,
               desc="nfsd", unit="step")
    last_log_time, last_log_step, start_time = time.perf_counter(), run.step, time.perf_counter()
    with StopSignals() as signals, bar:
        for step in range(run.step, c.steps):
            stats = training_step(run, step)
            check_finite(run, step, stats)
            run.step = step + 1
            bar.update(1)
            if viewer is not None:  # cheap unless an update is due; blocks while paused
                viewer.after_step(run.step, run.model.gaussians(), stats)
            if run.step % c.output.log_every == 0 or run.step == c.steps:
                now = time.perf_counter()
                record = log_record(run, stats, (run.step - last_log_step) / (now - last_log_time),
                                    now - start_time)
                append_line(metrics_path, json.dumps(finite_or_none(record), allow_nan=False))
                bar.set_postfix(loss=f"{record['loss']:.4g}",
                                **{run.model.count_name: record["num_primitives"]},
                                it_s=f"{record['it_per_s']:.2f}")
                last_log_time, last_log_step = now, run.step
            if run.step % c.output.snapshot_every == 0 or run.step == c.steps:
                save_snapshot(run, run_dir, run.step)
            if signals.received is not None and run.step < c.steps:
                bar.close()
                checkpoint = write_checkpoint(run, run_dir)
                model_path = run.model.export(run_dir, c.output)
                raise TrainingInterrupted(
                    f"{signals.received} at step {run.step}: saved {checkpoint} and "
                    f"{model_path}; continue with --resume {run_dir}", signals.received)
            if run.step % c.output.checkpoint_every == 0 and run.step < c.steps:
                write_checkpoint(run, run_dir)
    return write_outputs(run, run_dir)


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

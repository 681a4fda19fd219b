"""Text to 3D: optimize a representation with Noise-Free Score Distillation.

``python -m nfsd_gs.train --prompt "a red cone"`` (``--help`` for the rest).

One training step is the data path of DESIGN.md, in :func:`training_step`:

    cameras.sample(B)            -> Cameras
    representation.render(...)   -> RenderOutput(rgb [B,H,W,3], alpha, depth, info)
    prior.encode(rgb)            -> x0 [B,C,h,w]
    guidance.loss(x0, prompts)   -> loss with d loss / d x0 = w(t)(delta_D + s delta_C) / B
    loss.backward(); optimizers step; densifier.post_backward(...)
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch's imports (seconds): Ctrl-C there ends in one line
    from nfsd_gs.cli import quiet_keyboard_interrupt

    quiet_keyboard_interrupt()

import argparse
import json
import shlex
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from .background import fixed_backgrounds, sample_backgrounds
from .cameras import OrbitSampler, view_prompts
from .checkpoint import (capture_rng_state, checkpoint_path, list_checkpoints,
                         load_latest_checkpoint, restore_rng_state, save_checkpoint)
from .cli import add_override_arguments, parse_command_line
from .config import Config, config_from_dict, config_to_dict, config_to_yaml, load_config
from .densify import Densifier  # noqa: F401  (Run.densifier's type)
from .errors import NfsdError, TrainingDiverged, TrainingInterrupted
from .guidance import ScoreDistillation
from .guidance.prior import DiffusionPrior
from .representations import Representation, build_representation
from .utils.images import image_grid, save_png
from .utils.io import append_line, create_run_dir, finite_or_none, slugify, write_text
from .utils.timing import NO_TIMER


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NfsdError(f"device '{name}' requested but CUDA is not available")
    return device


@dataclass
class Run:
    """The components of one optimization; :func:`train` drives them."""

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


def build_run(config: Config, device: Optional[torch.device] = None,
              prior: Optional[DiffusionPrior] = None) -> Run:
    """Load the prior, check the prompt, initialise the representation; no files are written."""
    device = device or resolve_device(config.device)
    torch.manual_seed(config.seed)
    prior = prior or DiffusionPrior.load(config.prior, device)
    guidance = ScoreDistillation(prior, config.guidance, config.steps)
    guidance.prepare(config.prompt)
    model = build_representation(config, device)
    optimizers = model.make_optimizers()
    densifier = model.make_densifier(config.densify, optimizers)
    generator = torch.Generator().manual_seed(config.seed)
    return Run(config, device, prior, guidance, model, optimizers, densifier,
               OrbitSampler(config.camera), generator)


def training_step(run: Run, step: int, timer=NO_TIMER) -> Dict[str, Tensor]:
    """One NFSD (or SDS) step on a batch of random views; returns tensor stats.

    A step whose loss or gradients are not finite changes nothing (see
    :func:`first_nonfinite`); its stats carry ``nonfinite`` = 1.
    """
    c = run.config
    cameras = run.sampler.sample(generator=run.generator).to(run.device)
    background = sample_backgrounds(c.background, len(cameras), run.generator).to(run.device)
    prompts = (view_prompts(c.prompt, cameras, c.camera) if c.guidance.view_dependent_prompt
               else [c.prompt] * len(cameras))

    run.model.update(step, c.steps, run.optimizers)
    with timer.phase("render"):
        out = run.model.render(cameras, c.camera.resolution, c.camera.resolution, background)
    with timer.phase("encode"):
        x0 = run.prior.encode(out.rgb)  # [B, C, h, w]
    loss, stats = run.guidance.loss(x0, prompts, step, timer, cameras=cameras)
    terms = run.model.regularization(step, c.steps)  # {name: weighted 0-d tensor}, {} if none
    loss = sum(terms.values(), loss)  # the distillation loss itself when there are none
    stats.update({f"reg_{name}": term.detach() for name, term in terms.items()})

    if run.densifier is not None:
        run.densifier.pre_backward(step, out.info)
    with timer.phase("backward"):
        loss.backward()
    bad_group = first_nonfinite(loss, run.optimizers)  # one host sync per step
    if bad_group is not None:
        for optimizer in run.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.detach(), **stats, "nonfinite": torch.ones(()),
                "bad_group": bad_group}
    with timer.phase("optimizer"):
        for optimizer in run.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    # gsplat's order: refine after the optimizer step (the 2D gradients stay on info).
    if run.densifier is not None:
        with timer.phase("densify"):
            stats.update(run.densifier.post_backward(step, out.info))
    return {"loss": loss.detach(), **stats}


def first_nonfinite(loss: Tensor, optimizers: Dict[str, torch.optim.Optimizer]) -> Optional[str]:
    """Name of the first parameter group whose gradient is not finite ("loss" when only
    the loss is), or None when everything is finite. Costs one host sync."""
    checks = {}
    for name, optimizer in optimizers.items():
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if grads:
            checks[name] = torch.stack([torch.isfinite(g).all() for g in grads]).all()
    checks["loss"] = torch.isfinite(loss).all()
    finite = torch.stack(list(checks.values())).cpu()  # the sync
    if bool(finite.all()):
        return None
    return list(checks)[int((~finite).nonzero()[0])]


# --------------------------------------------------------------------------- outputs


@torch.no_grad()
def render_views(run: Run, count: int, resolution: int) -> Tensor:  # [V, H, W, 3]
    cameras = run.sampler.fixed_views(count).to(run.device)
    background = fixed_backgrounds(run.config.background, len(cameras)).to(run.device)
    return run.model.render(cameras, resolution, resolution, background).rgb.clamp(0, 1)


def save_image_grid(path: Path, images: Tensor) -> None:  # images [V, H, W, 3] in [0, 1]
    save_png(path, image_grid(images, columns=len(images)))


def save_snapshot(run: Run, run_dir: Path, step: int) -> None:
    resolution = min(run.config.camera.resolution, 256)
    images = render_views(run, run.config.camera.eval_views, resolution)
    save_image_grid(run_dir / "snapshots" / f"step_{step:06d}.png", images)


def run_state(run: Run, step: int) -> dict:
    return {
        "step": step,
        "config": config_to_dict(run.config),
        "representation": run.config.representation,
        "model": run.model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in run.optimizers.items()},
        "densifier": run.densifier.state_dict() if run.densifier else None,
        "guidance": run.guidance.state_dict(),
        "rng": capture_rng_state(run.generator),
        "nonfinite_total": run.nonfinite_total,
    }


def write_checkpoint(run: Run, run_dir: Path, step: int) -> Path:
    return save_checkpoint(checkpoint_path(run_dir, step), run_state(run, step),
                           keep=run.config.output.keep_checkpoints)


def restore_run(run: Run, state: dict) -> None:
    """Load a checkpoint into freshly built components (N may differ from the init's)."""
    run.model.load_state_dict(state["model"])
    run.optimizers = run.model.make_optimizers()
    for key, optimizer in run.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][key])
    run.densifier = run.model.make_densifier(run.config.densify, run.optimizers)
    if run.densifier is not None:
        run.densifier.load_state_dict(state["densifier"])
    run.guidance.load_state_dict(state.get("guidance", {}))
    restore_rng_state(state["rng"], run.generator)
    run.step = int(state["step"])
    run.nonfinite_total = int(state.get("nonfinite_total", 0))


# --------------------------------------------------------------------------- the loop


class StopSignals:
    """SIGINT / SIGTERM become a stop request honoured between two steps, so the saved
    state is always that of a whole step; a second signal aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: Optional[str] = None
        self._previous: Dict[int, object] = {}

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: signals stay as they are
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def train(run: Run, run_dir: Path, progress: bool = True, viewer=None) -> Path:
    """Optimize from ``run.step`` to ``config.steps``; returns the exported model's path.

    ``viewer``: a ``nfsd_gs.viewer.training.TrainingViewer`` (``--viewer``) or None.
    On SIGINT/SIGTERM the current step finishes, a checkpoint and ``model.ply`` are
    written and :class:`NfsdError` says where (exit status 2 from the CLI).
    """
    from tqdm import tqdm

    c = run.config
    check_turntable_config(c)
    check_mesh_config(c)
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
                checkpoint = write_checkpoint(run, run_dir, run.step)
                model_path = run.model.export(run_dir, c.output)
                raise TrainingInterrupted(
                    f"{signals.received} at step {run.step}: saved {checkpoint} and "
                    f"{model_path}; continue with --resume {run_dir}", signals.received)
            if run.step % c.output.checkpoint_every == 0 and run.step < c.steps:
                write_checkpoint(run, run_dir, run.step)
    write_checkpoint(run, run_dir, run.step)
    model_path = run.model.export(run_dir, c.output)
    if c.output.turntable:
        write_turntable(run, run_dir)
    if c.output.mesh:
        write_mesh(run, run_dir)
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


# ---------------------------------------------------------------------- viewer, turntable, mesh
# The browser preview lives in nfsd_gs/viewer/, the video in export/video.py and the
# mesh in export/mesh.py; the functions below are all the loop knows of them.


def open_viewer(run: Run, run_dir: Path, host: Optional[str] = None,
                port: Optional[int] = None):
    """``--viewer``: start the browser preview (viser is imported only here)."""
    from dataclasses import replace

    from .viewer.training import TrainingViewer

    config = replace(run.config.viewer, host=host or run.config.viewer.host,
                     port=run.config.viewer.port if port is None else port)
    viewer = TrainingViewer(config, run.config.camera, run_dir, run.config.steps, run.step)
    print(f"viewer: {viewer.url}", file=sys.stderr, flush=True)
    return viewer


def check_turntable_config(config: Config) -> None:
    if config.output.turntable:
        from .export.video import check_output_config

        check_output_config(config.output)


def write_turntable(run: Run, run_dir: Path) -> List[Path]:
    """``turntable.mp4`` (and ``.gif`` if asked) next to the model, with the run's renderer."""
    from .export.video import write_turntable as render_and_write

    return render_and_write(run.model, run.config, run_dir / "turntable.mp4", run.device)


def check_mesh_config(config: Config) -> None:
    from .export.mesh import check_output_config

    check_output_config(config.output)


def write_mesh(run: Run, run_dir: Path) -> Path:
    """``output.mesh``: ``mesh.glb`` by marching cubes (export/mesh.py)."""
    from .export.mesh import MeshSettings, export_model_mesh

    path = run_dir / "mesh.glb"
    export_model_mesh(run.model, path, MeshSettings.from_output(run.config.output))
    return path


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nfsd_gs.train",
        description="Optimize 3D Gaussians (or a NeRF) so every view matches a text prompt, "
                    "with Noise-Free Score Distillation.",
        epilog="Overrides are dotted config keys, e.g. guidance.cfg_scale=7.5 steps=600 "
               "camera.batch_size=4 prior.model=/path/to/sd21-base, before, between or after "
               "the flags. Presets live in configs/. With --resume RUN_DIR the run keeps its "
               "prompt, config and folder: --prompt, --config and --output-root are refused, "
               "and of the overrides only steps=N (train on to step N), output.* (but "
               "output.root and output.name) and viewer.* apply.",
    )
    parser.add_argument("--config", "-c", default=None,
                        help="preset name or YAML path (default: configs/default.yaml)")
    parser.add_argument("--prompt", "-p", default=None, help="the text prompt")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue a run from its last checkpoint (from step 0 if it has "
                             "none yet); steps=N trains it on to N steps")
    parser.add_argument("--output-root", default=None, help="folder for run folders (output.root)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--viewer", action="store_true",
                        help="show the Gaussians in the browser while they train (prints a URL)")
    parser.add_argument("--viewer-host", default=None,
                        help="viewer address (viewer.host, default 127.0.0.1: this machine only)")
    parser.add_argument("--viewer-port", type=int, default=None,
                        help="viewer port (viewer.port, default 8080; the next free one if taken)")
    add_override_arguments(parser)
    return parse_command_line(parser, argv)


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: List[str] = list(args.overrides)
    if args.prompt is not None:
        overrides.append(f"prompt={json.dumps(args.prompt)}")
    if args.output_root is not None:
        overrides.append(f"output.root={json.dumps(args.output_root)}")
    return load_config(args.config or "default", overrides)


def start_run(config: Config, prior: Optional[DiffusionPrior] = None) -> tuple[Run, Path]:
    """Build everything first, then create the run folder: a failure leaves no folder behind.

    ``prior``: an already loaded prior to share (the evaluation trains many runs on one)."""
    run = build_run(config, prior=prior)
    run_dir = create_run_dir(config.output.root, config.output.name or slugify(config.prompt))
    write_text(run_dir / "config.yaml", config_to_yaml(config))
    return run, run_dir


#: What --resume can change without changing the optimization it continues: how long
#: it runs (``steps``) and how it writes and shows its outputs (``output.*``, ``viewer.*``)...
RESUME_KEYS, RESUME_SECTIONS = ("steps",), ("output.", "viewer.")
#: ... except which folder it is: the run continues where it is.
RESUME_FIXED = ("output.root", "output.name")


def check_resume_args(args: argparse.Namespace) -> None:
    """Refuse, in one line, a flag that --resume would otherwise silently ignore."""
    for flag, value in (("--prompt", args.prompt), ("--config", args.config),
                        ("--output-root", args.output_root)):
        if value is not None:
            raise NfsdError(f"--resume continues {args.resume} with its own prompt, config and "
                            f"folder: {flag} cannot change them (start a new run instead)")
    check_resume_overrides(args.overrides)


def check_resume_overrides(overrides: Sequence[str]) -> None:
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key in RESUME_FIXED or not (key in RESUME_KEYS or key.startswith(RESUME_SECTIONS)):
            raise NfsdError(f"--resume: '{override}' would change the run it continues; with "
                            f"--resume only steps=N, output.* (but output.root and output.name) "
                            f"and viewer.* apply (start a new run to change '{key}')")


def resume_run(run_dir: Path, overrides: Sequence[str] = (),
               prior: Optional[DiffusionPrior] = None) -> tuple[Run, Path]:
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
        from .formats.ply import load_ply

        load_ply(run_dir)  # a corrupt or foreign file: its one-line PlyFormatError
        raise NfsdError(f"--resume takes a run folder; to continue optimizing '{run_dir}' "
                        f"start a run from it: --prompt \"...\" init.kind=file "
                        f"init.path={run_dir}")
    if not list_checkpoints(run_dir) and (run_dir / "config.yaml").is_file():
        run = build_run(load_config(run_dir / "config.yaml", overrides), prior=prior)
        print(f"no checkpoint in {run_dir} yet: starting it again from step 0", file=sys.stderr)
    else:
        _, state = load_latest_checkpoint(run_dir)
        config = config_from_dict(state["config"], overrides)
        if config.steps < state["step"]:
            raise NfsdError(f"--resume: steps={config.steps} is below step {state['step']}, "
                            f"where the checkpoint of {run_dir} stands")
        run = build_run(config, prior=prior)
        restore_run(run, state)
    truncate_metrics(run_dir / "metrics.jsonl", run.step)
    if overrides:
        write_text(run_dir / "config.yaml", config_to_yaml(run.config))
    return run, run_dir


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    run_dir, created = None, False
    try:
        if args.resume:
            check_resume_args(args)
            run, run_dir = resume_run(Path(args.resume), args.overrides)
        else:
            run, run_dir = start_run(config_from_args(args))
            created = True
        print(f"run folder: {run_dir}", file=sys.stderr)
        viewer = open_viewer(run, run_dir, args.viewer_host, args.viewer_port) if args.viewer else None
        try:
            model_path = train(run, run_dir, progress=not args.no_progress, viewer=viewer)
        finally:
            if viewer is not None:
                viewer.close()
    except NfsdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the loop, after it, or a second Ctrl-C inside it
        print(f"interrupted: {after_interrupt(run_dir, created)}", file=sys.stderr)
        return 130
    try:
        report_finished(run, run_dir, model_path, time.perf_counter() - started)
    except KeyboardInterrupt:  # while judging: the run itself is complete
        print(f"interrupted: the run is complete in {run_dir}", file=sys.stderr)
        return 130
    return 0


def after_interrupt(run_dir: Optional[Path], created: bool) -> str:
    """Tidy up after a KeyboardInterrupt the loop did not turn into a checkpoint, and say
    what is left.  A folder this command created that holds no checkpoint is removed:
    nothing in it could be continued."""
    if run_dir is None:
        return "before the run started; nothing was written"
    checkpoints = list_checkpoints(run_dir)
    if checkpoints:
        return f"continue from {checkpoints[-1].name} with --resume {run_dir}"
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return f"stopped before the first checkpoint; removed {run_dir}"
    return f"{run_dir} has no checkpoint yet; --resume {run_dir} starts it again from step 0"


#: The run folder's main files, in the order the end-of-run report lists them.
RESULT_FILES = {"model.ply": "model", "mesh.glb": "mesh", "mesh.ply": "mesh",
                "mesh.obj": "mesh (OBJ)", "turntable.mp4": "turntable",
                "turntable.gif": "turntable (GIF)"}
#: The prior whose world the bundled judge knows (``nfsd_gs.score``).
JUDGED_PRIOR = "bundled:shapes"


def report_finished(run: Run, run_dir: Path, model_path: Path, seconds: float) -> None:
    """The end of a run, on stderr: time, main files, the judge's verdict (bundled prior),
    and the command that opens the viewer."""
    files = [model_path] + [run_dir / name for name in RESULT_FILES
                            if (run_dir / name).is_file() and run_dir / name != model_path]
    lines = [f"done in {format_duration(seconds)}: {run_dir}"]
    lines += [f"  {RESULT_FILES.get(path.name, 'result'):<16} {path}" for path in files]
    verdict = judge_verdict(run, run_dir)
    if verdict:
        lines.append(f"  {'judge':<16} {verdict}")
    if (run_dir / "model.ply").is_file():
        lines.append(f"  {'open the viewer':<16} python -m nfsd_gs.view "
                     f"{shlex.quote(str(run_dir / 'model.ply'))}")
    print("\n".join(lines), file=sys.stderr)


def judge_verdict(run: Run, run_dir: Path) -> Optional[str]:
    """What the bundled judge calls 8 views of ``model.ply``, for runs of the bundled prior."""
    if run.config.prior.model != JUDGED_PRIOR or not (run_dir / "model.ply").is_file():
        return None
    from .score import score_run  # the one place the trainer calls the judge

    try:
        scores = score_run(run_dir, against_truth=False)  # the verdict needs no alignment
    except NfsdError as err:
        return f"not judged ({err})"
    judged = scores["judged"]
    name, count = Counter(judged).most_common(1)[0]
    return (f'{count}/{len(judged)} views look like "{name}" (shape right in '
            f'{scores["shape_acc"]:.0%}, colour in {scores["colour_acc"]:.0%})')


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


if __name__ == "__main__":
    sys.exit(main())

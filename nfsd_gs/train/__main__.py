"""Text to 3D: optimize a representation with Noise-Free Score Distillation.

``python -m nfsd_gs.train --prompt "a red cone"`` (``--help`` for the rest). The command
line only: the trainer is the library in this package (``run``, ``step``, ``loop``,
``resume``, ``outputs``), the verdict at the end is ``nfsd_gs.score``'s judge.
"""

from __future__ import annotations

if __name__ == "__main__":  # before torch's imports (seconds): Ctrl-C there ends in one line
    from nfsd_gs.cli import quiet_keyboard_interrupt

    quiet_keyboard_interrupt()

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..checkpoint import list_checkpoints
from ..cli import add_override_arguments, fail, parse_command_line
from ..config import resolve_config
from ..errors import NfsdError, TrainingInterrupted
from .loop import train
from .outputs import open_viewer
from .resume import check_resume_overrides, resume_run
from .run import Run, start_run


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


def check_resume_args(args: argparse.Namespace) -> None:
    """Refuse, in one line, a flag that --resume would otherwise silently ignore."""
    for flag, value in (("--prompt", args.prompt), ("--config", args.config),
                        ("--output-root", args.output_root)):
        if value is not None:
            raise NfsdError(f"--resume continues {args.resume} with its own prompt, config and "
                            f"folder: {flag} cannot change them (start a new run instead)")
    check_resume_overrides(args.overrides)


def main(argv: Optional[Sequence[str]] = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    run_dir, created = None, False
    try:
        if args.resume:
            check_resume_args(args)
            run, run_dir = resume_run(Path(args.resume), args.overrides)
        else:
            config = resolve_config(args.config, args.prompt, args.overrides,
                                    output_root=args.output_root)
            run, run_dir = start_run(config)
            created = True
        print(f"run folder: {run_dir}", file=sys.stderr)
        viewer = open_viewer(run, run_dir, args.viewer_host, args.viewer_port) if args.viewer else None
        try:
            model_path = train(run, run_dir, progress=not args.no_progress, viewer=viewer)
        finally:
            if viewer is not None:
                viewer.close()
    except TrainingInterrupted as stop:  # a deliberate stop, saved: no error
        print(stop, file=sys.stderr)
        return 2
    except NfsdError as err:
        return fail(err)
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


def report_finished(run: Run, run_dir: Path, model_path: Path, seconds: float) -> None:
    """The end of a run, on stderr: time, main files, the judge's verdict (bundled prior),
    and the command that opens the viewer."""
    files = [model_path] + [run_dir / name for name in RESULT_FILES
                            if (run_dir / name).is_file() and run_dir / name != model_path]
    lines = [f"done in {format_duration(seconds)}: {run_dir}"]
    lines += [f"  {RESULT_FILES.get(path.name, 'result'):<16} {path}" for path in files]
    verdict = judge_verdict(run)
    if verdict:
        lines.append(f"  {'judge':<16} {verdict}")
    if (run_dir / "model.ply").is_file():
        lines.append(f"  {'open the viewer':<16} python -m nfsd_gs.view "
                     f"{shlex.quote(str(run_dir / 'model.ply'))}")
    print("\n".join(lines), file=sys.stderr)


def judge_verdict(run: Run) -> Optional[str]:
    """What the judge calls 8 views of the trained model (the one judge, in memory) against
    what the prompt asked, for runs of the prior whose world it knows; None for other priors."""
    from ..score import WorldJudge, judges, verdict_line
    from ..shapeworld import parse_prompt

    if not judges(run.config):
        return None
    try:  # the verdict needs no alignment to the ground truth
        scores = WorldJudge(device=run.device).score(run.model, run.config,
                                                     against_truth=False).scores
    except NfsdError as err:
        return f"not judged ({err})"
    return verdict_line(parse_prompt(run.config.prompt), scores["verdicts"])


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


if __name__ == "__main__":
    sys.exit(main())

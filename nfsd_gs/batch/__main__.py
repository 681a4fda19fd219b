"""``python -m nfsd_gs.batch PROMPTS [--config C] [KEY=VALUE ...]``: a catalogue of assets.

Every line of PROMPTS (see :mod:`nfsd_gs.batch.catalogue`) becomes one run folder under
the output root, made by the trainer's library (``nfsd_gs.train``) in a Ray worker that keeps
its diffusion prior loaded and trains ``--assets-per-worker`` lines at once (one U-Net call
per step for all of them); ``manifest.jsonl`` beside them records each line. Running the
same command again skips what is done and continues what was interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..cli import add_threads_argument, fail, parse_command_line
from ..config import config_signature, load_config
from ..errors import ConfigError, NfsdError
from ..train.run import run_folder
from ..utils.io import make_folder
from .catalogue import (MANIFEST_NAME, Defaults, Line, line_config,
                        read_catalogue, request_signature)
from .cluster import DEFAULT_ASSETS_CPU, DEFAULT_ASSETS_GPU
from .manifest import Manifest, Row, invocation_summary, summary_table
from .scheduler import Job, Scheduler

#: Worker processes per GPU when --per-gpu is not given (see BENCHMARKS.md, "Catalogue").
DEFAULT_PER_GPU = 4


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nfsd_gs.batch",
        description="Make one asset per line of PROMPTS (text: one prompt a line, # comments; "
                    "or JSON lines {\"prompt\", \"seed\", \"name\", \"overrides\"}) on Ray: "
                    "in this process by default, or on a cluster with --address.",
        epilog="Overrides are dotted config keys applied to every line, as in nfsd_gs.train. "
               "Run the same command again to continue an interrupted catalogue.")
    parser.add_argument("prompts", type=Path, metavar="PROMPTS")
    parser.add_argument("--config", "-c", default=None,
                        help="preset name or YAML path (default: configs/default.yaml)")
    parser.add_argument("--output-root", type=Path, default=None,
                        help="folder for the run folders and manifest.jsonl "
                             "(default: <output.root>/<PROMPTS file name>)")
    parser.add_argument("--address", default=None,
                        help="join a Ray cluster: auto (this machine's) or ray://host:port; "
                             "default: start Ray in this process")
    parser.add_argument("--per-gpu", type=int, default=DEFAULT_PER_GPU,
                        help=f"worker processes on each GPU (default {DEFAULT_PER_GPU})")
    parser.add_argument("--assets-per-worker", type=int, default=None, metavar="M",
                        help="assets each worker trains at once, one U-Net call per step for "
                             f"all of them (default {DEFAULT_ASSETS_GPU} with a GPU, "
                             f"{DEFAULT_ASSETS_CPU} without)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="use this many GPUs (default: all the cluster has)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: per-gpu x GPUs, or one per CPU "
                             "without a GPU)")
    parser.add_argument("--max-retries", type=int, default=2,
                        help="retries of an asset whose worker process died (default 2)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="also make again the lines that failed in an earlier invocation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_argument(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides for every line")
    return parse_command_line(parser, argv)


def check_args(args: argparse.Namespace) -> None:
    for flag, value, low in (("--per-gpu", args.per_gpu, 1), ("--workers", args.workers, 1),
                             ("--assets-per-worker", args.assets_per_worker, 1),
                             ("--gpus", args.gpus, 0), ("--max-retries", args.max_retries, 0)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} {value} must be >= {low}")


def output_root(args: argparse.Namespace) -> Path:
    """``--output-root``, else ``<output.root>/<PROMPTS stem>`` (the overrides are checked here,
    before any work)."""
    base = load_config(args.config or "default", args.overrides)
    return args.output_root or Path(base.output.root) / args.prompts.stem


def plan_lines(lines: Sequence[Line], defaults: Defaults, earlier: Manifest,
               retry_failed: bool) -> Tuple[Manifest, List[Job]]:
    """The manifest of this invocation and the lines to (re)make.

    A line is skipped when an earlier invocation finished it (done, or failed unless
    ``retry_failed``), it asks for the same thing and (if done) its run folder is still
    there; a line whose config cannot be resolved (a bad per-line override) fails here,
    with the config's message."""
    manifest, jobs = Manifest(defaults.root / MANIFEST_NAME), []
    for line in lines:
        row = Row(line.number, line.name, line.prompt, line.seed)
        try:
            config = line_config(line, defaults)
        except NfsdError as err:
            row.signature = request_signature(line, defaults)
            row.status, row.error = "failed", str(err)
            manifest.rows[line.name] = row
            continue
        row.run_dir = str(run_folder(config))
        row.seed, row.signature = config.seed, config_signature(config)
        before = earlier.rows.get(line.name)
        finished = ("done", "failed") if not retry_failed else ("done",)
        if (before is not None and before.signature == row.signature and before.status in finished
                and (before.status == "failed" or Path(before.run_dir).is_dir())):
            before.line = line.number
            manifest.rows[line.name] = before
            continue
        manifest.rows[line.name] = row
        jobs.append(Job(line, config, row))
    for name, row in earlier.rows.items():  # lines no longer in PROMPTS: their record stays
        manifest.rows.setdefault(name, row)
    return manifest, jobs


def plan_summary(lines: Sequence[Line], jobs: Sequence[Job], manifest: Manifest) -> str:
    """What this invocation does with the PROMPTS lines, in counts that add up to them:
    ``1 to make, 1 done earlier, 1 bad (failed before starting: see the end)``."""
    making = {job.line.name for job in jobs}
    others = [manifest.rows[line.name] for line in lines if line.name not in making]
    bad = sum(row.status == "failed" and not row.run_dir for row in others)
    done = sum(row.status == "done" for row in others)
    failed = len(others) - bad - done  # failed in an earlier invocation, line unchanged
    parts = [f"{len(making)} to make"] if making else []
    parts += [f"{done} done earlier"] if done else []
    parts += [f"{failed} failed earlier (--retry-failed makes them again)"] if failed else []
    parts += [f"{bad} bad (failed before starting: see the end)"] if bad else []
    return ", ".join(parts)


def run_catalogue(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..utils.signals import StopSignals
    from .cluster import connect, plan_workers, start_stop_broadcast, start_workers

    check_args(args)
    lines = read_catalogue(args.prompts)
    defaults = Defaults(args.config, tuple(args.overrides), output_root(args))
    earlier = Manifest.read(defaults.root / MANIFEST_NAME)
    manifest, jobs = plan_lines(lines, defaults, earlier, args.retry_failed)
    if not jobs:
        manifest.write()
        print(summary_table(manifest.rows.values()))
        print(f"nothing to do: all {len(lines)} lines are finished "
              f"({plan_summary(lines, jobs, manifest)}; {defaults.root / MANIFEST_NAME})",
              file=sys.stderr)
        return 1 if manifest.count("failed") else 0

    import ray

    connect(args.address)
    try:
        plan = plan_workers(ray.cluster_resources(), args.per_gpu, args.workers, args.gpus,
                            args.assets_per_worker)
        print(f"{len(lines)} line{'s' if len(lines) != 1 else ''}: "
              f"{plan_summary(lines, jobs, manifest)}; {plan.describe()}; "
              f"writing {defaults.root}", file=sys.stderr, flush=True)
        make_folder(defaults.root)
        manifest.write()
        stopper, stopper_name = start_stop_broadcast()
        actors = start_workers(plan, stopper_name, args.threads)
        start = time.perf_counter()
        with StopSignals() as stop, tqdm(total=len(jobs), desc="catalogue", unit="asset",
                                         dynamic_ncols=True, disable=args.no_progress) as bar:
            scheduler = Scheduler(jobs, manifest, actors, stopper, args.max_retries, bar,
                                  slots=plan.assets)
            try:
                scheduler.run(stop)
            except KeyboardInterrupt:  # a second Ctrl-C: no waiting for the workers
                stop.received = "a second signal"
            finally:
                manifest.finish_unfinished()
                manifest.write()
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    print(summary_table(manifest.rows.values()))
    print(invocation_summary(len(jobs), scheduler.made, scheduler.failed, wall))
    if scheduler.no_workers:
        return fail(f"{scheduler.no_workers}; {manifest.count('skipped')} lines not made "
                    f"(is nfsd_gs installed where Ray runs its workers?)")
    if stop.received:  # a deliberate stop, saved: no error (status 2: not finished)
        how = "Ctrl-C" if stop.received == "SIGINT" else stop.received
        print(f"stopped ({how}): {manifest.count('skipped')} lines not finished (saved at their "
              f"last checkpoint); run the same command again to continue", file=sys.stderr)
        return 2
    return 1 if manifest.count("failed") else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run_catalogue(args)
    except NfsdError as err:
        return fail(err)
    except KeyboardInterrupt:  # while Ray was starting: no asset had begun
        fail("interrupted while starting; run the same command again")
        return 130


if __name__ == "__main__":
    sys.exit(main())

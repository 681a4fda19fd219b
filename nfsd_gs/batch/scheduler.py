"""The driver's loop: hand lines to free worker slots, record every result, retry the lines
whose worker died, and stop cleanly on Ctrl-C.

A worker has ``slots`` (``--assets-per-worker``): it trains that many lines at once, each
one Ray call (:mod:`nfsd_gs.batch.worker`). When its process dies, every line it was making
goes back to the queue (from its last checkpoint) and its slots return once Ray has
restarted it (an ``epoch`` tells that death's failed calls from a later death's).

Only scheduling, retrying and recording happen here; every asset is made by a worker
through the trainer.
"""

from __future__ import annotations

import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

from ..config import Config
from .catalogue import Line
from .manifest import Manifest, Row

#: A worker whose process cannot be reached this many times in a row is given up.
MAX_UNREACHABLE = 30
#: Seconds between two attempts to reach a worker Ray is restarting.
RETRY_DELAY_S = 1.0


def cause(err: Exception) -> str:
    """One line of a worker's death: the Python error it ended with (a worker that cannot
    import nfsd_gs, say), else Ray's first line (killed, out of memory...)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]+(Error|Exception): ", line)]
    first = next((line for line in lines if line), type(err).__name__)
    return (errors[-1] if errors else first)[:200]


@dataclass
class Job:
    line: Line
    config: Config
    row: Row


class Scheduler:
    """Runs ``jobs`` on ``actors``; ``stop`` is a :class:`nfsd_gs.utils.signals.StopSignals`."""

    def __init__(self, jobs: List[Job], manifest: Manifest, actors: List, stopper,
                 max_retries: int, bar, slots: int = 1):
        self.queue: Deque[Job] = deque(jobs)
        self.manifest = manifest
        self.stopper = stopper
        self.max_retries = max_retries
        self.bar = bar
        self.slots = slots  # lines each worker makes at once
        self.idle: List[int] = []  # actor indices, once per free slot
        self.actors = actors
        self.where: Dict[int, str] = {}
        self.unreachable: Dict[int, int] = {i: 0 for i in range(len(actors))}
        self.epoch: Dict[int, int] = {i: 0 for i in range(len(actors))}  # deaths seen
        #: ref -> (actor, the job or None for a ``where`` call, the actor's epoch at submission)
        self.flight: Dict[object, Tuple[int, Optional[Job], int]] = {}
        self.later: List[Tuple[float, int]] = []  # (time, actor): reach it again then
        self.made = 0  # lines of this invocation done ...
        self.failed = 0  # ... and failed: together the bar's count
        self.start = time.perf_counter()
        self.last_death = ""
        self.no_workers: Optional[str] = None  # why lines were left with no worker to make them

    # ----------------------------------------------------------------- the loop

    def run(self, stop) -> None:
        import ray

        for index in range(len(self.actors)):
            self._reach(index)
        forwarded = False
        self.start = time.perf_counter()
        while True:
            if stop.received and not forwarded:
                forwarded = True
                print(f"\n{stop.received}: stopping; running assets save their checkpoint "
                      f"(again to abort)", file=sys.stderr, flush=True)
                self.stopper.stop.remote()
            now = time.monotonic()
            for due, index in [item for item in self.later if item[0] <= now]:
                self.later.remove((due, index))
                self._reach(index)
            while self.idle and self.queue and not stop.received:
                self._submit(self._free_slot(), self.queue.popleft())
            working = any(job is not None for _, job, _ in self.flight.values())
            alive = bool(self.idle or self.flight or self.later)
            if not working and (stop.received or not self.queue or not alive):
                break
            if not self.flight:  # every worker is being restarted
                time.sleep(0.25)
                continue
            ready, _ = ray.wait(list(self.flight), num_returns=1, timeout=0.25)
            for ref in ready:
                self._collect(ref, stop)
            self._show()
        if self.queue and not stop.received:  # lines left without a stop: no worker is left
            self.no_workers = f"every worker process died ({self.last_death})"
            for job in self.queue:
                job.row.status = "skipped"
                job.row.error = f"not made: {self.no_workers}"

    def _free_slot(self) -> int:
        """A free slot of the worker with the most of them (lines spread over the workers)."""
        index = max(sorted(set(self.idle)), key=self.idle.count)
        self.idle.remove(index)
        return index

    def _reach(self, index: int) -> None:
        """Ask a worker where it runs: the answer also says that it is (again) ready."""
        self.flight[self.actors[index].where.remote()] = (index, None, self.epoch[index])

    def _submit(self, index: int, job: Job) -> None:
        row = job.row
        row.status, row.attempts, row.worker = "running", row.attempts + 1, self.where.get(index)
        ref = self.actors[index].make.remote(job.config)
        self.flight[ref] = (index, job, self.epoch[index])
        self.manifest.write()

    def _collect(self, ref, stop) -> None:
        import ray
        from ray.exceptions import RayActorError

        index, job, epoch = self.flight.pop(ref)
        try:
            value = ray.get(ref)
        except RayActorError as err:
            self._worker_died(index, job, epoch, err, stop)
            return
        self.unreachable[index] = 0
        if job is None:  # (re)started: all its slots are free
            self.where[index] = value
            self.idle.extend([index] * self.slots)
            return
        self.idle.append(index)
        self._record(job.row, value)

    def _record(self, row: Row, result: dict) -> None:
        row.seconds = (row.seconds or 0.0) + result["seconds"]
        row.worker = result.get("worker", row.worker)
        row.start_step = result.get("start_step", row.start_step)
        row.end_step = result.get("end_step")
        row.peak_mem_mib = result.get("peak_mem_mib")
        row.error = result.get("error")
        if result["status"] == "stopped":
            row.status = "skipped"
        else:
            row.status = result["status"]
            row.num_gaussians = result.get("num_gaussians")
            row.score = result.get("score")
            self._finished(row.status)
        self.manifest.write()

    def _worker_died(self, index: int, job: Optional[Job], epoch: int, err: Exception,
                     stop) -> None:
        """Ray restarts the actor; each line it was making goes back to the queue (from its
        checkpoint) until it has had ``max_retries`` retries. The first failed call of a
        death takes the worker's free slots away and awaits its restart; the others of the
        same death (same ``epoch``) only requeue their line."""
        self.last_death = cause(err)
        never_started = getattr(err, "actor_init_failed", False)  # Ray does not restart those
        if epoch == self.epoch[index]:  # news of this death
            self.epoch[index] += 1
            self.unreachable[index] += 1
            self.idle = [i for i in self.idle if i != index]
            if self.unreachable[index] < MAX_UNREACHABLE and not never_started:
                self.later.append((time.monotonic() + RETRY_DELAY_S, index))  # Ray restarts it
        if job is None:
            return
        row = job.row
        if never_started:  # the line never reached a trainer: not an attempt
            row.attempts -= 1
            row.status = "pending"
            self.queue.appendleft(job)
            return
        died = f"its worker process ({row.worker}) died ({type(err).__name__}: {self.last_death})"
        row.retried = "; ".join(filter(None, [row.retried, f"attempt {row.attempts}: {died}"]))
        if stop.received:
            row.status, row.error = "skipped", f"{died}; the same command continues it"
        elif row.attempts <= self.max_retries:
            row.status, row.error = "pending", f"{died}; retrying from its last checkpoint"
            self.queue.appendleft(job)
        else:
            row.status = "failed"
            row.error = f"{died} on each of {row.attempts} attempts (--max-retries {self.max_retries})"
            self._finished("failed")
        self.manifest.write()

    def _finished(self, status: str) -> None:
        """A line of this invocation is done or failed: count it, then tick the bar, so the
        bar's count always equals the done and failed it shows."""
        self.made += status == "done"
        self.failed += status == "failed"
        self._show()
        self.bar.update(1)  # draws the bar with that postfix

    def _show(self, refresh: bool = False) -> None:
        """The bar's postfix: this invocation's lines (not the manifest's earlier ones)."""
        hours = (time.perf_counter() - self.start) / 3600.0
        running = sum(job is not None for _, job, _ in self.flight.values())
        self.bar.set_postfix_str(
            f"done {self.made} failed {self.failed} running {running} | "
            f"{self.made / max(hours, 1e-9):.0f} assets/h", refresh=refresh)

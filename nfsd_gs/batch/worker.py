"""A catalogue worker: one Ray actor per process, holding its diffusion prior loaded.

The actor trains up to ``assets`` lines at once in one pool of the trainer's library
(:class:`nfsd_gs.train.batched.AssetPool`: ONE U-Net call per step for all of them, each
asset with its own run, RNG streams, folder and checkpoints): ``open_run`` (continue the
line's run folder from its checkpoint, or start afresh in it), the pool's steps, and the
one judge (:class:`nfsd_gs.score.WorldJudge`, the evaluation's) on the model in memory;
it only reports what happened.

Ray calls :meth:`AssetTrainer.make` once per line and up to ``assets`` calls run at once
(a threaded actor): each call hands its line to the pool, which one engine thread drives,
and returns the line's result when the asset leaves the pool (done, failed or stopped), so
the driver sees ``assets`` slots per worker and keeps them full. A stop (Ctrl-C on the
driver) reaches the actor through :class:`StopBroadcast`, on any host: every live asset
finishes its step and writes a checkpoint and ``model.ply`` (the trainer's stop path), and
lines not started yet come back ``stopped``.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import Deque, Dict, Optional

import torch

from ..config import Config
from ..errors import NfsdError, error_summary
from ..guidance.prior import PriorCache
from ..utils.device import resolve_device


class StopBroadcast:
    """A tiny async Ray actor: every worker waits on :meth:`wait`; the driver calls
    :meth:`stop` once and they all return."""

    def __init__(self):
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def stop(self) -> None:
        self._event.set()


class _Line:
    """One :meth:`AssetTrainer.make` call: its result, filled in by the engine thread."""

    def __init__(self, config: Config, worker: str):
        self.config = config
        self.result: Dict = {"status": "failed", "error": None, "worker": worker}
        self.done = threading.Event()


class AssetTrainer:
    """The actor. :meth:`make` trains one line and returns a result dict (never raises for
    a bad line: the error is in the result); the process dying is Ray's to report.

    ``assets``: lines trained at once in this process (``--assets-per-worker``)."""

    def __init__(self, stopper_name: Optional[str] = None, judging=None,
                 threads: Optional[int] = None, assets: int = 1):
        from ..score import JudgeSettings

        if threads is not None:  # the catalogue's --threads, in each worker process
            torch.set_num_threads(threads)
        self.assets = assets
        self.priors = PriorCache()  # each prior is loaded once per process
        self.judging = judging or JudgeSettings()  # the evaluation's, unless a test asks
        self.judges: Dict[str, object] = {}  # one WorldJudge per device (its caches)
        self.stop_requested: Optional[str] = None  # read by the engine between two steps
        self.inbox: "queue.Queue[_Line]" = queue.Queue()
        self._engine: Optional[threading.Thread] = None
        self._engine_lock = threading.Lock()
        if stopper_name is not None:
            threading.Thread(target=self._await_stop, args=(stopper_name,), daemon=True).start()

    def where(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def _await_stop(self, stopper_name: str) -> None:
        import ray

        try:
            ray.get(ray.get_actor(stopper_name).wait.remote())
        except Exception:  # noqa: BLE001 -- the driver went away: nothing to forward
            return
        self.stop_requested = "SIGINT"  # the driver's Ctrl-C (or SIGTERM), forwarded

    def make(self, config: Config) -> dict:
        """Train (or continue) one line's run in its folder, in this worker's pool, and
        judge it. Returns ``status`` (done / failed / stopped), ``error``, ``seconds``,
        ``num_gaussians``, ``score``, ``start_step``, ``end_step``, ``worker`` and ``peak_mem_mib``."""
        start = time.perf_counter()
        line = _Line(config, self.where())
        with self._engine_lock:
            if self._engine is None or not self._engine.is_alive():
                self._engine = threading.Thread(target=self._drive, daemon=True,
                                                name="nfsd-asset-pool")
                self._engine.start()
        self.inbox.put(line)
        line.done.wait()
        line.result["seconds"] = time.perf_counter() - start
        return line.result

    # ----------------------------------------------------------------- the engine thread

    def _drive(self) -> None:
        """The pool's loop: take lines in, step, report those that left; wait when idle."""
        from ..train.batched import AssetPool

        pool, waiting = AssetPool(self.assets), deque()
        lines: Dict[int, _Line] = {}
        try:
            while True:
                self._take_lines(waiting, lines, block=not pool.live and not waiting)
                if self.stop_requested is not None:
                    while waiting:
                        self._report(lines, waiting.popleft().key, None)
                for outcome in pool.fill(waiting):
                    self._report(lines, outcome.asset.key, outcome)
                if pool.live:
                    for outcome in pool.step(self.stop_requested):
                        self._report(lines, outcome.asset.key, outcome)
        except BaseException as err:  # noqa: BLE001 -- a bug here must not leave calls waiting
            for line in lines.values():
                line.result["error"] = f"the worker's asset pool failed: {describe(err)}"
                line.done.set()

    def _take_lines(self, waiting: Deque, lines: Dict[int, _Line], block: bool) -> None:
        from ..train.batched import Asset
        from ..train.resume import open_run

        while True:
            try:
                line = self.inbox.get(block=block)
            except queue.Empty:
                return
            block = False
            config = line.config

            def open_line(config=config):
                return open_run(config, self.priors.get(config, resolve_device(config.device)))

            lines[id(line)] = line
            waiting.append(Asset(config, open_line, key=line))

    def _report(self, lines: Dict[int, _Line], line: _Line, outcome) -> None:
        """Fill ``line``'s result from the pool's ``outcome`` (None: never started, stopped)
        and release its :meth:`make` call."""
        lines.pop(id(line), None)
        try:
            self._fill(line.result, line.config, outcome)
        except Exception as err:  # noqa: BLE001 -- judging failed: this line only
            line.result.update(status="failed", error=describe(err))
        finally:
            line.done.set()

    def _fill(self, result: dict, config: Config, outcome) -> None:
        from ..train.batched import DONE, STOPPED

        if outcome is None or (outcome.status == STOPPED and outcome.run is None):
            result.update(status="stopped",
                          error="stopped before its first step here; the same command continues it")
            return
        result["start_step"] = outcome.start_step
        result["peak_mem_mib"] = outcome.peak_mem_mib
        if outcome.status in (STOPPED, DONE):
            result["end_step"] = outcome.run.step
        if outcome.status == STOPPED:
            result.update(status="stopped", error=f"stopped at step {outcome.run.step}: its "
                                                  f"checkpoint is saved and the same command "
                                                  f"continues it")
        elif outcome.status == DONE:
            run = outcome.run
            result.update(status="done", num_gaussians=run.model.num_primitives,
                          score=self._score(run.model, config, run.device, result))
        else:
            result["error"] = describe(outcome.error)

    def _score(self, model, config: Config, device: torch.device,
               result: dict) -> Optional[dict]:
        """The one judge's numbers for the finished model (None unless the run is of the prior
        whose world the judge knows)."""
        from ..score import WorldJudge, judges

        if not judges(config):
            return None
        if str(device) not in self.judges:
            self.judges[str(device)] = WorldJudge(settings=self.judging, device=device)
        judge = self.judges[str(device)]
        try:
            return judge.score(model, config).numbers()
        except NfsdError as err:  # the asset is made; only its verdict is missing
            result["error"] = f"not judged: {err}"
            return None


def describe(err: BaseException) -> str:
    """A failed line's error: a user's error as its message, a bug or a CUDA error as its
    type and first line (the whole story goes to the worker's log)."""
    if isinstance(err, NfsdError):
        return str(err)
    traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    return error_summary(err)

"""A catalogue worker: one Ray actor per process, holding its diffusion prior loaded.

The actor makes one asset after another through the trainer's library: ``open_run``
(continue the line's run folder from its checkpoint, or start afresh in it), ``train``,
and the one judge (:class:`nfsd_gs.score.WorldJudge`, the evaluation's) on the model in
memory; it only reports what happened.  A stop (Ctrl-C on the driver) reaches the actor
through :class:`StopBroadcast`, on any host, and becomes a SIGTERM to its own process: the
trainer's stop path (the current step finishes, a checkpoint and ``model.ply`` are written).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Dict, Optional

import torch

from ..config import Config
from ..errors import NfsdError, TrainingInterrupted
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


class AssetTrainer:
    """The actor. :meth:`make` trains one line and returns a result dict (never raises for
    a bad line: the error is in the result); the process dying is Ray's to report."""

    def __init__(self, stopper_name: Optional[str] = None, judging=None,
                 threads: Optional[int] = None):
        from ..score import JudgeSettings

        if threads is not None:  # the catalogue's --threads, in each worker process
            torch.set_num_threads(threads)
        self.priors = PriorCache()  # each prior is loaded once per process
        self.judging = judging or JudgeSettings()  # the evaluation's, unless a test asks
        self.judges: Dict[str, object] = {}  # one WorldJudge per device (its caches)
        self.training = False
        self.stop_requested = False
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
        self.stop_requested = True
        if self.training:  # the trainer's StopSignals handle it between two steps
            os.kill(os.getpid(), signal.SIGTERM)

    def make(self, config: Config) -> dict:
        """Train (or continue) one line's run in its folder and judge it.

        Returns ``status`` (done / failed / stopped), ``error``, ``seconds``,
        ``num_gaussians``, ``score``, ``start_step``, ``worker`` and ``peak_mem_mib``."""
        start = time.perf_counter()
        result = {"status": "failed", "error": None, "worker": self.where()}
        try:
            self._make(config, result)
        except NfsdError as err:
            result["error"] = str(err)
        except Exception as err:  # noqa: BLE001 -- a bug or a CUDA error fails this line only
            traceback.print_exc(file=sys.stderr)  # the whole story goes to the worker's log
            first = str(err).splitlines()[0] if str(err) else ""
            result["error"] = f"{type(err).__name__}: {first}"
        finally:
            self.training = False
        result["seconds"] = time.perf_counter() - start
        return result

    def _make(self, config: Config, result: dict) -> None:
        from ..train.loop import train
        from ..train.resume import open_run

        device = resolve_device(config.device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run, path = open_run(config, self.priors.get(config, device))
        result["start_step"] = run.step
        self.training = True
        if self.stop_requested:
            result.update(status="stopped",
                          error="stopped before its first step here; the same command continues it")
            return
        try:
            train(run, path, progress=False)
        except TrainingInterrupted:
            result.update(status="stopped", error=f"stopped at step {run.step}: its checkpoint "
                                                  f"is saved and the same command continues it")
            return
        self.training = False
        result.update(status="done", num_gaussians=run.model.num_primitives,
                      score=self._score(run.model, config, device, result))
        if device.type == "cuda":
            result["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20

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

"""A catalogue worker: one Ray actor per process, holding its diffusion prior loaded.

The actor makes one asset after another through the trainer (``nfsd_gs.train``'s
:func:`start_run` / :func:`resume_run` and :func:`train`); it only decides whether a line's
run folder continues from its checkpoint or starts afresh, and reports what happened.
A stop (Ctrl-C on the driver) reaches the actor through :class:`StopBroadcast`, on any host,
and becomes a SIGTERM to its own process: the trainer's stop path (the current step
finishes, a checkpoint and ``model.ply`` are written).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional, Tuple

import torch

from ..checkpoint import list_checkpoints
from ..config import Config, config_signature, load_config
from ..guidance.prior import PriorCache
from ..errors import NfsdError, TrainingInterrupted


class StopBroadcast:
    """A tiny async Ray actor: every worker waits on :meth:`wait`; the driver calls
    :meth:`stop` once and they all return."""

    def __init__(self):
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def stop(self) -> None:
        self._event.set()


def judge_scores(config: Config, run_dir: Path) -> Optional[dict]:
    """The bundled judge's verdict on a finished run (``nfsd_gs.score``); None unless the prior
    is the bundled one, whose world the judge knows."""
    if not config.prior.model.startswith("bundled:") or config.representation != "gaussians":
        return None
    from ..score import score_run

    scores = score_run(run_dir)
    return {key: value for key, value in scores.items() if isinstance(value, (int, float))}


def open_run(config: Config, run_dir: Path, prior) -> Tuple[object, Path]:
    """The line's run: continued from its newest checkpoint, or started afresh in ``run_dir``
    (a folder without a checkpoint holds no saved step and is replaced)."""
    from ..train import resume_run, start_run

    if list_checkpoints(run_dir):
        saved = load_config(run_dir / "config.yaml")
        if config_signature(saved) != config_signature(config):
            raise NfsdError(f"run folder '{run_dir}' holds a run with another config (prompt "
                            f"'{saved.prompt}', seed {saved.seed}); delete it or give this "
                            f"line another \"name\"")
        return resume_run(run_dir, (), prior=prior)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run, made = start_run(config, prior=prior)
    if made.resolve() != run_dir.resolve():  # another process took the name meanwhile
        raise NfsdError(f"run folder '{run_dir}' appeared while starting; wrote '{made}' instead")
    return run, made


class AssetTrainer:
    """The actor. :meth:`make` trains one line and returns a result dict (never raises for
    a bad line: the error is in the result); the process dying is Ray's to report."""

    def __init__(self, stopper_name: Optional[str] = None):
        self.priors = PriorCache()  # each prior is loaded once per process
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

    def make(self, config: Config, run_dir: str) -> dict:
        """Train (or continue) one line's run in ``run_dir`` and judge it.

        Returns ``status`` (done / failed / stopped), ``error``, ``seconds``,
        ``num_gaussians``, ``score``, ``start_step``, ``worker`` and ``peak_mem_mib``."""
        start = time.perf_counter()
        result = {"status": "failed", "error": None, "worker": self.where()}
        try:
            self._make(config, Path(run_dir), result)
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

    def _make(self, config: Config, run_dir: Path, result: dict) -> None:
        from ..train import resolve_device, train

        device = resolve_device(config.device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run, path = open_run(config, run_dir, self.priors.get(config, device))
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
                      score=self._score(config, path, result))
        if device.type == "cuda":
            result["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20

    @staticmethod
    def _score(config: Config, run_dir: Path, result: dict) -> Optional[dict]:
        try:
            return judge_scores(config, run_dir)
        except NfsdError as err:  # the asset is made; only its verdict is missing
            result["error"] = f"not judged: {err}"
            return None

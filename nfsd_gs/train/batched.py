"""Several assets in one process, ONE U-Net call per training step (issue 24).

An :class:`AssetPool` holds up to ``capacity`` live assets that share one loaded prior.
Each keeps everything it would have alone: its run (representation, optimizers,
densifier, guidance and its schedule, camera generator), its own stream of torch's global
generators (``Run.own_rng``: the guidance's t and noise, densification, NeRF samples), its
folder, checkpoints and log (:class:`~nfsd_gs.train.loop.Training`, the one definition of
an asset's life). One step of the pool, from the parts of ``train/step.py``::

    per asset, in its own RNG stream:  render_and_encode -> guidance.perturb
                                       -> guidance.unet_inputs (R_i rows: views x branches)
    ONE prior.predict_noise over sum R_i rows, split back by each asset's R_i
    per asset, in its own RNG stream:  guidance.split_predictions -> loss_from_predictions
                                       -> regularize -> backward (finite flags stay on the
                                       device)
    ONE host sync: every asset's finite flags
    per asset, in its own RNG stream:  update (optimizers, densification)
                                       -> Training.after_step (log, snapshots, checkpoints, stop)

So an asset trained in a pool equals the one trained alone up to the floating-point noise
of a batched U-Net call (a pool of one makes exactly the bytes of
:func:`~nfsd_gs.train.step.training_step`; ``tests/test_batched.py``). The pool is not a
lockstep: every asset has its own step count, and an asset that finishes, fails or
diverges leaves while the next one joins (:meth:`AssetPool.fill`). A failure in one
asset's part fails that asset only; a failing U-Net call fails every asset of that step.

Rows per asset may differ (views, branches, a method that skips a branch for some views):
the pool only concatenates what each asset's ``unet_inputs`` returns. Rendering and the
encoder stay per asset: gsplat's batched rasterization wants one Gaussian count for all
scenes and hands densification one 2D-gradient tensor per batch, and one encoder graph
across assets would tie their backward passes (and their finite checks) together.

:func:`train_assets` drives a pool over a list of assets (the evaluation); the catalogue's
worker drives one from its inbox (``nfsd_gs.batch.worker``).
"""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..config import Config
from ..errors import TrainingInterrupted
from ..guidance import Noised, one_per_prior
from ..guidance.prior import DiffusionPrior, prior_key
from ..utils.device import resolve_device
from ..utils.timing import NO_TIMER
from .loop import Training
from .run import Run
from .step import Rendered, backward, first_nonfinite, regularize, render_and_encode, update

#: Statuses of an asset that left the pool.
DONE, FAILED, STOPPED = "done", "failed", "stopped"


@dataclass
class Asset:
    """One asset to train: its resolved config and how to open its run (build or resume it,
    make its folder), e.g. ``lambda: open_run(config, prior)``; ``key``: the caller's handle."""

    config: Config
    open: Callable[[], Tuple[Run, Path]]
    key: Any = None

    @functools.cached_property
    def prior_key(self) -> str:
        """Which loaded prior it needs (``guidance.prior.prior_key``), computed once: the
        pool asks at every admission check, and the key serializes the whole config."""
        return prior_key(self.config, resolve_device(self.config.device))


@dataclass
class Outcome:
    """An asset that left the pool (or never joined it)."""

    asset: Asset
    status: str  # DONE, FAILED or STOPPED
    run: Optional[Run] = None
    run_dir: Optional[Path] = None
    model_path: Optional[Path] = None
    error: Optional[BaseException] = None
    start_step: Optional[int] = None  # the step it joined at (> 0: resumed)
    open_s: float = 0.0  # opening its run (building the representation, resuming)
    train_s: float = 0.0  # from its first step to leaving, while sharing the process
    peak_mem_mib: Optional[float] = None  # the process's peak CUDA memory while it was live


@dataclass
class _Member:
    asset: Asset
    run: Run
    run_dir: Path
    life: Training
    start_step: int
    open_s: float
    started: float = field(default_factory=time.perf_counter)


@dataclass
class _Prepared:
    """One asset's step up to the U-Net call."""

    member: _Member
    step: int
    rendered: Rendered
    noised: Noised
    inputs: Tuple[Tensor, Tensor, Tensor]  # z [R, C, h, w], t [R], embeddings [R, L, D]
    loss: Optional[Tensor] = None
    stats: Optional[dict] = None
    flags: Optional[Tensor] = None  # [G + 1] bool: finite gradients per group, finite loss


def predict_rows(prior: DiffusionPrior,
                 inputs: Sequence[Tuple[Tensor, Tensor, Tensor]]) -> List[Tensor]:
    """ONE U-Net call over every asset's rows: ``inputs`` [(z [R_i, C, h, w], t [R_i],
    embeddings [R_i, L, D])] -> [eps [R_i, C, h, w]], split back by each R_i."""
    if len(inputs) == 1:
        return [prior.predict_noise(*inputs[0])]
    counts = [z.shape[0] for z, _, _ in inputs]
    z, t, embeddings = (torch.cat(parts) for parts in zip(*inputs))
    return list(prior.predict_noise(z, t, embeddings).split(counts))


#: Assets one process trains at once (one U-Net call per step for all of them) unless told:
#: on a GPU the best of one process in scripts/gpu_batch.sh's table (H200, 2026-12-04: M = 8
#: made 70.8 asset-steps/s, M = 1 54.4, M = 32 35.7; BENCHMARKS.md, "Catalogue"); on a CPU
#: one, as the U-Net there is compute-bound at any batch and one asset at a time keeps a
#: process's memory and its first asset's latency low. The catalogue's workers and the
#: evaluation's processes both use it.
DEFAULT_ASSETS_GPU, DEFAULT_ASSETS_CPU = 8, 1


def default_assets(on_gpu: bool) -> int:
    """:data:`DEFAULT_ASSETS_GPU` on a GPU, else :data:`DEFAULT_ASSETS_CPU`."""
    return DEFAULT_ASSETS_GPU if on_gpu else DEFAULT_ASSETS_CPU


class AssetPool:
    """Up to ``capacity`` live assets of one prior, trained together one step at a time.

    ``progress``: a progress bar per asset (only for a pool of one); ``timer``: a
    ``nfsd_gs.utils.timing.PhaseTimer`` for the benchmark."""

    def __init__(self, capacity: int, progress: bool = False, timer=NO_TIMER):
        if capacity < 1:
            raise ValueError(f"an asset pool holds at least one asset, not {capacity}")
        self.capacity = capacity
        self.progress = progress and capacity == 1
        self.timer = timer
        self.live: List[_Member] = []
        self.prior_key: Optional[str] = None

    # ----------------------------------------------------------------------- joining

    def admits(self, asset: Asset) -> bool:
        """Room left, the prior of the live assets (one U-Net call serves one prior), and at
        most one live run of a method that keeps its model on the prior (VSD)."""
        if len(self.live) >= self.capacity:
            return False
        if not self.live:
            return True
        if asset.prior_key != self.prior_key:
            return False
        return not (one_per_prior(asset.config.guidance)
                    and any(one_per_prior(m.run.config.guidance) for m in self.live))

    def fill(self, queue: Deque[Asset]) -> List[Outcome]:
        """Open assets from the front of ``queue`` while the front one is admitted (first
        come, first served: an asset that must wait for another prior holds those behind
        it); returns those that failed to open or were finished already."""
        left = []
        while queue and self.admits(queue[0]):
            outcome = self.join(queue.popleft())
            if outcome is not None:
                left.append(outcome)
        return left

    def join(self, asset: Asset) -> Optional[Outcome]:
        """Open ``asset``'s run and make it live; an Outcome if it failed to open (or was
        finished already: a resumed run at its last step is finished on the spot)."""
        start = time.perf_counter()
        config = asset.config
        device = resolve_device(config.device)
        if not self.live and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            run, run_dir = asset.open()
            life = Training(run, run_dir, progress=self.progress)
        except Exception as err:  # noqa: BLE001 -- a bad asset fails alone
            return Outcome(asset, FAILED, error=err, open_s=time.perf_counter() - start)
        if self.live and run.prior is not self.live[0].run.prior:
            raise ValueError("the assets of a pool must share one loaded prior object")
        member = _Member(asset, run, run_dir, life, run.step, time.perf_counter() - start)
        self.prior_key = asset.prior_key
        if self.capacity > 1:  # row counts change as assets join and leave: a few graphs
            run.prior.use_row_buckets()
        self.live.append(member)
        if life.finished:
            return self._finish(member)
        return None

    # ----------------------------------------------------------------------- one step

    def step(self, stop: Optional[str] = None) -> List[Outcome]:
        """One training step of every live asset (module docstring); ``stop``: the name of a
        stop request, which every live asset honours after this step (checkpoint, model,
        status ``stopped``). Returns the assets that left."""
        left: List[Outcome] = []
        prepared = []
        for member in list(self.live):
            try:
                prepared.append(self._prepare(member))
            except Exception as err:  # noqa: BLE001 -- this asset fails alone
                left.append(self._leave(member, FAILED, error=err))
        if not prepared:
            return left
        try:
            with self.timer.phase("unet"):
                predictions = predict_rows(prepared[0].member.run.prior,
                                           [p.inputs for p in prepared])
        except Exception as err:  # noqa: BLE001 -- the shared call: every asset of it fails
            return left + [self._leave(p.member, FAILED, error=err) for p in prepared]
        ready = []
        for p, eps in zip(prepared, predictions):
            try:
                self._backward(p, eps)
                ready.append(p)
            except Exception as err:  # noqa: BLE001
                left.append(self._leave(p.member, FAILED, error=err))
        if ready:  # ONE host sync for every asset's finite checks
            flags = torch.cat([p.flags for p in ready]).cpu().split([len(p.flags) for p in ready])
            for p, host_flags in zip(ready, flags):
                outcome = self._update(p, host_flags, stop)
                if outcome is not None:
                    left.append(outcome)
        return left

    def _prepare(self, member: _Member) -> _Prepared:
        run, step = member.run, member.run.step
        with run.own_rng():
            rendered = render_and_encode(run, step, self.timer)
            noised = run.guidance.perturb(rendered.x0, step)
            inputs = run.guidance.unet_inputs(noised.z_t, noised.t, rendered.views.prompts,
                                              noised.layout)
        return _Prepared(member, step, rendered, noised, inputs)

    def _backward(self, p: _Prepared, eps: Tensor) -> None:
        run, rendered = p.member.run, p.rendered
        with run.own_rng():
            loss, stats = run.guidance.loss_from_predictions(
                rendered.x0, p.noised, run.guidance.split_predictions(eps, p.noised.layout),
                rendered.views.prompts, self.timer, cameras=rendered.views.cameras)
            p.loss, p.stats = regularize(run, p.step, loss, stats)
            p.flags = backward(run, p.step, rendered, p.loss, self.timer)

    def _update(self, p: _Prepared, flags: Tensor, stop: Optional[str]) -> Optional[Outcome]:
        member, run = p.member, p.member.run
        try:
            with run.own_rng():
                stats = update(run, p.step, p.rendered, p.loss, p.stats,
                               first_nonfinite(flags, run.optimizers), self.timer)
                member.life.after_step(p.step, stats, stop)
        except TrainingInterrupted as err:
            return self._leave(member, STOPPED, error=err)
        except Exception as err:  # noqa: BLE001 -- TrainingDiverged, a full disk...
            return self._leave(member, FAILED, error=err)
        if member.life.finished:
            return self._finish(member)
        return None

    # ----------------------------------------------------------------------- leaving

    def _finish(self, member: _Member) -> Outcome:
        try:
            with member.run.own_rng():
                model_path = member.life.finish()
        except Exception as err:  # noqa: BLE001
            return self._leave(member, FAILED, error=err)
        return self._leave(member, DONE, model_path=model_path)

    def _leave(self, member: _Member, status: str, model_path: Optional[Path] = None,
               error: Optional[BaseException] = None) -> Outcome:
        self.live.remove(member)
        member.life.bar.close()
        device = member.run.device
        peak = (torch.cuda.max_memory_allocated(device) / 2 ** 20
                if device.type == "cuda" else None)
        if not self.live:
            self.prior_key = None
        return Outcome(member.asset, status, member.run, member.run_dir, model_path, error,
                       member.start_step, member.open_s, time.perf_counter() - member.started,
                       peak)


def train_assets(assets: Iterable[Asset], capacity: int, stop=None, progress: bool = False,
                 timer=NO_TIMER) -> Iterator[Outcome]:
    """Train every asset, at most ``capacity`` at once, and yield each as it leaves.

    ``stop``: an object whose ``received`` names a stop request (a
    ``nfsd_gs.utils.signals.StopSignals``) or is None; once it does, live assets finish
    their step and stop (checkpoint and model written) and the assets not started yet are
    yielded as ``stopped`` without a run."""
    queue: Deque[Asset] = deque(assets)
    pool = AssetPool(capacity, progress, timer)
    while queue or pool.live:
        received = getattr(stop, "received", None)
        if received is not None:
            while queue:
                yield Outcome(queue.popleft(), STOPPED)
        yield from pool.fill(queue)
        if not pool.live and queue:  # cannot happen: an empty pool admits anything
            raise RuntimeError("the asset pool admits nothing")
        if pool.live:
            yield from pool.step(received)

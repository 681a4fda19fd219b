"""Score distillation from a frozen diffusion prior: NFSD (default), SDS and VSD.

:class:`ScoreDistillation` turns a batch of encoded renders x0 into a loss whose gradient
on x0 is the distillation direction. The methods are strategies behind one small
interface (``base.py``), chosen by ``guidance.method`` through :data:`METHODS`:
``nfsd.py``, ``sds.py``, ``vsd.py`` (with VSD's trained LoRA). The shared math lives in
``cfg.py`` (classifier-free guidance, written once) and ``schedule.py`` (t and w(t)), the
model in ``prior.py``.

One step, split so that a caller holding several assets can make ONE U-Net call for all
of them (each asset keeps its own ``ScoreDistillation``)::

    noised = guidance.perturb(x0, step)                   # t [B], noise, z_t, layout
    z, t, embeddings = guidance.unet_inputs(noised.z_t, noised.t, prompts, noised.layout)
    eps = guidance.split_predictions(prior.predict_noise(z, t, embeddings), noised.layout)
    loss, stats = guidance.loss_from_predictions(x0, noised, eps, prompts, cameras=cameras)

``noised.layout`` (a :class:`RowLayout`) says which views each branch puts in the call:
every view, except where the method needs fewer (NFSD's negative prompt only for the views
with t >= 200: 2B + k rows, not 3B). The asset's rows are ``noised.layout.rows``
(``z.shape[0]``): a caller concatenating several assets splits the predictions back by
those counts. Without a layout both calls use every view of every branch (K*B rows).

:meth:`ScoreDistillation.loss` is exactly that for one asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, get_args

import torch
from torch import Tensor

from ..cameras import Cameras
from ..config import GuidanceConfig, GuidanceMethod as GuidanceMethodName
from ..errors import ConfigError
from ..utils.timing import NO_TIMER
from .base import DistillationMethod, GuidanceMethod
from .nfsd import Nfsd
from .prior import DiffusionPrior
from .schedule import draw_noise, sample_timesteps, timestep_weights
from .sds import Sds
from .vsd import Vsd

__all__ = ["METHODS", "DiffusionPrior", "DistillationMethod", "GuidanceMethod", "Noised",
           "RowLayout", "ScoreDistillation", "build_method", "distillation_loss",
           "one_per_prior"]

EMPTY_PROMPT = ""

#: ``guidance.method`` -> a builder ``(prior, guidance config) -> GuidanceMethod``.
METHODS: Dict[str, Callable[[DiffusionPrior, GuidanceConfig], GuidanceMethod]] = {
    "nfsd": Nfsd,
    "sds": Sds,
    "vsd": Vsd,
}
assert set(METHODS) == set(get_args(GuidanceMethodName)), "one builder per guidance method"


def build_method(prior: DiffusionPrior, config: GuidanceConfig) -> GuidanceMethod:
    """The method named by ``config.method``."""
    if config.method not in METHODS:
        raise ConfigError(f"config key 'guidance.method': '{config.method}' "
                          f"must be one of {', '.join(METHODS)}")
    return METHODS[config.method](prior, config)


def one_per_prior(config: GuidanceConfig) -> bool:
    """Whether runs of ``config.method`` cannot share a loaded prior with another live run
    of the same method (VSD: its LoRA lives on the prior's U-Net). A method builder
    without the attribute shares freely."""
    return bool(getattr(METHODS.get(config.method), "one_per_prior", False))


def distillation_loss(x0: Tensor, grad: Tensor) -> Tensor:
    """0.5 ||x0 - sg(x0 - grad)||^2 / B: its gradient on x0 is exactly grad / B.

    x0, grad [B, C, h, w]; the standard way to inject a score-distillation
    gradient through autograd (DreamFusion's reparametrization).
    """
    target = (x0 - grad).detach()
    return 0.5 * (x0 - target).pow(2).sum() / x0.shape[0]


@dataclass(frozen=True)
class RowLayout:
    """The rows one asset adds to the U-Net call, branch-major: each branch with the views
    (indices into the B views) it is evaluated for."""

    views: int  # B
    branches: Tuple[Tuple[str, Tuple[int, ...]], ...]

    @classmethod
    def full(cls, branches: Sequence[str], views: int) -> "RowLayout":
        """Every branch for every view: K*B rows."""
        return cls(views, tuple((branch, tuple(range(views))) for branch in branches))

    @property
    def rows(self) -> int:
        return sum(len(indices) for _, indices in self.branches)


@dataclass
class Noised:
    """One step's noising of x0: z_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise (DDPM eq. 4)."""

    t: Tensor  # [B] long, on x0's device
    noise: Tensor  # [B, C, h, w]
    z_t: Tensor  # [B, C, h, w], detached from x0
    step: int  # the training step it belongs to
    layout: Optional[RowLayout] = None  # the U-Net rows these timesteps need; None: all


def _device_index(indices: Sequence[int], device: torch.device) -> Tensor:
    """indices as a long tensor on ``device``, copied without waiting for the device."""
    return torch.tensor(indices, dtype=torch.long).to(device, non_blocking=True)


class ScoreDistillation:
    """The distillation loss of one training step, for the method of ``config.method``
    (``method``: an already built one, e.g. VSD with a scripted LoRA in tests)."""

    def __init__(self, prior: DiffusionPrior, config: GuidanceConfig, total_steps: int,
                 method: Optional[GuidanceMethod] = None):
        self.prior = prior
        self.config = config
        self.total_steps = total_steps
        self.method = method if method is not None else build_method(prior, config)
        #: U-Net rows asked for so far (the benchmark reads it; NFSD: 2B + k a step).
        self.unet_rows = 0

    @property
    def branches(self) -> List[str]:
        """Prompt branches of the one U-Net call: NFSD needs the negative prompt too."""
        return list(self.method.branches)

    def prepare(self, prompt: str) -> None:
        """Check the prompt and embed the fixed prompts once (the view variants are cached
        lazily by the prior on first use)."""
        self.prior.check_prompt(prompt)
        self.prior.embed([EMPTY_PROMPT, self.config.negative_prompt, prompt])

    # ------------------------------------------------------------------ the step, in parts

    def perturb(self, x0: Tensor, step: int) -> Noised:
        """Timesteps of ``step`` (``schedule.py``), fresh noise for x0 [B, C, h, w], and the
        rows of the U-Net call those timesteps need (decided on the host: no device sync)."""
        t_host = sample_timesteps(self.config, self.prior.num_train_timesteps, step,
                                  self.total_steps, x0.shape[0], torch.device("cpu"))
        t = t_host.contiguous().to(x0.device, non_blocking=True)
        noise = draw_noise(x0)
        return Noised(t, noise, self.prior.add_noise(x0.detach(), noise, t), step,
                      self.row_layout(t_host))

    def row_layout(self, t: Tensor) -> RowLayout:
        """The branches and views of the U-Net call at timesteps t [B] (on the host)."""
        rows = []
        for branch in self.branches:
            needed = self.method.views_needed(branch, t)
            views = (tuple(range(t.shape[0])) if needed is None
                     else tuple(int(i) for i in needed.nonzero().flatten()))
            rows.append((branch, views))
        return RowLayout(t.shape[0], tuple(rows))

    def _layout(self, layout: Optional[RowLayout], views: int) -> RowLayout:
        return layout if layout is not None else RowLayout.full(self.branches, views)

    def branch_embeddings(self, prompts: Sequence[str],
                          layout: Optional[RowLayout] = None) -> Tensor:  # [rows, L, D]
        """Text embeddings of the layout's rows (default: every branch, every view)."""
        layout = self._layout(layout, len(prompts))
        fixed = {"uncond": EMPTY_PROMPT, "negative": self.config.negative_prompt}
        return self.prior.embed([prompts[i] if branch == "cond" else fixed[branch]
                                 for branch, views in layout.branches for i in views])

    def unet_inputs(self, z_t: Tensor, t: Tensor, prompts: Sequence[str],
                    layout: Optional[RowLayout] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """The rows this asset adds to the U-Net call for z_t [B, C, h, w] at t [B]:
        z [N, C, h, w], t [N] and embeddings [N, L, D], branch-major, N = ``layout.rows``
        (default: every branch for every view, N = K*B)."""
        layout = self._layout(layout, z_t.shape[0])
        zs, ts = [], []
        for _, views in layout.branches:
            if len(views) == layout.views:
                zs.append(z_t)
                ts.append(t)
            elif views:
                index = _device_index(views, z_t.device)
                zs.append(z_t.index_select(0, index))
                ts.append(t.index_select(0, index))
        self.unet_rows += layout.rows
        return torch.cat(zs), torch.cat(ts), self.branch_embeddings(prompts, layout)

    def split_predictions(self, eps: Tensor,
                          layout: Optional[RowLayout] = None) -> Dict[str, Tensor]:
        """eps [N, C, h, w] of :meth:`unet_inputs`' rows -> {branch: [B, C, h, w]}; the rows
        of views a branch was not evaluated for are NaN."""
        views = eps.shape[0] // len(self.branches) if layout is None else layout.views
        layout = self._layout(layout, views)
        if eps.shape[0] != layout.rows:
            raise ValueError(f"split_predictions: {eps.shape[0]} rows of predictions for a "
                             f"layout of {layout.rows} rows")
        out, start = {}, 0
        for branch, indices in layout.branches:
            part = eps[start:start + len(indices)]
            start += len(indices)
            if len(indices) == layout.views:
                out[branch] = part
                continue
            full = eps.new_full((layout.views, *eps.shape[1:]), float("nan"))
            if indices:
                full.index_copy_(0, _device_index(indices, eps.device), part)
            out[branch] = full
        return out

    def predict_branches(self, z_t: Tensor, t: Tensor, prompts: Sequence[str],
                         layout: Optional[RowLayout] = None) -> Dict[str, Tensor]:
        """eps for every branch from ONE batched U-Net call; z_t [B, C, h, w] -> {branch: [B, C, h, w]}."""
        layout = self._layout(layout, z_t.shape[0])
        inputs = self.unet_inputs(z_t, t, prompts, layout)
        return self.split_predictions(self.prior.predict_noise(*inputs), layout)

    def direction(self, eps: Dict[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        """The method's direction before w(t) ([B, C, h, w])."""
        return self.method.direction(eps, noise, t)

    def loss_from_predictions(self, x0: Tensor, noised: Noised, eps: Dict[str, Tensor],
                              prompts: Sequence[str], timer=NO_TIMER,
                              cameras: Optional[Cameras] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The loss and stats of the predictions ``eps`` (per branch) at ``noised``: the
        method's own model first (VSD), then w(t) * direction, clipped, as a loss on x0."""
        with timer.phase("lora"):  # VSD: eps_phi, then one LoRA step on x0 (Alg. 1)
            extra, extra_stats = self.method.observe(noised.z_t, noised.t, x0, prompts, cameras,
                                                     progress=noised.step / max(self.total_steps, 1))
        eps = {**eps, **extra}
        with timer.phase("guidance"):
            weights = timestep_weights(self.config.weighting, self.prior.alphas_cumprod,
                                       noised.t).view(-1, 1, 1, 1)
            grad = weights * self.direction(eps, noised.noise, noised.t)
            if self.config.grad_clip is not None:
                grad = grad.clamp(-self.config.grad_clip, self.config.grad_clip)
            stats = {"t": noised.t.float().mean(), "grad_norm": grad.flatten(1).norm(dim=1).mean()}
            loss = distillation_loss(x0, grad)
        stats.update(extra_stats)
        return loss, stats

    def loss(self, x0: Tensor, prompts: Sequence[str], step: int, timer=NO_TIMER,
             cameras: Optional[Cameras] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """x0 [B, C, h, w] (differentiable), one prompt and (VSD) one camera per view
        -> (loss, stats).

        d loss / d x0 = w(t) (delta_D + s delta_C) / B for NFSD, w(t) (eps_cfg - noise) / B
        for SDS, w(t) (eps_cfg - eps_phi) / B for VSD, which then trains eps_phi one step on
        x0 (detached). Stats are tensors (reading them syncs the device; the trainer does so
        only when it logs).
        """
        noised = self.perturb(x0, step)
        with timer.phase("unet"):
            eps = self.predict_branches(noised.z_t, noised.t, prompts, noised.layout)
        return self.loss_from_predictions(x0, noised, eps, prompts, timer, cameras)

    def state_dict(self) -> dict:
        """What a checkpoint must hold to continue exactly: VSD's LoRA, camera MLP and
        their optimizer; nothing for NFSD and SDS."""
        return self.method.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state)

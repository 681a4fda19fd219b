"""What every score-distillation method offers :class:`~nfsd_gs.guidance.ScoreDistillation`.

A method names the prompt branches of the step's ONE batched U-Net call (``cond``: the
prompt, ``uncond``: the empty prompt, ``negative``: ``guidance.negative_prompt``), which
views each branch is needed for at the step's timesteps (all by default; NFSD's negative
prompt only where t >= 200), and makes a direction of their noise predictions; the shared
machinery (timesteps, noising, the U-Net call, w(t), clipping, the loss) lives in
``ScoreDistillation`` alone. A method with
a model of its own (VSD's eps_phi) adds its predictions in :meth:`observe` and saves its
state in checkpoints. NFSD (``nfsd.py``), SDS (``sds.py``) and VSD (``vsd.py``) implement
it; a new method is one module implementing it plus one entry in
:data:`nfsd_gs.guidance.METHODS` and the ``GuidanceMethod`` Literal of
:class:`nfsd_gs.config.GuidanceConfig`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

from torch import Tensor

from ..cameras import Cameras
from ..config import GuidanceConfig


@runtime_checkable
class GuidanceMethod(Protocol):
    #: The prompt branches the U-Net call evaluates, in row order (B rows each, or the
    #: views :meth:`views_needed` keeps).
    branches: Tuple[str, ...]

    def views_needed(self, branch: str, t: Tensor) -> Optional[Tensor]:
        """The views [B] bool whose ``branch`` prediction :meth:`direction` reads, from the
        timesteps t [B] on the host (no device sync); None: every view. The rows of the
        others are left out of the U-Net call, and their predictions are NaN."""

    def observe(self, z_t: Tensor, t: Tensor, x0: Tensor, prompts: Sequence[str],
                cameras: Optional[Cameras],
                progress: float = 0.0) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """Predictions of the method's own model at (z_t [B, C, h, w], t [B]) and its stats,
        after the U-Net call (VSD: eps_phi, then one LoRA step on x0, detached); ({}, {}) for
        a method without a model. ``progress``: the fraction of the run done (step / steps)."""

    def direction(self, eps: Mapping[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        """The distillation direction [B, C, h, w] before w(t), from the predictions per
        branch (and ``observe``'s), the noise that made z_t and the timesteps [B]."""

    def state_dict(self) -> Dict[str, Any]:
        """What a checkpoint must hold to continue exactly ({} for a method without a model)."""

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


class DistillationMethod:
    """The defaults of :class:`GuidanceMethod`: the prompt and the empty prompt, no model of
    its own, nothing to save. Subclasses set ``branches`` and write :meth:`direction`."""

    branches: Tuple[str, ...] = ("cond", "uncond")
    #: At most one live run of the method per loaded prior: a method whose model lives on
    #: the prior itself (VSD's LoRA on the prior's U-Net) cannot share it with another run
    #: of the same method (see :func:`nfsd_gs.guidance.one_per_prior`).
    one_per_prior: bool = False

    def __init__(self, prior, config: GuidanceConfig):
        self.prior = prior  # a nfsd_gs.guidance.prior.DiffusionPrior
        self.config = config

    def views_needed(self, branch: str, t: Tensor) -> Optional[Tensor]:  # noqa: ARG002
        return None

    def observe(self, z_t: Tensor, t: Tensor, x0: Tensor, prompts: Sequence[str],
                cameras: Optional[Cameras],
                progress: float = 0.0) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        return {}, {}

    def direction(self, eps: Mapping[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

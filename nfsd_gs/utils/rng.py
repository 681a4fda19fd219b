"""One run's own stream of torch's global random numbers, for processes that train several.

Much of a training step draws from torch's *global* generators and takes no generator
argument: the guidance's timesteps (CPU) and noise (the device), gsplat's densification
(``split`` samples new positions with ``torch.randn``; MCMC relocates with
``torch.multinomial`` and adds ``torch.randn`` noise), the NeRF's stratified samples and
occupancy-grid refresh, VSD's own LoRA step. A process that trains one asset at a time
gives each run the global generators to itself, seeded when the run is built. A process
that interleaves several (``nfsd_gs.train.batched``) swaps each run's saved state in
before that run's part of a step and saves it back after (:class:`GlobalRng`), so each
run draws exactly the numbers it would draw alone, and a run trained alone draws exactly
what it drew before streams existed (no seed gives other bytes).

Python's ``random`` and numpy's global generators are not swapped: no step draws from
them (checkpoints still save them, ``nfsd_gs.checkpoint.capture_rng_state``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor


@dataclass
class GlobalRng:
    """The states of torch's global CPU generator and of ``device``'s CUDA generator."""

    cpu: Tensor  # torch.get_rng_state()
    cuda: Optional[Tensor]  # torch.cuda.get_rng_state(device), None off CUDA
    device: torch.device

    @classmethod
    def capture(cls, device: torch.device | str) -> "GlobalRng":
        """The global generators as they are now (host-side state: no device sync)."""
        device = torch.device(device)
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda, device)

    def restore(self) -> None:
        """Make the global generators continue from this state."""
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


@contextlib.contextmanager
def own_stream(holder) -> Iterator[None]:
    """Inside: the global generators are ``holder.global_rng`` (a :class:`GlobalRng`);
    after: ``holder.global_rng`` is where they stopped. Nesting is not supported."""
    holder.global_rng.restore()
    try:
        yield
    finally:
        holder.global_rng = GlobalRng.capture(holder.global_rng.device)

"""Per-phase timing of the training step and of start-up, for the benchmark.

The training step marks its phases with ``with timer.phase("render"):``.  The
default :data:`NO_TIMER` does nothing (no events, no synchronisation), so the
real loop pays nothing; :class:`PhaseTimer` records CUDA events (or host
clocks on the CPU) and is read once, after a synchronisation, at the end.
Start-up (loading the prior, building a run) marks its phases the same way;
:class:`WallTimer` records their wall seconds, in order.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Dict, Iterator, List, Tuple

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class NullTimer:
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:  # noqa: ARG002
        yield


NO_TIMER = NullTimer()


class PhaseTimer:
    """Accumulates milliseconds per phase name over many steps."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self._pending: List[Tuple[str, object, object]] = []
        self.totals_ms: Dict[str, float] = defaultdict(float)
        self.counts: Dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((name, start, end))
        else:
            start = time.perf_counter()
            yield
            self.totals_ms[name] += (time.perf_counter() - start) * 1e3
            self.counts[name] += 1

    def collect(self) -> Dict[str, float]:
        """Mean milliseconds per occurrence of each phase (synchronises CUDA once)."""
        if self._pending:
            torch.cuda.synchronize()
            for name, start, end in self._pending:
                self.totals_ms[name] += start.elapsed_time(end)
                self.counts[name] += 1
            self._pending.clear()
        return {name: self.totals_ms[name] / self.counts[name] for name in self.totals_ms}

    def reset(self) -> None:
        self._pending.clear()
        self.totals_ms.clear()
        self.counts.clear()


class WallTimer:
    """Wall seconds per phase name, in the order first seen (repeats add up): the start-up
    profile. Each phase ends with a device synchronisation, so the device's queued work is
    counted in the phase that queued it."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def total(self) -> float:
        return sum(self.seconds.values())

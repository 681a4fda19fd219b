"""U-Net work replayed as CUDA graphs.

Eager diffusers U-Nets are launch-bound at small batches (hundreds of small
kernels per call): capturing a call once and replaying it removes the Python
and launch overhead.  A replay runs the captured kernels on the captured
addresses, so a graph is exact as long as its inputs are copied into its static
tensors and the weights it reads are updated in place (optimizers do that).

* :class:`StaticGraph`: one function captured on static copies of its inputs;
  with ``grad=True`` the function may run a backward pass and an optimizer step
  (the VSD LoRA's training step, ``vsd.py``).
* :class:`GraphedCall`: a function captured per input shape on first use (the
  frozen prior's U-Net call under ``no_grad``, ``prior.py``; eps_phi, ``vsd.py``).

Random numbers are drawn outside the graphs and passed in, so a graphed step
sees the same draws as the eager one.

When one process trains several assets (``nfsd_gs.train.batched``) the row count of the
U-Net call changes as assets join and leave (each adds views x branches rows). A
:class:`GraphedCall` with ``buckets`` on pads a call to the next of a few sizes
(:func:`bucket_rows`: 2^k and 3 * 2^k, at most a third of the rows wasted) by repeating its
last row, and drops the padding rows' outputs: every U-Net row is computed independently of
the others (group norm and attention act within a sample), so padding changes a row only by
the floating-point noise of a kernel run at another batch size. A lone asset's calls are
not padded (NFSD's 2V + k rows each get their graph, issue 25).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

ShapeKey = Tuple[Tuple[Tuple[int, ...], torch.dtype], ...]


def bucket_rows(rows: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, ... (2^k and 3 * 2^k) that
    holds ``rows`` (>= 1) rows."""
    if rows < 1:
        raise ValueError(f"a U-Net call has at least one row, not {rows}")
    power = 1 << (rows - 1).bit_length()  # the smallest 2^k >= rows
    three = 3 * power // 4  # 3 * 2^(k-2), between power / 2 and power
    return three if power >= 4 and three >= rows else power


def pad_rows(inputs: Sequence[Tensor], rows: int) -> Tuple[Tensor, ...]:
    """Each of ``inputs`` ([N, ...], the same N) -> ``rows`` (>= N) rows, the last repeated."""
    extra = rows - inputs[0].shape[0]
    if extra <= 0:
        return tuple(inputs)
    return tuple(torch.cat([x, x[-1:].expand(extra, *x.shape[1:])]) for x in inputs)


class StaticGraph:
    """``function(*inputs)`` captured once on static copies of ``inputs``, then replayed.

    ``warmup`` (default: ``function``) runs ``warmup_steps`` times on a side stream first,
    so that cuDNN/cuBLAS pick their algorithms and lazily built state (an optimizer's
    moments) exists outside the capture; a warm-up must not change what the function reads
    (the LoRA step's warm-up skips its optimizer update). ``context`` (a factory) is entered
    around warm-up and capture only (e.g. switching adapters on); ``pool``: a memory pool
    shared with graphs that are replayed in the order they were captured.
    """

    def __init__(self, function: Callable[..., Tensor], inputs: Sequence[Tensor], *,
                 grad: bool = False, warmup: Optional[Callable[..., object]] = None,
                 warmup_steps: int = 2,
                 context: Optional[Callable[[], ContextManager]] = None,
                 pool: Optional[tuple] = None):
        self.inputs = [x.clone() for x in inputs]
        context = context or contextlib.nullcontext
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with context(), torch.cuda.stream(side), torch.set_grad_enabled(grad):
            for _ in range(warmup_steps):
                (warmup or function)(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA work (a live viewer's renders) may go on
        with context(), torch.set_grad_enabled(grad), torch.cuda.graph(
                self.graph, pool=pool, capture_error_mode="thread_local"):
            self.output = function(*self.inputs)

    def __call__(self, *inputs: Tensor) -> Tensor:
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        return self.output.clone()  # the static output is overwritten by the next replay


class GraphedCall:
    """``function(*inputs)`` (no autograd) captured per input shape on first use, then
    replayed; ``context`` as for :class:`StaticGraph`.

    The graphs of every shape (NFSD: a batch of 2V + k rows, k = 0..V) share one memory
    pool (``pool``, default a new one): they never run at the same time, and each replay's
    output is copied out before the next, so the U-Net's activations are held once, not once
    per shape. ``buckets``: pad the inputs' rows (dim 0) to :func:`bucket_rows` and return
    the real rows' outputs only (a pool of several assets turns it on)."""

    def __init__(self, function: Callable[..., Tensor],
                 context: Optional[Callable[[], ContextManager]] = None,
                 pool: Optional[tuple] = None, buckets: bool = False):
        self.function = function
        self.context = context
        self.pool = pool
        self.buckets = buckets
        self.captured: Dict[ShapeKey, StaticGraph] = {}

    def __call__(self, *inputs: Tensor) -> Tensor:
        if self.buckets:
            rows = inputs[0].shape[0]
            return self._replay(*pad_rows(inputs, bucket_rows(rows)))[:rows]
        return self._replay(*inputs)

    def _replay(self, *inputs: Tensor) -> Tensor:
        key = tuple((tuple(x.shape), x.dtype) for x in inputs)
        if key not in self.captured:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            self.captured[key] = StaticGraph(self.function, inputs, context=self.context,
                                             pool=self.pool)
        return self.captured[key](*inputs)

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
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

ShapeKey = Tuple[Tuple[Tuple[int, ...], torch.dtype], ...]


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
    per shape."""

    def __init__(self, function: Callable[..., Tensor],
                 context: Optional[Callable[[], ContextManager]] = None,
                 pool: Optional[tuple] = None):
        self.function = function
        self.context = context
        self.pool = pool
        self.captured: Dict[ShapeKey, StaticGraph] = {}

    def __call__(self, *inputs: Tensor) -> Tensor:
        key = tuple((tuple(x.shape), x.dtype) for x in inputs)
        if key not in self.captured:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            self.captured[key] = StaticGraph(self.function, inputs, context=self.context,
                                             pool=self.pool)
        return self.captured[key](*inputs)

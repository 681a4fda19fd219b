"""The U-Net call replayed as a CUDA graph.

Eager diffusers U-Nets are launch-bound at small batches (hundreds of small
kernels per call): capturing the call once and replaying it removes the
Python and launch overhead.  The prior is frozen and the call runs under
``no_grad``, so one static graph per input shape is exact: replay computes
the same kernels on the same shapes as the eager call.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
from torch import Tensor

ShapeKey = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]


class _Captured:
    """One captured call: static inputs, the graph, its static output."""

    def __init__(self, function: Callable[[Tensor, Tensor, Tensor], Tensor],
                 z: Tensor, t: Tensor, embeddings: Tensor, pool=None, warmup: int = 2):
        self.z, self.t, self.embeddings = z.clone(), t.clone(), embeddings.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup):  # cuDNN/cuBLAS pick their algorithms outside the capture
                function(self.z, self.t, self.embeddings)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool), torch.no_grad():
            self.output = function(self.z, self.t, self.embeddings)

    def __call__(self, z: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        self.z.copy_(z)
        self.t.copy_(t)
        self.embeddings.copy_(embeddings)
        self.graph.replay()
        return self.output.clone()  # the static output is overwritten by the next replay


class GraphedCall:
    """``function(z, t, embeddings)`` captured per input shape on first use, then replayed.

    The graphs of every shape (NFSD: a batch of 2V + k rows, k = 0..V) share one memory
    pool: they never run at the same time, and each replay's output is copied out before
    the next, so the U-Net's activations are held once, not once per shape."""

    def __init__(self, function: Callable[[Tensor, Tensor, Tensor], Tensor]):
        self.function = function
        self.captured: Dict[ShapeKey, _Captured] = {}
        self.pool = None

    def __call__(self, z: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        key = (tuple(z.shape), tuple(t.shape), tuple(embeddings.shape))
        if key not in self.captured:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            self.captured[key] = _Captured(self.function, z, t, embeddings, self.pool)
        return self.captured[key](z, t, embeddings)

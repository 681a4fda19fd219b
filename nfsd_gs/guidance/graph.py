"""The U-Net call replayed as a CUDA graph.

Eager diffusers U-Nets are launch-bound at small batches (hundreds of small
kernels per call): capturing the call once and replaying it removes the
Python and launch overhead.  The prior is frozen and the call runs under
``no_grad``, so one static graph per input shape is exact: replay computes
the same kernels on the same shapes as the eager call.

A graph is captured per row count, and the row count of a call varies when one
process trains several assets (``nfsd_gs.train.batched``: assets join and leave,
each adds views x branches rows): calls are padded to the next of a few bucket
sizes (:func:`bucket_rows`: 2^k and 3 * 2^k, at most a third of the rows
wasted) by repeating their last row, and the padding rows' outputs are dropped.
Every row of the U-Net is computed independently of the others (group norm and
attention act within a sample), so padding changes a row's output only by the
floating-point noise of a kernel run at another batch size. A single asset's
usual counts (8 views x 3 branches = 24, 4 x 3 = 12, 8 x 2 = 16) are buckets
already. All graphs share one memory pool: each replay's output is copied out
at once, so no graph's memory is read after another graph ran.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

ShapeKey = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]


def bucket_rows(rows: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, ... (2^k and 3 * 2^k) that
    holds ``rows`` (>= 1) rows."""
    if rows < 1:
        raise ValueError(f"a U-Net call has at least one row, not {rows}")
    power = 1 << (rows - 1).bit_length()  # the smallest 2^k >= rows
    three = 3 * power // 4  # 3 * 2^(k-2), between power / 2 and power
    return three if power >= 4 and three >= rows else power


def pad_rows(z: Tensor, t: Tensor, embeddings: Tensor, rows: int) -> Tuple[Tensor, Tensor, Tensor]:
    """z [N, ...], t [N], embeddings [N, ...] -> ``rows`` (>= N) rows, the last repeated."""
    extra = rows - z.shape[0]
    if extra <= 0:
        return z, t, embeddings
    return tuple(torch.cat([x, x[-1:].expand(extra, *x.shape[1:])]) for x in (z, t, embeddings))


class _Captured:
    """One captured call: static inputs, the graph, its static output."""

    def __init__(self, function: Callable[[Tensor, Tensor, Tensor], Tensor],
                 z: Tensor, t: Tensor, embeddings: Tensor, pool, warmup: int = 2):
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

    def __call__(self, z: Tensor, t: Tensor, embeddings: Tensor, rows: int) -> Tensor:
        self.z.copy_(z)
        self.t.copy_(t)
        self.embeddings.copy_(embeddings)
        self.graph.replay()
        return self.output[:rows].clone()  # the static output is overwritten by the next replay


class GraphedCall:
    """``function(z, t, embeddings)`` captured per bucket of rows (:func:`bucket_rows`) on
    first use, then replayed; ``captured`` holds the graphs by padded input shape."""

    def __init__(self, function: Callable[[Tensor, Tensor, Tensor], Tensor]):
        self.function = function
        self.captured: Dict[ShapeKey, _Captured] = {}
        self.pool: Optional[Tuple[int, int]] = None  # torch.cuda.graph_pool_handle()

    def __call__(self, z: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        rows = z.shape[0]
        z, t, embeddings = pad_rows(z, t, embeddings, bucket_rows(rows))
        key = (tuple(z.shape), tuple(t.shape), tuple(embeddings.shape))
        if key not in self.captured:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            self.captured[key] = _Captured(self.function, z, t, embeddings, self.pool)
        return self.captured[key](z, t, embeddings, rows)

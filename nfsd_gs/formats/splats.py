"""What every splat file format shares: gsplat's tensors in, checked arrays out, and back.

Every reader returns float32 CPU tensors in gsplat's layout::

    means [N, 3]   scales [N, 3] (log)   quats [N, 4] (w x y z)
    opacities [N] (logit)   sh0 [N, 1, 3]   shN [N, K-1, 3]

and every writer takes them.  :func:`splat_arrays` checks what a writer gets;
:func:`repair_non_finite` is what each reader does with the values other tools
write (an opacity of exactly 0 or 1 stored as an infinite logit).
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, Mapping, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import SplatFormatError

PathLike = Union[str, os.PathLike]

SPLAT_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
#: Higher SH coefficients per colour channel (K - 1) for SH degree 0..3.
REST_COEFFICIENTS_TO_DEGREE = {0: 0, 3: 1, 8: 2, 15: 3}
#: An infinite opacity logit is stored as this: sigmoid(20) = 1 - 2e-9 (opaque, finite).
LOGIT_LIMIT = 20.0


def splat_arrays(splats: Mapping[str, Tensor], path: PathLike,
                 error: type = SplatFormatError) -> Dict[str, np.ndarray]:
    """gsplat's tensors as float32 numpy arrays, checked (shapes, finite) before anything is written."""
    missing = [key for key in SPLAT_KEYS if key not in splats]
    if missing:
        raise error(f"cannot write {path}: splats lack {', '.join(missing)}")
    arrays = {key: splats[key].detach().to("cpu", torch.float32).numpy() for key in SPLAT_KEYS}
    n = arrays["means"].shape[0] if arrays["means"].ndim else -1
    expected = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,),
                "sh0": (n, 1, 3)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise error(f"cannot write {path}: '{key}' has shape {tuple(arrays[key].shape)}, "
                        f"expected {shape}")
    rest = arrays["shN"].shape
    if len(rest) != 3 or rest[0] != n or rest[2] != 3 or rest[1] not in REST_COEFFICIENTS_TO_DEGREE:
        raise error(f"cannot write {path}: 'shN' has shape {tuple(rest)}, "
                    f"expected ({n}, 0|3|8|15, 3)")
    for key, values in arrays.items():
        if not np.isfinite(values).all():
            raise error(f"cannot write {path}: '{key}' has non-finite values")
    return arrays


def sh_degree_of(splats: Mapping[str, Tensor]) -> int:
    return REST_COEFFICIENTS_TO_DEGREE[splats["shN"].shape[1]]


def repair_non_finite(path: PathLike, columns: Mapping[str, np.ndarray], opacity: str,
                      error: type = SplatFormatError) -> Dict[str, np.ndarray]:
    """Columns [N] or [N, C] (named by property or key) with infinite opacity logits clamped.

    Real tools store an opacity of exactly 1 (or 0) as a +inf (-inf) logit
    (PlayCanvas splat-transform does, from ``.spz``): those become
    +-:data:`LOGIT_LIMIT`, with one warning saying how many.  Any other
    non-finite value (a NaN anywhere, an infinite position, scale, rotation or
    colour) is damage: one ``error`` line naming the column.
    """
    repaired = dict(columns)
    values = columns[opacity]
    infinite = np.isinf(values)
    if infinite.any():
        repaired[opacity] = np.clip(values, -LOGIT_LIMIT, LOGIT_LIMIT).astype(values.dtype)
        warnings.warn(f"{path}: {int(infinite.sum())} infinite opacity logit(s) (opacity exactly "
                      f"0 or 1) read as +-{LOGIT_LIMIT:g}", stacklevel=3)
    for name, column in repaired.items():
        bad = ~np.isfinite(column)
        if bad.any():
            first = int(np.argmax(bad.reshape(len(column), -1).any(axis=1)))
            raise error(f"{path}: {int(bad.sum())} non-finite value(s) in property '{name}' "
                        f"(first at vertex {first})")
    return repaired


def splats_from_arrays(means: np.ndarray, scales: np.ndarray, quats: np.ndarray,
                       opacities: np.ndarray, sh0: np.ndarray, shN: np.ndarray) -> Dict[str, Tensor]:
    """numpy arrays (any float type; sh0 [N, 3] or [N, 1, 3]) -> gsplat's float32 tensors."""
    n = len(means)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {
        "means": as_tensor(means).reshape(n, 3),
        "scales": as_tensor(scales).reshape(n, 3),
        "quats": as_tensor(quats).reshape(n, 4),
        "opacities": as_tensor(opacities).reshape(n),
        "sh0": as_tensor(sh0).reshape(n, 1, 3),
        "shN": as_tensor(shN).reshape(n, -1, 3) if shN.size else torch.zeros(n, 0, 3),
    }

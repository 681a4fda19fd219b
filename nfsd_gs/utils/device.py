"""Which torch device a command runs on: one rule for every command and the library."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def auto_device_type() -> str:
    """What ``auto`` means: ``cuda`` when CUDA is available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise ``torch.device(name)``.

    A CUDA device on a machine without CUDA, or a name torch does not know, is one
    :class:`~nfsd_gs.errors.ConfigError` line naming the value (``device=...``)."""
    if name == "auto":
        return torch.device(auto_device_type())
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device '{name}' is not a torch device (auto, cpu, cuda, cuda:1...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available")
    return device


def runs_on_cpu(name: str) -> bool:
    """Whether a run of device ``name`` runs on the CPU (``auto``: when CUDA is not
    available); the name is not checked (a preset's ``${if_cpu:...}`` asks while the
    config loads, before :func:`resolve_device` does)."""
    kind = auto_device_type() if name == "auto" else str(name).split(":", 1)[0]
    return kind == "cpu"


def device_name(device: torch.device) -> str:
    """The GPU's model name (``torch.cuda.get_device_name``) on CUDA, else ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def init_device(device: torch.device) -> None:
    """Create the CUDA context now (a no-op elsewhere), so its cost has a name in the
    start-up profile instead of landing in the first model load."""
    if torch.device(device).type == "cuda":
        torch.empty(0, device=device)

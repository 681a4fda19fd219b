"""User-facing errors.

Anything a user can cause (a bad config key, an empty prompt, a model that
cannot be loaded, a corrupt ``.ply``) raises a subclass of :class:`NfsdError`
with a one-line message naming the bad value.  Entry points catch it and print
``error: <message>`` instead of a traceback.
"""

from __future__ import annotations


class NfsdError(Exception):
    """Base class of every error whose message is meant for the user."""


class ConfigError(NfsdError):
    """An unknown config key, a wrong type or an invalid value."""


class PriorLoadError(NfsdError):
    """A diffusion model (or another pretrained component) could not be loaded."""


class PromptError(NfsdError):
    """An empty prompt, or one outside a closed-vocabulary prior's words."""


class SplatFormatError(NfsdError):
    """A splat file (``.ply``, ``.splat``, ``.spz``) that is corrupt, truncated or of the wrong kind,
    or an export that cannot be made (unknown format, no model)."""


class PlyFormatError(SplatFormatError):
    """A ``.ply`` file that is corrupt, truncated or not in the expected layout."""


class TrainingDiverged(NfsdError):
    """Too many consecutive non-finite steps."""


class TrainingInterrupted(NfsdError):
    """SIGINT or SIGTERM stopped a run between two steps; its checkpoint and model are saved.
    Not a failure: the command line prints its message (where, and how to resume) without
    ``error:``."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.signal_name = signal_name


def error_summary(err: BaseException, limit: int = 0) -> str:
    """``Type: first line of the message`` (at most ``limit`` characters of it when given):
    how a failed run, line or benchmark row is reported in one line."""
    text = str(err)
    first = text.splitlines()[0] if text.strip() else ""
    return f"{type(err).__name__}: {first[:limit] if limit else first}"

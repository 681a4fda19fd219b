"""Stop requests between two units of work (a training step, a catalogue line)."""

from __future__ import annotations

import signal
from typing import Dict, Optional


class StopSignals:
    """SIGINT / SIGTERM become a stop request honoured between two steps, so the saved
    state is always that of a whole step; a second signal aborts at once
    (``KeyboardInterrupt``). ``received`` names the first signal (``"SIGINT"``) or is None."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: Optional[str] = None
        self._previous: Dict[int, object] = {}

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: signals stay as they are
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

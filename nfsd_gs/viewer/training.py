"""The live view of a training run (``python -m nfsd_gs.train ... --viewer``).

The training loop calls :meth:`TrainingViewer.after_step` once per step.  That
call is a few clock reads unless something is due:

* every ``viewer.stats_interval_s``: step, loss, Gaussian count and it/s go to
  the panel (reading the loss is the one host sync);
* every ``viewer.update_interval_s`` (and ``update_every_steps``), if a
  browser is connected and the previous snapshot has been sent: the Gaussians
  are copied to the host and handed to a background thread, which turns them
  into covariances and colours and gives them to viser.  The interval
  stretches to 4x the time the last hand-over took, so a large scene costs the
  trainer at most ~20% of a core, and viser keeps only the newest pending
  snapshot per browser (a slow browser skips snapshots, never queues them).
  With no browser connected nothing is copied; one that connects gets the
  current Gaussians after the next step;
* a click on "Save .ply" writes ``snapshots/step_XXXXXX.ply`` through the
  exporter, from the training thread (the parameters are consistent there);
* while "Pause" is on, the call blocks (it still answers "Save .ply").
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

import viser
from torch import Tensor

from ..config import CameraConfig, ViewerConfig
from ..errors import ConfigError

from .server import OrbitView, SplatScene
from .splats import SplatCloud, host_copy, splat_cloud

#: The update interval is at least this multiple of the last publish time.
PUBLISH_COST_FACTOR = 4.0
#: How often a paused loop looks at the buttons (seconds).
PAUSE_POLL_S = 0.05


class UpdatePacer:
    """Decides when the next snapshot is due: time, steps and the last publish cost."""

    def __init__(self, interval_s: float, every_steps: int):
        self.interval_s = interval_s
        self.every_steps = max(every_steps, 1)
        self.last_time = -float("inf")
        self.last_step = -self.every_steps

    def due(self, step: int, now: float, last_cost_s: float = 0.0) -> bool:
        """``last_cost_s``: how long the previous snapshot took to publish."""
        wait = max(self.interval_s, PUBLISH_COST_FACTOR * last_cost_s)
        return now - self.last_time >= wait and step - self.last_step >= self.every_steps

    def sent(self, step: int, now: float) -> None:
        self.last_time, self.last_step = now, step


class SnapshotPublisher:
    """A background thread that publishes the newest submitted snapshot (older ones are dropped)."""

    def __init__(self, publish: Callable[[SplatCloud], None]):
        self._publish = publish
        self._condition = threading.Condition()
        self._pending: Optional[Dict[str, Tensor]] = None
        self._busy = False
        self._closed = False
        self.last_cost_s = 0.0
        self.published = 0
        self._thread = threading.Thread(target=self._loop, name="viewer-publisher", daemon=True)
        self._thread.start()

    def idle(self) -> bool:
        with self._condition:
            return self._pending is None and not self._busy

    def submit(self, params: Dict[str, Tensor]) -> None:
        """Queue host copies of the parameters (replaces a snapshot not yet taken)."""
        with self._condition:
            self._pending = params
            self._condition.notify()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted snapshot is published (tests, final frame)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                params, self._pending, self._busy = self._pending, None, True
            start = time.perf_counter()
            try:
                self._publish(splat_cloud(params))
            except Exception as err:  # a viewer problem must never stop training
                print(f"viewer: could not send the Gaussians: {err}", file=sys.stderr)
            with self._condition:
                self.last_cost_s = time.perf_counter() - start
                self.published += 1
                self._busy = False
                self._condition.notify_all()


class RateMeter:
    """Steps per second since the last reading (paused time excluded by :meth:`restart`)."""

    def __init__(self, step: int = 0):
        self.restart(step)

    def restart(self, step: int) -> None:
        self.step, self.time = step, time.perf_counter()

    def read(self, step: int, now: float) -> float:
        rate = (step - self.step) / max(now - self.time, 1e-9)
        self.step, self.time = step, now
        return rate


class TrainingPanel:
    """The GUI beside the 3D view: read-only stats, Pause/Resume and Save .ply."""

    def __init__(self, server: viser.ViserServer, total_steps: int):
        gui = server.gui
        self.step = gui.add_number("Step", 0, disabled=True, hint=f"of {total_steps}")
        self.loss = gui.add_text("Loss", "-", disabled=True)
        self.count = gui.add_number("Gaussians", 0, disabled=True)
        self.rate = gui.add_text("it/s", "-", disabled=True)
        self.pause_button = gui.add_button("Pause", icon=viser.Icon.PLAYER_PAUSE,
                                           hint="hold training after the current step")
        self.save_button = gui.add_button("Save .ply", icon=viser.Icon.DEVICE_FLOPPY,
                                          hint="write snapshots/step_XXXXXX.ply")
        self.status = gui.add_text("Status", "training", disabled=True)
        self.paused = threading.Event()
        self.save_requested = threading.Event()
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.save_button.on_click(lambda _: self.save_requested.set())

    def toggle_pause(self) -> None:
        if self.paused.is_set():
            self.paused.clear()
            self.pause_button.label, self.status.value = "Pause", "training"
            self.pause_button.icon = viser.Icon.PLAYER_PAUSE
        else:
            self.paused.set()
            self.pause_button.label, self.status.value = "Resume", "paused"
            self.pause_button.icon = viser.Icon.PLAYER_PLAY

    def show_stats(self, step: int, loss: float, count: int, it_per_s: float) -> None:
        self.step.value = step
        self.loss.value = f"{loss:.5g}"
        self.count.value = count
        self.rate.value = f"{it_per_s:.2f}"


def check_viewer_config(config: ViewerConfig) -> None:
    """Values the types allow but the viewer cannot use: a :class:`ConfigError` naming the key."""
    checks = [("port", 0 <= config.port <= 65535, "must lie in [0, 65535]"),
              ("update_interval_s", config.update_interval_s >= 0, "must be >= 0"),
              ("update_every_steps", config.update_every_steps >= 1, "must be >= 1"),
              ("stats_interval_s", config.stats_interval_s >= 0, "must be >= 0")]
    for key, ok, requirement in checks:
        if not ok:
            raise ConfigError(f"config key 'viewer.{key}': {getattr(config, key)!r} {requirement}")


class TrainingViewer:
    """Shows a run's Gaussians and stats in the browser while it trains."""

    def __init__(self, config: ViewerConfig, camera: CameraConfig, run_dir: Path,
                 total_steps: int, start_step: int = 0, label: str = "nfsd_gs"):
        check_viewer_config(config)
        view = OrbitView(0.0, camera.eval_elevation, camera.eval_radius, camera.eval_fovy)
        self.config = config
        self.run_dir = Path(run_dir)
        self.scene = SplatScene.start(config.host, config.port, view, label=label)
        self.url = self.scene.url
        self.panel = TrainingPanel(self.scene.server, total_steps)
        self.publisher = SnapshotPublisher(self.scene.show)
        self.pacer = UpdatePacer(config.update_interval_s, config.update_every_steps)
        self.meter = RateMeter(start_step)
        self.last_stats_time = -float("inf")
        self.saved: list[Path] = []

    # ----------------------------------------------------------------- the hook

    def after_step(self, step: int, splats: Optional[Mapping[str, Tensor]],
                   stats: Mapping[str, Tensor]) -> None:
        """Called by the loop after step ``step`` (1-based count of steps done).

        ``splats``: the model's parameters in gsplat's layout (None for a NeRF).
        ``stats``: the step's tensors; only ``stats["loss"]`` is read, and only
        when the panel is due.
        """
        now = time.perf_counter()
        if now - self.last_stats_time >= self.config.stats_interval_s:
            self._show_stats(step, splats, stats, now)
        # Nobody looking, or the last snapshot still on its way: no copy, and the
        # update stays due, so a browser that connects gets one on the next step.
        if (splats is not None and self.pacer.due(step, now, self.publisher.last_cost_s)
                and self.publisher.idle() and self.scene.num_clients() > 0):
            self.publisher.submit(host_copy(splats))
            self.pacer.sent(step, now)
        if self.panel.save_requested.is_set():
            self._save(step, splats)
        if self.panel.paused.is_set():
            self._wait_while_paused(step, splats)

    def close(self) -> None:
        self.publisher.close()
        self.scene.stop()
        print(f"viewer: closed; to look again: python -m nfsd_gs.view {self.run_dir / 'model.ply'}",
              file=sys.stderr)

    # ----------------------------------------------------------------- helpers

    def _show_stats(self, step: int, splats: Optional[Mapping[str, Tensor]],
                    stats: Mapping[str, Tensor], now: float) -> None:
        loss = stats.get("loss")
        count = int(splats["means"].shape[0]) if splats is not None else 0
        self.panel.show_stats(step, float(loss.float().mean()) if loss is not None else float("nan"),
                              count, self.meter.read(step, now))
        self.last_stats_time = now

    def _wait_while_paused(self, step: int, splats: Optional[Mapping[str, Tensor]]) -> None:
        print(f"viewer: training paused after step {step}", file=sys.stderr)
        while self.panel.paused.is_set():
            if self.panel.save_requested.is_set():
                self._save(step, splats)
            time.sleep(PAUSE_POLL_S)
        self.meter.restart(step)
        print(f"viewer: training resumed at step {step}", file=sys.stderr)

    def _save(self, step: int, splats: Optional[Mapping[str, Tensor]]) -> None:
        self.panel.save_requested.clear()
        if splats is None:
            self.panel.status.value = "nothing to save (not Gaussians)"
            return
        from ..formats.ply import save_ply

        path = self.run_dir / "snapshots" / f"step_{step:06d}.ply"
        save_ply(path, {key: value.detach() for key, value in splats.items()})
        self.saved.append(path)
        self.panel.status.value = f"saved {path.name}"
        print(f"viewer: saved {path}", file=sys.stderr)

"""Ray: an in-process instance on this machine by default, or an existing cluster
(``--address auto`` / ``ray://host:port``); the workers' resources.

Nothing here depends on how many GPUs or hosts there are: each worker asks Ray for
``1 / per_gpu`` of a GPU (or a share of the CPUs on a machine without one) and Ray
places it, on this host or any other.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..errors import NfsdError
from ..train.batched import DEFAULT_ASSETS_CPU, DEFAULT_ASSETS_GPU, default_assets


class ClusterError(NfsdError):
    """Ray could not be started or the cluster at ``--address`` cannot be reached."""


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A quick TCP check of ``host:port`` / ``ray://host:port`` (``auto`` is left to Ray):
    Ray itself waits minutes before giving up on a wrong address."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--address '{address}' must be auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at --address '{address}' "
                           f"({err.strerror or err}); start it with 'ray start --head' "
                           f"or check the address") from None


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this")


def quiet_token_notice() -> None:
    """Ray (2.59+) turns token authentication on for each new local instance and says so in
    a warning at every start; the in-process instance keeps it on, without the notice.
    (Setting RAY_AUTH_MODE=token instead would need it before ``import ray``.)"""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropTokenNotice) for f in logger.filters):
        logger.addFilter(_DropTokenNotice())


def connect(address: Optional[str]) -> None:
    """Join the cluster at ``address``, or start Ray in this process (no server to install)."""
    import ray

    if address:
        check_reachable(address)
        options = {"address": address}
    else:
        # The workers are this machine's processes: let them import this very nfsd_gs.
        package_parent = str(Path(__file__).resolve().parents[2])
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        # "local": a new instance even when a `ray start` cluster runs here (plain
        # ray.init() would join that one).
        options = {"address": "local", "include_dashboard": False}
        quiet_token_notice()
    try:
        ray.init(log_to_driver=False, logging_level=logging.WARNING, **options)
    except Exception as err:  # noqa: BLE001 -- ConnectionError, ValueError, RuntimeError...
        where = f"the Ray cluster at --address '{address}'" if address else "Ray on this machine"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ClusterError(f"cannot start or join {where}: {first}") from None


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors, what each asks Ray for, and how many assets each trains at once."""

    count: int
    num_gpus: float
    num_cpus: float
    assets: int = 1

    def describe(self) -> str:
        share = (f"1/{round(1 / self.num_gpus)} GPU" if self.num_gpus else
                 f"{self.num_cpus:g} CPU")
        return (f"{self.count} worker{'s' if self.count != 1 else ''}, {share} each, "
                f"{self.assets} asset{'s' if self.assets != 1 else ''} at once in each")


def plan_workers(resources: dict, per_gpu: int, workers: Optional[int],
                 gpus: Optional[int], assets: Optional[int] = None) -> WorkerPlan:
    """``per_gpu`` workers on each of ``gpus`` GPUs (default: every GPU of the cluster), or
    ``workers`` of them (on a machine without a GPU: default one per CPU); each trains
    ``assets`` lines at once (default: :data:`DEFAULT_ASSETS_GPU` with GPUs,
    :data:`DEFAULT_ASSETS_CPU` without)."""
    cluster_gpus = int(resources.get("GPU", 0))
    cluster_cpus = float(resources.get("CPU", 1))
    if gpus is not None and gpus > cluster_gpus:
        raise ClusterError(f"--gpus {gpus}: the cluster has {cluster_gpus} GPU(s)")
    use_gpus = cluster_gpus if gpus is None else gpus
    if use_gpus > 0:
        count = workers or use_gpus * per_gpu
        num_gpus = 1.0 / per_gpu
        if count > use_gpus * per_gpu:
            raise ClusterError(f"--workers {count} at --per-gpu {per_gpu} needs "
                               f"{-(-count // per_gpu)} GPUs; {use_gpus} are there (raise --per-gpu)")
    else:
        count = workers or max(1, int(cluster_cpus))
        num_gpus = 0.0
    # Every worker must fit at once, or Ray would leave some waiting for ever.
    num_cpus = min(1.0, int(100 * cluster_cpus / count) / 100) if cluster_cpus else 0.0
    if assets is None:
        assets = default_assets(use_gpus > 0)
    return WorkerPlan(count, num_gpus, num_cpus, assets)


def start_workers(plan: WorkerPlan, stopper_name: str, threads: Optional[int] = None) -> List:
    """The actors: restarted by Ray whenever their process dies (the driver retries the
    assets it was making, up to --max-retries). ``threads``: torch's CPU threads in each.
    Each runs ``plan.assets`` calls of ``make`` at once (a threaded actor; one more thread
    for ``where``)."""
    import ray

    from .worker import AssetTrainer

    actor_class = ray.remote(AssetTrainer).options(
        num_gpus=plan.num_gpus, num_cpus=plan.num_cpus, max_restarts=-1, max_task_retries=0,
        max_concurrency=plan.assets + 1)
    return [actor_class.remote(stopper_name, threads=threads, assets=plan.assets)
            for _ in range(plan.count)]


def start_stop_broadcast():
    """The :class:`StopBroadcast` actor and its name (workers find it by name: a name
    survives their restarts, where a handle among the constructor's arguments may not)."""
    import ray

    from .worker import StopBroadcast

    name = f"nfsd_gs_stop_{uuid.uuid4().hex[:12]}"
    return ray.remote(StopBroadcast).options(num_cpus=0, name=name).remote(), name

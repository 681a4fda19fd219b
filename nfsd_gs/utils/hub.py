"""The Hugging Face hub, asked before a download: can it be reached, is a repository cached.

``from_pretrained`` of a hub id the hub cannot serve retries each connection five times
with back-off (``Retrying in 8s [Retry 5/5]``: half a minute) before it fails with a
message about a missing ``config.json``. One TCP connect to the hub (or to the proxy that
reaches it) says the same at once. :func:`hub_ready` is what loaders call: it returns
whether to load from the cache alone (the hub's offline mode: ``local_files_only``) and
raises one line saying what to download, where to put it and how to name it otherwise.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

from ..errors import PriorLoadError

#: Seconds to wait for the hub's (or the proxy's) TCP handshake, name lookup included.
CONNECT_TIMEOUT_S = 2.0
_TRUE = {"1", "ON", "YES", "TRUE"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(source: str) -> bool:
    """``org/name`` that is no folder here (``./x/y``, ``/abs/path`` and ``~/x`` are paths)."""
    return bool(_REPO_ID.match(source)) and not Path(source).exists()


def endpoint() -> str:
    """The hub's address: ``HF_ENDPOINT`` (read now, not at import), else huggingface_hub's."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def offline_reason(timeout_s: float = CONNECT_TIMEOUT_S) -> Optional[str]:
    """Why the hub cannot be reached (``HF_HUB_OFFLINE`` set, a name that does not resolve,
    a refused or unanswered connection), or None when a TCP connection to it (or to the
    proxy for it) opens within ``timeout_s``."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = getproxies().get(url.scheme) if not proxy_bypass(host) else None
    if proxy:  # the hub is reached through the proxy: ask the proxy
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or "", proxy_url.port or 80
    result = {}

    def connect() -> None:  # in a thread: a name lookup has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result["open"] = True
        except OSError as err:
            result["error"] = err.strerror or str(err) or type(err).__name__

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    if result.get("open"):
        return None
    why = result.get("error", f"no answer in {timeout_s:g} s")
    return f"{'the proxy ' if proxy else ''}{host}:{port} cannot be reached: {why}"


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def in_cache(repo_id: str, filename: str, revision: Optional[str] = None) -> bool:
    """Whether ``filename`` of ``repo_id`` is in the local hub cache (its snapshot was
    downloaded before)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir(), revision=revision)
    return isinstance(found, str)


def hub_ready(repo_id: str, key: str, index_file: str = "model_index.json",
              revision: Optional[str] = None) -> bool:
    """Before ``from_pretrained(repo_id)``: True to load from the cache alone (the hub cannot
    be reached but ``repo_id`` was downloaded before), False to load as usual (the hub
    answers). When the hub cannot be reached and nothing is cached, raise one
    :class:`PriorLoadError` line: the download command, where to put it, ``key=/path``."""
    reason = offline_reason()
    if reason is None:
        return False
    if in_cache(repo_id, index_file, revision):
        return True
    folder = repo_id.rsplit("/", 1)[-1]
    raise PriorLoadError(
        f"{key}={repo_id} must be downloaded from the Hugging Face hub, which cannot be "
        f"reached ({reason}), and it is not in the hub cache ({cache_dir()}): on a machine "
        f"with network run `hf download {repo_id} --local-dir {folder}`, copy the folder "
        f"{folder} here and run with {key}=/path/to/{folder}")


def cache_only(source: str, key: str, index_file: str, revision: Optional[str],
               local_files_only: bool) -> bool:
    """Whether to load ``source`` from the hub cache alone: ``local_files_only``, or a hub id
    the hub cannot serve now that was downloaded before (one line otherwise:
    :func:`hub_ready`). Folders and ``bundled:``/``random:`` names: no."""
    if local_files_only or not looks_like_hub_id(source):
        return local_files_only
    return hub_ready(source, key, index_file, revision)

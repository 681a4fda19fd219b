"""Ports and URLs for the viewers (no viser here: the static page uses them too)."""

from __future__ import annotations

import errno
import socket

from ..errors import NfsdError

#: How many ports above the requested one are tried before giving up.
PORT_SEARCH_SPAN = 100


def find_free_port(host: str, port: int, span: int = PORT_SEARCH_SPAN) -> int:
    """``port`` if ``host:port`` can be bound, else the next free one above it.

    Port 0 asks the OS for any free port.  A host that cannot be bound at all
    (not an address of this machine) or no free port in ``span`` is an
    :class:`NfsdError` that says so, instead of viser's silent hang.
    """
    last = port if port == 0 else min(port + span, 65535)
    for candidate in range(port, last + 1):
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
            except socket.gaierror as err:
                raise NfsdError(f"viewer host '{host}' is not a valid address: {err}") from None
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    continue
                raise NfsdError(f"viewer cannot listen on {host}:{candidate}: {err.strerror}") from None
            return probe.getsockname()[1] if candidate == 0 else candidate
    raise NfsdError(f"viewer: ports {port}-{last} on {host} are all in use; pick another "
                    f"with --viewer-port")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"

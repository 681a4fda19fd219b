"""The shareable page: ``viewer/web/index.html`` (Spark on three.js) and one splat file, served locally.

``python -m nfsd_gs.view FILE --static`` calls :func:`serve_page`.  The page
itself is static: any web server (or a folder on a USB stick served by one)
shows it; this one adds exactly one file, under ``/files/<name>``, and opens it
through the page's ``?file=`` parameter.  three.js and Spark are read from
``viewer/web/node_modules`` (``npm ci --prefix viewer/web``, once), so nothing
is fetched from the network when the page runs.
"""

from __future__ import annotations

import functools
import http.server
import sys
import threading
import urllib.parse
from pathlib import Path

from ..errors import NfsdError
from ..formats import SPLAT_SUFFIXES  # what we write is what Spark opens
from .ports import find_free_port, url_of
#: URL prefix of the one served file.
FILES_PREFIX = "/files/"


def _web_dir() -> Path:
    """``viewer/web`` beside the package (a checkout or editable install), else the copy a
    regular install puts under ``<prefix>/share/nfsd_gs/viewer/web``."""
    source = Path(__file__).resolve().parents[2] / "viewer" / "web"
    return source if source.is_dir() else Path(sys.prefix) / "share" / "nfsd_gs" / "viewer" / "web"


WEB_DIR = _web_dir()
NODE_MODULES = WEB_DIR / "node_modules"


def page_installed(web_dir: Path = WEB_DIR) -> bool:
    """Whether the page and the three.js and Spark builds it imports are present."""
    modules = web_dir / "node_modules"
    return ((web_dir / "index.html").is_file()
            and (modules / "@sparkjsdev" / "spark" / "dist" / "spark.module.js").is_file()
            and (modules / "three" / "build" / "three.module.js").is_file())


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``web_dir`` and, at ``/files/<name>``, the one file; logs nothing."""

    def __init__(self, *args, web_dir: Path, file: Path, **kwargs):
        self.file = file
        super().__init__(*args, directory=str(web_dir), **kwargs)

    def translate_path(self, path: str) -> str:
        clean = urllib.parse.unquote(urllib.parse.urlparse(path).path)
        if clean.startswith(FILES_PREFIX):
            # only the one file; any other name (or ../) maps below it: a path that cannot exist
            wanted = clean[len(FILES_PREFIX):]
            return str(self.file if wanted == self.file.name else self.file / "not-served")
        return super().translate_path(path)

    def log_message(self, format, *args):  # noqa: A002
        pass


class StaticPage:
    """A running local server for the page and one file; ``url`` opens the file in it."""

    def __init__(self, server: http.server.ThreadingHTTPServer, url: str):
        self.server, self.url = server, url
        self._thread = threading.Thread(target=server.serve_forever, name="static-page", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "StaticPage":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def check_splat_file(path: Path) -> Path:
    """``path`` resolved, or an :class:`NfsdError` saying why the page cannot open it."""
    if not path.is_file():
        raise NfsdError(f"no file '{path}'")
    if path.suffix.lower() not in SPLAT_SUFFIXES:
        raise NfsdError(f"'{path}': the page opens {', '.join(SPLAT_SUFFIXES)} files, "
                        f"not '{path.suffix or 'no suffix'}'")
    return path.resolve()


def serve_page(path: Path, host: str = "127.0.0.1", port: int = 8080, web_dir: Path = WEB_DIR,
               **camera: float) -> StaticPage:
    """Serve the page and ``path`` on ``host:port`` (or the next free port); returns the server.

    ``camera``: extra page parameters (``azimuth``, ``elevation``, ``radius``, ``fovy``, ``up``).
    """
    file = check_splat_file(Path(path))
    if not page_installed(web_dir):
        raise NfsdError(f"the page needs three.js and Spark in {web_dir / 'node_modules'}: "
                        f"run npm ci --prefix {web_dir} once")
    free_port = find_free_port(host, port)
    handler = functools.partial(_Handler, web_dir=web_dir, file=file)
    server = http.server.ThreadingHTTPServer((host, free_port), handler)
    query = urllib.parse.urlencode({"file": FILES_PREFIX + file.name, **camera})
    return StaticPage(server, f"{url_of(host, server.server_address[1])}/index.html?{query}")

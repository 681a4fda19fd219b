"""Open an exported ``.ply`` in Spark, an independent web splat renderer, and screenshot it.

Checks that our ``.ply`` files are read by the web ecosystem's viewers, not
only by our own reader: Spark (``@sparkjsdev/spark``, World Labs, on three.js)
parses the file in the browser and draws it.  Needs ``npm ci`` in
``viewer/web`` (three.js and Spark into ``viewer/web/node_modules``) and
Debian's ``chromium``::

    npm ci --prefix viewer/web
    python -m nfsd_gs.viewer.spark_check outputs/a_red_cone/model.ply --out docs/spark.png

The page (``web/spark.html``) and the file are served from 127.0.0.1 by a
small static server in this process; the camera is our evaluation camera
(azimuth 0, elevation 15 degrees, radius 2.75, 55 degree fov, z up).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, Optional, Sequence

WEB_DIR = Path(__file__).resolve().parent / "web"
NODE_MODULES = WEB_DIR / "node_modules"
#: URL prefix under which the .ply's folder is served.
FILES_PREFIX = "/files/"


def spark_installed() -> bool:
    return (NODE_MODULES / "@sparkjsdev" / "spark" / "dist" / "spark.module.js").is_file() and (
        NODE_MODULES / "three" / "build" / "three.module.js").is_file()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``web/`` and, under ``/files/``, one other folder; logs nothing."""

    def __init__(self, *args, files_dir: Path, **kwargs):
        self.files_dir = files_dir
        super().__init__(*args, directory=str(WEB_DIR), **kwargs)

    def translate_path(self, path: str) -> str:
        clean = urllib.parse.urlparse(path).path
        if clean.startswith(FILES_PREFIX):
            name = Path(urllib.parse.unquote(clean[len(FILES_PREFIX):])).name  # no ../
            return str(self.files_dir / name)
        return super().translate_path(path)

    def log_message(self, format, *args):  # noqa: A002
        pass


@contextlib.contextmanager
def serve_spark_page(ply: Path) -> Iterator[str]:
    """Serve ``web/`` and ``ply``'s folder on 127.0.0.1 (a free port); yields the page URL."""
    handler = functools.partial(_Handler, files_dir=Path(ply).resolve().parent)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="spark-page", daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        query = urllib.parse.urlencode({"ply": FILES_PREFIX + Path(ply).name})
        yield f"http://127.0.0.1:{port}/spark.html?{query}"
    finally:
        server.shutdown()
        server.server_close()


def load_in_spark(page, url: str, timeout_s: float = 60.0) -> int:
    """Open ``url`` and wait until Spark has parsed the file; returns its splat count."""
    page.goto(url)
    page.wait_for_function("window.splatCount !== undefined || window.splatError !== undefined",
                           timeout=timeout_s * 1000)
    error = page.evaluate("window.splatError")
    if error:
        raise RuntimeError(f"Spark could not load the file: {error}")
    return int(page.evaluate("window.splatCount"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .headless import chromium_page, find_chromium

    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.viewer.spark_check",
                                     description="Screenshot a .ply as Spark draws it.")
    parser.add_argument("ply", type=Path)
    parser.add_argument("--out", type=Path, default=Path("spark.png"), help="screenshot path")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="wait this long after loading before the screenshot")
    args = parser.parse_args(argv)
    if not spark_installed():
        print(f"error: Spark is not installed: npm ci --prefix {WEB_DIR}", file=sys.stderr)
        return 2
    if find_chromium() is None:
        print("error: no Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    with serve_spark_page(args.ply) as url, chromium_page() as page:
        count = load_in_spark(page, url)
        time.sleep(args.seconds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
    print(f"Spark drew {count} Gaussians from {args.ply}; screenshot {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

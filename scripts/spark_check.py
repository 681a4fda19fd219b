"""Open a ``.ply``, ``.splat`` or ``.spz`` in Spark, through the static page, and screenshot it.

Checks that our files are read by the web ecosystem's viewers, not only by our
own reader: Spark (``@sparkjsdev/spark``, World Labs, on three.js) parses the
file in the browser and draws it.  Needs ``npm ci --prefix viewer/web`` and
Debian's ``chromium``::

    python scripts/spark_check.py outputs/a_red_cone/model.ply --out docs/spark_check.png

The page (``viewer/web/index.html``) and the file are served from 127.0.0.1 by
``nfsd_gs.viewer.static``; the camera is our evaluation camera (azimuth 0,
elevation 15 degrees, radius 2.75, 55 degree fov, z up).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout; browser.headless (the tests' Chromium driver)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from browser.headless import chromium_page, find_chromium, load_in_spark
    from nfsd_gs.errors import NfsdError
    from nfsd_gs.viewer.static import serve_page

    parser = argparse.ArgumentParser(prog="python scripts/spark_check.py",
                                     description="Screenshot a splat file as Spark draws it.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--out", type=Path, default=Path("spark.png"), help="screenshot path")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="wait this long after loading before the screenshot")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("error: no Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        page_server = serve_page(args.file, port=0, radius=2.75)
    except NfsdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with page_server, chromium_page() as page:
        count = load_in_spark(page, page_server.url)
        time.sleep(args.seconds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
    print(f"Spark drew {count} Gaussians from {args.file}; screenshot {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

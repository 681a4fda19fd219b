"""Headless Chromium for the browser tests.

They skip, saying why, only where Chromium is genuinely absent; where
``NFSD_REQUIRE_BROWSER`` or ``CI`` is set (.ci/run sets the first, after
installing Chromium and Spark) a missing one is a failure.
Screenshots are kept under each test's tmp dir.
"""

import os

import pytest

from browser.headless import chromium_page, find_chromium

#: .ci/run installs Chromium and Spark, so there a missing one is a failure, not a skip.
IN_CI = bool(os.environ.get("NFSD_REQUIRE_BROWSER") or os.environ.get("CI"))


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real headless Chromium")


def require(available: bool, reason: str) -> None:
    """Skip with ``reason`` where ``available`` is false; in CI, fail instead."""
    if not available:
        if IN_CI:
            pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
        pytest.skip(reason)


@pytest.fixture
def page():
    require(find_chromium() is not None,
            "Chromium is not installed (apt-get install chromium; .ci/run does)")
    messages = []
    with chromium_page(800, 600, log=messages.append) as page:
        page.console_messages = messages
        yield page

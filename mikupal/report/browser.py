"""Open a report in the system's headless Chromium through Playwright (for the tests and the benchmark).

Playwright drives the browser that Debian's ``chromium`` package installs (``executable_path``); it never downloads
a browser of its own. ``pip install 'mikupal[test]'`` brings the Playwright driver, ``apt-get install chromium`` the
browser (``scripts/setup.sh`` does both).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: Where a system Chromium is looked for, in order (``$MIKUPAL_CHROMIUM`` first).
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of the system Chromium, or ``None`` when none is installed."""
    env = os.environ.get("MIKUPAL_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[object]:
    """A Playwright page in headless system Chromium; closes the browser on exit.

    Raises:
        RuntimeError: no system Chromium (the message names the install command).
    """
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError("no system Chromium found: apt-get install chromium (or set MIKUPAL_CHROMIUM)")
    with sync_playwright() as pw:
        # Default file:// rules (no --allow-file-access-from-files): the page must work as a user's browser sees it.
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()

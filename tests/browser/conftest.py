"""A real browser for the browser tests: Debian's `chromium` driven by Playwright (which
never downloads a browser of its own here), and where the tests may leave screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvips
from playwright.sync_api import Browser, Page, sync_playwright

# Set to a folder (e.g. docs/screenshots) to have the browser tests save their screenshots.
SCREENSHOTS = os.environ.get("PROMPTPIX_SCREENSHOTS", "")


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("chromium not found: run tests/install-servers.sh (apt: chromium)")
    return found


# Package-wide, not session-wide: Playwright's sync API keeps an event loop running in this
# thread while it lives, and the tests after these call asyncio.run().
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium())
        yield launched
        launched.close()


def save_screenshot(name: str, page: Page, *, full_page: bool = False) -> None:
    """Saves the page as `name` (a PNG with a 256-colour palette: small enough to commit)
    when screenshots are asked for."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    shot = pyvips.Image.new_from_buffer(page.screenshot(full_page=full_page), "")
    shot.pngsave(str(folder / name), palette=True, Q=90, compression=9, strip=True)

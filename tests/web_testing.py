"""The browser tests' guard: skip where no browser can run, fail in CI. The driving itself is
``osr_export.browser``."""

from __future__ import annotations

import os

import pytest

from osr_export.browser import classify_in_page, missing_browser_parts, open_page, serve, start_browser

__all__ = ["classify_in_page", "open_page", "require_browser", "serve", "start_browser"]


def require_browser() -> None:
    """Skip where Chromium, its driver, Selenium or ONNX Runtime Web is missing; in CI, fail."""
    missing = missing_browser_parts()
    if missing:
        message = "browser tests need " + "; ".join(missing) + " (apt-get install chromium chromium-driver npm; make web-runtime)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)

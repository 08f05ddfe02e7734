"""Helpers for the browser tests: find Debian's Chromium, serve a folder, drive the page."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

#: Debian's Chromium binary (the /usr/bin wrapper prints errors about /etc/chromium.d) and driver.
CHROMIUM = Path(os.environ.get("OSR_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMEDRIVER = Path(os.environ.get("OSR_CHROMEDRIVER", "/usr/bin/chromedriver"))


def require_browser() -> None:
    """Skip where Chromium, its driver, Selenium or ONNX Runtime Web is missing; in CI, fail."""
    from osr_export.web_export import WebRuntimeMissing, find_runtime

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    try:
        find_runtime()
    except WebRuntimeMissing as exc:
        missing.append(str(exc))
    if missing:
        message = "browser tests need " + "; ".join(missing) + " (apt-get install chromium chromium-driver npm; make web-runtime)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def start_browser():  # noqa: ANN201 - selenium WebDriver
    """Headless Chromium through Selenium, offline: the system driver, never a download."""
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(300)
    return driver


def _bundled_server():  # noqa: ANN202 - the module serve.py of the web bundle
    """The bundle's own serve.py (it is shipped standalone, so it is loaded from its file)."""
    import importlib.util

    from osr_export.web_export import STATIC_DIR

    spec = importlib.util.spec_from_file_location("osr_web_serve", STATIC_DIR / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SERVED = _bundled_server()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A plain static server (one wasm thread), with the MIME types of the bundle's serve.py."""

    extensions_map = _SERVED.IsolatedHandler.extensions_map

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


class _IsolatedHandler(_SERVED.IsolatedHandler):
    """The bundle's serve.py handler (cross-origin isolation: the wasm runtime may use threads), quietly."""

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@contextmanager
def serve(root: Path, isolated: bool = False) -> Iterator[str]:
    """A static HTTP server for ``root`` on a free local port (cross-origin isolated if asked); yields its base URL."""
    handler = _IsolatedHandler if isolated else _QuietHandler
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def open_page(driver, url: str) -> dict:  # noqa: ANN001
    """Load the page and wait for its model; returns what the page says about it (or raises)."""
    driver.get(url)
    info = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.osr.ready.then(m => done({threads: m.threads, score: m.score, threshold: m.threshold,"
        " classes: m.classNames}), e => done({error: String(e && e.message || e)}));"
    )
    if "error" in info:
        raise AssertionError(f"the page could not load its model: {info['error']}")
    return info


def classify_in_page(driver, urls: list[str], chunk: int = 64) -> list[dict]:  # noqa: ANN001
    """window.osr.classifyUrls over ``urls`` (relative to the page), in chunks."""
    out: list[dict] = []
    for start in range(0, len(urls), chunk):
        result = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.osr.classifyUrls(arguments[0]).then(done, e => done({error: String(e && e.message || e)}));",
            urls[start : start + chunk],
        )
        if isinstance(result, dict) and "error" in result:
            raise AssertionError(f"the page failed: {result['error']}")
        out.extend(result)
    return out

"""Drive an exported web page (``osr-export --format web``) in headless Chromium: serve the bundle
on 127.0.0.1, open the page, classify images in it. What the browser tests and the browser
benchmark use; a user can check a bundle the same way in their own CI. Needs ``selenium`` (the
``dev`` extra) and Debian's ``chromium`` and ``chromium-driver`` (never a browser download).
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

#: Debian's Chromium binary (the /usr/bin wrapper prints errors about /etc/chromium.d) and driver.
CHROMIUM = Path(os.environ.get("OSR_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMEDRIVER = Path(os.environ.get("OSR_CHROMEDRIVER", "/usr/bin/chromedriver"))


class BrowserPageError(RuntimeError):
    """The page failed to load its model or to classify, or answered for the wrong number of images."""


def missing_browser_parts() -> list[str]:
    """What running a page needs and this machine lacks: Chromium, its driver, Selenium, ONNX Runtime Web."""
    from osr_export.web_export import WebRuntimeMissing, find_runtime

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401 - only whether it imports
    except ImportError:
        missing.append("the selenium package")
    try:
        find_runtime()
    except WebRuntimeMissing as exc:
        missing.append(str(exc))
    return missing


def start_browser() -> WebDriver:
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


def _bundled_server() -> ModuleType:
    """The bundle's own serve.py (it is shipped standalone, so it is loaded from its file)."""
    import importlib.util

    from osr_export.web_export import STATIC_DIR

    spec = importlib.util.spec_from_file_location("osr_web_serve", STATIC_DIR / "serve.py")
    assert spec is not None and spec.loader is not None, "the web bundle's serve.py is part of the package"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _handlers() -> tuple[type, type]:
    """The quiet plain and isolated handlers (loaded on first use: no side effect at import)."""
    served = _bundled_server()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        """A plain static server (one wasm thread), with the MIME types of the bundle's serve.py."""

        extensions_map = served.IsolatedHandler.extensions_map

        def log_message(self, *args: object) -> None:
            pass

    # The bundle's serve.py handler (cross-origin isolation: the wasm runtime may use threads), quietly.
    isolated: type = type("IsolatedHandler", (served.IsolatedHandler,), {"log_message": QuietHandler.log_message})
    return QuietHandler, isolated


@contextmanager
def serve(root: Path, isolated: bool = False) -> Iterator[str]:
    """A static HTTP server for ``root`` on a free local port (cross-origin isolated if asked); yields its base URL."""
    quiet, isolating = _handlers()
    handler = isolating if isolated else quiet
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def open_page(driver: WebDriver, url: str) -> dict[str, Any]:
    """Load the page and wait for its model; returns what the page says about it (or raises)."""
    driver.get(url)
    info = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.osr.ready.then(m => done({threads: m.threads, score: m.score, threshold: m.threshold,"
        " classes: m.classNames}), e => done({error: String(e && e.message || e)}));"
    )
    if "error" in info:
        raise BrowserPageError(f"the page could not load its model: {info['error']}")
    return info


def classify_in_page(driver: WebDriver, urls: list[str], chunk: int = 64) -> list[dict[str, Any]]:
    """window.osr.classifyUrls over ``urls`` (relative to the page), in chunks: one result per
    URL, in order (a page that answers with more or fewer is an error, not a shorter list)."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(urls), chunk):
        result = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.osr.classifyUrls(arguments[0]).then(done, e => done({error: String(e && e.message || e)}));",
            urls[start : start + chunk],
        )
        if isinstance(result, dict) and "error" in result:
            raise BrowserPageError(f"the page failed: {result['error']}")
        asked = urls[start : start + chunk]
        if not isinstance(result, list) or len(result) != len(asked):
            raise BrowserPageError(f"the page answered {len(result) if isinstance(result, list) else type(result).__name__} results "
                                   f"for {len(asked)} images")
        out.extend(result)
    return out

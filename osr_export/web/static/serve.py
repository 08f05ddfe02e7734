"""Serve this folder on localhost, cross-origin isolated, so ONNX Runtime Web can use threads.

    python3 serve.py [PORT]        # then open http://localhost:PORT/ (default 8000)

Any static file server can host the page; without the two headers below (COOP and COEP) a
browser runs ONNX Runtime Web's wasm on one thread.
"""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    handler = functools.partial(IsolatedHandler, directory=str(Path(__file__).resolve().parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    print(f"serving {Path(__file__).resolve().parent} at http://localhost:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""Run a `Service` with uvicorn on a socket of its own, stopping gracefully on SIGTERM or Ctrl-C.

The socket is bound before the server starts, so a port in use is an error the caller can
report (and ``port=0`` picks a free one, named by ``on_listening``). A stop signal makes the
service unready, stops accepting connections, lets every request in flight finish (its
batch included), then returns: the process exits normally, with what it served.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from osr_infer.errors import ParameterError
from osr_infer.serve.app import Service

#: Connections served at once; beyond it uvicorn answers 503 (it bounds the bodies held while being read).
CONCURRENCY = 1024


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port``; a ParameterError naming ``port`` (or
    ``host``) where it cannot be had."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ParameterError("port", f"port must be an integer in [0, 65535], not {port!r}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except socket.gaierror as exc:
        raise ParameterError("host", f"host {host!r} cannot be resolved ({exc.strerror})") from None
    except OSError as exc:
        sock.close()
        raise ParameterError("port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(service: Service, host: str = "127.0.0.1", port: int = 8000, *,
        on_listening: Callable[[str], None] | None = None, on_stopping: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C (then drain and return). ``on_listening`` gets the URL once
    the socket is bound; ``on_stopping`` is called when the stop signal arrives."""
    import uvicorn

    sock = bind(host, port)
    config = uvicorn.Config(service.app, log_level="error", access_log=False, lifespan="on", timeout_keep_alive=5,
                            timeout_graceful_shutdown=int(service.config.timeout_s) + 5, server_header=False,
                            proxy_headers=False, limit_concurrency=CONCURRENCY)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.draining = True  # /v2/health/ready says 503 from now on
            if not self.should_exit and on_stopping is not None:
                on_stopping()
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # a graceful stop: return, do not re-raise the signal

    name, bound_port = sock.getsockname()[:2]
    shown = f"[{name}]" if ":" in name else name
    if on_listening is not None:
        on_listening(f"http://{shown}:{bound_port}")
    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()

"""The real service under uvicorn on a free loopback port, for tests that need a real HTTP server (browsers)."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` (lifespan on) in a thread; yields its base URL and stops it on exit.  ``config``: more
    ``uvicorn.Config`` options (e.g. ``app.cli.server_options(settings)``, what ``nuqi serve`` passes)."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                        lifespan="on", timeout_graceful_shutdown=2, **config))
    th = threading.Thread(target=srv.run, name=f"uvicorn-{port}", daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert th.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        th.join(15)

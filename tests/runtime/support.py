"""Shared test helpers: an Engine wired to the demo API the way a worker builds one."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.settings import ROOT, get_settings
from runtime.cli import FileResolver
from runtime.engine import Engine
from runtime.http import GuardedClient

WORKFLOWS = ROOT / "workflows"
API_NAMES = ("ORDERS_API", "CRM_API", "PAYMENTS_API", "TICKETS_API")


def demo_engine(demo_url: str, **kw: Any) -> Engine:
    """Shipped workflows resolvable by slug, ``${config:*_API}`` and the SSRF allow-list on ``demo_url``."""
    settings = get_settings()
    return Engine(
        settings=settings,
        resolve=FileResolver([WORKFLOWS]),
        config_values=dict.fromkeys(API_NAMES, demo_url),
        http=GuardedClient(settings, allow_origins=[demo_url]),
        **kw,
    )


@contextmanager
def hangup_server() -> Iterator[str]:
    """A loopback HTTP origin that reads each request and hangs up without answering, so the
    caller cannot know whether the request took effect (httpx: ``RemoteProtocolError``)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)  # so the loop sees ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, name="hangup-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        sock.close()
        thread.join(timeout=5)

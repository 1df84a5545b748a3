"""Shared helpers for node tests: real components only (offline LLM, the router, the guarded HTTP
client, the demo API served over real HTTP on 127.0.0.1)."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from builder.yaml_io import load
from core.settings import get_settings
from nodes.base import NodeInput
from runtime.context import RunContext

_lock = threading.Lock()
_shared: dict[str, Any] = {}


def demo_api() -> str:
    """Base URL of one demo API per test process (stopped at exit). Tests that change its data
    call ``reset_demo()`` first."""
    with _lock:
        if "demo" not in _shared:
            from runtime.demo_api import serve_in_thread

            url, stop = serve_in_thread()
            atexit.register(stop)
            _shared["demo"] = url
        return _shared["demo"]


def reset_demo() -> None:
    import httpx

    httpx.post(f"{demo_api()}/_control", json={"reset": True, "fail": []}, timeout=5).raise_for_status()


def router() -> Any:
    """One router per process: its classifier heads are fitted once per intents set."""
    with _lock:
        if "router" not in _shared:
            from runtime.router import Router

            _shared["router"] = Router(settings=get_settings())
        return _shared["router"]


def make_ctx(**overrides: Any) -> RunContext:
    from runtime.http import GuardedClient
    from runtime.llm import OfflineProvider

    base = demo_api()
    kw: dict[str, Any] = {
        "llm": OfflineProvider(),
        "router": router(),
        "http": GuardedClient(allow_origins=[base]),
        "config_values": {"ORDERS_API": base, "CRM_API": base, "PAYMENTS_API": base, "TICKETS_API": base},
        "node_id": "n",
    }
    kw.update(overrides)
    return RunContext(**kw)


def make_input(message: str = "", vars: dict[str, Any] | None = None, **kw: Any) -> NodeInput:
    values = {"message": message, **(vars or {})}
    messages = kw.pop("messages", None)
    if messages is None:
        messages = [{"id": "u1", "role": "user", "content": message}] if message else []
    return NodeInput(kw.pop("node_id", "n"), values, messages)


def make_engine(**overrides: Any) -> Any:
    """The real engine over the real components (demo API allow-listed and named in config)."""
    from runtime.engine import Engine
    from runtime.http import GuardedClient
    from runtime.llm import OfflineProvider

    base = demo_api()
    kw: dict[str, Any] = {
        "llm": OfflineProvider(),
        "router": router(),
        "http": GuardedClient(allow_origins=[base]),
        "config_values": {"ORDERS_API": base, "CRM_API": base, "PAYMENTS_API": base, "TICKETS_API": base},
    }
    kw.update(overrides)
    return Engine(**kw)


def workflow(text: str) -> Any:
    return load(text).workflow

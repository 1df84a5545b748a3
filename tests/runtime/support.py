"""Shared test helpers: an Engine wired to the demo API the way a worker builds one."""

from __future__ import annotations

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

"""The Reflex app object (``rxconfig.app_name = "app"`` -> Reflex imports ``app.app``)."""

from __future__ import annotations

import asyncio

import reflex as rx

from app.api import api
from app.routes import register

# An inline SVG icon: no asset file to ship, no favicon 404 in the browser console.
FAVICON = (
    "data:image/svg+xml,"
    "%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E"
    "%3Crect width='32' height='32' rx='8' fill='%233e63dd'/%3E"
    "%3Cpath d='M9 10h14v9h-8l-4 3v-3H9z' fill='white'/%3E%3C/svg%3E"
)

# The FastAPI app wraps Reflex: /api/v1/* and the UI share one process and one port.
app = rx.App(api_transformer=api, head_components=[rx.el.link(rel="icon", href=FAVICON)])
register(app)


async def embedded_worker() -> None:
    """With REDIS_URL unset, turns run in a worker thread of this process (DESIGN.md §7).

    Started at boot rather than on the first message, so turns left queued by a restart are
    re-enqueued (the embedded queue lives in memory) and the first reply pays no model loading.
    """
    from core.settings import get_settings

    if get_settings().REDIS_URL:
        return  # production: `flowdesk worker` processes serve the queue
    from runtime.worker import ensure_embedded_worker, requeue_orphans

    await asyncio.to_thread(ensure_embedded_worker)
    await asyncio.to_thread(requeue_orphans)


app.register_lifespan_task(embedded_worker)

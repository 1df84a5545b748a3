"""Every page and its URL in one table. Adding a page = a module in ``app/pages/`` + a line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import reflex as rx

from app.pages import workflows


@dataclass(frozen=True)
class Route:
    path: str
    page: Callable[[], rx.Component]
    title: str
    on_load: Any = None  # an event handler of the page's state


ROUTES: tuple[Route, ...] = (
    Route("/", workflows.page, "Workflows", workflows.WorkflowsState.load),
    Route("/workflows", workflows.page, "Workflows", workflows.WorkflowsState.load),
)


def register(app: rx.App) -> None:
    for r in ROUTES:
        app.add_page(r.page, route=r.path, title=f"{r.title} · flowdesk", on_load=r.on_load)

"""The root UI state. Kept thin: pages hang their own substates off it (DESIGN.md §3).

No SQL, no LLM, no queue here: handlers call plain services (``builder``, ``runtime``,
``tenants``) and copy plain data into vars.
"""

from __future__ import annotations

import reflex as rx


class State(rx.State):
    """Shared by every page (the signed-in user and tenant will live here)."""

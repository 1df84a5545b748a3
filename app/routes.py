"""Every page and its URL in one table. Adding a page = a module in ``app/pages/`` + a line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import reflex as rx

from app.pages import (
    api_keys,
    chat_test,
    dead_letters,
    editor,
    handoffs,
    invite,
    login,
    members,
    plan,
    signup,
    versions,
    workflows,
)
from app.pages.chat_test_state import ChatTestState
from app.pages.editor_state import EditorState
from app.state import State


@dataclass(frozen=True)
class Route:
    path: str
    page: Callable[[], rx.Component]
    title: str
    on_load: Any = None  # an event handler of the page's state, or a list of them


def signed_in(*handlers: Any) -> list[Any]:
    """``on_load`` of a page that needs a login: check the session first (else -> /login)."""
    return [State.require_login, *handlers]


ROUTES: tuple[Route, ...] = (
    Route("/", workflows.page, "Workflows", signed_in(workflows.WorkflowsState.load)),
    Route("/workflows", workflows.page, "Workflows", signed_in(workflows.WorkflowsState.load)),
    Route("/workflows/[id]/edit", editor.page, "Edit workflow", signed_in(EditorState.load)),
    Route("/workflows/[id]/versions", versions.page, "Versions", signed_in(versions.VersionsState.load)),
    Route("/workflows/[id]/test", chat_test.page, "Test chat", signed_in(ChatTestState.load)),
    Route("/login", login.page, "Log in", [login.LoginState.clear, State.redirect_if_logged_in]),
    Route("/signup", signup.page, "Sign up", [signup.SignupState.clear, State.redirect_if_logged_in]),
    Route("/invite", invite.page, "Join your team", invite.InviteState.load),
    Route("/settings/members", members.page, "Members", signed_in(members.MembersState.load)),
    Route("/settings/api-keys", api_keys.page, "API keys", signed_in(api_keys.ApiKeysState.load)),
    Route("/settings/plan", plan.page, "Plan", signed_in(plan.PlanState.load)),
    Route(
        "/settings/dead-letters",
        dead_letters.page,
        "Failed turns",
        signed_in(dead_letters.DeadLettersState.load),
    ),
    Route("/handoffs", handoffs.page, "Handoffs", signed_in(handoffs.HandoffsState.load)),
)


def register(app: rx.App) -> None:
    for r in ROUTES:
        app.add_page(r.page, route=r.path, title=f"{r.title} · flowdesk", on_load=r.on_load)

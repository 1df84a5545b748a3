"""Roles and what they may do (pure). owner > admin > editor > viewer."""

from __future__ import annotations

from typing import Literal

from tenants.tokens import ADMIN, CHAT, WORKFLOWS_READ, WORKFLOWS_WRITE

Role = Literal["owner", "admin", "editor", "viewer"]
ROLES: tuple[Role, ...] = ("owner", "admin", "editor", "viewer")
RANK = {r: i for i, r in enumerate(reversed(ROLES))}  # viewer 0 .. owner 3

#: Scopes a signed-in member has through their role (API keys carry their own scopes).
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "owner": (WORKFLOWS_READ, WORKFLOWS_WRITE, CHAT, ADMIN),
    "admin": (WORKFLOWS_READ, WORKFLOWS_WRITE, CHAT, ADMIN),
    "editor": (WORKFLOWS_READ, WORKFLOWS_WRITE, CHAT),
    "viewer": (WORKFLOWS_READ,),
}


def at_least(role: str, minimum: str) -> bool:
    return RANK.get(role, -1) >= RANK[minimum]


def can_assign(actor_role: str, target_role: str) -> bool:
    """Admins manage editors and viewers and other admins; only owners make owners."""
    if target_role not in RANK:
        return False
    if target_role == "owner":
        return actor_role == "owner"
    return at_least(actor_role, "admin")


def can_manage(actor_role: str, member_role: str) -> bool:
    """Whether an actor may change or remove a member who has ``member_role``."""
    if member_role == "owner":
        return actor_role == "owner"
    return at_least(actor_role, "admin")

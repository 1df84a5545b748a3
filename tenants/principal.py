"""The authenticated caller. The tenant comes from here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import Forbidden
from tenants.tokens import scopes_allow


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    kind: Literal["user", "api_key", "token"]
    #: user id, API key id, or the JWT's ``sub``.
    actor_id: str
    scopes: tuple[str, ...]
    role: str | None = None  # members only
    user_id: str | None = None
    ip: str | None = None

    def allows(self, scope: str) -> bool:
        return scopes_allow(self.scopes, scope)

    def require(self, scope: str) -> None:
        if not self.allows(scope):
            raise Forbidden("insufficient_scope", f"this requires the '{scope}' scope")

    @property
    def actor_type(self) -> str:
        return "user" if self.kind == "user" else "api_key"

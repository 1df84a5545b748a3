"""Tenants, accounts, keys, sessions, audit and secrets tables (SQLModel; DESIGN.md §6).

Portable to SQLite and PostgreSQL. Ids are uuid4 hex made in Python (``core.db.new_id``),
datetimes are timezone-aware UTC (``core.db.UTCDateTime``). Tables with ``tenant_id`` are marked
``TenantOwned`` (ORM scoping) and listed in ``core.db.TENANT_TABLES`` (RLS on PostgreSQL).
Rows cascade away with their tenant; ``users`` and ``auth_tokens`` are global.
Schema changes need an Alembic revision (alembic/versions/).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Text, UniqueConstraint, event
from sqlmodel import Field, SQLModel

from core.db import JSONType, TenantOwned, TenantRoot, UTCDateTime, new_id, utcnow

PLANS: tuple[str, ...] = ("free", "pro", "business")
ROLES: tuple[str, ...] = ("owner", "admin", "editor", "viewer")
ACTOR_TYPES: tuple[str, ...] = ("user", "api_key", "system")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _lower_email(_mapper: Any, _conn: Any, target: User | Invitation) -> None:
    # Emails compare case-insensitively; the CHECK constraint backs this up for raw SQL.
    # (SQLModel table models skip validators, so this runs as a mapper event on every write.)
    target.email = target.email.strip().lower()


class Tenant(SQLModel, TenantRoot, table=True):
    __tablename__ = "tenants"
    __table_args__ = (
        UniqueConstraint("slug", name="uq_tenants_slug"),
        CheckConstraint(_one_of("plan", PLANS), name="plan"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=64)
    plan: str = Field(default="free", max_length=16)
    #: Per-tenant plan adjustments (limit name -> value), decided by tenants/limits.py.
    tier_overrides: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class User(SQLModel, table=True):
    """A person; global (one account, many tenants through memberships)."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("email", name="uq_users_email"),
        UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc"),
        CheckConstraint("email = lower(email)", name="email_lower"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    email: str = Field(max_length=320)
    name: str = Field(default="", max_length=200)
    #: argon2 hash; None for OIDC-only accounts.
    password_hash: str | None = Field(default=None, max_length=255)
    oidc_issuer: str | None = Field(default=None, max_length=500)
    oidc_subject: str | None = Field(default=None, max_length=255)
    email_verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_logins: int = Field(default=0)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Membership(SQLModel, TenantOwned, table=True):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id", name="uq_memberships_tenant_user"),
        CheckConstraint(_one_of("role", ROLES), name="role"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", max_length=32)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", index=True, max_length=32)
    role: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Invitation(SQLModel, TenantOwned, table=True):
    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_invitations_token_hash"),
        CheckConstraint(_one_of("role", ROLES), name="role"),
        CheckConstraint("email = lower(email)", name="email_lower"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", index=True, max_length=32)
    email: str = Field(max_length=320)
    role: str = Field(max_length=16)
    #: sha256 hex of the emailed token; the token itself is never stored.
    token_hash: str = Field(max_length=64)
    invited_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL", max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiKey(SQLModel, TenantOwned, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", index=True, max_length=32)
    name: str = Field(max_length=200)
    #: The first 12 characters of the key, shown in lists to recognise it.
    prefix: str = Field(max_length=12)
    #: sha256 hex of the whole key.
    key_hash: str = Field(max_length=64)
    scopes: list[str] = Field(default_factory=list, sa_type=JSONType)
    created_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL", max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserSession(SQLModel, TenantOwned, table=True):
    """A browser login session in one tenant (the cookie holds the token, the row its hash)."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_sessions_token_hash"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    token_hash: str = Field(max_length=64)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", index=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", index=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)


class AuthToken(SQLModel, table=True):
    """Single-use token (password reset, email verification); global like users."""

    __tablename__ = "auth_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_auth_tokens_token_hash"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", index=True, max_length=32)
    purpose: str = Field(max_length=32)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEntry(SQLModel, TenantOwned, table=True):
    """Who did what, when, from where. Append-only by convention."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_tenant_created", "tenant_id", "created_at"),
        CheckConstraint(_one_of("actor_type", ACTOR_TYPES), name="actor_type"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", max_length=32)
    actor_type: str = Field(max_length=16)
    actor_id: str | None = Field(default=None, max_length=32)
    #: Dotted verb, e.g. "workflow.publish".
    action: str = Field(max_length=100)
    target: str | None = Field(default=None, max_length=500)
    ip: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Secret(SQLModel, TenantOwned, table=True):
    """A tenant secret (``${secret:NAME}``, provider keys): Fernet ciphertext from core.crypto."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_secrets_tenant_name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", max_length=32)
    name: str = Field(max_length=100)
    ciphertext: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


for _model in (User, Invitation):
    event.listen(_model, "before_insert", _lower_email)
    event.listen(_model, "before_update", _lower_email)

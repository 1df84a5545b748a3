"""Accounts and tenants: sign-up, login/logout, sessions, members and roles, invitations,
password reset, API keys, secrets, audit. Plain functions; sessions are opened here per
operation (``tenant_session`` for a tenant's rows, ``system_session`` before the tenant is
known), so callers (API routes, Reflex state, CLI) never pass a tenant id they chose."""

from __future__ import annotations

import re
import secrets as pysecrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, select

from core import crypto
from core.db import (
    find_invitation,
    resolve_api_key,
    resolve_session,
    system_session,
    tenant_session,
    user_memberships,
)
from core.errors import Conflict, Forbidden, Invalid, NotFound, PlanLimit, Unauthorized
from core.mailer import send_mail
from core.settings import get_settings
from tenants import limits, plans, roles, tokens
from tenants.models import (
    ApiKey,
    AuditEntry,
    AuthToken,
    Invitation,
    Membership,
    Secret,
    Tenant,
    User,
    UserSession,
)
from tenants.passwords import (
    LockoutPolicy,
    PasswordPolicyError,
    check_password_policy,
    hash_password,
    verify_password_or_dummy,
)
from tenants.principal import Principal

#: Deliberately narrower than RFC 5322: no quotes, brackets, colons or spaces, so every address
#: we accept is one the mailer can send to without quoting (and none smuggles markup).
EMAIL_RE = re.compile(
    r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}$"
)
SECRET_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
INVITE_TTL = timedelta(days=7)
RESET_TTL = timedelta(hours=1)
LOCKOUT = LockoutPolicy()
MAX_SECRET_BYTES = 16_384
API_KEY_PREFIX_CHARS = 12  # api_keys.prefix is VARCHAR(12)


def _now() -> datetime:
    return datetime.now(UTC)


def _email(value: str) -> str:
    email = (value or "").strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 320:
        raise Invalid("invalid_email", "enter a valid email address")
    return email


def _name(value: str, what: str, max_len: int = 200) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise Invalid(f"invalid_{what}", f"the {what} cannot be empty")
    if len(text) > max_len:
        raise Invalid(f"invalid_{what}", f"the {what} is longer than {max_len} characters")
    return text


def _password(password: str, email: str) -> str:
    try:
        check_password_policy(password, email=email)
    except PasswordPolicyError as e:
        raise Invalid("weak_password", str(e)) from None
    return hash_password(password)


def _slugify(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "team"
    return f"{base}-{pysecrets.token_hex(3)}"


def audit(
    s: Session, p: Principal | None, tenant_id: str, action: str, target: str | None = None, **details: Any
) -> None:
    s.add(
        AuditEntry(
            tenant_id=tenant_id,
            actor_type=p.actor_type if p else "system",
            # A token's actor is "apikey:<id>": keep the id (32 chars), not a truncated prefix.
            actor_id=(p.user_id or p.actor_id.rpartition(":")[2])[:32] if p else None,
            action=action,
            target=(target or "")[:500] or None,
            ip=p.ip if p else None,
            details=details,
        )
    )


# ---------------------------------------------------------------- tenants and sign-up


def create_tenant(
    name: str, owner_email: str, *, password: str | None = None, plan: str = "free", owner_name: str = ""
) -> tuple[Tenant, User]:
    """A tenant and its owner (the user is created, or reused when the email exists)."""
    name = _name(name, "name")
    email = _email(owner_email)
    plans.get_plan(plan)
    pw_hash = _password(password, email) if password is not None else None
    with system_session() as s:
        user = s.exec(select(User).where(User.email == email)).first()
        if user is None:
            user = User(email=email, name=owner_name.strip()[:200], password_hash=pw_hash)
            s.add(user)
        elif password is not None:
            raise Conflict(
                "email_taken", "an account with this email exists; log in and create the team from there"
            )
    tenant = Tenant(name=name, slug=_slugify(name), plan=plan)
    with tenant_session(tenant.id) as s:
        s.add(tenant)
        s.flush()
        s.add(Membership(tenant_id=tenant.id, user_id=user.id, role="owner"))
        audit(s, None, tenant.id, "tenant.create", tenant.slug, owner=email, plan=plan)
    return tenant, user


def signup(
    email: str, password: str, team: str, *, name: str = "", ip: str | None = None
) -> tuple[Principal, str]:
    """Create a tenant and its owner, and log them in: (principal, session token)."""
    tenant, _user = create_tenant(team, email, password=password, owner_name=name)
    return login(email, password, tenant_id=tenant.id, ip=ip)


# ---------------------------------------------------------------- login, sessions


def login(
    email: str,
    password: str,
    *,
    tenant_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[Principal, str]:
    """Email + password -> (principal, session token). Same error for unknown email and wrong password."""
    bad = Unauthorized("invalid_credentials", "wrong email or password")
    try:
        email = _email(email)
    except Invalid:
        raise bad from None
    if not password or len(password) > 1024:
        raise bad
    now = _now()
    with system_session() as s:
        user = s.exec(select(User).where(User.email == email)).first()
        if user is not None and LOCKOUT.is_locked(user.locked_until, now):
            verify_password_or_dummy(None, password)  # same work as a real attempt
            raise Unauthorized("account_locked", "too many failed attempts; try again in 15 minutes")
        ok, rehash = verify_password_or_dummy(user.password_hash if user else None, password)
        if user is None:
            raise bad
        if not ok:
            user.failed_logins, user.locked_until = LOCKOUT.after_failure(user.failed_logins, now)
            s.add(user)
        else:
            user.failed_logins, user.locked_until = LOCKOUT.after_success()
            if rehash:
                user.password_hash = hash_password(password)
            s.add(user)
        members = user_memberships(s, user.id)
        user_id = user.id
    if not ok:
        raise bad
    if not members:
        raise Forbidden("no_tenant", "this account is not a member of any team")
    chosen = next((mb for mb in members if mb.tenant_id == tenant_id), None) if tenant_id else members[0]
    if chosen is None:
        raise Forbidden("not_a_member", "you are not a member of that team")
    return start_session(user_id, chosen.tenant_id, chosen.role, ip=ip, user_agent=user_agent)


def login_oidc(
    *,
    iss: str,
    sub: str,
    email: str | None,
    email_verified: bool,
    name: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[Principal, str]:
    """A verified OIDC identity -> (principal, session token).

    ``(iss, sub)`` is the stable key. An existing password account is linked by email only when
    the provider says the email is verified. A first-time user with no team gets one of their own.
    """
    if not iss or not sub or len(iss) > 500 or len(sub) > 255:
        raise Unauthorized("oidc_invalid_identity", "the identity provider returned no usable identity")
    verified_email = _email(email) if (email and email_verified) else None
    with system_session() as s:
        user = s.exec(select(User).where(User.oidc_issuer == iss, User.oidc_subject == sub)).first()
        if user is None and verified_email:
            user = s.exec(select(User).where(User.email == verified_email)).first()
            if user is not None and user.oidc_subject is None:
                user.oidc_issuer, user.oidc_subject = iss, sub
                s.add(user)
            elif user is not None:
                raise Conflict("email_linked", "this email is linked to another sign-in identity")
        if user is None:
            if not verified_email:
                raise Unauthorized(
                    "oidc_email_unverified", "your identity provider did not confirm your email"
                )
            user = User(email=verified_email, name=(name or "")[:200], oidc_issuer=iss, oidc_subject=sub,
                        email_verified_at=_now())  # fmt: skip
            s.add(user)
        user_id, user_email, user_name = user.id, user.email, user.name
        members = user_memberships(s, user_id)
    if not members:
        tenant = Tenant(name=f"{user_name or user_email.split('@')[0]}'s team"[:200],
                        slug=_slugify(user_email.split("@")[0]))  # fmt: skip
        with tenant_session(tenant.id) as s:
            s.add(tenant)
            s.flush()
            s.add(Membership(tenant_id=tenant.id, user_id=user_id, role="owner"))
            audit(s, None, tenant.id, "tenant.create", tenant.slug, owner=user_email, via="oidc")
        return start_session(user_id, tenant.id, "owner", ip=ip, user_agent=user_agent)
    return start_session(user_id, members[0].tenant_id, members[0].role, ip=ip, user_agent=user_agent)


def start_session(
    user_id: str, tenant_id: str, role: str, *, ip: str | None = None, user_agent: str | None = None
) -> tuple[Principal, str]:
    token, token_hash = tokens.new_one_time_token()
    ttl = timedelta(hours=get_settings().SESSION_TTL_HOURS)
    with tenant_session(tenant_id) as s:
        s.add(
            UserSession(
                token_hash=token_hash,
                user_id=user_id,
                tenant_id=tenant_id,
                expires_at=_now() + ttl,
                ip=(ip or "")[:64] or None,
                user_agent=(user_agent or "")[:500] or None,
            )
        )
        p = Principal(tenant_id, "user", user_id, roles.ROLE_SCOPES[role], role=role, user_id=user_id, ip=ip)
        audit(s, p, tenant_id, "auth.login")
    return p, token


def principal_for_session(token: str, *, ip: str | None = None) -> Principal:
    if not token or len(token) > 200:
        raise Unauthorized("not_logged_in", "log in first")
    now = _now()
    with system_session() as s:
        found = resolve_session(s, tokens.hash_token(token))
        if found is None or found.revoked_at is not None or found.expires_at <= now:
            raise Unauthorized("session_expired", "your session has ended; log in again")
        member = next(
            (mb for mb in user_memberships(s, found.user_id) if mb.tenant_id == found.tenant_id), None
        )
    if member is None:
        raise Unauthorized("session_expired", "you are no longer a member of this team")
    return Principal(
        found.tenant_id, "user", found.user_id, roles.ROLE_SCOPES[member.role], role=member.role,
        user_id=found.user_id, ip=ip,
    )  # fmt: skip


def logout(token: str) -> None:
    with system_session() as s:
        found = resolve_session(s, tokens.hash_token(token)) if token else None
    if found is None:
        return
    with tenant_session(found.tenant_id) as s:
        s.exec(update(UserSession).where(UserSession.id == found.id).values(revoked_at=_now()))  # type: ignore[call-overload]


# ---------------------------------------------------------------- API keys and tokens


#: ``api_keys.last_used_at`` is written at most this often per key and process: a write on every
#: request was one of the costliest statements of a chat message.
LAST_USED_RESOLUTION = timedelta(seconds=60)
_last_touched: dict[str, datetime] = {}


def principal_for_bearer(value: str, *, ip: str | None = None) -> Principal:
    """``Authorization: Bearer`` -> principal: an API key (``fd_...``) or a JWT we minted."""
    if not value:
        raise Unauthorized("missing_credentials", "send Authorization: Bearer <API key or token>")
    if tokens.looks_like_api_key(value):
        now = _now()
        with system_session() as s:
            found = resolve_api_key(s, tokens.hash_key(value))
        if found is None or found.revoked_at is not None or (found.expires_at and found.expires_at <= now):
            raise Unauthorized("invalid_api_key", "the API key is unknown, revoked or expired")
        last = _last_touched.get(found.id)
        if last is None or now - last >= LAST_USED_RESOLUTION:
            with tenant_session(found.tenant_id) as s:
                s.exec(update(ApiKey).where(ApiKey.id == found.id).values(last_used_at=now))  # type: ignore[call-overload]
            if len(_last_touched) > 10_000:
                _last_touched.clear()
            _last_touched[found.id] = now
        return Principal(found.tenant_id, "api_key", found.id, tuple(found.scopes), ip=ip)
    try:
        claims = tokens.verify_access_token(value)
    except tokens.TokenError as e:
        raise Unauthorized(f"invalid_token_{e.code}", e.message) from None
    return Principal(claims.tid, "token", claims.sub, tuple(claims.scp), ip=ip)


def exchange_api_key(value: str, *, ip: str | None = None) -> dict[str, Any]:
    """``POST /auth/token``: a short-lived JWT for an API key (same tenant and scopes)."""
    p = principal_for_bearer(value, ip=ip)
    if p.kind != "api_key":
        raise Unauthorized("api_key_required", "exchange an API key, not a token")
    ttl = tokens.DEFAULT_TTL
    token = tokens.mint_access_token(f"apikey:{p.actor_id}", p.tenant_id, p.scopes, ttl=ttl)
    return {"access_token": token, "token_type": "Bearer", "expires_in": int(ttl.total_seconds())}


@dataclass(frozen=True)
class ApiKeyInfo:
    """What callers may see of an API key: everything but its hash (the plaintext is shown once)."""

    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyInfo:
        return cls(key.id, key.name, key.prefix, tuple(key.scopes or ()), key.created_by, key.created_at,
                   key.last_used_at, key.expires_at, key.revoked_at)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scopes"] = list(self.scopes)
        for k in ("created_at", "last_used_at", "expires_at", "revoked_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


def create_api_key(p: Principal, name: str, scopes: list[str] | str) -> tuple[ApiKeyInfo, str]:
    p.require(tokens.ADMIN)
    name = _name(name, "name", 100)
    try:
        granted = tokens.parse_scopes(scopes)
    except ValueError as e:
        raise Invalid("invalid_scopes", str(e)) from None
    if not granted:
        raise Invalid("invalid_scopes", "give the key at least one scope")
    plaintext, prefix, key_hash = tokens.new_api_key()
    # tokens' prefix is 14 chars but api_keys.prefix is VARCHAR(12) (PostgreSQL refuses longer).
    prefix = prefix[:API_KEY_PREFIX_CHARS]
    with tenant_session(p.tenant_id) as s:
        key = ApiKey(tenant_id=p.tenant_id, name=name, prefix=prefix, key_hash=key_hash, scopes=list(granted),
                     created_by=p.user_id)  # fmt: skip
        s.add(key)
        audit(s, p, p.tenant_id, "api_key.create", prefix, scopes=list(granted))
    return ApiKeyInfo.of(key), plaintext


def list_api_keys(p: Principal) -> list[ApiKeyInfo]:
    """Never carries the key hash (nor, of course, the plaintext)."""
    p.require(tokens.ADMIN)
    with tenant_session(p.tenant_id) as s:
        return [ApiKeyInfo.of(k) for k in s.exec(select(ApiKey).order_by(ApiKey.created_at)).all()]


def revoke_api_key(p: Principal, key_id: str) -> None:
    p.require(tokens.ADMIN)
    with tenant_session(p.tenant_id) as s:
        key = s.exec(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == p.tenant_id)).first()
        if key is None:
            raise NotFound("api_key_not_found", "no such API key")
        if key.revoked_at is None:
            key.revoked_at = _now()
            s.add(key)
            audit(s, p, p.tenant_id, "api_key.revoke", key.prefix)


# ---------------------------------------------------------------- members and invitations


def _usage(s: Session, tenant_id: str) -> limits.Usage:
    from builder.models import StoredWorkflow

    members = s.exec(select(func.count()).select_from(Membership)).one()
    pending = s.exec(
        select(func.count())
        .select_from(Invitation)
        .where(Invitation.accepted_at.is_(None), Invitation.expires_at > _now())  # type: ignore[union-attr]
    ).one()
    workflows = s.exec(select(func.count()).select_from(StoredWorkflow)).one()
    return limits.Usage(
        messages_this_month=0, workflows=int(workflows), members=int(members), llm_tokens_this_month=0,
        knowledge_documents=0, pending_invitations=int(pending),
    )  # fmt: skip


def tenant_of(p: Principal) -> Tenant:
    with tenant_session(p.tenant_id) as s:
        t = s.get(Tenant, p.tenant_id)
        if t is None:
            raise NotFound("tenant_not_found", "the team no longer exists")
        return t


def plan_status(p: Principal) -> dict[str, Any]:
    tenant = tenant_of(p)
    plan = plans.get_plan(tenant.plan)
    with tenant_session(p.tenant_id) as s:
        usage = _usage(s, p.tenant_id)
    return {"plan": plan.name, "usage": limits.usage_lines(plan, usage)}


def check_plan(decision: limits.Decision) -> None:
    if not decision.allowed:
        raise PlanLimit("plan_limit", decision.reason, limit=decision.limit, current=decision.current)


def list_members(p: Principal) -> list[dict[str, Any]]:
    with tenant_session(p.tenant_id) as s:
        rows = s.exec(select(Membership).order_by(Membership.created_at)).all()
        member_rows = [(mb.id, mb.user_id, mb.role, mb.created_at) for mb in rows]
        # Expired invitations hold no seat (see _usage) and cannot be accepted: not listed.
        invites = s.exec(
            select(Invitation).where(Invitation.accepted_at.is_(None), Invitation.expires_at > _now())  # type: ignore[union-attr]
        ).all()
        pending = [
            {"id": i.id, "email": i.email, "role": i.role, "expires_at": i.expires_at.isoformat()}
            for i in invites
        ]
    with system_session() as s:
        users = {u.id: u for u in s.exec(select(User).where(User.id.in_([r[1] for r in member_rows]))).all()}  # type: ignore[attr-defined]
    return [
        {"id": mid, "user_id": uid, "email": users[uid].email if uid in users else None,
         "name": users[uid].name if uid in users else "", "role": role, "since": created.isoformat()}
        for mid, uid, role, created in member_rows
    ] + [{"invitation": True, **inv} for inv in pending]  # fmt: skip


def invite(p: Principal, email: str, role: str) -> tuple[Invitation, str]:
    p.require(tokens.ADMIN)
    email = _email(email)
    if role not in roles.ROLES or not roles.can_assign(p.role or "admin", role):
        raise Forbidden("role_not_allowed", f"you cannot invite someone as {role}")
    tenant = tenant_of(p)
    with system_session() as s:
        existing = s.exec(select(User).where(User.email == email)).first()
        if existing is not None and any(m.tenant_id == p.tenant_id for m in user_memberships(s, existing.id)):
            raise Conflict("already_member", f"{email} is already a member of this team")
    token, token_hash = tokens.new_one_time_token()
    with tenant_session(p.tenant_id) as s:
        check_plan(limits.check_invite_member(plans.get_plan(tenant.plan), _usage(s, p.tenant_id)))
        inv = Invitation(tenant_id=p.tenant_id, email=email, role=role, token_hash=token_hash,
                         invited_by=p.user_id, expires_at=_now() + INVITE_TTL)  # fmt: skip
        s.add(inv)
        audit(s, p, p.tenant_id, "member.invite", email, role=role)
    link = f"{get_settings().PUBLIC_URL}/invite?token={token}"
    send_mail(
        email, f"You're invited to {tenant.name} on flowdesk", f"Join {tenant.name} as {role}: {link}\n"
    )
    return inv, token


def accept_invitation(
    token: str, *, password: str | None = None, name: str = "", ip: str | None = None
) -> tuple[Principal, str]:
    """Single use: the invitation is marked accepted in the same transaction that adds the member."""
    if not token or len(token) > 200:
        raise NotFound("invitation_not_found", "this invitation link is not valid")
    with system_session() as s:
        inv = find_invitation(s, tokens.hash_token(token))
    now = _now()
    if inv is None or inv.accepted_at is not None or inv.expires_at <= now:
        raise NotFound("invitation_not_found", "this invitation link is not valid, used or expired")
    with system_session() as s:
        user = s.exec(select(User).where(User.email == inv.email)).first()
        if user is None:
            if password is None:
                raise Invalid("password_required", "choose a password to create your account")
            user = User(
                email=inv.email, name=name.strip()[:200], password_hash=_password(password, inv.email)
            )
            s.add(user)
        elif user.password_hash is not None:
            # The link proves control of the mailbox, not of the existing account: an account
            # that has a password must give it (an OIDC-only account has none to give).
            ok, _ = verify_password_or_dummy(user.password_hash, password or "")
            if not ok:
                raise Unauthorized(
                    "invalid_credentials", "this email has an account: enter its password to join"
                )
        user_id = user.id
    with tenant_session(inv.tenant_id) as s:
        claimed = s.exec(
            update(Invitation)  # type: ignore[call-overload]
            .where(Invitation.id == inv.id, Invitation.accepted_at.is_(None))  # type: ignore[union-attr]
            .values(accepted_at=now)
        )
        if claimed.rowcount != 1:
            raise NotFound("invitation_not_found", "this invitation was already used")
        existing = s.exec(select(Membership).where(Membership.user_id == user_id)).first()
        # Already a member: the invitation is used up but does not change the role it has.
        role = existing.role if existing is not None else inv.role
        if existing is None:
            s.add(Membership(tenant_id=inv.tenant_id, user_id=user_id, role=role))
        audit(s, None, inv.tenant_id, "member.join", inv.email, role=role)
    return start_session(user_id, inv.tenant_id, role, ip=ip)


def _membership(s: Session, p: Principal, membership_id: str) -> Membership:
    mb = s.exec(
        select(Membership).where(Membership.id == membership_id, Membership.tenant_id == p.tenant_id)
    ).first()
    if mb is None:
        raise NotFound("member_not_found", "no such member")
    return mb


def _owners(s: Session) -> int:
    return int(s.exec(select(func.count()).select_from(Membership).where(Membership.role == "owner")).one())


def change_role(p: Principal, membership_id: str, role: str) -> Membership:
    p.require(tokens.ADMIN)
    if role not in roles.ROLES:
        raise Invalid("invalid_role", f"role must be one of {', '.join(roles.ROLES)}")
    with tenant_session(p.tenant_id) as s:
        mb = _membership(s, p, membership_id)
        if not roles.can_manage(p.role or "admin", mb.role) or not roles.can_assign(p.role or "admin", role):
            raise Forbidden("role_not_allowed", "you cannot make this change")
        if mb.role == "owner" and role != "owner" and _owners(s) <= 1:
            raise Conflict("last_owner", "a team needs at least one owner")
        old, mb.role = mb.role, role
        s.add(mb)
        audit(s, p, p.tenant_id, "member.role", mb.user_id, old=old, new=role)
        return mb


def remove_member(p: Principal, membership_id: str) -> None:
    p.require(tokens.ADMIN)
    with tenant_session(p.tenant_id) as s:
        mb = _membership(s, p, membership_id)
        if not roles.can_manage(p.role or "admin", mb.role):
            raise Forbidden("role_not_allowed", "you cannot remove this member")
        if mb.role == "owner" and _owners(s) <= 1:
            raise Conflict("last_owner", "a team needs at least one owner")
        s.delete(mb)
        s.exec(update(UserSession).where(UserSession.user_id == mb.user_id).values(revoked_at=_now()))  # type: ignore[call-overload]
        audit(s, p, p.tenant_id, "member.remove", mb.user_id)


# ---------------------------------------------------------------- password reset


def request_password_reset(email: str) -> None:
    """Always answers the same way (no account enumeration); mails a single-use link if the account exists."""
    try:
        email = _email(email)
    except Invalid:
        return
    token, token_hash = tokens.new_one_time_token()
    with system_session() as s:
        user = s.exec(select(User).where(User.email == email)).first()
        if user is None:
            return
        s.add(
            AuthToken(
                user_id=user.id,
                purpose="password_reset",
                token_hash=token_hash,
                expires_at=_now() + RESET_TTL,
            )
        )
    send_mail(
        email,
        "Reset your flowdesk password",
        f"{get_settings().PUBLIC_URL}/reset?token={token}\n(valid 1 hour)\n",
    )


def reset_password(token: str, new_password: str) -> None:
    if not token or len(token) > 200:
        raise NotFound("reset_not_found", "this reset link is not valid")
    now = _now()
    with system_session() as s:
        row = s.exec(select(AuthToken).where(AuthToken.token_hash == tokens.hash_token(token))).first()
        if row is None or row.purpose != "password_reset" or row.used_at is not None or row.expires_at <= now:
            raise NotFound("reset_not_found", "this reset link is not valid, used or expired")
        user = s.get(User, row.user_id)
        assert user is not None
        claimed = s.exec(
            update(AuthToken).where(AuthToken.id == row.id, AuthToken.used_at.is_(None)).values(used_at=now)  # type: ignore[call-overload,union-attr]
        )
        if claimed.rowcount != 1:
            raise NotFound("reset_not_found", "this reset link was already used")
        user.password_hash = _password(new_password, user.email)
        user.failed_logins, user.locked_until = 0, None
        s.add(user)


# ---------------------------------------------------------------- secrets and audit


def put_secret(p: Principal, name: str, value: str) -> None:
    """Write-only: there is deliberately no function that returns a secret's value to a caller."""
    p.require(tokens.ADMIN)
    if not SECRET_NAME_RE.match(name or ""):
        raise Invalid("invalid_secret_name", "secret names are UPPER_SNAKE_CASE, up to 64 characters")
    if not isinstance(value, str) or not value or len(value.encode()) > MAX_SECRET_BYTES:
        raise Invalid("invalid_secret_value", f"the value must be 1 to {MAX_SECRET_BYTES} bytes of text")
    ciphertext = crypto.encrypt(value)
    with tenant_session(p.tenant_id) as s:
        row = s.exec(select(Secret).where(Secret.name == name)).first()
        if row is None:
            s.add(Secret(tenant_id=p.tenant_id, name=name, ciphertext=ciphertext))
        else:
            row.ciphertext, row.updated_at = ciphertext, _now()
            s.add(row)
        audit(s, p, p.tenant_id, "secret.put", name)


def secret_names(p: Principal) -> list[str]:
    with tenant_session(p.tenant_id) as s:
        return [r.name for r in s.exec(select(Secret).order_by(Secret.name)).all()]


def secrets_for_runtime(tenant_id: str) -> dict[str, str]:
    """Decrypted secrets for a turn's RunContext (the runtime only; never an API response)."""
    with tenant_session(tenant_id) as s:
        return {r.name: crypto.decrypt(r.ciphertext) for r in s.exec(select(Secret)).all()}


def list_audit(p: Principal, *, limit: int = 100) -> list[dict[str, Any]]:
    p.require(tokens.ADMIN)
    with tenant_session(p.tenant_id) as s:
        rows = s.exec(
            select(AuditEntry).order_by(AuditEntry.created_at.desc()).limit(min(max(limit, 1), 500))
        ).all()  # type: ignore[attr-defined]
        return [
            {"at": r.created_at.isoformat(), "actor_type": r.actor_type, "actor_id": r.actor_id,
             "action": r.action, "target": r.target, "ip": r.ip, "details": r.details}
            for r in rows
        ]  # fmt: skip

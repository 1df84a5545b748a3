"""tenants/service.py on SQLite and on the real PostgreSQL (as the RLS-bound app role).

The services open their own sessions on ``core.db.get_engine()``; the ``engine`` fixture points
that at the test database. Time is controlled by editing rows (locked_until, expires_at), never
by sleeping.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import new_id, system_session, tenant_session, utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound, PlanLimit, Unauthorized
from core.settings import get_settings
from tenants import service, tokens
from tenants.principal import Principal
from tests.fixtures.smtp_server import running_smtp

PW = "blue-kettle-morning-42"
OTHER_PW = "green-teapot-evening-17"


@pytest.fixture
def engine(db_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr("core.db._engine", db_engine)
    return db_engine


def raw(engine: Engine, sql: str, **params: Any) -> list[sa.Row[Any]]:
    """Rows read past the ORM, in the given tenant's RLS context on PostgreSQL."""
    tid = params.pop("_tenant", None)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql" and tid:
            conn.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": tid})
        return list(conn.execute(sa.text(sql), params))


def signup(email: str = "owner@a.example", team: str = "Team A") -> tuple[Principal, str]:
    return service.signup(email, PW, team, name="Owner")


def mail_links(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    return re.findall(rf"{re.escape(path)}\?token=([A-Za-z0-9_-]+)", caplog.text)


# ---------------------------------------------------------------- tenants, sign-up, login


def test_signup_creates_tenant_owner_and_audit(engine: Engine):
    p, token = signup()
    assert p.role == "owner" and p.kind == "user" and tokens.ADMIN in p.scopes
    tenant = service.tenant_of(p)
    assert tenant.name == "Team A" and tenant.plan == "free"
    members = service.list_members(p)
    assert [(m["email"], m["role"]) for m in members] == [("owner@a.example", "owner")]
    actions = [e["action"] for e in service.list_audit(p)]
    assert "tenant.create" in actions and "auth.login" in actions
    assert service.principal_for_session(token).tenant_id == p.tenant_id


def test_signup_refuses_bad_input_and_taken_email(engine: Engine):
    signup()
    with pytest.raises(Conflict):
        service.signup("Owner@A.example", OTHER_PW, "Second")
    with pytest.raises(Invalid):
        service.signup("not-an-email", PW, "X")
    with pytest.raises(Invalid):
        service.signup("x@b.example", "short", "X")
    with pytest.raises(Invalid):
        service.signup("y@b.example", PW, "   ")
    with system_session() as s:
        emails = [r[0] for r in s.connection().execute(sa.text("SELECT email FROM users"))]
    assert emails == ["owner@a.example"]


def test_create_tenant_reuses_existing_user_as_owner(engine: Engine):
    p, _ = signup()
    tenant, user = service.create_tenant("Team Two", "owner@a.example", plan="pro")
    assert tenant.plan == "pro" and user.id == p.user_id
    p2, _ = service.login("owner@a.example", PW, tenant_id=tenant.id)
    assert p2.tenant_id == tenant.id and p2.role == "owner"


def test_login_right_wrong_and_unknown_give_the_same_error(engine: Engine):
    signup()
    p, token = service.login("OWNER@a.example", PW, ip="10.0.0.1")
    assert p.user_id and token
    with pytest.raises(Unauthorized) as wrong:
        service.login("owner@a.example", OTHER_PW)
    with pytest.raises(Unauthorized) as unknown:
        service.login("nobody@a.example", PW)
    assert (wrong.value.code, wrong.value.message) == (unknown.value.code, unknown.value.message)
    with pytest.raises(Unauthorized):
        service.login("owner@a.example", "")


def test_lockout_after_five_failures_and_unlock_after_lock_time(engine: Engine):
    signup()
    for _ in range(5):
        with pytest.raises(Unauthorized) as e:
            service.login("owner@a.example", OTHER_PW)
        assert e.value.code == "invalid_credentials"
    # Locked: even the right password is refused now.
    with pytest.raises(Unauthorized) as e:
        service.login("owner@a.example", PW)
    assert e.value.code == "account_locked"
    with system_session() as s:
        locked = s.connection().execute(sa.text("SELECT locked_until FROM users")).scalar_one()
    assert locked is not None
    # The lock time passes (moved into the past in the database).
    with system_session() as s:
        s.connection().execute(
            sa.text("UPDATE users SET locked_until = :t"), {"t": (utcnow() - timedelta(seconds=1))}
        )
    p, _ = service.login("owner@a.example", PW)
    assert p.role == "owner"


def test_sessions_expire_and_logout_revokes(engine: Engine):
    p, token = signup()
    assert service.principal_for_session(token).user_id == p.user_id
    with pytest.raises(Unauthorized):
        service.principal_for_session("x" * 43)
    with pytest.raises(Unauthorized):
        service.principal_for_session("")
    _, token2 = service.login("owner@a.example", PW)
    with tenant_session(p.tenant_id) as s:
        s.connection().execute(
            sa.text("UPDATE sessions SET expires_at = :t WHERE token_hash = :h"),
            {"t": utcnow() - timedelta(seconds=1), "h": tokens.hash_token(token2)},
        )
    with pytest.raises(Unauthorized):
        service.principal_for_session(token2)
    service.logout(token)
    with pytest.raises(Unauthorized):
        service.principal_for_session(token)
    service.logout("unknown-token")  # harmless


# ---------------------------------------------------------------- API keys


def test_api_key_plaintext_once_list_has_no_secret(engine: Engine):
    p, _ = signup()
    info, plaintext = service.create_api_key(p, "ci", ["workflows:read", "workflows:write"])
    assert tokens.looks_like_api_key(plaintext) and plaintext.startswith(info.prefix)
    key_hash = tokens.hash_key(plaintext)
    listed = service.list_api_keys(p)
    assert [k.id for k in listed] == [info.id]
    dumped = repr(listed) + repr([k.to_dict() for k in listed]) + repr(info)
    assert plaintext not in dumped and key_hash not in dumped
    assert not hasattr(listed[0], "key_hash")
    # Only the hash is stored.
    stored = raw(engine, "SELECT key_hash FROM api_keys", _tenant=p.tenant_id)
    assert [r[0] for r in stored] == [key_hash]


def test_api_key_bearer_scopes_last_used_revoked_expired(engine: Engine):
    p, _ = signup()
    info, key = service.create_api_key(p, "ci", "workflows:read chat")
    assert info.last_used_at is None
    bp = service.principal_for_bearer(key, ip="10.1.1.1")
    assert (bp.tenant_id, bp.kind, bp.scopes) == (p.tenant_id, "api_key", ("workflows:read", "chat"))
    assert bp.allows("chat") and not bp.allows("admin")
    assert service.list_api_keys(p)[0].last_used_at is not None
    with pytest.raises(Forbidden):
        service.create_api_key(bp, "escalate", ["admin"])  # a non-admin key cannot mint keys
    with pytest.raises(Invalid):
        service.create_api_key(p, "bad", ["root"])
    with pytest.raises(Invalid):
        service.create_api_key(p, "none", [])

    _, key2 = service.create_api_key(p, "short-lived", ["chat"])
    with tenant_session(p.tenant_id) as s:
        s.connection().execute(
            sa.text("UPDATE api_keys SET expires_at = :t WHERE key_hash = :h"),
            {"t": utcnow() - timedelta(seconds=1), "h": tokens.hash_key(key2)},
        )
    with pytest.raises(Unauthorized):
        service.principal_for_bearer(key2)

    service.revoke_api_key(p, info.id)
    with pytest.raises(Unauthorized) as e:
        service.principal_for_bearer(key)
    assert e.value.status == 401
    with pytest.raises(Unauthorized):
        service.principal_for_bearer("fd_live_" + "A" * 32)  # well-formed, unknown
    with pytest.raises(Unauthorized):
        service.principal_for_bearer("")
    with pytest.raises(Unauthorized):
        service.principal_for_bearer("not.a.jwt")


def test_exchange_api_key_for_jwt(engine: Engine):
    p, _ = signup()
    _, key = service.create_api_key(p, "ci", ["workflows:read", "workflows:write"])
    out = service.exchange_api_key(key)
    assert out["token_type"] == "Bearer" and 0 < out["expires_in"] <= 3600
    tp = service.principal_for_bearer(out["access_token"])
    assert (tp.tenant_id, tp.kind, tp.scopes) == (p.tenant_id, "token", ("workflows:read", "workflows:write"))
    with pytest.raises(Unauthorized):
        service.exchange_api_key(out["access_token"])  # a token cannot be exchanged again
    tampered = out["access_token"][:-4] + ("AAAA" if not out["access_token"].endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized):
        service.principal_for_bearer(tampered)


# ---------------------------------------------------------------- members and invitations


def test_invite_mail_in_log_and_single_use_acceptance(engine: Engine, caplog: pytest.LogCaptureFixture):
    p, _ = signup()
    with caplog.at_level(logging.WARNING, logger="flowdesk.mailer"):
        inv, token = service.invite(p, "New@A.example", "editor")
    assert mail_links(caplog, "/invite") == [token]
    assert inv.email == "new@a.example"
    member, session_token = service.accept_invitation(token, password=OTHER_PW, name="New")
    assert member.role == "editor" and member.tenant_id == p.tenant_id
    assert service.principal_for_session(session_token).role == "editor"
    with pytest.raises(NotFound):
        service.accept_invitation(token, password=OTHER_PW)
    roles = sorted((m["email"], m["role"]) for m in service.list_members(p) if not m.get("invitation"))
    assert roles == [("new@a.example", "editor"), ("owner@a.example", "owner")]


def test_invite_mail_through_real_smtp(engine: Engine, monkeypatch: pytest.MonkeyPatch):
    p, _ = signup()
    with running_smtp() as smtp:
        monkeypatch.setenv("SMTP_URL", smtp.url)
        get_settings.cache_clear()
        try:
            _, token = service.invite(p, "mate@a.example", "viewer")
        finally:
            monkeypatch.delenv("SMTP_URL")
            get_settings.cache_clear()
        (msg,) = smtp.wait_for(1)
    assert msg.rcpt_tos == ["mate@a.example"]
    assert f"/invite?token={token}" in msg.message.get_content()


def test_expired_and_bogus_invitations_fail(engine: Engine):
    p, _ = signup()
    inv, token = service.invite(p, "late@a.example", "viewer")
    with tenant_session(p.tenant_id) as s:
        s.connection().execute(
            sa.text("UPDATE invitations SET expires_at = :t WHERE id = :i"),
            {"t": utcnow() - timedelta(seconds=1), "i": inv.id},
        )
    with pytest.raises(NotFound):
        service.accept_invitation(token, password=OTHER_PW)
    with pytest.raises(NotFound):
        service.accept_invitation("forged-token", password=OTHER_PW)
    with pytest.raises(NotFound):
        service.accept_invitation("", password=OTHER_PW)
    with system_session() as s:
        emails = [r[0] for r in s.connection().execute(sa.text("SELECT email FROM users"))]
    assert emails == ["owner@a.example"]


def test_free_plan_member_limit_is_402(engine: Engine):
    p, _ = signup()  # free: 2 seats, the owner holds one
    service.invite(p, "one@a.example", "editor")
    with pytest.raises(PlanLimit) as e:
        service.invite(p, "two@a.example", "editor")
    assert e.value.status == 402 and "free" in e.value.message
    pending = [m for m in service.list_members(p) if m.get("invitation")]
    assert [m["email"] for m in pending] == ["one@a.example"]


def _join(p: Principal, email: str, role: str) -> tuple[Principal, str]:
    _, token = service.invite(p, email, role)
    return service.accept_invitation(token, password=OTHER_PW)


def _membership_id(p: Principal, email: str) -> str:
    return next(m["id"] for m in service.list_members(p) if m.get("email") == email)


def test_role_rules(engine: Engine):
    p, _ = signup()
    with tenant_session(p.tenant_id) as s:  # room for a team of four
        s.connection().execute(sa.text("UPDATE tenants SET plan = 'pro' WHERE id = :t"), {"t": p.tenant_id})
    admin, _ = _join(p, "admin@a.example", "admin")
    viewer, _ = _join(p, "viewer@a.example", "viewer")
    owner_mid = _membership_id(p, "owner@a.example")
    viewer_mid = _membership_id(p, "viewer@a.example")

    with pytest.raises(Conflict) as e:
        service.change_role(p, owner_mid, "admin")  # the last owner
    assert e.value.code == "last_owner"
    with pytest.raises(Conflict):
        service.remove_member(p, owner_mid)
    with pytest.raises(Forbidden):
        service.change_role(admin, viewer_mid, "owner")  # admins can't make owners
    with pytest.raises(Forbidden):
        service.invite(admin, "boss@a.example", "owner")
    with pytest.raises(Forbidden):
        service.change_role(admin, owner_mid, "viewer")  # nor touch owners
    with pytest.raises(Invalid):
        service.change_role(p, viewer_mid, "god")
    for call in (
        lambda: service.change_role(viewer, viewer_mid, "admin"),
        lambda: service.invite(viewer, "x@a.example", "viewer"),
        lambda: service.remove_member(viewer, owner_mid),
        lambda: service.create_api_key(viewer, "k", ["chat"]),
        lambda: service.list_api_keys(viewer),
        lambda: service.put_secret(viewer, "KEY", "v"),
        lambda: service.list_audit(viewer),
    ):
        with pytest.raises(Forbidden):
            call()

    assert service.change_role(admin, viewer_mid, "editor").role == "editor"
    service.change_role(p, _membership_id(p, "admin@a.example"), "owner")
    assert service.change_role(p, owner_mid, "admin").role == "admin"  # no longer the last owner
    roles = {m["email"]: m["role"] for m in service.list_members(p)}
    assert roles == {"owner@a.example": "admin", "admin@a.example": "owner", "viewer@a.example": "editor"}


def test_remove_member_revokes_their_sessions(engine: Engine):
    p, _ = signup()
    member, token = _join(p, "temp@a.example", "editor")
    assert service.principal_for_session(token).user_id == member.user_id
    service.remove_member(p, _membership_id(p, "temp@a.example"))
    with pytest.raises(Unauthorized):
        service.principal_for_session(token)
    revoked = raw(engine, "SELECT revoked_at FROM sessions WHERE user_id = :u", u=member.user_id,
                  _tenant=p.tenant_id)  # fmt: skip
    assert revoked and all(r[0] is not None for r in revoked)
    with pytest.raises(Forbidden):  # no team left for that account
        service.login("temp@a.example", OTHER_PW)


# ---------------------------------------------------------------- password reset


def test_password_reset_single_use_expiry_no_enumeration(engine: Engine, caplog: pytest.LogCaptureFixture):
    signup()
    with caplog.at_level(logging.WARNING, logger="flowdesk.mailer"):
        assert service.request_password_reset("nobody@a.example") is None
        assert service.request_password_reset("not an email") is None
        assert mail_links(caplog, "/reset") == []
        assert service.request_password_reset("owner@a.example") is None
    (token,) = mail_links(caplog, "/reset")
    service.reset_password(token, OTHER_PW)
    with pytest.raises(NotFound):
        service.reset_password(token, "yet-another-password-9")
    with pytest.raises(Unauthorized):
        service.login("owner@a.example", PW)
    assert service.login("owner@a.example", OTHER_PW)[0].role == "owner"

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flowdesk.mailer"):
        service.request_password_reset("owner@a.example")
    (token2,) = mail_links(caplog, "/reset")
    with system_session() as s:
        s.connection().execute(
            sa.text("UPDATE auth_tokens SET expires_at = :t WHERE token_hash = :h"),
            {"t": utcnow() - timedelta(seconds=1), "h": tokens.hash_token(token2)},
        )
    with pytest.raises(NotFound):
        service.reset_password(token2, "yet-another-password-9")
    with pytest.raises(NotFound):
        service.reset_password("forged", "yet-another-password-9")


# ---------------------------------------------------------------- secrets and audit


def test_secrets_write_only_and_encrypted_at_rest(engine: Engine):
    p, _ = signup()
    value = "sk-very-secret-value-123"
    service.put_secret(p, "OPENAI_KEY", value)
    service.put_secret(p, "CRM_TOKEN", "crm-token-456")
    assert service.secret_names(p) == ["CRM_TOKEN", "OPENAI_KEY"]
    stored = raw(engine, "SELECT name, ciphertext FROM secrets", _tenant=p.tenant_id)
    assert len(stored) == 2
    for _name, ciphertext in stored:
        assert value not in ciphertext and "crm-token-456" not in ciphertext
    assert service.secrets_for_runtime(p.tenant_id) == {"OPENAI_KEY": value, "CRM_TOKEN": "crm-token-456"}
    service.put_secret(p, "OPENAI_KEY", "rotated")  # overwrite in place
    assert service.secrets_for_runtime(p.tenant_id)["OPENAI_KEY"] == "rotated"
    for name, val in (("lower", "v"), ("X", ""), ("X", "v" * 20_000), ("X; DROP TABLE secrets", "v")):
        with pytest.raises(Invalid):
            service.put_secret(p, name, val)
    assert service.secret_names(p) == ["CRM_TOKEN", "OPENAI_KEY"]
    assert not [n for n in dir(service) if n.startswith("get_secret")]


def test_audit_lists_newest_first_with_actor(engine: Engine):
    p, _ = signup()
    service.put_secret(p, "A_KEY", "v")
    entries = service.list_audit(p)
    assert entries[0]["action"] == "secret.put" and entries[0]["target"] == "A_KEY"
    assert entries[0]["actor_type"] == "user" and entries[0]["actor_id"] == p.user_id
    assert len(service.list_audit(p, limit=1)) == 1


# ---------------------------------------------------------------- cross-tenant matrix


def _snapshot(engine: Engine, tenant_id: str) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("memberships", "invitations", "api_keys", "sessions", "secrets")
    return {t: sorted(tuple(r) for r in raw(engine, f"SELECT * FROM {t}", _tenant=tenant_id)) for t in tables}


def test_cross_tenant_ids_are_not_found_and_change_nothing(engine: Engine):
    a, _ = signup("owner@a.example", "Team A")
    b, _ = signup("owner@b.example", "Team B")
    b_key, _ = service.create_api_key(b, "b-key", ["chat"])
    with tenant_session(b.tenant_id) as s:
        s.connection().execute(sa.text("UPDATE tenants SET plan = 'pro' WHERE id = :t"), {"t": b.tenant_id})
    b_member, _ = _join(b, "member@b.example", "editor")
    b_mid = _membership_id(b, "member@b.example")
    b_owner_mid = _membership_id(b, "owner@b.example")
    service.put_secret(b, "B_SECRET", "b-value")
    before = _snapshot(engine, b.tenant_id)

    for call in (
        lambda: service.revoke_api_key(a, b_key.id),
        lambda: service.change_role(a, b_mid, "viewer"),
        lambda: service.change_role(a, b_owner_mid, "viewer"),
        lambda: service.remove_member(a, b_mid),
        lambda: service.remove_member(a, new_id()),
    ):
        with pytest.raises(NotFound):
            call()
    # Listings of A never show B's rows.
    assert [k.id for k in service.list_api_keys(a)] == []
    assert {m.get("email") for m in service.list_members(a)} == {"owner@a.example"}
    assert service.secret_names(a) == []
    assert "B_SECRET" not in service.secrets_for_runtime(a.tenant_id)
    assert all(e["actor_id"] != b.user_id for e in service.list_audit(a))
    # B's member can't log into A, nor be logged into A by naming A's tenant.
    with pytest.raises(Forbidden):
        service.login("member@b.example", OTHER_PW, tenant_id=a.tenant_id)
    assert _snapshot(engine, b.tenant_id) == before
    assert service.principal_for_bearer(service.create_api_key(b, "k2", ["chat"])[1]).tenant_id == b.tenant_id
    assert b_member.tenant_id == b.tenant_id


def test_inviting_a_member_again_and_a_second_invitation(engine: Engine):
    p, _ = signup()
    with pytest.raises(Conflict) as e:
        service.invite(p, "Owner@a.example", "viewer")
    assert e.value.code == "already_member"
    with tenant_session(p.tenant_id) as s:  # room for two pending invitations
        s.connection().execute(sa.text("UPDATE tenants SET plan = 'pro' WHERE id = :t"), {"t": p.tenant_id})
    _, first = service.invite(p, "twice@a.example", "editor")
    _, second = service.invite(p, "twice@a.example", "viewer")
    assert service.accept_invitation(first, password=OTHER_PW)[0].role == "editor"
    # An existing account must give its password; a link alone does not sign it in.
    with pytest.raises(Unauthorized):
        service.accept_invitation(second)
    # The second link is used up without changing the role the member already has.
    member, session_token = service.accept_invitation(second, password=OTHER_PW)
    assert member.role == "editor" and service.principal_for_session(session_token).role == "editor"
    assert sorted(m["role"] for m in service.list_members(p)) == ["editor", "owner"]


def test_expired_invitations_are_not_listed(engine: Engine):
    p, _ = signup()
    inv, _ = service.invite(p, "old@a.example", "viewer")
    assert [m["email"] for m in service.list_members(p) if m.get("invitation")] == ["old@a.example"]
    with tenant_session(p.tenant_id) as s:
        s.connection().execute(
            sa.text("UPDATE invitations SET expires_at = :t WHERE id = :i"),
            {"t": utcnow() - timedelta(seconds=1), "i": inv.id},
        )
    assert [m for m in service.list_members(p) if m.get("invitation")] == []
    service.invite(p, "new@a.example", "viewer")  # the expired one no longer holds the seat

"""What the Workflows and Versions pages do, as plain functions of the signed-in principal.

Each call is one tenant transaction (``core.db.tenant_session`` on the principal's tenant, never
a tenant id from the page), one ``builder.service`` call, and for writes the scope check, the
plan limit on new workflows and an audit entry, exactly like the REST routes in ``app/api.py``.
No Reflex here: the page states copy the answers into vars.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from builder import models as bm
from builder import service as wfs
from core.db import tenant_session
from tenants import limits, plans
from tenants import service as accounts
from tenants.principal import Principal
from tenants.tokens import WORKFLOWS_READ, WORKFLOWS_WRITE


def _plan_guard(s: Session, p: Principal) -> Any:
    """The ``on_create`` hook: refuse a new workflow above the plan's limit."""

    # Read before the transaction writes anything: SQLite would block a second connection.
    plan = plans.get_plan(accounts.tenant_of(p).plan)

    def check() -> None:
        usage = limits.Usage(workflows=wfs.count(s, tenant_id=p.tenant_id))
        accounts.check_plan(limits.check_create_workflow(plan, usage))

    return check


def can_write(p: Principal) -> bool:
    return p.allows(WORKFLOWS_WRITE)


def people(p: Principal) -> dict[str, str]:
    """user id -> email of the team's members (authors are stored as ids)."""
    return {m["user_id"]: m.get("email") or "" for m in accounts.list_members(p) if m.get("user_id")}


def overview(p: Principal) -> list[dict[str, Any]]:
    p.require(WORKFLOWS_READ)
    with tenant_session(p.tenant_id) as s:
        return wfs.overview(s, tenant_id=p.tenant_id)


def create_blank(p: Principal, name: str) -> wfs.Draft:
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        d = wfs.create_blank(
            s, tenant_id=p.tenant_id, name=name, author=p.actor_id, on_create=_plan_guard(s, p)
        )
        accounts.audit(s, p, p.tenant_id, "workflow.create", d.row.slug, etag=d.etag, valid=d.row.draft_valid)
        return d


def create_from_template(p: Principal, template_id: str) -> wfs.Draft:
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        d = wfs.create_from_template(
            s, tenant_id=p.tenant_id, template_id=template_id, author=p.actor_id, on_create=_plan_guard(s, p)
        )
        accounts.audit(s, p, p.tenant_id, "workflow.create", d.row.slug, template=template_id, etag=d.etag)
        return d


def duplicate(p: Principal, slug: str) -> wfs.Draft:
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        d = wfs.duplicate(s, tenant_id=p.tenant_id, slug=slug, author=p.actor_id, on_create=_plan_guard(s, p))
        accounts.audit(s, p, p.tenant_id, "workflow.create", d.row.slug, copy_of=slug, etag=d.etag)
        return d


def delete(p: Principal, slug: str) -> None:
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        wfs.delete(s, tenant_id=p.tenant_id, slug=slug)
        accounts.audit(s, p, p.tenant_id, "workflow.delete", slug)


def import_yaml(p: Principal, text: str | bytes) -> wfs.Draft:
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        d = wfs.import_yaml(
            s, tenant_id=p.tenant_id, yaml_text=text, author=p.actor_id, on_create=_plan_guard(s, p)
        )
        action = "workflow.create" if d.created else "workflow.update"
        accounts.audit(
            s, p, p.tenant_id, action, d.row.slug, etag=d.etag, valid=d.row.draft_valid, via="import"
        )
        return d


def export(p: Principal, slug: str, number: int | None = None) -> str:
    p.require(WORKFLOWS_READ)
    with tenant_session(p.tenant_id) as s:
        return wfs.export(s, tenant_id=p.tenant_id, slug=slug, number=number)


def details(p: Principal, slug: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the workflow's summary + ``draft_changed``, its history newest first)."""
    p.require(WORKFLOWS_READ)
    with tenant_session(p.tenant_id) as s:
        row = wfs.get(s, tenant_id=p.tenant_id, slug=slug)
        hist = wfs.history(s, tenant_id=p.tenant_id, slug=slug)
        out = wfs.summary(row)
        live = next((h for h in hist if h["current"]), None)
        out["draft_changed"] = live is None or live["content_hash"] != row.draft_hash
        return out, hist


def diff(p: Principal, slug: str, from_n: int | None, to_n: int | None) -> str:
    p.require(WORKFLOWS_READ)
    with tenant_session(p.tenant_id) as s:
        return wfs.diff(s, tenant_id=p.tenant_id, slug=slug, from_n=from_n, to_n=to_n)


def publish(p: Principal, slug: str) -> bm.WorkflowVersion:
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        v = wfs.publish(s, tenant_id=p.tenant_id, slug=slug, author=p.actor_id)
        accounts.audit(s, p, p.tenant_id, "workflow.publish", slug, version=v.number)
        return v


def rollback(p: Principal, slug: str, number: int) -> bm.WorkflowVersion:
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        v = wfs.rollback(s, tenant_id=p.tenant_id, slug=slug, number=number, author=p.actor_id)
        accounts.audit(s, p, p.tenant_id, "workflow.rollback", slug, to=number, version=v.number)
        return v

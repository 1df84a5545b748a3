"""app/workflow_ops.py: the page actions as the signed-in principal (scopes, plan limit, audit, tenancy).

Runs on SQLite and PostgreSQL through the process engine (``engine`` fixture of tests/app/conftest.py).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import Engine

from app import workflow_ops as ops
from core.errors import Forbidden, NotFound, PlanLimit
from tenants import roles, service
from tenants.principal import Principal
from tests.app.conftest import BROKEN_GRAPH, valid_yaml


def member(plan: str = "free") -> tuple[Principal, Principal]:
    """(the owner, a viewer of the same tenant) of a new tenant on ``plan``."""
    t, owner = service.create_tenant(
        f"T {uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:8]}@example.com", plan=plan
    )
    p = Principal(t.id, "user", owner.id, roles.ROLE_SCOPES["owner"], role="owner", user_id=owner.id)
    viewer = Principal(
        t.id, "user", "viewer-1", roles.ROLE_SCOPES["viewer"], role="viewer", user_id="viewer-1"
    )
    return p, viewer


def test_writes_are_audited_and_authors_are_shown_by_email(engine: Engine) -> None:
    p, _ = member("pro")
    ops.create_from_template(p, "faq_handling")
    ops.duplicate(p, "faq_handling")
    d = ops.import_yaml(p, valid_yaml("hello"))
    assert d.created and not ops.import_yaml(p, valid_yaml("hello", text="Yo")).created
    ops.publish(p, "hello")
    ops.rollback(p, "hello", 1)
    ops.delete(p, "faq_handling_copy")
    actions = [(a["action"], a["target"]) for a in reversed(service.list_audit(p))]
    assert [a for a in actions if a[0].startswith("workflow.")] == [
        ("workflow.create", "faq_handling"),
        ("workflow.create", "faq_handling_copy"),
        ("workflow.create", "hello"),
        ("workflow.update", "hello"),
        ("workflow.publish", "hello"),
        ("workflow.rollback", "hello"),
        ("workflow.delete", "faq_handling_copy"),
    ]
    people = ops.people(p)
    rows = {r["id"]: r for r in ops.overview(p)}
    assert set(rows) == {"faq_handling", "hello"}
    assert people[rows["hello"]["updated_by"]].startswith("o-")
    info, hist = ops.details(p, "hello")
    assert info["published_version"] == 2 and not info["draft_changed"]
    assert [h["number"] for h in hist] == [2, 1]
    assert ops.diff(p, "hello", 1, 2) == ""  # the roll back republished v1's text
    ops.import_yaml(p, valid_yaml("hello", text="Hey"))
    lines = ops.diff(p, "hello", 2, None).splitlines()
    assert any(x.startswith("-") and "Yo" in x for x in lines) and any(
        x.startswith("+") and "Hey" in x for x in lines
    )
    assert ops.details(p, "hello")[0]["draft_changed"]


def test_a_viewer_reads_but_cannot_write(engine: Engine) -> None:
    p, viewer = member()
    ops.import_yaml(p, valid_yaml("hello"))
    assert [r["id"] for r in ops.overview(viewer)] == ["hello"]
    assert ops.export(viewer, "hello") == ops.export(p, "hello")
    assert not ops.can_write(viewer) and ops.can_write(p)
    for write in (
        lambda: ops.create_blank(viewer, "X"),
        lambda: ops.create_from_template(viewer, "faq_handling"),
        lambda: ops.duplicate(viewer, "hello"),
        lambda: ops.delete(viewer, "hello"),
        lambda: ops.import_yaml(viewer, valid_yaml("other")),
        lambda: ops.publish(viewer, "hello"),
        lambda: ops.rollback(viewer, "hello", 1),
    ):
        with pytest.raises(Forbidden):
            write()
    assert [r["id"] for r in ops.overview(p)] == ["hello"]


def test_the_plan_limits_new_workflows_not_updates(engine: Engine) -> None:
    p, _ = member("free")  # 3 workflows
    ops.create_blank(p, "One")
    ops.import_yaml(p, valid_yaml("two"))
    ops.duplicate(p, "two")
    for create in (
        lambda: ops.create_blank(p, "Four"),
        lambda: ops.create_from_template(p, "faq_handling"),
        lambda: ops.duplicate(p, "one"),
        lambda: ops.import_yaml(p, valid_yaml("four")),
    ):
        with pytest.raises(PlanLimit):
            create()
    assert not ops.import_yaml(p, valid_yaml("two", text="Updated")).created  # in place: allowed
    assert len(ops.overview(p)) == 3


def test_another_tenants_workflow_is_not_found(engine: Engine) -> None:
    a, _ = member()
    b, _ = member()
    ops.import_yaml(a, valid_yaml("hello"))
    ops.publish(a, "hello")
    ops.import_yaml(a, BROKEN_GRAPH.format(id="broken"))
    for call in (
        lambda: ops.details(b, "hello"),
        lambda: ops.export(b, "hello"),
        lambda: ops.diff(b, "hello", 1, None),
        lambda: ops.duplicate(b, "hello"),
        lambda: ops.publish(b, "hello"),
        lambda: ops.rollback(b, "hello", 1),
        lambda: ops.delete(b, "hello"),
    ):
        with pytest.raises(NotFound):
            call()
    assert ops.overview(b) == []
    assert {r["id"]: r["errors"] > 0 for r in ops.overview(a)} == {"broken": True, "hello": False}

"""builder/service.py (stored workflows) on SQLite and on the real PostgreSQL (RLS-bound app role)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from builder import service as wfs
from builder.yaml_io import content_hash, dump, load
from core.db import new_id, tenant_session
from core.errors import Conflict, Invalid, NotFound, TooLarge
from core.settings import ROOT
from tenants.models import Tenant
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401

HELLO = """\
version: 1
id: hello
name: Hello
nodes:
  - id: start
    type: start
  - id: hi
    type: reply
    config: {text: "hi there"}
  - id: end
    type: end
edges:
  - {from: start, to: hi}
  - {from: hi, to: end}
"""
# Parses, but the edge points at a node that does not exist: saved, not publishable.
BROKEN_GRAPH = HELLO.replace("{from: hi, to: end}", "{from: hi, to: ghost}")
CALLER = """\
version: 1
id: caller
name: Caller
nodes:
  - id: start
    type: start
  - id: sub
    type: subflow
    config: {workflow: hello}
  - id: end
    type: end
edges:
  - {from: start, to: sub}
  - {from: sub, to: end}
"""


def make_tenant(engine: Engine, name: str) -> str:
    tid = new_id()
    with tenant_session(tid, engine=engine) as s:
        s.add(Tenant(id=tid, name=name, slug=f"{name.lower()}-{tid[:6]}"))
    return tid


@pytest.fixture
def tenants(db_engine: Engine) -> tuple[Engine, str, str]:  # noqa: F811
    return db_engine, make_tenant(db_engine, "A"), make_tenant(db_engine, "B")


@contextmanager
def session(engine: Engine, tid: str) -> Iterator[Session]:
    with tenant_session(tid, engine=engine) as s:
        yield s


def rows(engine: Engine, tid: str, sql: str) -> list[tuple[Any, ...]]:
    """Raw SQL in ``tid``'s session; it filters by ``:t`` itself (SQLite does not scope raw SQL)."""
    with tenant_session(tid, engine=engine) as s:
        return [tuple(r) for r in s.connection().execute(sa.text(sql), {"t": tid})]


def snapshot(engine: Engine, tid: str) -> list[tuple[Any, ...]]:
    sql = "SELECT * FROM {} WHERE tenant_id = :t ORDER BY id"
    return rows(engine, tid, sql.format("workflows")) + rows(engine, tid, sql.format("workflow_versions"))


def save(engine: Engine, tid: str, text: str, **kw: Any) -> wfs.Draft:
    with session(engine, tid) as s:
        return wfs.save_draft(s, tenant_id=tid, yaml_text=text, author="u1", **kw)


def test_save_draft_creates_then_updates_by_id_in_canonical_form(tenants):
    engine, a, _ = tenants
    d = save(engine, a, HELLO.replace('{text: "hi there"}', "\n      text: hi there"))
    assert d.created and d.row.slug == "hello" and d.row.draft_valid and d.issues == []
    canonical = dump(load(HELLO).workflow)
    assert d.row.draft_yaml == canonical and d.etag == content_hash(canonical)
    d2 = save(engine, a, HELLO.replace("hi there", "hello again"))
    assert not d2.created and d2.row.id == d.row.id and d2.etag != d.etag
    stored = rows(engine, a, "SELECT slug, draft_yaml FROM workflows WHERE tenant_id = :t")
    assert len(stored) == 1 and "hello again" in stored[0][1]
    with session(engine, a) as s:
        assert [w.slug for w in wfs.list_all(s, tenant_id=a)] == ["hello"]
        assert wfs.count(s, tenant_id=a) == 1


def test_warnings_are_returned_and_do_not_block(tenants):
    engine, a, _ = tenants
    d = save(engine, a, "# a comment the canonical form drops\n" + HELLO)
    assert [i.code for i in d.issues] == ["YAML_COMMENTS_DROPPED"]
    assert d.issues[0].line == 1 and d.row.draft_valid


def test_unparseable_yaml_is_refused_with_lines_and_writes_nothing(tenants):
    engine, a, _ = tenants
    with pytest.raises(Invalid) as e:
        save(engine, a, "version: 1\nid: [unclosed\n")
    assert e.value.status == 422 and "line 3" in e.value.message
    assert e.value.details["issues"][0]["line"] == 3
    with pytest.raises(Invalid):
        save(engine, a, "version: 1\nid: x\nname: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(Invalid):
        save(engine, a, "")
    with pytest.raises(TooLarge) as big:
        save(engine, a, HELLO + "#" * (wfs.MAX_YAML_BYTES + 1))
    assert big.value.status == 413
    assert rows(engine, a, "SELECT id FROM workflows WHERE tenant_id = :t") == []


def test_graph_issues_are_saved_with_draft_valid_false_and_block_publish(tenants):
    engine, a, _ = tenants
    d = save(engine, a, BROKEN_GRAPH)
    assert not d.row.draft_valid and any(i.code == "EDGE_UNKNOWN_NODE" for i in d.issues)
    assert rows(engine, a, "SELECT slug FROM workflows WHERE tenant_id = :t") == [("hello",)]
    with session(engine, a) as s, pytest.raises(Conflict) as e:
        wfs.publish(s, tenant_id=a, slug="hello", author="u1")
    assert e.value.code == "workflow_invalid" and e.value.details["issues"]
    assert rows(engine, a, "SELECT id FROM workflow_versions WHERE tenant_id = :t") == []


def test_etag_if_match_conflicts(tenants):
    engine, a, _ = tenants
    with pytest.raises(Conflict):
        save(engine, a, HELLO, if_match="deadbeef")  # nothing exists to match
    d = save(engine, a, HELLO, if_match="*")
    stale = d.etag
    d2 = save(engine, a, HELLO.replace("hi there", "v2"), if_match=f'"{stale}"')
    with pytest.raises(Conflict) as e:
        save(engine, a, HELLO.replace("hi there", "v3"), if_match=stale)
    assert e.value.status == 409 and e.value.details["etag"] == d2.etag
    with session(engine, a) as s, pytest.raises(Conflict):
        wfs.publish(s, tenant_id=a, slug="hello", author="u1", if_match=stale)
    assert "v2" in rows(engine, a, "SELECT draft_yaml FROM workflows WHERE tenant_id = :t")[0][0]
    with pytest.raises(Invalid):
        save(engine, a, HELLO, expect_slug="other")


def test_publish_numbers_versions_idempotently_diff_rollback_export(tenants):
    engine, a, _ = tenants
    save(engine, a, HELLO)
    with session(engine, a) as s:
        v1 = wfs.publish(s, tenant_id=a, slug="hello", author="u1")
        again = wfs.publish(s, tenant_id=a, slug="hello", author="u1")
    assert v1.number == 1 and again.id == v1.id  # unchanged draft: no new version
    save(engine, a, HELLO.replace("hi there", "second text"))
    with session(engine, a) as s:
        assert wfs.diff(s, tenant_id=a, slug="hello") != ""  # published -> draft
        v2 = wfs.publish(s, tenant_id=a, slug="hello", author="u2")
        assert v2.number == 2 and wfs.get(s, tenant_id=a, slug="hello").published_version == 2
        assert [v.number for v in wfs.versions(s, tenant_id=a, slug="hello")] == [1, 2]
        assert wfs.version(s, tenant_id=a, slug="hello", number=1).yaml == v1.yaml
        text = wfs.diff(s, tenant_id=a, slug="hello", from_n=1, to_n=2)
        assert text.startswith("--- hello@v1\n+++ hello@v2\n")
        assert "\n-      text: hi there\n+      text: second text\n" in text
        assert wfs.diff(s, tenant_id=a, slug="hello", from_n=2, to_n=2) == ""
        assert wfs.export(s, tenant_id=a, slug="hello", number=1) == v1.yaml
        assert "second text" in wfs.export(s, tenant_id=a, slug="hello")
        v3 = wfs.rollback(s, tenant_id=a, slug="hello", number=1, author="u3")
        assert v3.number == 3 and v3.yaml == v1.yaml
        row = wfs.get(s, tenant_id=a, slug="hello")
        assert row.published_version == 3 and row.draft_yaml == v1.yaml and row.draft_hash == v1.content_hash
        for call in (
            lambda: wfs.version(s, tenant_id=a, slug="hello", number=9),
            lambda: wfs.diff(s, tenant_id=a, slug="hello", from_n=1, to_n=9),
            lambda: wfs.rollback(s, tenant_id=a, slug="hello", number=9, author="u"),
            lambda: wfs.export(s, tenant_id=a, slug="hello", number=9),
        ):
            with pytest.raises(NotFound):
                call()
        summary = wfs.summary(row)
        assert summary["status"] == "published" and summary["published_version"] == 3


def test_delete_removes_the_workflow_and_its_versions(tenants):
    engine, a, _ = tenants
    save(engine, a, HELLO)
    with session(engine, a) as s:
        wfs.publish(s, tenant_id=a, slug="hello", author="u1")
        wfs.delete(s, tenant_id=a, slug="hello")
    assert rows(engine, a, "SELECT id FROM workflows WHERE tenant_id = :t") == []
    assert rows(engine, a, "SELECT id FROM workflow_versions WHERE tenant_id = :t") == []
    with session(engine, a) as s, pytest.raises(NotFound):
        wfs.delete(s, tenant_id=a, slug="hello")


def test_subflows_resolve_within_the_tenant_only(tenants):
    engine, a, b = tenants
    save(engine, b, HELLO)  # B has 'hello'; A does not
    d = save(engine, a, CALLER)
    assert not d.row.draft_valid and any(i.code == "SUBFLOW_MISSING" for i in d.issues)
    with session(engine, a) as s:
        assert wfs.resolver(s, a)("hello") is None
    save(engine, a, HELLO)
    d = save(engine, a, CALLER)
    assert d.row.draft_valid and d.issues == []
    with session(engine, a) as s:
        assert wfs.resolver(s, a)("hello") is not None
        assert wfs.resolver(s, a, published=True)("hello") is None  # not published yet
        wfs.publish(s, tenant_id=a, slug="hello", author="u")
        assert wfs.resolver(s, a, published=True)("hello") is not None


def test_every_function_with_an_id_is_not_found_across_tenants(tenants):
    engine, a, b = tenants
    save(engine, b, HELLO.replace("id: hello", "id: b_only"))
    with session(engine, b) as s:
        wfs.publish(s, tenant_id=b, slug="b_only", author="ub")
    before = snapshot(engine, b)
    calls = {
        "get": lambda s: wfs.get(s, tenant_id=a, slug="b_only"),
        "versions": lambda s: wfs.versions(s, tenant_id=a, slug="b_only"),
        "version": lambda s: wfs.version(s, tenant_id=a, slug="b_only", number=1),
        "publish": lambda s: wfs.publish(s, tenant_id=a, slug="b_only", author="ua"),
        "rollback": lambda s: wfs.rollback(s, tenant_id=a, slug="b_only", number=1, author="ua"),
        "diff": lambda s: wfs.diff(s, tenant_id=a, slug="b_only", from_n=1, to_n=1),
        "export": lambda s: wfs.export(s, tenant_id=a, slug="b_only"),
        "delete": lambda s: wfs.delete(s, tenant_id=a, slug="b_only"),
    }
    for name, call in calls.items():
        with session(engine, a) as s, pytest.raises(NotFound):
            call(s)
            pytest.fail(f"{name} returned for another tenant's workflow")
    with session(engine, a) as s:
        assert wfs.list_all(s, tenant_id=a) == [] and wfs.count(s, tenant_id=a) == 0
    # Saving a file with B's id in A creates A's own workflow; B's is untouched.
    d = save(engine, a, HELLO.replace("id: hello", "id: b_only").replace("hi there", "A's text"))
    assert d.created and d.row.tenant_id == a
    assert snapshot(engine, b) == before


def test_every_shipped_workflow_saves_and_publishes(tenants):
    engine, a, _ = tenants
    files = sorted((ROOT / "workflows").glob("*.yaml"))
    # Callees first would be nicer, but re-saving the set once makes every subflow resolvable.
    for _ in range(2):
        for f in files:
            save(engine, a, f.read_text())
    with session(engine, a) as s:
        for f in files:
            slug = load(f.read_text()).workflow.id
            assert wfs.publish(s, tenant_id=a, slug=slug, author="seed").number == 1

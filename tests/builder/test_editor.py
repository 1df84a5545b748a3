"""builder/editor.py: the editor's open / autosave / YAML / publish calls on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.engine import Engine

from builder import canvas
from builder import editor as ops
from builder import service as wfs
from builder.issues import Issue
from builder.yaml_io import dump, load
from core.db import tenant_session
from core.errors import Conflict, Invalid
from tests.builder.test_service import HELLO, make_tenant
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401


@pytest.fixture
def tenant(db_engine: Engine) -> tuple[Engine, str]:  # noqa: F811
    tid = make_tenant(db_engine, "Ed")
    with tenant_session(tid, engine=db_engine) as s:
        wfs.save_draft(s, tenant_id=tid, yaml_text=HELLO, author="u1")
    return db_engine, tid


def test_open_move_save_reopen(tenant: tuple[Engine, str]) -> None:
    engine, tid = tenant
    view = ops.open_draft(tid, "hello", engine=engine)
    assert view.name == "Hello" and view.issues == [] and view.published_version is None
    wf = load(view.yaml).workflow
    flow = json.loads(json.dumps(canvas.to_flow(wf)))
    flow["nodes"][1]["position"] = {"x": 300, "y": 77}
    saved = ops.save(tid, "u1", canvas.from_flow(wf, flow), if_match=view.etag, engine=engine)
    assert saved.etag != view.etag
    again = ops.open_draft(tid, "hello", engine=engine)
    assert load(again.yaml).workflow.layout["hi"] == (300, 77)
    with pytest.raises(Conflict):  # a stale editor tab cannot overwrite the newer draft
        ops.save(tid, "u1", wf, if_match=view.etag, engine=engine)


def test_yaml_that_does_not_parse_is_refused_with_line_numbers(tenant: tuple[Engine, str]) -> None:
    engine, tid = tenant
    broken = HELLO.replace("  - id: end\n", "  - id: end\n   bad: [\n")
    with pytest.raises(Invalid) as e:
        ops.save_text(tid, "u1", broken, slug="hello", engine=engine)
    issues = ops.parse_issues(e.value)
    assert issues[0].code == "YAML_SYNTAX" and issues[0].line == 11  # the inserted line
    assert ops.open_draft(tid, "hello", engine=engine).yaml == dump(load(HELLO).workflow)  # nothing written
    with pytest.raises(Invalid) as e:
        ops.save_text(tid, "u1", HELLO.replace("id: hello", "id: other"), slug="hello", engine=engine)
    assert e.value.code == "slug_mismatch"


def test_graph_issues_carry_the_node_line_and_block_publishing(tenant: tuple[Engine, str]) -> None:
    engine, tid = tenant
    wf, node_id = canvas.add_node(load(HELLO).workflow, "reply", (0, 400))
    view = ops.save(tid, "u1", wf, engine=engine)
    errors = [i for i in view.issues if i.severity == "error"]
    assert {i.node_id for i in errors} == {node_id}
    assert all(i.line == ops.node_lines(view.yaml)[node_id] for i in errors)
    with pytest.raises(Conflict) as refused, tenant_session(tid, engine=engine) as s:
        wfs.publish(s, tenant_id=tid, slug="hello", author="u1")
    assert refused.value.code == "workflow_invalid"
    fixed = canvas.delete_nodes(load(view.yaml).workflow, [node_id])
    seen: list[str] = []
    ops.save(tid, "u1", fixed, engine=engine, on_saved=lambda s, d: seen.append(d.row.slug))
    assert seen == ["hello"]
    with tenant_session(tid, engine=engine) as s:
        assert wfs.publish(s, tenant_id=tid, slug="hello", author="u1").number == 1
    assert ops.open_draft(tid, "hello", engine=engine).published_version == 1


def test_the_view_says_when_the_draft_differs_from_the_live_version(tenant: tuple[Engine, str]) -> None:
    engine, tid = tenant
    assert ops.open_draft(tid, "hello", engine=engine).draft_changed is False  # never published
    with tenant_session(tid, engine=engine) as s:
        wfs.publish(s, tenant_id=tid, slug="hello", author="u1")
    view = ops.open_draft(tid, "hello", engine=engine)
    assert view.published_version == 1 and view.draft_changed is False
    wf = load(view.yaml).workflow
    moved = wf.model_copy(update={"layout": {**wf.layout, "hi": (420, 99)}})
    assert ops.save(tid, "u1", moved, engine=engine).draft_changed is True
    assert ops.open_draft(tid, "hello", engine=engine).draft_changed is True
    assert ops.save(tid, "u1", wf, engine=engine).draft_changed is False  # back to the live text


def test_parsed_drafts_are_cached_by_text() -> None:
    text = dump(load(HELLO).workflow)
    assert ops.parsed(text) is ops.parsed(text)
    assert ops.parsed(text) == load(text).workflow


def test_node_lines_and_with_lines() -> None:
    lines = ops.node_lines(HELLO)
    assert lines == {"start": 5, "hi": 7, "end": 10}
    out = ops.with_lines([Issue("X", "m", node_id="hi"), Issue("Y", "n", line=2), Issue("Z", "o")], HELLO)
    assert [i.line for i in out] == [7, 2, None]

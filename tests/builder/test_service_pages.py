"""builder/service.py functions behind the Workflows and Versions pages, on SQLite and PostgreSQL.

Create (blank, from a shipped template), duplicate, import with update in place, the list
overview and the version history; every one is tenant-scoped (another tenant's id -> NotFound)
and a hostile import is refused without writing anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from builder import catalog
from builder import conversation_tests as ct
from builder import service as wfs
from builder.yaml_io import dump, load
from core.errors import Invalid, NotFound, TooLarge
from core.settings import ROOT
from tests.builder.test_service import BROKEN_GRAPH, HELLO, make_tenant, session
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401

Tenants = tuple[Engine, str, str]
SHIPPED = ROOT / "workflows"


@pytest.fixture
def tenants(db_engine: Engine) -> Tenants:  # noqa: F811
    return db_engine, make_tenant(db_engine, "A"), make_tenant(db_engine, "B")


def slugs(engine: Engine, tid: str) -> list[str]:
    with session(engine, tid) as s:
        return [r.slug for r in wfs.list_all(s, tenant_id=tid)]


def draft_of(engine: Engine, tid: str, slug: str) -> str:
    with session(engine, tid) as s:
        return wfs.get(s, tenant_id=tid, slug=slug).draft_yaml


# ---------------------------------------------------------------- slugs


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Track my order!", "track_my_order"),
        ("  Ünïcode   FAQ  ", "n_code_faq"),
        ("42 answers", "workflow_42_answers"),
        ("!!!", "workflow"),
        ("x" * 100, "x" * 56),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert wfs.slugify(text) == slug


# ---------------------------------------------------------------- create


def test_create_blank_is_valid_and_gets_a_unique_id(tenants: Tenants) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s:
        first = wfs.create_blank(s, tenant_id=a, name="Returns desk", author="u1")
        second = wfs.create_blank(s, tenant_id=a, name="Returns  desk", author="u1")
    assert (first.row.slug, second.row.slug) == ("returns_desk", "returns_desk_2")
    assert first.created and first.row.draft_valid and first.issues == []
    assert first.row.name == "Returns desk" and first.row.updated_by == "u1"
    assert [n.type for n in load(draft_of(engine, a, "returns_desk")).workflow.nodes] == ["start", "end"]


def test_create_blank_keeps_a_hostile_name_as_text(tenants: Tenants) -> None:
    engine, a, _ = tenants
    name = "<img src=x onerror=1>: \"quoted\" 'x' {a: b} # not a comment"
    with session(engine, a) as s:
        d = wfs.create_blank(s, tenant_id=a, name=name, author="u1")
    assert d.row.name == name and load(d.row.draft_yaml).workflow.name == name


@pytest.mark.parametrize(("name", "code"), [("   ", "name_required"), ("n" * 201, "name_too_long")])
def test_create_blank_refuses_bad_names(tenants: Tenants, name: str, code: str) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s, pytest.raises(Invalid) as e:
        wfs.create_blank(s, tenant_id=a, name=name, author="u1")
    assert e.value.code == code
    assert slugs(engine, a) == []


def test_create_from_template_copies_the_shipped_file(tenants: Tenants) -> None:
    engine, a, b = tenants
    with session(engine, a) as s:
        d = wfs.create_from_template(s, tenant_id=a, template_id="faq_handling", author="u1")
        again = wfs.create_from_template(s, tenant_id=a, template_id="faq_handling", author="u1")
    shipped = load((SHIPPED / "faq_handling.yaml").read_bytes()).workflow
    assert d.row.slug == "faq_handling" and again.row.slug == "faq_handling_2"
    assert d.row.draft_yaml == dump(shipped)
    assert again.row.draft_yaml == dump(shipped.model_copy(update={"id": "faq_handling_2"}))
    assert d.row.published_version is None
    assert slugs(engine, b) == []  # the other tenant sees nothing


def test_create_from_template_copies_its_conversation_tests(tenants: Tenants) -> None:
    """workflows/tests/track_order.tests.yaml comes along, renamed for the new id when it differs."""
    engine, a, b = tenants
    shipped = ct.load_tests((SHIPPED / "tests" / "track_order.tests.yaml").read_bytes())
    assert shipped.cases
    with session(engine, a) as s:
        wfs.create_from_template(s, tenant_id=a, template_id="track_order", author="u1")
        wfs.create_from_template(s, tenant_id=a, template_id="track_order", author="u1")
        wfs.create_from_template(s, tenant_id=a, template_id="faq_handling", author="u1")  # has none
        first = wfs.get_tests(s, tenant_id=a, slug="track_order")
        second = wfs.get_tests(s, tenant_id=a, slug="track_order_2")
        assert wfs.get_tests(s, tenant_id=a, slug="faq_handling") is None
    assert first == ct.dump_tests(shipped)
    assert second is not None
    copied = ct.load_tests(second)
    assert copied.workflow == "track_order_2" and copied.cases == shipped.cases
    with session(engine, a) as s:  # stored as valid tests of the new workflow: they can be edited
        wfs.save_tests(s, tenant_id=a, slug="track_order_2", yaml_text=second, author="u1")
    assert slugs(engine, b) == []


def test_template_tests_beside_the_file_broken_or_for_another_workflow(tmp_path: Path) -> None:
    tests = "version: 1\nworkflow: mine\ncases:\n  - name: hi\n    turns:\n      - user: hi\n"
    (tmp_path / "mine.tests.yaml").write_text(tests)
    copied = wfs.template_tests(tmp_path / "mine.yaml", template="mine", slug="mine_2")
    assert copied is not None and ct.load_tests(copied).workflow == "mine_2"
    assert wfs.template_tests(tmp_path / "mine.yaml", template="other", slug="other") is None
    (tmp_path / "mine.tests.yaml").write_text("version: 1\nworkflow: mine\ncases: [\n")
    assert wfs.template_tests(tmp_path / "mine.yaml", template="mine", slug="mine_2") is None
    assert wfs.template_tests(tmp_path / "none.yaml", template="none", slug="none") is None


@pytest.mark.parametrize("template_id", ["nope", "../workflows/faq_handling", "faq_handling.yaml", ""])
def test_create_from_template_only_knows_listed_templates(tenants: Tenants, template_id: str) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s, pytest.raises(NotFound):
        wfs.create_from_template(s, tenant_id=a, template_id=template_id, author="u1")


def test_every_shipped_template_can_be_created(tenants: Tenants) -> None:
    engine, a, _ = tenants
    ids = [r["id"] for r in catalog.list_workflows(SHIPPED)]
    assert len(ids) >= 9
    with session(engine, a) as s:
        for t in ids:
            wfs.create_from_template(s, tenant_id=a, template_id=t, author="u1")
    assert sorted(slugs(engine, a)) == sorted(ids)
    with session(engine, a) as s:  # together the shipped set resolves its subflows: all valid
        assert [r["id"] for r in wfs.overview(s, tenant_id=a) if r["errors"]] == []


def test_the_plan_guard_runs_for_new_workflows_only(tenants: Tenants) -> None:
    engine, a, _ = tenants
    calls: list[str] = []

    def guard() -> None:
        calls.append("check")

    with session(engine, a) as s:
        wfs.create_blank(s, tenant_id=a, name="One", author="u1", on_create=guard)
        wfs.create_from_template(s, tenant_id=a, template_id="faq_handling", author="u1", on_create=guard)
        wfs.duplicate(s, tenant_id=a, slug="one", author="u1", on_create=guard)
        wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO, author="u1", on_create=guard)
        assert len(calls) == 4
        wfs.import_yaml(
            s, tenant_id=a, yaml_text=HELLO.replace("hi there", "hey"), author="u1", on_create=guard
        )
    assert len(calls) == 4  # updating in place creates nothing


# ---------------------------------------------------------------- duplicate


def test_duplicate_copies_the_draft_not_the_versions(tenants: Tenants) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s:
        wfs.save_draft(s, tenant_id=a, yaml_text=HELLO, author="u1")
        wfs.publish(s, tenant_id=a, slug="hello", author="u1")
        wfs.save_draft(s, tenant_id=a, yaml_text=HELLO.replace("hi there", "draft text"), author="u1")
        copy = wfs.duplicate(s, tenant_id=a, slug="hello", author="u2")
        copy2 = wfs.duplicate(s, tenant_id=a, slug="hello", author="u2")
        assert wfs.versions(s, tenant_id=a, slug="hello_copy") == []
    assert (copy.row.slug, copy2.row.slug) == ("hello_copy", "hello_copy_2")
    assert copy.row.name == "Hello (copy)" and copy.row.updated_by == "u2"
    assert copy.row.published_version is None
    wf = load(copy.row.draft_yaml).workflow
    assert wf.id == "hello_copy" and "draft text" in copy.row.draft_yaml
    assert "draft text" in draft_of(engine, a, "hello")  # the original is untouched


# ---------------------------------------------------------------- import


def test_import_creates_then_updates_in_place_by_id(tenants: Tenants) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s:
        first = wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO, author="u1")
        wfs.publish(s, tenant_id=a, slug="hello", author="u1")
        second = wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO.replace("hi there", "updated"), author="u2")
        assert [v.number for v in wfs.versions(s, tenant_id=a, slug="hello")] == [1]
    assert first.created and not second.created
    assert second.row.id == first.row.id  # the same row: updated, not replaced
    assert slugs(engine, a) == ["hello"]
    assert "updated" in draft_of(engine, a, "hello") and second.row.updated_by == "u2"


def test_import_of_a_graph_error_is_saved_with_its_issues(tenants: Tenants) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s:
        d = wfs.import_yaml(s, tenant_id=a, yaml_text=BROKEN_GRAPH, author="u1")
    assert not d.row.draft_valid
    assert any(i.severity == "error" and i.line for i in d.issues)


BOMB = (
    "version: 1\nid: hello\nname: &a [x, x, x, x, x, x, x, x]\n"
    "description: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nnotes: [*b, *b, *b, *b, *b, *b, *b, *b]\n"
)


@pytest.mark.parametrize(
    ("payload", "error", "code", "line"),
    [
        (HELLO.replace("    type: reply\n", "    type: reply\n  bad: [\n"), Invalid, "YAML_SYNTAX", 9),
        (HELLO.replace("name: Hello", "name: Hello\ncolour: red"), Invalid, "", 4),
        (BOMB, Invalid, "YAML_ALIAS", 4),
        (HELLO.encode() + b"# \xff\xfe caf\xe9\n", Invalid, "YAML_ENCODING", 15),
        ("# " + "x" * (wfs.MAX_YAML_BYTES + 1), TooLarge, "", None),
        ("", Invalid, "", None),
    ],
    ids=["syntax", "unknown-key", "bomb", "non-utf8", "huge", "empty"],
)
def test_a_hostile_import_is_refused_and_writes_nothing(
    tenants: Tenants, payload: str | bytes, error: type[Exception], code: str, line: int | None
) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s:
        wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO, author="u1")
    before = draft_of(engine, a, "hello")
    with session(engine, a) as s, pytest.raises(error) as e:
        wfs.import_yaml(s, tenant_id=a, yaml_text=payload, author="u2")
    issues = e.value.details.get("issues", [])  # type: ignore[attr-defined]
    if code:
        assert issues[0]["code"] == code
    if line is not None:
        assert issues[0]["line"] == line and f"line {line}," in str(e.value)
    assert draft_of(engine, a, "hello") == before and slugs(engine, a) == ["hello"]


# ---------------------------------------------------------------- overview and history


def test_overview_counts_nodes_errors_and_status(tenants: Tenants) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s:
        wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO, author="u1")
        wfs.publish(s, tenant_id=a, slug="hello", author="u1")
        wfs.import_yaml(
            s, tenant_id=a, yaml_text=BROKEN_GRAPH.replace("id: hello", "id: broken"), author="u2"
        )
        rows = {r["id"]: r for r in wfs.overview(s, tenant_id=a)}
    assert rows["hello"]["status"] == "published" and rows["hello"]["published_version"] == 1
    assert rows["hello"]["errors"] == 0 and rows["hello"]["nodes"] == 3 and rows["hello"]["valid"]
    assert rows["broken"]["status"] == "draft" and rows["broken"]["errors"] >= 1
    assert rows["broken"]["first_issue"].startswith("broken.yaml:")
    assert rows["broken"]["updated_by"] == "u2"


def test_history_newest_first_with_the_live_version_marked(tenants: Tenants) -> None:
    engine, a, _ = tenants
    with session(engine, a) as s:
        wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO, author="u1")
        wfs.publish(s, tenant_id=a, slug="hello", author="u1")
        wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO.replace("hi there", "v2"), author="u2")
        wfs.publish(s, tenant_id=a, slug="hello", author="u2")
        wfs.rollback(s, tenant_id=a, slug="hello", number=1, author="u3")
        hist = wfs.history(s, tenant_id=a, slug="hello")
    assert [(h["number"], h["published_by"], h["current"]) for h in hist] == [
        (3, "u3", True),
        (2, "u2", False),
        (1, "u1", False),
    ]
    assert hist[0]["content_hash"] == hist[2]["content_hash"]
    assert all(h["published_at"] is not None for h in hist)


# ---------------------------------------------------------------- tenancy


@pytest.mark.parametrize("action", ["duplicate", "history", "delete", "diff", "export"])
def test_another_tenants_workflow_is_not_found(tenants: Tenants, action: str) -> None:
    engine, a, b = tenants
    with session(engine, a) as s:
        wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO, author="u1")
        wfs.publish(s, tenant_id=a, slug="hello", author="u1")
    calls = {
        "duplicate": lambda s: wfs.duplicate(s, tenant_id=b, slug="hello", author="x"),
        "history": lambda s: wfs.history(s, tenant_id=b, slug="hello"),
        "delete": lambda s: wfs.delete(s, tenant_id=b, slug="hello"),
        "diff": lambda s: wfs.diff(s, tenant_id=b, slug="hello", from_n=1),
        "export": lambda s: wfs.export(s, tenant_id=b, slug="hello"),
    }
    with session(engine, b) as s, pytest.raises(NotFound):
        calls[action](s)
    assert slugs(engine, b) == [] and slugs(engine, a) == ["hello"]
    with session(engine, a) as s:
        assert len(wfs.versions(s, tenant_id=a, slug="hello")) == 1


def test_import_with_another_tenants_id_creates_a_separate_workflow(tenants: Tenants) -> None:
    engine, a, b = tenants
    with session(engine, a) as s:
        wfs.import_yaml(s, tenant_id=a, yaml_text=HELLO, author="u1")
    with session(engine, b) as s:
        d = wfs.import_yaml(s, tenant_id=b, yaml_text=HELLO.replace("hi there", "b's"), author="u9")
    assert d.created
    assert "b's" not in draft_of(engine, a, "hello") and "b's" in draft_of(engine, b, "hello")


def test_unique_slug_ignores_other_tenants(tenants: Tenants) -> None:
    engine, a, b = tenants
    with session(engine, a) as s:
        wfs.create_blank(s, tenant_id=a, name="Shared", author="u1")
    with session(engine, b) as s:
        assert wfs.unique_slug(s, tenant_id=b, base="shared") == "shared"


def test_templates_dir_is_the_catalogs(tmp_path: Path, tenants: Tenants) -> None:
    engine, a, _ = tenants
    (tmp_path / "mine.yaml").write_text(HELLO.replace("id: hello", "id: mine"))
    with session(engine, a) as s:
        d = wfs.create_from_template(s, tenant_id=a, template_id="mine", author="u1", directory=tmp_path)
        with pytest.raises(NotFound):
            wfs.create_from_template(
                s, tenant_id=a, template_id="faq_handling", author="u1", directory=tmp_path
            )
    assert d.row.slug == "mine"

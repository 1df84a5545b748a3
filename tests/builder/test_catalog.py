"""builder.catalog: one row per workflow file, with load and graph problems as invalid rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import catalog

VALID = """\
version: 1
id: {id}
name: {name}
description: Says hello.
nodes:
  - id: start
    type: start
  - id: hello
    type: reply
    config:
      text: Hello!
edges:
  - {{from: start, to: hello}}
"""

CALLER = """\
version: 1
id: caller
name: Caller
nodes:
  - id: start
    type: start
  - id: call
    type: subflow
    config:
      workflow: {target}
edges:
  - {{from: start, to: call}}
"""


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def by_file(rows: list[dict]) -> dict[str, dict]:
    return {r["file"]: r for r in rows}


def test_valid_file_row(tmp_path: Path) -> None:
    write(tmp_path, "hello.yaml", VALID.format(id="hello", name="Hello there"))
    assert catalog.list_workflows(tmp_path) == [
        {
            "id": "hello",
            "name": "Hello there",
            "description": "Says hello.",
            "nodes": 2,
            "valid": True,
            "errors": [],
            "warnings": [],
            "file": "hello.yaml",
        }
    ]


def test_rows_sorted_by_file_name_and_only_yaml(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", VALID.format(id="b", name="B"))
    write(tmp_path, "a.yaml", VALID.format(id="a", name="A"))
    write(tmp_path, "notes.txt", "not a workflow")
    write(tmp_path, "c.yml", VALID.format(id="c", name="C"))
    write(tmp_path, "a.tests.yaml", "version: 1\nworkflow: a\ncases: []\n")  # its conversation tests
    assert [r["file"] for r in catalog.list_workflows(tmp_path)] == ["a.yaml", "b.yaml"]


def test_load_error_is_an_invalid_row_not_an_exception(tmp_path: Path) -> None:
    write(tmp_path, "broken.yaml", "version: 1\nid: broken\nname: [unclosed\n")
    write(tmp_path, "ok.yaml", VALID.format(id="ok", name="Ok"))
    rows = by_file(catalog.list_workflows(tmp_path))
    broken = rows["broken.yaml"]
    assert broken["valid"] is False
    assert (broken["id"], broken["name"], broken["nodes"]) == ("broken", "broken", 0)
    assert len(broken["errors"]) == 1
    assert broken["errors"][0].startswith("broken.yaml:")
    assert "YAML_SYNTAX" in broken["errors"][0]
    assert rows["ok.yaml"]["valid"] is True


def test_schema_error_names_the_file_line(tmp_path: Path) -> None:
    write(tmp_path, "extra.yaml", VALID.format(id="extra", name="Extra") + "colour: red\n")
    (row,) = catalog.list_workflows(tmp_path)
    assert row["valid"] is False
    assert row["errors"][0].startswith("extra.yaml:14:")
    assert "SCHEMA_INVALID colour" in row["errors"][0]


def test_graph_errors_make_the_row_invalid(tmp_path: Path) -> None:
    text = VALID.format(id="dangling", name="Dangling") + "  - {from: hello, to: ghost}\n"
    write(tmp_path, "dangling.yaml", text)
    (row,) = catalog.list_workflows(tmp_path)
    assert row["valid"] is False
    assert row["nodes"] == 2
    assert any("ghost" in e for e in row["errors"])


def test_warnings_keep_the_row_valid(tmp_path: Path) -> None:
    write(
        tmp_path,
        "commented.yaml",
        "# a comment the canonical format drops\n" + VALID.format(id="c", name="C"),
    )
    (row,) = catalog.list_workflows(tmp_path)
    assert row["valid"] is True
    assert row["errors"] == []
    assert any("YAML_COMMENTS_DROPPED" in w for w in row["warnings"])


def test_subflows_resolve_within_the_directory(tmp_path: Path) -> None:
    write(tmp_path, "caller.yaml", CALLER.format(target="hello"))
    write(tmp_path, "hello.yaml", VALID.format(id="hello", name="Hello"))
    rows = by_file(catalog.list_workflows(tmp_path))
    assert rows["caller.yaml"]["valid"] is True, rows["caller.yaml"]["errors"]

    (tmp_path / "hello.yaml").unlink()
    (row,) = catalog.list_workflows(tmp_path)
    assert row["valid"] is False
    assert any("SUBFLOW_MISSING" in e for e in row["errors"])


def test_duplicate_workflow_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", VALID.format(id="same", name="One"))
    write(tmp_path, "two.yaml", VALID.format(id="same", name="Two"))
    rows = by_file(catalog.list_workflows(tmp_path))
    assert rows["one.yaml"]["valid"] is False and rows["two.yaml"]["valid"] is False
    assert "WORKFLOW_DUPLICATE_ID" in rows["one.yaml"]["errors"][0]
    assert "two.yaml" in rows["one.yaml"]["errors"][0]
    assert rows["one.yaml"]["errors"][0].startswith("one.yaml:2:5:")


def test_unreadable_file_is_listed_as_invalid(tmp_path: Path) -> None:
    (tmp_path / "odd.yaml").mkdir()  # a directory named like a workflow: reading it fails
    (row,) = catalog.list_workflows(tmp_path)
    assert (row["id"], row["valid"], row["nodes"]) == ("odd", False, 0)
    assert "FILE_UNREADABLE" in row["errors"][0]


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    assert catalog.list_workflows(tmp_path / "nope") == []
    assert catalog.list_workflows(tmp_path) == []


def test_directory_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "hello.yaml", VALID.format(id="hello", name="Hello"))
    monkeypatch.setenv(catalog.DIR_ENV, str(tmp_path))
    assert catalog.workflows_dir() == tmp_path
    assert [r["id"] for r in catalog.list_workflows()] == ["hello"]
    monkeypatch.delenv(catalog.DIR_ENV)
    assert catalog.workflows_dir() == catalog.ROOT / "workflows"


def test_shipped_workflows_are_all_valid() -> None:
    rows = catalog.list_workflows(catalog.ROOT / "workflows")
    assert [r for r in rows if not r["valid"]] == []

"""``flowdesk test``: conversation tests replayed through the engine; exit codes for CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import ROOT
from runtime import cli, convtest

WORKFLOWS = ROOT / "workflows"

GREET = """\
version: 1
id: greet
name: Greet
nodes:
  - id: start
    type: start
  - id: ask
    type: extract
    config:
      fields:
        code: {pattern: '[0-9]{4,}', ask: What is your code?}
  - id: hello
    type: reply
    config:
      text: Hello {{ code }}!
edges:
  - {from: start, to: ask}
  - {from: ask, to: hello}
"""

PASSING = """\
version: 1
workflow: greet
cases:
  - name: asks, then greets
    turns:
      - user: hi
        expect:
          path_includes: [start, ask]
          reply_contains: [your code]
      - user: it is 12345
        expect:
          intent: none
          path_includes: [ask, hello]
          reply_contains: [Hello 12345!]
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def greet(tmp_path: Path) -> Path:
    wf = tmp_path / "greet.yaml"
    wf.write_text(GREET)
    return wf


def test_passing_tests_beside_the_workflow_exit_0(greet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (greet.parent / "greet.tests.yaml").write_text(PASSING)
    code, out = run(capsys, "test", str(greet))
    assert code == 0, out
    assert "PASS  asks, then greets" in out
    assert "ok turn 2: 'it is 12345'" in out
    assert out.rstrip().endswith("1 passed, 0 failed (1 cases)")


def test_a_failing_turn_exits_1_and_names_the_mismatch(
    greet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = greet.parent / "other.yaml"
    tests.write_text(PASSING.replace("[Hello 12345!]", "[Goodbye]").replace("intent: none", "intent: faq"))
    code, out = run(capsys, "test", str(greet), "--tests", str(tests))
    assert code == 1
    assert "FAIL  asks, then greets" in out
    assert "XX turn 2" in out
    assert "intent: expected 'faq', got 'none'" in out
    assert "reply: expected to contain 'Goodbye', got 'Hello 12345!'" in out
    assert "0 passed, 1 failed" in out


def test_json_output(greet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (greet.parent / "tests").mkdir()
    (greet.parent / "tests" / "greet.tests.yaml").write_text(PASSING)  # the tests/ subdirectory is found too
    code, out = run(capsys, "test", str(greet), "--json")
    assert code == 0
    (case,) = json.loads(out)
    assert case["passed"] and [t["path"] for t in case["turns"]] == [["start", "ask"], ["ask", "hello"]]
    assert case["turns"][1]["reply"] == "Hello 12345!"


def test_no_tests_file_exits_2(greet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "test", str(greet))
    assert code == 2
    assert "no tests file" in out
    code, out = run(capsys, "test", str(greet), "--tests", str(greet.parent / "missing.yaml"))
    assert code == 2 and "cannot read" in out


def test_invalid_tests_file_exits_1_with_its_line(greet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = greet.parent / "bad.tests.yaml"
    bad.write_text("version: 1\nworkflow: greet\ncases:\n  - name: x\n    turns: [{usr: hi}]\n")
    code, out = run(capsys, "test", str(greet), "--tests", str(bad))
    assert code == 1
    assert f"{bad}:5:" in out and "TESTS_INVALID" in out


def test_tests_for_another_workflow_exit_1(greet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = greet.parent / "x.tests.yaml"
    other.write_text(PASSING.replace("workflow: greet", "workflow: track_order"))
    code, out = run(capsys, "test", str(greet), "--tests", str(other))
    assert code == 1 and "not 'greet'" in out


def test_invalid_workflow_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wf = tmp_path / "greet.yaml"
    wf.write_text(GREET.replace("to: hello}", "to: nowhere}"))
    (tmp_path / "greet.tests.yaml").write_text(PASSING)
    code, out = run(capsys, "test", str(wf))
    assert code == 1 and "EDGE_UNKNOWN_NODE" in out


def test_tests_path_for_prefers_the_file_beside(tmp_path: Path) -> None:
    wf = tmp_path / "a.yaml"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "a.tests.yaml").write_text("x")
    assert convtest.tests_path_for(wf) == tmp_path / "tests" / "a.tests.yaml"
    (tmp_path / "a.tests.yaml").write_text("x")
    assert convtest.tests_path_for(wf) == tmp_path / "a.tests.yaml"
    assert convtest.tests_path_for(tmp_path / "b.yaml") is None


@pytest.mark.slow
@pytest.mark.parametrize("slug", ["customer_support", "track_order"])
def test_shipped_tests_pass_through_the_installed_command(slug: str) -> None:
    """The CI gate as CI runs it: the console script, the shipped tests, the demo API it starts."""
    exe = Path(sys.executable).parent / "flowdesk"
    done = subprocess.run(
        [str(exe), "test", str(WORKFLOWS / f"{slug}.yaml")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stdout


def test_validate_and_catalog_ignore_the_tests_directory(capsys: pytest.CaptureFixture[str]) -> None:
    from builder import catalog

    files = {r["file"] for r in catalog.list_workflows(WORKFLOWS)}
    assert not any(f.endswith(".tests.yaml") for f in files)
    assert all(r["valid"] for r in catalog.list_workflows(WORKFLOWS))

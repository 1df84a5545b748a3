"""The ``flowdesk`` command line on real files (validate, fmt, route, eval-router, graph)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import ROOT
from runtime import cli

WORKFLOWS = ROOT / "workflows"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_validate_every_shipped_file_passes(capsys):
    code, out = run(capsys, "validate", *map(str, sorted(WORKFLOWS.glob("*.yaml"))))
    assert (code, out) == (0, "")


def test_validate_reports_file_line_col_code(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nid: bad\nname: Bad\nnodes:\n  - id: start\n    type: start\n"
        "  - id: x\n    type: teleport\nedges:\n  - {from: start, to: x}\n  - {from: x, to: ghost}\n"
    )
    code, out = run(capsys, "validate", str(bad))
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith(f"{bad}:8:11: UNKNOWN_NODE_TYPE") for line in lines), out
    assert any(": EDGE_UNKNOWN_NODE " in line and line.startswith(f"{bad}:11:") for line in lines), out


def test_validate_unparseable_and_missing_file(tmp_path: Path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nid: [unclosed\n")
    code, out = run(capsys, "validate", str(broken), str(tmp_path / "nope.yaml"))
    assert code == 1
    assert f"{broken}:3:1: YAML_SYNTAX" in out
    assert "FILE_UNREADABLE" in out


def test_validate_hostile_tag_never_executes(tmp_path: Path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'version: 1\nid: e\nname: !!python/object/apply:os.system ["touch {marker}"]\n')
    code, out = run(capsys, "validate", str(evil))
    assert code == 1 and "YAML_TAG" in out and not marker.exists()


def test_fmt_check_and_rewrite(tmp_path: Path, capsys):
    f = tmp_path / "track_order.yaml"
    f.write_text(
        (WORKFLOWS / "track_order.yaml")
        .read_text()
        .replace("expect: [200, 404]", "expect:\n        - 200\n        - 404")
    )
    code, out = run(capsys, "fmt", "--check", str(f))
    assert code == 1 and "not in canonical form" in out
    code, out = run(capsys, "fmt", str(f))
    assert code == 0 and "reformatted" in out
    assert f.read_text() == (WORKFLOWS / "track_order.yaml").read_text()
    assert run(capsys, "fmt", "--check", str(f)) == (0, "")


def test_route_prints_a_decision_record(capsys):
    code, out = run(
        capsys, "route", str(WORKFLOWS / "customer_support.yaml"), "--text", "where is my order 48213"
    )
    assert code == 0
    d = json.loads(out)
    assert d["intent"] == "track_order" and d["node"] == "understand"
    assert {"confidence", "layer", "tier", "tier_probs", "latency_ms", "candidates"} <= set(d)


def test_route_without_classify_node_fails_clearly(capsys):
    with pytest.raises(SystemExit, match="no classify node"):
        cli.main(["route", str(WORKFLOWS / "track_order.yaml"), "--text", "hi"])


def test_eval_router_on_the_held_out_set(capsys):
    code, out = run(
        capsys,
        "eval-router",
        str(WORKFLOWS / "customer_support.yaml"),
        "--data",
        str(ROOT / "tests/fixtures/router_test.jsonl"),
        "--compact",
    )
    assert code == 0
    report = json.loads(out)
    assert {"n", "accuracy", "macro_f1", "p50_ms", "p99_ms", "per_intent", "confusion"} <= set(report)
    assert report["n"] >= 190
    assert report["accuracy"] > 0.75  # measured 0.88; a collapse of the router fails here


def test_eval_router_bad_data_names_the_line(tmp_path: Path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hi", "intent": "greeting"}\n{not json}\n')
    with pytest.raises(Exception, match=r"2"):
        cli.main(["eval-router", str(WORKFLOWS / "customer_support.yaml"), "--data", str(data)])


def test_graph_prints_mermaid_with_nested_subflows(capsys):
    code, out = run(capsys, "graph", str(WORKFLOWS / "customer_support.yaml"))
    assert code == 0 and "graph TD" in out
    assert "understand" in out and "track_order" in out


def test_console_script_is_installed():
    exe = shutil.which("flowdesk") or str(Path(sys.executable).parent / "flowdesk")
    proc = subprocess.run(
        [exe, "validate", str(WORKFLOWS / "faq_handling.yaml")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr

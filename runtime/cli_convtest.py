"""``flowdesk test WORKFLOW [--tests FILE]``: replay a workflow's conversation tests (CI gate).

Prints one line per turn (``PASS``/``FAIL`` with the mismatch) and a summary; exit 0 when every
case passes, 1 on any failure or an invalid workflow/tests file, 2 when no tests file is found.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from builder.conversation_tests import CaseOutcome
from builder.issues import WorkflowLoadError
from runtime import convtest

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cmd_test(args: argparse.Namespace) -> int:
    from runtime.cli import _load_valid, _print_issues, local_engine

    wf_path = Path(args.workflow)
    tests_path = Path(args.tests) if args.tests else convtest.tests_path_for(wf_path)
    if tests_path is None:
        print(
            f"{wf_path}: no tests file (looked for {wf_path.stem}{convtest.SUFFIX} beside it and in "
            f"{convtest.TESTS_SUBDIR}/); pass --tests FILE"
        )
        return EXIT_USAGE
    try:
        tests = convtest.read_tests(tests_path)
    except WorkflowLoadError as e:
        _print_issues(tests_path, e.issues)
        return EXIT_FAILED
    except OSError as e:
        print(f"{tests_path}: cannot read the file: {e.strerror or e}")
        return EXIT_USAGE
    found = _load_valid(wf_path)
    if found is None:
        return EXIT_FAILED
    wf, resolve = found
    if tests.workflow != wf.id:
        print(f"{tests_path}: the tests are for workflow {tests.workflow!r}, not {wf.id!r}")
        return EXIT_FAILED
    from runtime.llm import OfflineProvider

    engine = local_engine(resolve)
    engine.llm = OfflineProvider(engine.settings)  # deterministic: the same answers as the publish gate
    outcomes = convtest.run_tests(engine, wf, tests)
    if args.json:
        print(json.dumps([_as_json(o) for o in outcomes], ensure_ascii=False))
    else:
        _print_report(outcomes)
    return EXIT_OK if all(o.passed for o in outcomes) else EXIT_FAILED


def _print_report(outcomes: list[CaseOutcome]) -> None:
    for o in outcomes:
        print(f"{'PASS' if o.passed else 'FAIL'}  {o.name}")
        if o.error is not None:
            print(f"      error: {o.error}")
        for t in o.turns:
            mark = "ok " if t.passed else "XX "
            print(f"      {mark}turn {t.index}: {t.user!r} -> [{t.observed.intent or '-'}]")
            for m in t.mismatches:
                print(f"          {m}")
    failed = sum(not o.passed for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed ({len(outcomes)} cases)")


def _as_json(o: CaseOutcome) -> dict[str, Any]:
    return {
        "name": o.name,
        "passed": o.passed,
        "error": o.error,
        "turns": [
            {
                "user": t.user,
                "passed": t.passed,
                "intent": t.observed.intent,
                "path": t.observed.path,
                "reply": t.observed.reply,
                "mismatches": t.mismatches,
            }
            for t in o.turns
        ],
    }


def register(sub: Any) -> None:
    s = sub.add_parser("test", help="replay a workflow's conversation tests; exit 1 on any failure")
    s.add_argument("workflow", help="the workflow file")
    s.add_argument(
        "--tests", help=f"the tests file (default: <workflow>{convtest.SUFFIX} beside it or in tests/)"
    )
    s.add_argument("--json", action="store_true", help="one JSON array of case results")
    s.set_defaults(fn=cmd_test)

"""The conversation tests format: loading, canonical dump, hostile YAML, turn checks, saved cases."""

from __future__ import annotations

import pytest

from builder import conversation_tests as ct
from builder.issues import WorkflowLoadError
from core.settings import ROOT

SHIPPED = sorted((ROOT / "workflows" / "tests").glob("*.tests.yaml"))

GOOD = """\
version: 1
workflow: shop
cases:
  - name: greets
    turns:
      - user: hi
        expect:
          intent: greeting
          path_includes: [start, understand, hello]
          reply_contains: [Hello]
      - user: |-
          two
          lines
  - name: second
    turns:
      - user: where is 48213
        expect:
          reply_contains: [Order 48213, shipped]
"""


def issues(text: str | bytes) -> list[str]:
    with pytest.raises(WorkflowLoadError) as e:
        ct.load_tests(text, filename="t.tests.yaml")
    return [i.format("t.tests.yaml") for i in e.value.issues]


def test_good_file_loads_and_dumps_canonically() -> None:
    tests = ct.load_tests(GOOD)
    assert tests.workflow == "shop"
    assert [c.name for c in tests.cases] == ["greets", "second"]
    first = tests.cases[0].turns[0].expect
    assert (first.intent, first.path_includes, first.reply_contains) == (
        "greeting",
        ["start", "understand", "hello"],
        ["Hello"],
    )
    assert tests.cases[0].turns[1].expect.is_empty()
    assert ct.dump_tests(tests) == GOOD
    assert ct.load_tests(ct.dump_tests(tests)) == tests


def test_reply_contains_accepts_one_string() -> None:
    t = ct.load_tests(
        "workflow: w\ncases:\n  - name: a\n    turns:\n"
        "      - user: x\n        expect: {reply_contains: Hi}\n"
    )
    assert t.cases[0].turns[0].expect.reply_contains == ["Hi"]
    assert t.version == 1


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_tests_files_are_canonical_and_name_a_shipped_workflow(path) -> None:
    text = path.read_text()
    tests = ct.load_tests(text, filename=path.name)
    assert ct.dump_tests(tests) == text
    assert path.name == f"{tests.workflow}.tests.yaml"
    assert (ROOT / "workflows" / f"{tests.workflow}.yaml").is_file()


def test_shipped_tests_exist() -> None:
    assert {p.name for p in SHIPPED} >= {"customer_support.tests.yaml", "track_order.tests.yaml"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cases: []\n", "t.tests.yaml:1:1: TESTS_INVALID workflow: Field required"),
        ("workflow: w\ncolour: red\n", "t.tests.yaml:2:9: TESTS_INVALID colour: Extra inputs"),
        (
            "workflow: w\nversion: 2\n",
            "t.tests.yaml:2:10: TESTS_INVALID version: Value error, format version 2",
        ),
        (
            "workflow: w\ncases:\n  - name: a\n    turns: []\n",
            "t.tests.yaml:4:12: TESTS_INVALID cases.0.turns: List should have at least 1 item",
        ),
        (
            "workflow: w\ncases:\n  - name: a\n    turns:\n      - user: '  '\n",
            "t.tests.yaml:5:15: TESTS_INVALID cases.0.turns.0.user: Value error, the user message is blank",
        ),
        (
            "workflow: w\ncases:\n  - name: a\n    turns:\n      - user: x\n        expect: {intnet: faq}\n",
            "t.tests.yaml:6:26: TESTS_INVALID cases.0.turns.0.expect.intnet: Extra inputs",
        ),
        (
            "workflow: w\ncases:\n  - {name: a, turns: [{user: x}]}\n  - {name: a, turns: [{user: y}]}\n",
            "t.tests.yaml:3:3: TESTS_INVALID cases: Value error, case names must be unique; repeated: a",
        ),
        ("- a\n- b\n", "t.tests.yaml:1:1: TESTS_NOT_MAPPING"),
    ],
)
def test_schema_errors_point_at_the_line(text: str, expected: str) -> None:
    found = issues(text)
    assert any(line.startswith(expected) for line in found), found


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("workflow: !!python/object/apply:os.system ['echo hi']\n", "YAML_TAG"),
        ("a: &x [1, 2]\nworkflow: w\ncases: *x\n", "YAML_ALIAS"),
        ("workflow: w\nworkflow: v\n", "YAML_DUPLICATE_KEY"),
        ("workflow: [unclosed\n", "YAML_SYNTAX"),
        (b"workflow: caf\xe9\n", "YAML_ENCODING"),
        ("", "YAML_EMPTY"),
        ("x: " + "[" * 60 + "]" * 60 + "\n", "YAML_TOO_DEEP"),
        (b"#" * (3 << 20), "YAML_TOO_LARGE"),
    ],
)
def test_hostile_yaml_is_refused_with_a_code(text: str | bytes, code: str) -> None:
    assert any(f": {code} " in line for line in issues(text)), issues(text)


def test_billion_laughs_is_refused_before_expansion() -> None:
    text = (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: [*b, *b, *b, *b, *b]\n"
    )
    assert any("YAML_ALIAS" in line for line in issues(text))


def test_limits() -> None:
    many = "workflow: w\ncases:\n" + "".join(
        f"  - {{name: c{i}, turns: [{{user: x}}]}}\n" for i in range(201)
    )
    assert any("at most 200 items" in line for line in issues(many))
    turns = "[" + ", ".join(["{user: x}"] * 50) + "]"
    big = "workflow: w\ncases:\n" + "".join(f"  - {{name: c{i}, turns: {turns}}}\n" for i in range(11))
    assert any("550 turns in all; a tests file holds at most 500" in line for line in issues(big))
    long_user = "workflow: w\ncases:\n  - name: a\n    turns:\n      - user: " + "x" * 4001 + "\n"
    assert any("at most 4000 characters" in line for line in issues(long_user))


# ---------------------------------------------------------------- checking a turn


def seen(
    intent: str | None = "faq", path: list[str] | None = None, reply: str = "Shipping takes 3 days."
) -> ct.Observed:
    return ct.Observed(intent, path if path is not None else ["start", "understand", "faq/answer"], reply)


def test_a_matching_turn_has_no_mismatches() -> None:
    exp = ct.Expect(intent="faq", path_includes=["start", "faq/answer"], reply_contains=["SHIPPING takes"])
    assert ct.check_turn(exp, seen()) == []
    assert ct.check_turn(ct.Expect(), seen()) == []


def test_each_mismatch_is_reported() -> None:
    exp = ct.Expect(
        intent="track_order", path_includes=["understand", "lookup"], reply_contains=["refund", "days"]
    )
    out = ct.check_turn(exp, seen())
    assert len(out) == 3
    assert out[0] == "intent: expected 'track_order', got 'faq'"
    assert out[1].startswith(
        "path: expected 'lookup' (in order understand -> lookup), got start -> understand"
    )
    assert out[2].startswith("reply: expected to contain 'refund'")


def test_path_order_matters_and_no_intent_is_none() -> None:
    assert ct.check_turn(ct.Expect(path_includes=["faq/answer", "start"]), seen())
    assert ct.check_turn(ct.Expect(intent="none"), seen(intent=None)) == []
    assert ct.check_turn(ct.Expect(intent="faq"), seen(intent=None)) == ["intent: expected 'faq', got 'none'"]


def test_case_outcome_failures() -> None:
    ok = ct.TurnOutcome(1, "hi", seen())
    bad = ct.TurnOutcome(2, "yo", seen(), ["intent: expected 'x', got 'faq'"])
    outcome = ct.CaseOutcome("c", [ok, bad])
    assert not outcome.passed
    assert outcome.failures() == ["c / turn 2: intent: expected 'x', got 'faq'"]
    assert ct.CaseOutcome("d", error="boom").failures() == ["d: boom"]
    assert ct.CaseOutcome("e", [ok]).passed


# ---------------------------------------------------------------- saving chats as cases


def test_case_from_turns_and_add_case() -> None:
    case = ct.case_from_turns(
        "chat 1",
        [
            {
                "user": "hi",
                "intent": "greeting",
                "path": ["start", "hello"],
                "reply": "Hi! I'm the shop's assistant.\nMore",
            },
            {"user": "bye", "intent": None, "path": [], "reply": "x" * 30 + " " + "y" * 50},
        ],
    )
    t1, t2 = case.turns
    assert (t1.expect.intent, t1.expect.path_includes, t1.expect.reply_contains) == (
        "greeting",
        ["start", "hello"],
        ["Hi! I'm the shop's assistant."],
    )
    assert t2.expect.intent is None and t2.expect.reply_contains == ["x" * 30]

    tests = ct.add_case(ct.empty("shop"), case)
    tests = ct.add_case(tests, ct.Case(name="other", turns=[ct.Turn(user="x")]))
    replaced = ct.add_case(tests, ct.Case(name="chat 1", turns=[ct.Turn(user="new")]))
    assert [c.name for c in replaced.cases] == ["chat 1", "other"]
    assert replaced.cases[0].turns[0].user == "new"
    assert ct.load_tests(ct.dump_tests(replaced)) == replaced

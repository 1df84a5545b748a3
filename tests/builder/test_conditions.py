"""builder.conditions: structured data evaluated without eval; regexes on RE2."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from builder.conditions import AllOf, AnyOf, Comparison, Condition, Not, evaluate, paths

PARSE = TypeAdapter(Condition)

VALUES: dict[str, Any] = {
    "order": {"status": "Shipped", "total": "120.50", "items": ["A-1", "B-2"], "notes": ""},
    "qty": 3,
    "limit": 5,
    "flag": None,
    "email": "ann@example.com",
    "text": "a" * 5000 + "!",
}


def cond(data: dict[str, Any]) -> Condition:
    return PARSE.validate_python(data)


def check(left: str, op: str, right: Any = None) -> bool:
    return evaluate(cond({"left": left, "op": op, "right": right}), VALUES)


@pytest.mark.parametrize(
    ("left", "op", "right", "expected"),
    [
        ("order.status", "eq", "shipped", True),  # text compares case-insensitively
        ("order.status", "eq", "pending", False),
        ("order.total", "eq", 120.5, True),  # numbers compare as numbers
        ("qty", "eq", "3", True),
        ("missing", "eq", None, True),
        ("order.status", "ne", "pending", True),
        ("order.status", "ne", "SHIPPED", False),
        ("qty", "gt", 2, True),
        ("qty", "gt", 3, False),
        ("qty", "gte", 3, True),
        ("qty", "gte", 4, False),
        ("order.total", "lt", "200", True),
        ("order.total", "lt", 100, False),
        ("qty", "lte", 3, True),
        ("qty", "lte", 2, False),
        ("order.status", "gt", 1, False),  # not a number: never greater, never less
        ("order.status", "lt", 1, False),
        ("order.status", "contains", "SHIP", True),
        ("order.items", "contains", "A-1", True),
        ("order.items", "contains", "C-3", False),
        ("qty", "contains", 3, False),
        ("order.status", "not_contains", "pend", True),
        ("order.items", "not_contains", "A-1", False),
        ("qty", "in", [1, 2, 3], True),
        ("qty", "in", [4], False),
        ("order.status", "in", "xShippedx", True),
        ("qty", "not_in", [4], True),
        ("qty", "not_in", [3], False),
        ("qty", "exists", None, True),
        ("flag", "exists", None, False),
        ("missing", "exists", None, False),
        ("missing", "not_exists", None, True),
        ("qty", "not_exists", None, False),
        ("order.notes", "empty", None, True),
        ("missing", "empty", None, True),
        ("order.items", "empty", None, False),
        ("order.items", "not_empty", None, True),
        ("flag", "not_empty", None, False),
        ("email", "matches", r"^[^@\s]+@example\.com$", True),
        ("email", "matches", r"^\d+$", False),
        ("missing", "matches", ".*", False),
    ],
)
def test_every_op(left, op, right, expected):
    assert check(left, op, right) is expected


def test_right_side_may_be_a_single_template():
    assert check("qty", "lt", "{{ limit }}") is True
    assert check("qty", "gt", "{{ limit }}") is False
    assert check("qty", "eq", "{{ nowhere }}") is False


def test_all_any_not_nest():
    c = cond(
        {
            "all": [
                {"left": "qty", "op": "gt", "right": 1},
                {
                    "any": [
                        {"left": "order.status", "right": "lost"},
                        {"left": "order.items", "op": "not_empty"},
                    ]
                },
                {"not": {"left": "email", "op": "empty"}},
            ]
        }
    )
    assert isinstance(c, AllOf) and isinstance(c.all[1], AnyOf) and isinstance(c.all[2], Not)
    assert evaluate(c, VALUES) is True
    assert evaluate(cond({"not": c.model_dump(by_alias=True)}), VALUES) is False
    assert (
        evaluate(
            cond({"any": [{"left": "qty", "op": "lt", "right": 0}, {"left": "flag", "op": "exists"}]}), VALUES
        )
        is False
    )


def test_default_op_is_eq():
    c = cond({"left": "qty", "right": 3})
    assert isinstance(c, Comparison) and c.op == "eq" and evaluate(c, VALUES) is True


@pytest.mark.parametrize(
    "data",
    [
        {"left": "qty", "op": "between", "right": 1},  # no such op
        {"left": "qty", "op": "eq", "expr": "qty > 1"},  # no extra keys, no expressions
        {"all": []},
        {"any": [{"op": "eq"}]},
        {"left": "x", "op": "matches", "right": "(unclosed"},
        {"left": "x", "op": "matches", "right": r"(a)\1"},  # backreferences: RE2 refuses them
    ],
)
def test_invalid_conditions_are_rejected(data):
    with pytest.raises(ValidationError):
        cond(data)


def test_regex_runs_on_re2_in_linear_time():
    # Catastrophic for a backtracking engine on 5000 'a's; RE2 answers at once.
    assert check("text", "matches", r"^(a+)+$") is False
    assert check("text", "matches", r"^(a|aa)+!$") is True


def test_paths_lists_every_variable_read():
    c = cond(
        {
            "any": [
                {"left": "order.status", "right": "{{ wanted.status }}"},
                {
                    "all": [
                        {"left": "qty", "op": "gt", "right": "3"},
                        {"not": {"left": "flag", "op": "exists"}},
                    ]
                },
            ]
        }
    )
    assert paths(c) == ["order.status", "wanted.status", "qty", "flag"]

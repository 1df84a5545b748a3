"""``condition``: ordered cases of structured conditions; first match wins; none -> default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nodes.condition import NODE, Config, run
from tests.nodes import make_ctx, make_input

CASES = {
    "cases": [
        {
            "label": "late",
            "when": {
                "all": [
                    {"left": "order.status", "op": "eq", "right": "in_transit"},
                    {"left": "days", "op": "gt", "right": 5},
                ]
            },
        },
        {
            "label": "moving",
            "when": {
                "any": [
                    {"left": "order.status", "op": "eq", "right": "shipped"},
                    {"left": "order.status", "op": "eq", "right": "in_transit"},
                ]
            },
        },
        {
            "label": "cancellable",
            "when": {"not": {"left": "order.status", "op": "in", "right": ["shipped", "delivered"]}},
        },
    ]
}


@pytest.mark.parametrize(
    "values, label",
    [
        ({"order": {"status": "in_transit"}, "days": 7}, "late"),
        ({"order": {"status": "in_transit"}, "days": 2}, "moving"),  # first case fails, second wins
        ({"order": {"status": "shipped"}, "days": 9}, "moving"),
        ({"order": {"status": "processing"}}, "cancellable"),
        ({"order": {"status": "delivered"}}, None),
    ],
)
def test_first_matching_case_wins(values, label):
    res = run(Config.model_validate(CASES), make_input("x", values), make_ctx())
    assert res.output == label and res.value == {"matched": label}


def test_outputs_and_reads():
    cfg = Config.model_validate(CASES)
    assert NODE.all_outputs(cfg) == ["late", "moving", "cancellable"]
    assert NODE.reads(cfg) == ["order.status", "days"]
    cfg2 = Config.model_validate({"cases": [{"label": "same", "when": {"left": "a", "right": "{{ b.c }}"}}]})
    assert NODE.reads(cfg2) == ["a", "b.c"]


def test_template_on_the_right_compares_two_variables():
    cfg = Config.model_validate(
        {"cases": [{"label": "same", "when": {"left": "a", "op": "eq", "right": "{{ b }}"}}]}
    )
    assert run(cfg, make_input("", {"a": 3, "b": "3"}), make_ctx()).output == "same"
    assert run(cfg, make_input("", {"a": 3, "b": 4}), make_ctx()).output is None


@pytest.mark.parametrize(
    "cfg",
    [
        {"cases": []},
        {"cases": [{"label": "a", "when": {"left": "x"}}, {"label": "a", "when": {"left": "y"}}]},
        {"cases": [{"label": "error", "when": {"left": "x"}}]},
        {"cases": [{"label": "has space", "when": {"left": "x"}}]},
        {"cases": [{"label": "a", "when": {"left": "x", "op": "matches", "right": "(unclosed"}}]},
        {"cases": [{"label": "a", "when": {"left": "x", "op": "approximately"}}]},
        {"cases": [{"label": "a", "when": "x == 1"}]},  # expressions are never accepted
    ],
)
def test_bad_configs_are_refused(cfg):
    with pytest.raises(ValidationError):
        Config.model_validate(cfg)

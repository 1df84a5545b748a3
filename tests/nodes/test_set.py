"""``set``: typed values from templates, constants, nested values; variable names validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nodes.set import NODE, Config, run
from tests.nodes import make_ctx, make_input


def test_single_template_keeps_its_type_and_mixed_text_renders():
    cfg = Config(
        values={
            "total": "{{ lookup.body.total }}",
            "note": "Order {{ order_id }} total {{ lookup.body.total }}",
            "n": 3,
            "nested": {"items": ["{{ order_id }}", "x"]},
            "gone": "{{ nope }}",
        }
    )
    inp = make_input("hi", {"order_id": "48213", "lookup": {"body": {"total": 74.0}}})
    res = run(cfg, inp, make_ctx())
    assert res.set == {
        "total": 74.0,
        "note": "Order 48213 total 74.0",
        "n": 3,
        "nested": {"items": ["48213", "x"]},
        "gone": None,
    }
    assert res.value == res.set and res.output is None and res.reply is None


def test_sets_and_reads():
    cfg = Config(values={"a": "{{ x.y }}", "b": "{{ z }} and {{ w }}"})
    assert NODE.sets(cfg) == {"a", "b"}
    assert NODE.reads(cfg) == ["x.y", "z", "w"]


@pytest.mark.parametrize("values", [{}, {"1bad": 1}, {"has space": 1}, {"dash-name": 1}, {"a.b": 1}])
def test_bad_configs_are_refused(values):
    with pytest.raises(ValidationError):
        Config(values=values)
